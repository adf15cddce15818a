/**
 * The payment network behind one adapter interface. The simulator (the default here, its own
 * process in staging) decides by card number, as documented in API.md and README:
 *   4242424242424242, 5555555555554444  approve
 *   4000000000000002                    decline: card_declined
 *   4000000000009995                    decline: insufficient_funds
 *   4000000000000119                    never answers in time (the caller's timeout fires)
 * Authorizations are idempotent by the caller's key, as a real network's are, so a retried
 * top-up never charges a card twice.
 */
import { randomUUID } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { within } from '../shared/deadline.js';

export interface CardDetails {
  pan: string;
  expMonth: number;
  expYear: number;
}

export type AuthorizeResult = { approved: true; ref: string } | { approved: false; declineCode: 'card_declined' | 'insufficient_funds' };

export interface PaymentNetwork {
  /** authorizes (and with capture: true, captures) an amount on a card */
  authorize(req: { card: CardDetails; amountMinor: bigint; currency: string; idempotencyKey: string; capture: boolean }): Promise<AuthorizeResult>;
  capture(ref: string, amountMinor: bigint): Promise<void>;
  void(ref: string): Promise<void>;
  refund(ref: string, amountMinor: bigint): Promise<void>;
}

export class NetworkTimeout extends Error {
  constructor() {
    super('the payment network did not answer in time');
  }
}

/** Wraps any adapter so no call waits longer than timeoutMs. */
export function withTimeout(network: PaymentNetwork, timeoutMs: number): PaymentNetwork {
  const bound = <T>(p: Promise<T>): Promise<T> => within(p, timeoutMs, () => new NetworkTimeout());
  return {
    authorize: (req) => bound(network.authorize(req)),
    capture: (ref, a) => bound(network.capture(ref, a)),
    void: (ref) => bound(network.void(ref)),
    refund: (ref, a) => bound(network.refund(ref, a)),
  };
}

interface SimAuth {
  amountMinor: bigint;
  capturedMinor: bigint;
  refundedMinor: bigint;
  voided: boolean;
  result: AuthorizeResult;
}

export const TEST_CARDS = {
  visa: '4242424242424242',
  mastercard: '5555555555554444',
  declined: '4000000000000002',
  insufficientFunds: '4000000000009995',
  timeout: '4000000000000119',
} as const;

export interface NetworkSimulator extends PaymentNetwork {
  /** what the network holds for a reference (tests and operators check charges) */
  inspect(ref: string): Readonly<SimAuth> | undefined;
  /** authorizations made so far, by idempotency key */
  readonly authorizations: number;
}

export function createNetworkSimulator(opts: { hangMs?: number; maxRemembered?: number } = {}): NetworkSimulator {
  const byRef = new Map<string, SimAuth>();
  // the oldest authorizations are forgotten beyond the bound, by key and by reference alike
  // (byRef grew without one); an LRUCache because evicting a full Map with keys().next() walks
  // the deleted slots piled up at its front
  const byKey = new LRUCache<string, SimAuth>({
    max: opts.maxRemembered ?? 1_000_000,
    dispose: (auth, _key, reason) => {
      if (reason === 'evict' && auth.result.approved) byRef.delete(auth.result.ref);
    },
  });
  const remember = (key: string, auth: SimAuth) => {
    byKey.set(key, auth);
    if (auth.result.approved) byRef.set(auth.result.ref, auth);
  };
  const find = (ref: string) => {
    const a = byRef.get(ref);
    if (!a) throw new Error(`network: unknown authorization ${ref}`);
    return a;
  };
  return {
    get authorizations() {
      return byKey.size;
    },
    inspect: (ref) => byRef.get(ref),
    async authorize({ card, amountMinor, idempotencyKey, capture }) {
      const prior = byKey.get(idempotencyKey);
      if (prior) return prior.result;
      if (card.pan === TEST_CARDS.timeout) {
        await new Promise((r) => setTimeout(r, opts.hangMs ?? 60_000).unref());
        throw new NetworkTimeout();
      }
      const result: AuthorizeResult =
        card.pan === TEST_CARDS.declined ? { approved: false, declineCode: 'card_declined' }
        : card.pan === TEST_CARDS.insufficientFunds ? { approved: false, declineCode: 'insufficient_funds' }
        : { approved: true, ref: `sim_${randomUUID()}` };
      remember(idempotencyKey, { amountMinor, capturedMinor: capture && result.approved ? amountMinor : 0n, refundedMinor: 0n, voided: false, result });
      return result;
    },
    async capture(ref, amountMinor) {
      const a = find(ref);
      if (a.voided || amountMinor > a.amountMinor) throw new Error(`network: cannot capture ${amountMinor} on ${ref}`);
      a.capturedMinor = amountMinor;
    },
    async void(ref) {
      find(ref).voided = true;
    },
    async refund(ref, amountMinor) {
      const a = find(ref);
      if (a.refundedMinor + amountMinor > a.capturedMinor) throw new Error(`network: refund beyond capture on ${ref}`);
      a.refundedMinor += amountMinor;
    },
  };
}
