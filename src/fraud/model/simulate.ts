/**
 * `wallet fraud simulate`: a labelled dataset of money requests from simulated users, for training
 * and evaluating the fraud model. Each user's requests are generated over time, then every request
 * gets its RawSignals from the same running state the platform keeps (signals.ts), in time order.
 *
 * Normal behaviour (label 0):
 *   salary_topup         a top-up around the user's payday, a share of their income
 *   merchant             payments to the user's favourite merchants (sometimes a new one), daytime
 *   p2p                  transfers to a few friends (sometimes to someone new)
 *   large_purchase       an occasional payment several times the usual size, often a new merchant
 *   topup                a top-up just before a spend the balance does not cover; "just enough"
 *                        users top up exactly the shortfall, so top-up-then-spend is common and legal
 *   rent                 a monthly transfer of a large fixed amount to a landlord
 *   bill_split           3-6 transfers to friends within minutes (after a dinner)
 *   shopping_spree       4-10 payments within two hours
 *   group_collection     5-20 users pay the same organiser within an hour or two (club dues):
 *                        legitimate fan-in, with new counterparties
 *   new_payee_after_credential_change  a password change, then a larger transfer to someone new
 *   new_user             accounts opened during the period: a card added, then first top-ups and spends with no history
 *   new_card             an established user adds or replaces a card, then tops up with it
 *   Noise: travellers (client country differs from their card's for days), expats (a foreign card
 *   on every top-up), amounts spread log-normally per user.
 * Fraud (label 1, every request the fraudster makes in the episode):
 *   account_takeover     credential change, then within minutes (sometimes days) 1-4 transfers
 *                        draining the balance to new recipients, often from abroad, sometimes funded
 *                        by a newly added foreign card
 *   mule                 a top-up (card often foreign) and within the hour a transfer out of ≥ 80%
 *                        of it, repeated over days; a quarter split the transfer in two to dodge
 *   card_testing         4-20 tiny top-ups within a few minutes with foreign cards, sometimes a cash-out
 *   fan_in               a scam collector: 8-35 users who never paid it send it money within the hour
 *                        (the victims are normal users; their transfers to the scammer are labelled)
 *   velocity_burst       a hijacked session: 6-25 payments and transfers in minutes, new merchants
 *   bust_out             an account days old: a few small requests, then large top-ups spent at once
 * fraudShare is the share of users involved as fraudster or victim; at 0.05 about 1.2% of the rows are fraud.
 * The split into train and held-out is by user, so no user's history leaks across it.
 */
import type { FraudKind, RawSignals } from '../types.js';
import { createRng, shuffle, weightedPicker, type Rng } from './random.js';
import { createSignalTracker } from './signals.js';

export const SIMULATE_LIMITS = { maxUsers: 50_000, maxDays: 120, maxRows: 3_000_000 } as const;
/** Simulated time starts on a fixed Monday, so a seed gives the same dataset on any day. */
export const SIM_START_MS = Date.UTC(2025, 0, 6);

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
/** established users act for this long before the period, so their history and windows are warm */
const WARMUP_DAYS = 21;

export const FRAUD_BEHAVIOURS = ['account_takeover', 'mule', 'card_testing', 'fan_in', 'velocity_burst', 'bust_out'] as const;
export type FraudBehaviour = (typeof FRAUD_BEHAVIOURS)[number];

export type Split = 'train' | 'heldout';

export interface SimulateOptions {
  users: number;
  days: number;
  seed: number;
  /** share of users involved in a fraud episode (as fraudster or victim), 0..0.5 */
  fraudShare: number;
  /** share of users whose rows form the held-out set (default 0.25) */
  heldOutShare?: number;
}

export interface SimulatedRow {
  /** request id */
  id: string;
  userId: string;
  /** epoch ms */
  at: number;
  counterpartyId?: string;
  cardCountry?: string;
  ipCountry?: string;
  currency: string;
  raw: RawSignals;
  label: 0 | 1;
  behaviour: string;
  split: Split;
}

