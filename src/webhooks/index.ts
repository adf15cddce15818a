/** Outgoing webhooks: what the roles wire in (routes in the api, consumers, job handlers, maintenance tasks). */
export { webhookRoutes } from './routes.js';
export { webhookConsumers, webhookBody, WEBHOOK_GROUP } from './consumer.js';
export { webhookJobHandlers, webhookTasks, webhookSweep, webhookPurge, sweepWebhookDeliveries, retryDelayMs } from './delivery.js';
export { verifyWebhookSignature, signatureHeader, SIGNATURE_HEADER } from './signing.js';
export { WEBHOOK_EVENT_TYPES, DELIVER_JOB, createWebhookService } from './service.js';
