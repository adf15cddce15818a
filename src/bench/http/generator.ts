/**
 * The load generator: drives the plan's phases over keep-alive connections and measures every
 * answer. It runs in a process of its own (generator-process.ts), so its CPU is its own.
 *
 * Open loop (phase rate > 0): request k of a phase is due at phaseStart + k / rate, whatever
 * happened to the ones before; a due request waits in the backlog while every connection is
 * busy, and its latency is counted from when it was due, not from when it could be sent. So
 * a stalled server shows up as latency, not as fewer requests (no coordinated omission).
 * Closed loop (rate 0): every connection keeps `pipelining` requests in flight; latency from
 * the send. Throughput is counted by the second an answer arrives; latency by the phase it
 * arrives in.
 *
 * Bodies and keys are cheap to make: the Authorization line of each user and the amounts are
 * prebuilt strings, a key is the run prefix and a counter, a request is one string.
 */
import { Connection, type InFlightRequest } from './connection.js';
import { Histogram } from './histogram.js';
import { OPS, type BenchUser, type GeneratorPlan, type GeneratorResult, type Op, type PhaseEvent, type OpTotals, type Outcomes, type Snapshot } from './types.js';

interface Req extends InFlightRequest {
  op: Op;
  sentAt: number;
  /** for a capture: the merchant's index; for an authorization: the merchant paid */
  merchant: number;
}

interface Prepared {
  op: Op;
  text: string;
  merchant: number;
  wantBody: boolean;
}

interface PhaseStats {
  hist: Record<Op, Histogram>;
  outcomes: Record<Op, Outcomes>;
  lost: Record<Op, number>;
  unsent: Record<Op, number>;
}

const perOp = <T>(make: () => T): Record<Op, T> => Object.fromEntries(OPS.map((o) => [o, make()])) as Record<Op, T>;
const CODE = /"code":"([a-z_]+)"/;
const PAYMENT_ID = /"id":"(pay_[0-9A-Za-z]+)"/;
const STATUS = /"status":"([a-z_]+)"/;

export class LoadGenerator {
  private readonly conns: Connection<Req>[] = [];
  private readonly ready: Connection<Req>[] = [];
  private readonly inReady = new Set<Connection<Req>>();
  private readonly backlog: { p: Prepared; dueAt: number }[] = [];
  private backlogHead = 0;
  private seq = 0;
  private phaseIndex = -1;
  private phaseStart = 0;
  private phaseEnd = 0;
  private nextDue = 0;
  private issuing = false;
  private readonly phases: Record<string, PhaseStats> = {};
  private current!: PhaseStats;
  private readonly all = perOp<Outcomes>(() => ({}));
  private readonly lostAll = perOp(() => 0);
  private readonly second = { hist: perOp(() => new Histogram()), outcomes: perOp<Outcomes>(() => ({})) };
  private secondNo = 0;
  private readonly auth: string[];
  private readonly merchantAuth: string[];
  private readonly amounts: string[];
  private readonly byShard = new Map<number, number[]>();
  private readonly cumulative: [number, number, number, number];
  private transfersSent = 0;
  private timeoutsCheckedAt = 0;
  private crossSent = 0;
  private measuredCpuUs = 0;
  private measuredWallMs = 0;

  constructor(
    private readonly plan: GeneratorPlan,
    private readonly emit: (msg: Snapshot | GeneratorResult | PhaseEvent) => void,
  ) {
    const header = (u: BenchUser) => `authorization: Bearer ${u.token}\r\n`;
    this.auth = plan.persons.map(header);
    this.merchantAuth = plan.merchants.map(header);
    this.amounts = Array.from({ length: plan.amountMax }, (_, i) => String(i + 1));
    plan.persons.forEach((u, i) => {
      const list = this.byShard.get(u.shard);
      if (list) list.push(i);
      else this.byShard.set(u.shard, [i]);
    });
    const m = plan.mix;
    const total = m.transfer + m.balance + m.history + m.payment;
    this.cumulative = [m.transfer / total, (m.transfer + m.balance) / total, (m.transfer + m.balance + m.history) / total, 1];
    if (plan.persons.length < 2) throw new Error('the generator needs at least two persons');
    if (m.payment > 0 && plan.merchants.length === 0) throw new Error('payments in the mix need at least one merchant');
  }

