/** NATS JetStream adapters: written next (see events/types.ts for the contract). */
import type { Config } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import type { Backbone } from './index.js';

export function createJetStreamBackbone(_config: Config, _log: Logger): Backbone {
  throw new Error('NATS_URL: the JetStream bus is not available yet');
}