const HOME_COUNTRIES = ['DE', 'FR', 'ES', 'IT', 'NL', 'BE', 'AT', 'PL'];
const HOME_WEIGHTS = [30, 20, 14, 12, 8, 6, 5, 5];
const FRAUD_COUNTRIES = ['US', 'GB', 'NG', 'RU', 'BR', 'IN', 'UA', 'RO', 'CN', 'ID', 'FR', 'ES'];
const TRAVEL_COUNTRIES = ['US', 'GB', 'FR', 'ES', 'IT', 'PT', 'GR', 'TH', 'TR', 'HR', 'CH', 'MA'];

interface Profile {
  id: string;
  createdAt: number;
  home: string;
  card: string;
  scale: number;
  payRate: number;
  p2pRate: number;
  friends: string[];
  merchants: string[];
  payday: number;
  justEnough: boolean;
  initialBalance: number;
  travel?: { from: number; to: number; country: string };
  /** a VPN exit abroad on some requests */
  vpn?: string;
  split: Split;
  /** set for accounts a fraudster controls (their normal stream is replaced or thinned) */
  role?: 'mule' | 'card_testing' | 'bust_out';
  /** already chosen as a victim (so one user is not taken over twice) */
  victim?: boolean;
}

interface Intent {
  at: number;
  kind: FraudKind | 'credential';
  amount: number;
  counterparty?: string;
  behaviour: string;
  label: 0 | 1;
  ip?: string;
  card?: string;
  /** drain this share of the balance at that moment (account takeover) */
  drainShare?: number;
  /** a shortfall is covered by a top-up from this card, made by the fraudster */
  fraudCard?: string;
}

interface SimEvent {
  user: Profile;
  at: number;
  kind: FraudKind | 'credential';
  amount: number;
  counterparty?: string;
  card?: string;
  ip?: string;
  behaviour: string;
  label: 0 | 1;
  seq: number;
}

interface World {
  rng: Rng;
  startMs: number;
  endMs: number;
  profiles: Profile[];
  /** a merchant by popularity: a few popular ones, a long tail */
  pickMerchant: (rng: Rng) => string;
  intents: Map<string, Intent[]>;
  /** a new id for a counterparty outside the simulated users: x fraudster, l landlord, n new payee, c scam collector */
  nextId: (prefix: 'x' | 'l' | 'n' | 'c') => string;
}

const roundTo = (x: number, step: number) => Math.max(step, Math.round(x / step) * step);
const cents = (x: number) => Math.max(1, Math.round(x));

/** daytime in ms after midnight: most activity between 8:00 and 22:00 */
function daytime(rng: Rng): number {
  const hour = Math.min(23.9, Math.max(6, 13.5 + 3.8 * rng.normal()));
  return hour * HOUR;
}

function addIntent(w: World, userId: string, intent: Intent): void {
  let list = w.intents.get(userId);
  if (!list) w.intents.set(userId, (list = []));
  list.push(intent);
}

function ipOf(p: Profile, at: number, rng: Rng): string {
  if (p.vpn && rng.chance(0.3)) return p.vpn;
  return p.travel && at >= p.travel.from && at < p.travel.to ? p.travel.country : p.home;
}

