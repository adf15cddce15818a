/** Picks the bus and job queue from the configuration: JetStream when NATS_URL is set. */
import type { Config } from '../config/index.js';
import type { Logger } from '../observability/logger.js';
import type { EventMetrics } from '../observability/metrics.js';
import { createMemoryBus, createMemoryJobQueue } from './memory.js';
import { createJetStreamBackbone } from './jetstream.js';
import type { Bus, JobQueue } from './types.js';

export interface Backbone {
  bus: Bus;
  jobs: JobQueue;
}

export function createBackbone(config: Config, log: Logger, metrics?: EventMetrics): Backbone {
  if (config.natsUrl) return createJetStreamBackbone(config, log, metrics);
  return {
    bus: createMemoryBus({ maxDeliver: config.busMaxDeliver, dedupWindowMs: config.busDedupWindowMs, ackWaitMs: config.busAckWaitMs, metrics }),
    jobs: createMemoryJobQueue({ dedupWindowMs: config.busDedupWindowMs, maxDepth: config.jobsMemoryMax }),
  };
}
