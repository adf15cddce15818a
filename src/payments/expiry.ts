/**
 * Hold expiry: authorized payments whose expires_at has passed are voided through the ledger
 * (kind 'expire', status 'expired', history 'voided'; card holds are also voided at the
 * network). Bounded per round; a backlog is worked off over several rounds.
 */
import type { Platform } from '../platform.js';
import type { MaintenanceTask } from '../maintenance/index.js';
import { createWalletDirectory } from '../ledger/wallet-directory.js';
import { createPaymentMethodService } from '../payment-methods/service.js';
import { createPaymentService } from './service.js';

/** payments expired per cluster and round; each is one ledger command, batched by the engine */
export const EXPIRY_BATCH = 500;

export function paymentTasks(p: Platform): MaintenanceTask[] {
  const payments = createPaymentService(p, createWalletDirectory(p.db), createPaymentMethodService(p));
  return [{ name: 'payment-expiry', run: (cluster, now) => payments.expireDue(cluster, now, EXPIRY_BATCH) }];
}