function buildProfiles(rng: Rng, opts: SimulateOptions, startMs: number, endMs: number, pickMerchant: (rng: Rng) => string): Profile[] {
  const ids = Array.from({ length: opts.users }, (_, i) => `u${String(i + 1).padStart(6, '0')}`);
  const heldOutShare = opts.heldOutShare ?? 0.25;
  return ids.map((id) => {
    const isNew = rng.chance(0.12);
    const createdAt = isNew ? startMs + rng.uniform(0, endMs - startMs - DAY) : startMs - rng.uniform(WARMUP_DAYS + 5, 1500) * DAY;
    const home = rng.weighted(HOME_COUNTRIES, HOME_WEIGHTS);
    const scale = rng.logNormal(1, 0.45);
    const favourites = new Set<string>();
    const nFav = rng.int(4, 12);
    while (favourites.size < nFav) favourites.add(pickMerchant(rng));
    const friends = new Set<string>();
    const nFriends = rng.int(2, 8);
    while (friends.size < nFriends) friends.add(rng.pick(ids));
    friends.delete(id);
    const travels = rng.chance(0.12);
    const travelFrom = startMs + rng.uniform(0, endMs - startMs);
    return {
      id,
      createdAt,
      home,
      card: rng.chance(0.03) ? rng.pick(TRAVEL_COUNTRIES.filter((c) => c !== home)) : home, // expats
      scale,
      // power users (commuters, small traders) pay and transfer many times a day
      ...(rng.chance(0.05) ? { payRate: rng.uniform(3, 8), p2pRate: rng.uniform(0.5, 2) } : { payRate: rng.uniform(0.2, 2.0), p2pRate: rng.uniform(0.03, 0.5) }),
      vpn: rng.chance(0.03) ? rng.pick(TRAVEL_COUNTRIES.filter((c) => c !== home)) : undefined,
      friends: [...friends],
      merchants: [...favourites],
      payday: rng.int(1, 28),
      justEnough: rng.chance(0.15),
      initialBalance: isNew ? 0 : Math.round(rng.uniform(0, 40_000) * scale),
      travel: travels ? { from: travelFrom, to: travelFrom + rng.uniform(3, 12) * DAY, country: rng.pick(TRAVEL_COUNTRIES.filter((c) => c !== home)) } : undefined,
      split: rng.chance(heldOutShare) ? 'heldout' : 'train',
    };
  });
}

/** One normal day of a user: payments, transfers, top-ups on payday, the odd unusual day. */
function normalDay(w: World, p: Profile, dayStart: number, rates = 1): void {
  const { rng } = w;
  const add = (intent: Omit<Intent, 'label'>) => {
    if (intent.at >= p.createdAt && intent.at < w.endMs) addIntent(w, p.id, { ...intent, label: 0 });
  };
  const date = new Date(dayStart);
  if (date.getUTCDate() === p.payday) {
    add({ at: dayStart + daytime(rng), kind: 'topup', amount: roundTo(rng.logNormal(30_000, 0.5) * p.scale, 1000), behaviour: 'salary_topup' });
  }
  for (let i = rng.poisson(p.payRate * rates); i > 0; i--) {
    const merchant = rng.chance(0.85) ? rng.pick(p.merchants) : w.pickMerchant(rng);
    add({ at: dayStart + daytime(rng), kind: 'payment', amount: cents(rng.logNormal(1500, 0.8) * p.scale), counterparty: merchant, behaviour: 'merchant' });
  }
  for (let i = rng.poisson(p.p2pRate * rates); i > 0; i--) {
    const to = rng.chance(0.9) && p.friends.length ? rng.pick(p.friends) : rng.pick(w.profiles).id;
    const amount = rng.logNormal(2500, 0.9) * p.scale;
    add({ at: dayStart + daytime(rng), kind: 'transfer', amount: rng.chance(0.6) ? roundTo(amount, 500) : cents(amount), counterparty: to, behaviour: 'p2p' });
  }
  if (rng.chance(0.05 * rates)) {
    const merchant = rng.chance(0.6) ? w.pickMerchant(rng) : rng.pick(p.merchants);
    add({ at: dayStart + daytime(rng), kind: 'payment', amount: cents(rng.logNormal(25_000, 0.7) * p.scale), counterparty: merchant, behaviour: 'large_purchase' });
  }
  if (rng.chance(0.012 * rates) && p.friends.length) {
    const t = dayStart + daytime(rng);
    for (let i = rng.int(3, 6); i > 0; i--) {
      add({ at: t + rng.uniform(0, 10) * MIN, kind: 'transfer', amount: roundTo(rng.logNormal(2500, 0.5) * p.scale, 100), counterparty: rng.pick(p.friends), behaviour: 'bill_split' });
    }
  }
  if (rng.chance(0.006 * rates)) {
    const t = dayStart + daytime(rng);
    for (let i = rng.int(4, 10); i > 0; i--) {
      add({ at: t + rng.uniform(0, 120) * MIN, kind: 'payment', amount: cents(rng.logNormal(4000, 0.7) * p.scale), counterparty: w.pickMerchant(rng), behaviour: 'shopping_spree' });
    }
  }
}