  async run(): Promise<void> {
    const events = {
      response: (req: Req, status: number, body: string | undefined, conn: Connection<Req>) => this.onResponse(req, status, body, conn),
      failed: (reqs: Req[], reason: string) => {
        for (const r of reqs) {
          this.lostAll[r.op]++;
          this.current.lost[r.op]++;
          this.count(r.op, `lost (${reason})`);
        }
      },
      ready: (conn: Connection<Req>) => this.offer(conn),
    };
    const { targets, connections } = this.plan;
    for (let i = 0; i < connections; i++) {
      const t = targets[i % targets.length]!;
      const c = new Connection<Req>(t.host, t.port, events);
      this.conns.push(c);
    }
    this.current = this.phaseStats('start');
    await new Promise<void>((resolve) => {
      let opened = 0;
      const check = setInterval(() => {
        opened = this.conns.filter((c) => c.connected).length;
        if (opened === this.conns.length) {
          clearInterval(check);
          resolve();
        }
      }, 5);
      for (const c of this.conns) c.open();
    });
    await this.drive();
  }

  private phaseStats(name: string): PhaseStats {
    return (this.phases[name] ??= { hist: perOp(() => new Histogram()), outcomes: perOp<Outcomes>(() => ({})), lost: perOp(() => 0), unsent: perOp(() => 0) });
  }

