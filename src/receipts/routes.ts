import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
export function receiptRoutes(_p: Platform): FastifyPluginAsyncTypebox {
  return async () => {};
}