/** A user's legitimate life over the period (plus the warm-up before it). */
function normalLife(w: World, p: Profile, rates = 1): void {
  const { rng } = w;
  const from = Math.max(p.createdAt, w.startMs - WARMUP_DAYS * DAY);
  const firstDay = Math.floor(from / DAY) * DAY;
  if (p.createdAt >= w.startMs - DAY) {
    // a new user: adds a card (a payment-method change, as the platform counts it), then a
    // first top-up within the hour, sometimes a big first purchase
    addIntent(w, p.id, { at: p.createdAt + rng.uniform(0.5, 1.5) * MIN, kind: 'credential', amount: 0, behaviour: 'new_user', label: 0 });
    const t = p.createdAt + rng.uniform(2, 60) * MIN;
    addIntent(w, p.id, { at: t, kind: 'topup', amount: roundTo(rng.logNormal(5000, 0.8) * p.scale, 500), behaviour: 'new_user', label: 0 });
    if (rng.chance(0.15)) {
      const merchant = w.pickMerchant(rng);
      addIntent(w, p.id, { at: t + rng.uniform(5, 240) * MIN, kind: 'payment', amount: cents(rng.logNormal(20_000, 0.6) * p.scale), counterparty: merchant, behaviour: 'new_user', label: 0 });
    }
  }
  for (let day = firstDay; day < w.endMs; day += DAY) normalDay(w, p, day, rates);
  if (p.createdAt < w.startMs && rng.chance(0.08)) {
    // a new or replaced card, then a top-up with it within two hours
    const t = w.startMs + rng.uniform(0, w.endMs - w.startMs - 3 * HOUR);
    addIntent(w, p.id, { at: t, kind: 'credential', amount: 0, behaviour: 'new_card', label: 0 });
    addIntent(w, p.id, { at: t + rng.uniform(1, 120) * MIN, kind: 'topup', amount: roundTo(rng.logNormal(8000, 0.8) * p.scale, 500), behaviour: 'new_card', label: 0 });
  }
  if (rng.chance(0.2)) {
    // rent to a landlord, monthly
    const landlord = w.nextId('l');
    const amount = roundTo(rng.logNormal(60_000, 0.3) * p.scale, 1000);
    const rentDay = rng.int(1, 5);
    for (let day = firstDay; day < w.endMs; day += DAY) {
      if (new Date(day).getUTCDate() === rentDay && day + 10 * HOUR >= p.createdAt) {
        addIntent(w, p.id, { at: day + rng.uniform(7, 21) * HOUR, kind: 'transfer', amount, counterparty: landlord, behaviour: 'rent', label: 0 });
      }
    }
  }
  if (rng.chance(0.06)) {
    // a password change; sometimes a larger transfer to someone new follows (a deposit, a car)
    const t = Math.max(p.createdAt, w.startMs) + rng.uniform(0, w.endMs - Math.max(p.createdAt, w.startMs));
    addIntent(w, p.id, { at: t, kind: 'credential', amount: 0, behaviour: 'new_payee_after_credential_change', label: 0 });
    if (rng.chance(0.4)) {
      addIntent(w, p.id, { at: t + rng.logNormal(3 * HOUR, 1), kind: 'transfer', amount: roundTo(rng.logNormal(30_000, 0.7) * p.scale, 1000), counterparty: w.nextId('n'), behaviour: 'new_payee_after_credential_change', label: 0 });
    }
  }
}

/** Many users pay one recipient within a short window: a scam (label 1) or club dues (label 0). */
function collection(w: World, recipient: string, senders: Profile[], at: number, scam: boolean): void {
  const { rng } = w;
  const windowMs = (scam ? rng.uniform(20, 90) : rng.uniform(30, 120)) * MIN;
  const price = roundTo(scam ? rng.logNormal(9000, 0.6) : rng.logNormal(3000, 0.5), 500);
  for (const s of senders) {
    const t = at + rng.uniform(0, windowMs);
    if (t < s.createdAt || t >= w.endMs) continue;
    const amount = scam ? price * rng.pick([1, 1, 1, 2, 3]) : price;
    addIntent(w, s.id, { at: t, kind: 'transfer', amount, counterparty: recipient, behaviour: scam ? 'fan_in' : 'group_collection', label: scam ? 1 : 0 });
  }
}

