/** The vocabulary of the ledger engine: commands in, staged operations, results out. */
import type { Problem } from '../http/problem.js';

export type AccountKind = 'user' | 'card_funding' | 'merchant_settlement' | 'fees' | 'clearing';
export type TransferKind = 'p2p' | 'topup' | 'payment' | 'capture' | 'void' | 'expire' | 'refund' | 'fee';

/** A user wallet's balance as a row (or a commit) left it; `version` grows with every change. */
export interface WalletSnapshot {
  id: string;
  userId: string;
  currency: string;
  available: bigint;
  pending: bigint;
  version: bigint;
  updatedAt: Date;
}

/** A locked account row as the batch sees it, with the running balance of the batch so far. */
export interface AccountState {
  readonly id: string;
  readonly kind: AccountKind;
  readonly currency: string;
  readonly userId: string | null;
  debitsPosted: bigint;
  creditsPosted: bigint;
  debitsPending: bigint;
  creditsPending: bigint;
}

export interface PendingTransferState {
  readonly id: string;
  readonly debitAccountId: string;
  readonly creditAccountId: string;
  readonly amount: bigint;
  readonly currency: string;
  status: 'pending' | 'posted' | 'voided';
}

export interface PaymentState {
  readonly id: string;
  readonly payerId: string;
  readonly merchantId: string;
  readonly payerWalletId: string | null;
  readonly merchantWalletId: string | null;
  readonly source: 'wallet' | 'card';
  readonly amount: bigint;
  readonly currency: string;
  status: 'authorized' | 'captured' | 'voided' | 'expired' | 'declined';
  capturedAmount: bigint;
  refundedAmount: bigint;
  readonly networkRef: string | null;
  readonly paymentMethodId: string | null;
  readonly expiresAt: Date | null;
  readonly createdAt: Date;
}

export interface HistoryRow {
  id: string;
  userId: string;
  shard: number;
  walletId: string;
  type: 'transfer' | 'topup' | 'payment' | 'refund';
  direction: 'debit' | 'credit';
  amount: bigint;
  currency: string;
  status: 'pending' | 'completed' | 'voided';
  counterparty: string | null;
  note: string | null;
  createdAt: Date;
}

export interface OutboxEvent {
  eventId: string;
  topic: 'transaction-events' | 'fraud-alerts' | 'notification-events' | 'audit-logs';
  partitionKey: string;
  shard: number;
  type: string;
  payload: Record<string, unknown>;
}

/** What a command asks the batch to write, once its checks have passed. */
export type Op =
  | { t: 'transfer'; id: string; debit: string; credit: string; amount: bigint; currency: string; pending: boolean; kind: TransferKind; refId: string }
  /** post (amount > 0, at most the hold) or void (amount 0) a pending transfer */
  | { t: 'resolve'; id: string; pendingId: string; kind: 'capture' | 'void' | 'expire'; amount: bigint; refId: string }
  | { t: 'history'; row: HistoryRow }
  | { t: 'history_status'; userId: string; id: string; createdAt: Date; status: HistoryRow['status']; amount: bigint }
  | { t: 'outbox'; event: OutboxEvent }
  | { t: 'topup'; row: TopupRow }
  | { t: 'payment_insert'; row: PaymentState & { shard: number; declineCode: string | null } }
  | { t: 'payment_update'; id: string; status: PaymentState['status']; capturedAmount: bigint; refundedAmount: bigint }
  | { t: 'refund'; row: { id: string; shard: number; paymentId: string; amount: bigint; currency: string; createdAt: Date } }
  /** a request held for a fraud analyst (its pending transfer is in the same batch) */
  | { t: 'fraud_review'; row: FraudReviewRow }
  | { t: 'fraud_review_decide'; id: string; status: 'approved' | 'declined'; decidedBy: string }
  /** a held top-up decided */
  | { t: 'topup_update'; id: string; status: 'completed' | 'declined'; declineCode: string | null };

export interface FraudReviewRow {
  id: string;
  shard: number;
  userId: string;
  kind: 'transfer' | 'topup' | 'payment';
  counterpartyId: string | null;
  amount: bigint;
  currency: string;
  score: number;
  /** reason codes (no commas) */
  reasons: string[];
  createdAt: Date;
}

export interface TopupRow {
  id: string;
  shard: number;
  userId: string;
  walletId: string | null;
  paymentMethodId: string;
  amount: bigint;
  currency: string;
  status: 'completed' | 'declined' | 'pending_review';
  declineCode: string | null;
  networkRef: string | null;
  createdAt: Date;
}

/** The HTTP answer a command produced; stored verbatim as the idempotency record. */
export interface Answer {
  status: number;
  body: Record<string, unknown> | Problem;
}

export interface Applied {
  ops: Op[];
  answer: Answer;
}

export interface BatchView {
  readonly now: Date;
  account(id: string): AccountState;
  pendingTransfer(id: string): PendingTransferState | undefined;
  payment(id: string): PaymentState | undefined;
}

export interface Command {
  /** which cluster's engine runs it */
  shard: number;
  idempotency?: { userId: string; key: string; requestHash: string };
  /** rows to lock (FOR UPDATE) before apply; locks are taken payments → transfers → accounts, each by id */
  accounts: string[];
  payments?: string[];
  pendingTransfers?: string[];
  /** Pure: reads the locked state, returns the writes and the answer, or a refusal. */
  apply(view: BatchView): Applied | Answer;
  /**
   * For a command built from routing decisions (same cluster or through clearing): the same
   * command rebuilt under the routing of now. The engine calls it when the command met a shard
   * move's fence and the shard has moved (src/ledger/fence.ts); without it the command runs again
   * as it is, on the cluster of its shard.
   */
  reroute?: () => Promise<Command>;
}

export interface CommandResult extends Answer {
  replayed: boolean;
  /** the versions this command left on the caller's own wallets (for Wallet-Consistency) */
  versions?: Map<string, bigint>;
  /** serialized body, identical for the first answer and every replay */
  json: string;
  /** the WAL position that covers this command's commit, where the cluster has replicas */
  position?: { cluster: string; lsn: bigint };
}
