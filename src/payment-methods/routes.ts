import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Platform } from '../platform.js';
export function paymentMethodRoutes(_p: Platform): FastifyPluginAsyncTypebox {
  return async () => {};
}