function foreign(rng: Rng, home: string): string {
  return rng.pick(FRAUD_COUNTRIES.filter((c) => c !== home));
}

function accountTakeover(w: World, p: Profile, t0: number): void {
  const { rng } = w;
  const ip = rng.chance(0.6) ? foreign(rng, p.home) : p.home;
  const card = rng.chance(0.5) ? (rng.chance(0.6) ? foreign(rng, p.home) : p.home) : undefined;
  const fraud = (i: Omit<Intent, 'label' | 'behaviour' | 'ip'>) => addIntent(w, p.id, { ...i, ip, label: 1, behaviour: 'account_takeover' });
  fraud({ at: t0, kind: 'credential', amount: 0 });
  let t = t0 + (rng.chance(0.85) ? Math.min(20 * HOUR, rng.logNormal(25 * MIN, 1)) : rng.uniform(24, 72) * HOUR);
  if (card) {
    fraud({ at: t, kind: 'topup', amount: roundTo(rng.logNormal(40_000, 0.6), 1000), card });
    t += rng.logNormal(3 * MIN, 0.8);
  }
  let recipient = w.nextId('x');
  for (let i = rng.int(1, 4); i > 0; i--) {
    fraud({ at: t, kind: 'transfer', amount: 0, counterparty: recipient, drainShare: i === 1 ? 1 : rng.uniform(0.4, 0.9), fraudCard: card });
    t += rng.logNormal(4 * MIN, 0.8);
    if (rng.chance(0.4)) recipient = w.nextId('x');
  }
}

function mule(w: World, p: Profile, t0: number): void {
  const { rng } = w;
  let boss = w.nextId('x');
  let t = t0;
  for (let e = rng.int(1, 4); e > 0 && t < w.endMs; e--) {
    const card = rng.chance(0.4) ? foreign(rng, p.home) : p.card;
    const topup = roundTo(rng.logNormal(60_000, 0.7), 1000);
    addIntent(w, p.id, { at: t, kind: 'topup', amount: topup, card, label: 1, behaviour: 'mule' });
    const out = t + Math.min(55 * MIN, rng.logNormal(15 * MIN, 0.7));
    const parts = rng.chance(0.25) ? [0.5, 0.45] : [rng.uniform(0.8, 1)];
    for (const [i, share] of parts.entries()) {
      addIntent(w, p.id, { at: out + i * rng.uniform(1, 20) * MIN, kind: 'transfer', amount: Math.floor(topup * share), counterparty: boss, label: 1, behaviour: 'mule' });
    }
    if (rng.chance(0.4)) boss = w.nextId('x');
    t += rng.uniform(1, 6) * DAY;
  }
}

function cardTesting(w: World, p: Profile, t0: number): void {
  const { rng } = w;
  const fraud = (i: Omit<Intent, 'label' | 'behaviour'>) => addIntent(w, p.id, { ...i, label: 1, behaviour: 'card_testing' });
  let t = t0;
  for (let burst = rng.int(1, 2); burst > 0; burst--) {
    const spanMs = rng.uniform(0.5, 4) * MIN;
    const n = rng.int(4, 20);
    for (let i = 0; i < n; i++) {
      const card = rng.chance(0.85) ? foreign(rng, p.home) : p.home;
      fraud({ at: t + (spanMs * i) / n, kind: 'topup', amount: rng.chance(0.5) ? rng.pick([100, 100, 200, 500, 1000]) : rng.int(100, 999), card });
    }
    t += rng.uniform(0.5, 30) * HOUR;
  }
  if (rng.chance(0.5)) {
    const amount = roundTo(rng.logNormal(30_000, 0.5), 1000);
    fraud({ at: t, kind: 'topup', amount, card: foreign(rng, p.home) });
    fraud({ at: t + rng.uniform(2, 30) * MIN, kind: 'transfer', amount: Math.floor(amount * rng.uniform(0.7, 1)), counterparty: w.nextId('x') });
  }
}