  private async drive(): Promise<void> {
    const started = performance.now();
    let cpuAt = process.cpuUsage();
    let measuredFrom: { cpu: NodeJS.CpuUsage; at: number } | undefined;
    const nextPhase = (now: number): boolean => {
      const prev = this.plan.phases[this.phaseIndex];
      if (prev) this.emit({ type: 'phase', generator: this.plan.index, name: prev.name, measured: prev.measured, event: 'end' });
      if (prev?.measured && measuredFrom) {
        const used = process.cpuUsage(measuredFrom.cpu);
        this.measuredCpuUs += used.user + used.system;
        this.measuredWallMs += now - measuredFrom.at;
        measuredFrom = undefined;
      }
      this.phaseIndex++;
      const phase = this.plan.phases[this.phaseIndex];
      if (!phase) return false;
      this.phaseStart = this.phaseIndex === 0 ? now : this.phaseEnd;
      this.phaseEnd = this.phaseStart + phase.seconds * 1000;
      this.nextDue = this.phaseStart;
      this.current = this.phaseStats(phase.name);
      if (phase.measured) measuredFrom = { cpu: process.cpuUsage(), at: now };
      this.emit({ type: 'phase', generator: this.plan.index, name: phase.name, measured: phase.measured, event: 'start' });
      return true;
    };
    nextPhase(started);
    this.issuing = true;
    // closed loop: fill every connection; answers keep them full
    if (this.plan.phases[0]!.rate === 0) for (const c of this.conns) this.fill(c);

    const secondTimer = setInterval(() => {
      const usage = process.cpuUsage(cpuAt);
      cpuAt = process.cpuUsage();
      this.flushSecond((usage.user + usage.system) / 1e6);
    }, 1000);

    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        while (now >= this.phaseEnd) {
          if (!nextPhase(now)) {
            this.issuing = false;
            return resolve();
          }
          if (this.plan.phases[this.phaseIndex]!.rate === 0) for (const c of this.conns) this.fill(c);
        }
        const phase = this.plan.phases[this.phaseIndex]!;
        if (phase.rate > 0) {
          const interval = 1000 / phase.rate;
          let n = 0;
          while (this.nextDue <= now && n++ < 100_000) {
            this.issue(this.prepare(), this.nextDue);
            this.nextDue += interval;
          }
        }
        if (now - this.timeoutsCheckedAt >= 100) {
          this.timeoutsCheckedAt = now;
          this.checkTimeouts(now);
        }
        setTimeout(tick, 1);
      };
      tick();
    });
    this.dropBacklog();
    await this.drain();
    clearInterval(secondTimer);
    const usage = process.cpuUsage(cpuAt);
    this.flushSecond((usage.user + usage.system) / 1e6);
    for (const c of this.conns) c.stop();
    this.emit(this.result());
  }

  /** answers still in flight when the last phase ends are waited for (their outcomes count) */
  private async drain(): Promise<void> {
    const until = performance.now() + this.plan.timeoutMs;
    while (this.conns.some((c) => c.inFlight.length > 0) && performance.now() < until) {
      this.checkTimeouts(performance.now());
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const c of this.conns) if (c.inFlight.length) c.reset('still unanswered at the end');
  }

  /** at the end, what is still waiting was never sent (a phase change keeps it: still due) */
  private dropBacklog(): void {
    for (let i = this.backlogHead; i < this.backlog.length; i++) this.current.unsent[this.backlog[i]!.p.op]++;
    this.backlog.length = 0;
    this.backlogHead = 0;
  }

  private checkTimeouts(now: number): void {
    const limit = now - this.plan.timeoutMs;
    for (const c of this.conns) {
      const first = c.inFlight[0];
      if (first && first.sentAt < limit) c.reset('timeout');
    }
  }

  private flushSecond(cpuCores: number): void {
    this.secondNo++;
    const ops: Snapshot['ops'] = {};
    for (const op of OPS) {
      const h = this.second.hist[op];
      const outcomes = this.second.outcomes[op];
      if (h.total === 0 && Object.keys(outcomes).length === 0) continue;
      ops[op] = { outcomes: { ...outcomes }, histogram: h.serialize() };
      h.reset();
      this.second.outcomes[op] = {};
    }
    // the phase that covered the middle of this second
    let at = this.secondNo - 0.5;
    const phase = this.plan.phases.find((p) => (at -= p.seconds) < 0);
    this.emit({ type: 'second', generator: this.plan.index, second: this.secondNo, phase: phase?.name ?? 'drain', ops, backlog: this.backlog.length - this.backlogHead, cpuCores });
  }

  private count(op: Op, outcome: string): void {
    this.all[op][outcome] = (this.all[op][outcome] ?? 0) + 1;
    const cur = this.current.outcomes[op];
    cur[outcome] = (cur[outcome] ?? 0) + 1;
    const sec = this.second.outcomes[op];
    sec[outcome] = (sec[outcome] ?? 0) + 1;
  }

  private onResponse(req: Req, status: number, body: string | undefined, conn: Connection<Req>): void {
    const now = performance.now();
    const us = (now - req.startedAt) * 1000;
    this.current.hist[req.op].record(us);
    this.second.hist[req.op].record(us);
    let outcome = String(status);
    if (status >= 400 && body) {
      const code = CODE.exec(body);
      if (code) outcome = `${status} ${code[1]}`;
    }
    this.count(req.op, outcome);
    if (req.op === 'authorize' && status === 201 && body) {
      const id = PAYMENT_ID.exec(body);
      // the merchant captures what was authorized, as soon as the checkout answered
      if (id && STATUS.exec(body)?.[1] === 'authorized' && this.issuing) this.issue(this.capture(id[1]!, req.merchant), now);
    }
    this.offer(conn);
  }

  /** a connection has room: the backlog first, then (closed loop) a new request */
  private offer(conn: Connection<Req>): void {
    if (!conn.connected) return;
    while (conn.inFlight.length < this.plan.pipelining && this.backlogHead < this.backlog.length) {
      const next = this.backlog[this.backlogHead++]!;
      this.send(conn, next.p, next.dueAt);
    }
    if (this.backlogHead === this.backlog.length && this.backlogHead > 0) {
      this.backlog.length = 0;
      this.backlogHead = 0;
    } else if (this.backlogHead > 4096 && this.backlogHead * 2 > this.backlog.length) {
      this.backlog.splice(0, this.backlogHead); // a backlog that never drains must not keep what it sent
      this.backlogHead = 0;
    }
    const phase = this.plan.phases[this.phaseIndex];
    if (this.issuing && phase && phase.rate === 0) this.fill(conn);
    else if (conn.inFlight.length < this.plan.pipelining && !this.inReady.has(conn)) {
      this.ready.push(conn);
      this.inReady.add(conn);
    }
  }

  private fill(conn: Connection<Req>): void {
    while (conn.connected && conn.inFlight.length < this.plan.pipelining) this.send(conn, this.prepare(), performance.now());
  }

  private issue(p: Prepared, dueAt: number): void {
    while (this.ready.length) {
      const c = this.ready[this.ready.length - 1]!;
      if (!c.connected || c.inFlight.length >= this.plan.pipelining) {
        this.inReady.delete(this.ready.pop()!);
        continue;
      }
      this.send(c, p, dueAt);
      if (c.inFlight.length >= this.plan.pipelining) this.inReady.delete(this.ready.pop()!);
      return;
    }
    if (this.backlog.length - this.backlogHead >= this.plan.maxBacklog) {
      this.current.unsent[p.op]++;
      return;
    }
    this.backlog.push({ p, dueAt });
  }

  private send(conn: Connection<Req>, p: Prepared, dueAt: number): void {
    const phase = this.plan.phases[this.phaseIndex];
    const sentAt = performance.now();
    const req: Req = { op: p.op, startedAt: phase && phase.rate > 0 ? dueAt : sentAt, wantBody: p.wantBody, merchant: p.merchant, sentAt };
    conn.send(p.text, req);
  }

  private key(): string {
    return `${this.plan.keyPrefix}${(this.seq++).toString(36)}`;
  }

  private amount(): string {
    return this.amounts[Math.floor(Math.random() * this.amounts.length)]!;
  }

  private prepare(): Prepared {
    const r = Math.random();
    const c = this.cumulative;
    if (r < c[0]) return this.transfer();
    if (r < c[1]) return this.read('balance', '/v1/wallets');
    if (r < c[2]) return this.read('history', '/v1/transactions?limit=20');
    return this.authorize();
  }

  private randomPerson(): number {
    return Math.floor(Math.random() * this.plan.persons.length);
  }

  /** a counterparty of `of`: on another logical shard with the plan's probability, else on the same one */
  private counterparty(of: number): number {
    const persons = this.plan.persons;
    const shard = persons[of]!.shard;
    if (Math.random() >= this.plan.crossShardShare) {
      const same = this.byShard.get(shard)!;
      if (same.length > 1) {
        for (;;) {
          const pick = same[Math.floor(Math.random() * same.length)]!;
          if (pick !== of) return pick;
        }
      }
    }
    for (let tries = 0; ; tries++) {
      const pick = this.randomPerson();
      if (pick !== of && (persons[pick]!.shard !== shard || tries > 32)) return pick;
    }
  }

  private transfer(): Prepared {
    let from: number;
    let to: number;
    const hot = this.plan.hotAccounts;
    if (hot > 0 && Math.random() < this.plan.hotShare) {
      const h = Math.floor(Math.random() * hot);
      if (Math.random() < 0.5) {
        from = h;
        to = this.counterparty(h);
      } else {
        to = h;
        from = this.counterparty(h);
      }
    } else {
      from = this.randomPerson();
      to = this.counterparty(from);
    }
    const persons = this.plan.persons;
    this.transfersSent++;
    if (persons[from]!.shard !== persons[to]!.shard) this.crossSent++;
    const body = `{"to":"${persons[to]!.id}","amount":${this.amount()},"currency":"${this.plan.currency}"}`;
    return { op: 'transfer', merchant: -1, wantBody: false, text: this.post('/v1/transfers', this.auth[from]!, body) };
  }

  private authorize(): Prepared {
    const payer = this.randomPerson();
    const merchant = Math.floor(Math.random() * this.plan.merchants.length);
    const body = `{"merchantId":"${this.plan.merchants[merchant]!.id}","amount":${this.amount()},"currency":"${this.plan.currency}","capture":false}`;
    return { op: 'authorize', merchant, wantBody: true, text: this.post('/v1/payments', this.auth[payer]!, body) };
  }

  private capture(paymentId: string, merchant: number): Prepared {
    return { op: 'capture', merchant, wantBody: false, text: this.post(`/v1/payments/${paymentId}/capture`, this.merchantAuth[merchant]!, '{}') };
  }

  private read(op: Op, path: string): Prepared {
    return { op, merchant: -1, wantBody: false, text: `GET ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${this.auth[this.randomPerson()]}\r\n` };
  }

  private post(path: string, auth: string, body: string): string {
    // bodies are ASCII (ids, digits, currency codes), so the string length is the byte length
    return `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\n${auth}idempotency-key: ${this.key()}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
  }

  private result(): GeneratorResult {
    const phases: GeneratorResult['phases'] = {};
    for (const [name, s] of Object.entries(this.phases)) {
      const ops: Partial<Record<Op, OpTotals>> = {};
      for (const op of OPS) {
        if (s.hist[op].total === 0 && Object.keys(s.outcomes[op]).length === 0 && s.unsent[op] === 0) continue;
        ops[op] = { outcomes: s.outcomes[op], histogram: s.hist[op].serialize(), lost: s.lost[op], unsent: s.unsent[op] };
      }
      phases[name] = ops;
    }
    return {
      type: 'done',
      generator: this.plan.index,
      phases,
      allOutcomes: this.all,
      lostAll: this.lostAll,
      cpuSeconds: this.measuredCpuUs / 1e6,
      wallSeconds: this.measuredWallMs / 1000,
      crossShardSent: this.transfersSent ? this.crossSent / this.transfersSent : 0,
      transfersSent: this.transfersSent,
    };
  }
}
