/** Cache keys of the scaling plan, and the kind of each (TTLs and metrics are per kind). */
export type KeyKind = 'user' | 'payment_methods' | 'transactions_recent' | 'balance';

export const cacheKey = {
  /** the user's profile and wallet list */
  user: (userId: string) => `user:${userId}`,
  paymentMethods: (userId: string) => `payment_methods:${userId}`,
  /** the first page of the user's history */
  recentTransactions: (userId: string) => `transactions:${userId}:recent`,
  /** one wallet's balance, versioned by the account row's version */
  balance: (walletId: string) => `balance:${walletId}`,
};

export function kindOf(key: string): KeyKind {
  if (key.startsWith('balance:')) return 'balance';
  if (key.startsWith('user:')) return 'user';
  if (key.startsWith('payment_methods:')) return 'payment_methods';
  return 'transactions_recent';
}