function velocityBurst(w: World, p: Profile, t0: number): void {
  const { rng } = w;
  const ip = rng.chance(0.5) ? foreign(rng, p.home) : p.home;
  const fraudCard = rng.chance(0.7) ? foreign(rng, p.home) : p.home;
  const spanMs = rng.uniform(5, 40) * MIN;
  const n = rng.int(6, 25);
  for (let i = 0; i < n; i++) {
    const payment = rng.chance(0.7);
    addIntent(w, p.id, {
      at: t0 + rng.uniform(0, spanMs),
      kind: payment ? 'payment' : 'transfer',
      amount: cents(rng.logNormal(5000, 0.7)),
      counterparty: payment ? w.pickMerchant(rng) : w.nextId('x'),
      ip,
      fraudCard,
      label: 1,
      behaviour: 'velocity_burst',
    });
  }
}

function bustOut(w: World, p: Profile, t0: number): void {
  const { rng } = w;
  const fraud = (i: Omit<Intent, 'label' | 'behaviour'>) => addIntent(w, p.id, { ...i, label: 1, behaviour: 'bust_out' });
  for (let i = rng.int(1, 3); i > 0; i--) {
    const at = p.createdAt + rng.uniform(10, 300) * MIN;
    if (rng.chance(0.5)) fraud({ at, kind: 'topup', amount: roundTo(rng.logNormal(3000, 0.5), 500) });
    else fraud({ at, kind: 'payment', amount: cents(rng.logNormal(1500, 0.6)), counterparty: w.pickMerchant(rng) });
  }
  let t = t0;
  const card = rng.chance(0.4) ? foreign(rng, p.home) : p.home;
  for (let i = rng.int(1, 3); i > 0; i--) {
    fraud({ at: t, kind: 'topup', amount: roundTo(rng.logNormal(80_000, 0.6), 1000), card });
    t += rng.uniform(2, 40) * MIN;
  }
  for (let i = rng.int(2, 6); i > 0; i--) {
    const payment = rng.chance(0.5);
    fraud({ at: t, kind: payment ? 'payment' : 'transfer', amount: roundTo(rng.logNormal(40_000, 0.6), 100), counterparty: payment ? w.pickMerchant(rng) : w.nextId('x'), fraudCard: card });
    t += rng.uniform(5, 90) * MIN;
  }
}

/** Picks fraudsters and victims; fraud accounts get their creation date before their normal life is drawn. */
function assignEpisodes(w: World, opts: SimulateOptions): void {
  const { rng } = w;
  const established = shuffle(rng, w.profiles.filter((p) => p.createdAt < w.startMs - 30 * DAY));
  const anyone = shuffle(rng, w.profiles.slice());
  const free = (p: Profile) => !p.role && !p.victim;
  const take = (from: Profile[]) => from.find(free);
  const slots = Math.round(opts.users * opts.fraudShare);
  const offset = rng.int(0, FRAUD_BEHAVIOURS.length - 1);
  for (let i = 0; i < slots; i++) {
    const behaviour = FRAUD_BEHAVIOURS[(i + offset) % FRAUD_BEHAVIOURS.length];
    const t0 = w.startMs + rng.uniform(0.5, (w.endMs - w.startMs) / DAY - 0.5) * DAY;
    if (behaviour === 'fan_in') {
      const victims = new Set<Profile>();
      for (let k = rng.int(8, 35); k > 0; k--) victims.add(rng.pick(w.profiles));
      collection(w, w.nextId('c'), [...victims].filter((v) => !v.role), t0, true);
      continue;
    }
    const p = behaviour === 'account_takeover' || behaviour === 'velocity_burst' ? take(established) : take(anyone);
    if (!p) break; // fraudShare larger than the population allows
    if (behaviour === 'account_takeover' || behaviour === 'velocity_burst') {
      p.victim = true;
      if (behaviour === 'account_takeover') accountTakeover(w, p, t0);
      else velocityBurst(w, p, t0);
    } else {
      p.role = behaviour;
      const newAccount = behaviour === 'bust_out' || rng.chance(0.7);
      if (newAccount) {
        p.createdAt = t0 - (behaviour === 'mule' ? rng.uniform(1, 60) : rng.uniform(0.1, 3)) * DAY;
        p.initialBalance = 0;
      }
      if (behaviour === 'mule') mule(w, p, t0);
      else if (behaviour === 'card_testing') cardTesting(w, p, t0);
      else bustOut(w, p, t0);
      // mules keep a thin cover of ordinary activity; other fraud accounts have none unless recruited
      if (behaviour === 'mule') normalLife(w, p, newAccount ? 0.3 : 1);
      else if (!newAccount) normalLife(w, p);
    }
  }
}

