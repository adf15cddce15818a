/**
 * Who a money event concerns, and as what: the sender and recipient of a transfer, the payer
 * and merchant of a payment, the owner of a top-up. Notifications and webhooks both fan out to
 * these parties.
 */
import type { BusEvent } from './types.js';

export type PartyRole = 'owner' | 'sender' | 'recipient' | 'payer' | 'merchant';
export interface Party {
  userId: string;
  role: PartyRole;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.length > 0 ? v : undefined);

/** the parties of a money event; [] for an event type that has none (not an error) */
export function eventParties(event: BusEvent): Party[] {
  const p = event.payload;
  const out: Party[] = [];
  const add = (userId: string | undefined, role: PartyRole) => {
    if (userId && !out.some((x) => x.userId === userId)) out.push({ userId, role });
  };
  if (event.type.startsWith('topup.')) add(event.key, 'owner');
  else if (event.type.startsWith('transfer.')) {
    add(str(p.from) ?? event.key, 'sender');
    add(str(p.to), 'recipient');
  } else if (event.type.startsWith('payment.')) {
    add(str(p.payerId) ?? event.key, 'payer');
    add(str(p.merchantId), 'merchant');
  }
  return out;
}