/** Turns a user's intents into events in time order, with top-ups where the balance falls short. */
function realise(w: World, p: Profile, intents: Intent[], out: SimEvent[]): void {
  const { rng } = w;
  intents.sort((a, b) => a.at - b.at);
  let balance = p.initialBalance;
  // one object shape for every event (no spreads), so the sort and the signal pass stay fast
  const push = (e: Omit<SimEvent, 'user' | 'seq'>) =>
    out.push({ user: p, at: Math.round(e.at), kind: e.kind, amount: e.amount, counterparty: e.counterparty, card: e.card, ip: e.ip, behaviour: e.behaviour, label: e.label, seq: out.length });
  for (const it of intents) {
    const ip = it.ip ?? ipOf(p, it.at, rng);
    if (it.kind === 'credential' || it.kind === 'topup') {
      if (it.kind === 'topup') balance += it.amount;
      push({ at: it.at, kind: it.kind, amount: it.amount, card: it.kind === 'topup' ? (it.card ?? p.card) : undefined, ip, behaviour: it.behaviour, label: it.label });
      continue;
    }
    let amount = it.amount;
    if (it.drainShare !== undefined) {
      if (balance < 1000 && !it.fraudCard) continue; // nothing left to steal
      amount = Math.max(1000, Math.floor(balance * it.drainShare));
    }
    if (amount > balance) {
      const shortfall = amount - balance;
      const fraudFunded = it.fraudCard !== undefined;
      const topup = fraudFunded || p.justEnough ? roundTo(shortfall, 100) : roundTo(shortfall + rng.logNormal(15_000, 0.6) * p.scale, 1000);
      const at = Math.max(p.createdAt, it.at - rng.uniform(1, 20) * MIN);
      // some users top up in chunks (a card limit per charge): several top-ups within a minute
      const chunks = !fraudFunded && rng.chance(0.04) ? rng.int(2, 4) : 1;
      for (let c = 0; c < chunks; c++) {
        const amount = c < chunks - 1 ? roundTo(topup / chunks, 100) : topup - (chunks - 1) * roundTo(topup / chunks, 100);
        push({ at: at + c * rng.uniform(5, 20) * 1000, kind: 'topup', amount: Math.max(100, amount), card: it.fraudCard ?? p.card, ip, behaviour: fraudFunded ? it.behaviour : 'topup', label: fraudFunded ? it.label : 0 });
      }
      balance += topup;
    }
    balance -= amount;
    push({ at: it.at, kind: it.kind, amount, counterparty: it.counterparty, ip, behaviour: it.behaviour, label: it.label });
  }
}

export function validateSimulateOptions(opts: SimulateOptions): void {
  const { users, days, fraudShare, heldOutShare = 0.25, seed } = opts;
  if (!Number.isInteger(users) || users < 20 || users > SIMULATE_LIMITS.maxUsers) throw new RangeError(`users must be an integer from 20 to ${SIMULATE_LIMITS.maxUsers}`);
  if (!Number.isInteger(days) || days < 2 || days > SIMULATE_LIMITS.maxDays) throw new RangeError(`days must be an integer from 2 to ${SIMULATE_LIMITS.maxDays}`);
  if (!(fraudShare >= 0 && fraudShare <= 0.5)) throw new RangeError('fraudShare must be from 0 to 0.5');
  if (!(heldOutShare > 0 && heldOutShare < 1)) throw new RangeError('heldOutShare must be between 0 and 1');
  if (!Number.isSafeInteger(seed)) throw new RangeError('seed must be an integer');
}

/** The labelled dataset: one row per money request in the period, in time order. */
export function simulate(opts: SimulateOptions): SimulatedRow[] {
  validateSimulateOptions(opts);
  const rng = createRng(opts.seed);
  const startMs = SIM_START_MS;
  const endMs = startMs + opts.days * DAY;
  const merchants = Array.from({ length: Math.max(40, Math.round(opts.users / 10)) }, (_, i) => `m${String(i + 1).padStart(5, '0')}`);
  const pickMerchant = weightedPicker(merchants, merchants.map((_, i) => 1 / (i + 1) ** 0.6));
  const counters = { x: 0, l: 0, n: 0, c: 0 };
  const w: World = {
    rng,
    startMs,
    endMs,
    pickMerchant,
    profiles: buildProfiles(rng.fork(), opts, startMs, endMs, pickMerchant),
    intents: new Map(),
    nextId: (prefix) => `${prefix}${String(++counters[prefix]).padStart(6, '0')}`,
  };
  assignEpisodes(w, opts);
  for (const p of w.profiles) if (!p.role) normalLife(w, p);
  const established = w.profiles.filter((p) => !p.role && p.createdAt < startMs);
  for (let g = Math.max(1, Math.round(opts.users / 200)); g > 0; g--) {
    const organiser = rng.pick(established);
    const members = new Set<Profile>();
    for (let k = rng.int(5, 20); k > 0; k--) members.add(rng.pick(established));
    members.delete(organiser);
    collection(w, organiser.id, [...members], startMs + rng.uniform(0, endMs - startMs - 3 * HOUR), false);
  }

  const events: SimEvent[] = [];
  for (const p of w.profiles) realise(w, p, w.intents.get(p.id) ?? [], events);
  events.sort((a, b) => a.at - b.at || a.seq - b.seq);
  return toRows(events, startMs, endMs);
}

function toRows(events: SimEvent[], startMs: number, endMs: number): SimulatedRow[] {
  const tracker = createSignalTracker();
  const rows: SimulatedRow[] = [];
  for (const e of events) {
    if (e.at >= endMs) break;
    if (e.kind === 'credential') {
      tracker.credentialChanged(e.user.id, e.at);
      continue;
    }
    const at = e.at;
    const raw = tracker.observe({ userId: e.user.id, kind: e.kind, amountMinor: e.amount, at, accountCreatedAt: Math.round(e.user.createdAt), counterpartyId: e.counterparty, cardCountry: e.card, ipCountry: e.ip });
    if (e.at < startMs) continue; // warm-up: state only
    if (rows.length >= SIMULATE_LIMITS.maxRows) throw new RangeError(`the simulation exceeds ${SIMULATE_LIMITS.maxRows} rows; use fewer users or days`);
    rows.push({
      id: `r${String(rows.length + 1).padStart(8, '0')}`,
      userId: e.user.id,
      at,
      counterpartyId: e.counterparty,
      cardCountry: e.card,
      ipCountry: e.ip,
      currency: 'EUR',
      raw,
      label: e.label,
      behaviour: e.behaviour,
      split: e.user.split,
    });
  }
  return rows;
}

export interface DatasetSummary {
  rows: number;
  fraud: number;
  users: number;
  byBehaviour: Record<string, { rows: number; fraud: number }>;
  train: { rows: number; fraud: number };
  heldout: { rows: number; fraud: number };
}

export function summarize(rows: readonly SimulatedRow[]): DatasetSummary {
  const s: DatasetSummary = { rows: rows.length, fraud: 0, users: 0, byBehaviour: {}, train: { rows: 0, fraud: 0 }, heldout: { rows: 0, fraud: 0 } };
  const users = new Set<string>();
  for (const r of rows) {
    users.add(r.userId);
    s.fraud += r.label;
    const b = (s.byBehaviour[r.behaviour] ??= { rows: 0, fraud: 0 });
    b.rows++;
    b.fraud += r.label;
    s[r.split].rows++;
    s[r.split].fraud += r.label;
  }
  s.users = users.size;
  return s;
}
