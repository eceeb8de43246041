// The payment server's pool of security cards (seed 003 payment code module 228 / terminal 214): each member a
// CardChannel to one PSAM. A transaction takes one PSAM (acquire) and gives it back (release); nobody else uses
// it in between. The pool times out waiting transactions (503), takes back a PSAM held past the hold timeout
// (the lease becomes invalid; the transaction fails), takes a PSAM out of service when its card or reader goes
// away (a transport error, or the PC/SC watcher) and probes it until it answers again.

import { EventEmitter } from 'node:events';
import { selectPsam, readPsamData } from '../../terminal/psam.ts';
import type { CardChannel } from '../../transport/channel.ts';
import { TransportError } from '../../transport/errors.ts';
import { openChannel } from '../../transport/open.ts';
import { HttpError } from '../app.ts';
import type { PaymentTimeouts, PsamConfig } from './config.ts';

export type PsamMemberState = 'idle' | 'held' | 'out-of-service';

export interface PsamMemberInfo {
  readonly id: string;
  readonly reader: string;
  readonly psamId: string | null;
  readonly state: PsamMemberState;
  readonly inService: boolean;
  /** The payment holding it (state 'held'). */
  readonly heldBy: string | null;
  readonly heldForMs: number | null;
  readonly lastError: string | null;
  readonly transactions: number;
}

export interface PsamLease {
  readonly memberId: string;
  readonly psamId: string;
  readonly paymentId: string;
  /** False once released, reclaimed (hold timeout) or the PSAM went out of service. */
  readonly valid: boolean;
}

interface Member {
  readonly id: string;
  readonly reader: string;
  channel: CardChannel | undefined;
  psamId: string | null;
  state: PsamMemberState;
  lease: LeaseImpl | undefined;
  lastError: string | null;
  transactions: number;
  probing: boolean;
}

class LeaseImpl implements PsamLease {
  valid = true;
  reclaimed = false;
  timer: NodeJS.Timeout | undefined;
  readonly since = Date.now();
  constructor(
    readonly member: Member,
    readonly paymentId: string,
  ) {}
  get memberId(): string {
    return this.member.id;
  }
  get psamId(): string {
    return this.member.psamId ?? '';
  }
}

interface Waiter {
  readonly since: number;
  readonly paymentId: string;
  readonly psamId: string | undefined;
  readonly resolve: (l: LeaseImpl) => void;
  readonly reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

/** No PSAM free in time, or the wanted one is out of service: 503 with a stable code. */
export class PsamUnavailableError extends HttpError {
  constructor(code: 'PSAM_POOL_BUSY' | 'PSAM_OUT_OF_SERVICE' | 'PSAM_RECLAIMED' | 'PSAM_POOL_CLOSED', message: string) {
    super(503, code, message);
  }
}

const TRANSPORT_FAILURES = new Set(['CARD_REMOVED', 'READER_REMOVED', 'NO_CARD', 'CHANNEL_CLOSED', 'TIMEOUT', 'PCSC_UNAVAILABLE', 'NO_SUCH_READER', 'PROTOCOL']);

/** A failure that means the PSAM (card or reader) is gone, rather than a PSAM refusal. */
export function isDeviceGone(e: unknown): boolean {
  return e instanceof TransportError && TRANSPORT_FAILURES.has(e.code);
}

export interface PsamPoolOptions {
  readonly psams: readonly PsamConfig[];
  readonly timeouts: Pick<PaymentTimeouts, 'acquireMs' | 'holdMs' | 'probeMs' | 'psamApduMs'>;
  /** How a member's channel is opened (default openChannel: PC/SC reader or emu:IMAGE). */
  readonly open?: (reader: string, timeoutMs: number) => Promise<CardChannel>;
  /** Follow PC/SC reader and card events (default: when any reader is not emu:). */
  readonly watchPcsc?: boolean;
  readonly log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

/**
 * Events: 'reclaimed' (lease) when a hold timed out; 'out-of-service' (memberId, reason); 'in-service'
 * (memberId, psamId) when a PSAM (re)joins.
 */
export class PsamPool extends EventEmitter {
  private readonly members: Member[];
  private readonly waiters: Waiter[] = [];
  private readonly options: PsamPoolOptions;
  private probeTimer: NodeJS.Timeout | undefined;
  private watcher: { close(): Promise<void> } | undefined;
  private closed = false;
  private readonly counters = { acquires: 0, waited: 0, waitMs: 0 };

  constructor(options: PsamPoolOptions) {
    super();
    this.options = options;
    this.members = options.psams.map((p, i) => ({ id: `psam-${i}`, reader: p.reader, channel: undefined, psamId: null, state: 'out-of-service', lease: undefined, lastError: 'not started', transactions: 0, probing: false }));
  }

  /** Open every member (those that fail stay out of service and are probed), start probing and watching. */
  async start(): Promise<void> {
    await Promise.all(this.members.map((m) => this.probe(m)));
    this.probeTimer = setInterval(() => {
      for (const m of this.members) if (m.state === 'out-of-service') void this.probe(m);
    }, this.options.timeouts.probeMs);
    this.probeTimer.unref();
    const pcsc = this.options.watchPcsc ?? this.members.some((m) => !m.reader.startsWith('emu:'));
    if (pcsc) await this.watch();
  }

  private async watch(): Promise<void> {
    try {
      const { watchReaders } = await import('../../transport/pcsc-watcher.ts');
      const w = watchReaders({ initial: false, retryMs: this.options.timeouts.probeMs });
      w.on('event', (ev: { type: string; reader?: string }) => {
        if (!ev.reader) return;
        const m = this.members.find((x) => x.channel?.readerName === ev.reader || x.reader === ev.reader || (x.reader.startsWith('pcsc:') && x.reader.slice(5) === ev.reader));
        if (!m) return;
        if (ev.type === 'card-removed' || ev.type === 'reader-removed') this.outOfService(m, `${ev.type.replace('-', ' ')} (PC/SC)`);
        else if (ev.type === 'card-inserted' && m.state === 'out-of-service') void this.probe(m);
      });
      this.watcher = w;
      await w.ready.catch(() => undefined);
    } catch (e) {
      this.options.log?.warn({ err: (e as Error).message }, 'PSAM pool: PC/SC events unavailable; out-of-service PSAMs are found by transport errors and probing');
    }
  }

  /** Try to (re)open a member: channel, SELECT, READ PSAM DATA. */
  private async probe(m: Member): Promise<void> {
    if (m.probing || this.closed || m.state !== 'out-of-service') return;
    m.probing = true;
    let ch: CardChannel | undefined;
    try {
      if (m.channel) {
        await m.channel.close().catch(() => undefined);
        m.channel = undefined;
      }
      const open = this.options.open ?? ((r: string, t: number) => openChannel(r, { timeoutMs: t }));
      ch = await open(m.reader, this.options.timeouts.psamApduMs);
      const data = await readPsamData(ch);
      if (this.closed) {
        await ch.close().catch(() => undefined);
        return;
      }
      if (m.psamId && m.psamId !== data.psamId) this.options.log?.warn({ member: m.id, was: m.psamId, now: data.psamId }, 'a different PSAM is in this reader now');
      m.channel = ch;
      m.psamId = data.psamId;
      m.state = 'idle';
      m.lastError = null;
      this.options.log?.info({ member: m.id, psamId: data.psamId, reader: m.reader }, 'PSAM in service');
      this.emit('in-service', m.id, data.psamId);
      this.dispatch(m);
    } catch (e) {
      await ch?.close().catch(() => undefined);
      m.lastError = (e as Error).message;
    } finally {
      m.probing = false;
    }
  }

  /** Take a member out of service (its lease, if any, becomes invalid). */
  private outOfService(m: Member, reason: string): void {
    if (m.state === 'out-of-service') return;
    m.state = 'out-of-service';
    m.lastError = reason;
    if (m.lease) this.endLease(m.lease);
    const ch = m.channel;
    m.channel = undefined;
    void ch?.close().catch(() => undefined);
    this.options.log?.warn({ member: m.id, psamId: m.psamId, reason }, 'PSAM out of service');
    this.emit('out-of-service', m.id, reason);
    // Waiters for exactly this PSAM keep waiting (until their timeout): it may come back.
  }

  private endLease(l: LeaseImpl): void {
    l.valid = false;
    if (l.timer) clearTimeout(l.timer);
    if (l.member.lease === l) l.member.lease = undefined;
  }

  /** Hand an idle member to the first waiter that can take it. */
  private dispatch(m: Member): void {
    if (m.state !== 'idle') return;
    const i = this.waiters.findIndex((w) => w.psamId === undefined || w.psamId === m.psamId);
    if (i < 0) return;
    const [w] = this.waiters.splice(i, 1);
    if (w!.timer) clearTimeout(w!.timer);
    this.counters.waitMs += performance.now() - w!.since;
    w!.resolve(this.hold(m, w!.paymentId));
  }

  private hold(m: Member, paymentId: string): LeaseImpl {
    const l = new LeaseImpl(m, paymentId);
    m.state = 'held';
    m.lease = l;
    m.transactions++;
    l.timer = setTimeout(() => {
      if (!l.valid) return;
      l.reclaimed = true;
      this.options.log?.warn({ member: m.id, paymentId }, 'PSAM held past the hold timeout: taken back');
      this.release(l);
      this.emit('reclaimed', l);
    }, this.options.timeouts.holdMs);
    l.timer.unref();
    return l;
  }

  /**
   * A PSAM for `paymentId`: any idle one, or (with `psamId`) exactly that PSAM, e.g. to post a card's S3 to
   * the PSAM that issued its S2. 503 PSAM_POOL_BUSY when none is free within the acquire timeout.
   */
  acquire(paymentId: string, options: { psamId?: string; timeoutMs?: number } = {}): Promise<PsamLease> {
    this.counters.acquires++;
    if (this.closed) return Promise.reject(new PsamUnavailableError('PSAM_POOL_CLOSED', 'the payment server is shutting down'));
    const m = this.members.find((x) => x.state === 'idle' && (options.psamId === undefined || x.psamId === options.psamId));
    if (m) return Promise.resolve(this.hold(m, paymentId));
    const timeoutMs = options.timeoutMs ?? this.options.timeouts.acquireMs;
    return new Promise<PsamLease>((resolve, reject) => {
      const w: Waiter = { since: performance.now(), paymentId, psamId: options.psamId, resolve, reject, timer: undefined };
      this.counters.waited++;
      w.timer = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        const known = options.psamId === undefined || this.members.some((x) => x.psamId === options.psamId && x.state !== 'out-of-service');
        reject(
          known
            ? new PsamUnavailableError('PSAM_POOL_BUSY', `no PSAM free within ${timeoutMs} ms (${this.members.filter((x) => x.state === 'held').length} held, ${this.members.filter((x) => x.state === 'out-of-service').length} out of service): try again`)
            : new PsamUnavailableError('PSAM_OUT_OF_SERVICE', `PSAM ${options.psamId} is out of service: try again when it is back`),
        );
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  /** Give the PSAM back (idempotent; a lease that was reclaimed or lost its PSAM is ignored). */
  release(lease: PsamLease): void {
    const l = lease as LeaseImpl;
    if (!l.valid) return;
    this.endLease(l);
    const m = l.member;
    if (m.state === 'held') {
      m.state = 'idle';
      this.dispatch(m);
    }
  }

  /** Run PSAM commands under a lease; a transport failure takes the PSAM out of service (503 PSAM_OUT_OF_SERVICE). */
  async use<T>(lease: PsamLease, fn: (psam: CardChannel) => Promise<T>): Promise<T> {
    const l = lease as LeaseImpl;
    if (!l.valid || !l.member.channel) {
      throw l.reclaimed
        ? new PsamUnavailableError('PSAM_RECLAIMED', `the PSAM of payment ${l.paymentId} was held past the hold timeout and taken back`)
        : new PsamUnavailableError('PSAM_OUT_OF_SERVICE', `PSAM ${l.member.psamId ?? l.member.id} is out of service`);
    }
    const ch = l.member.channel;
    try {
      return await fn(ch);
    } catch (e) {
      if (isDeviceGone(e)) {
        this.outOfService(l.member, (e as Error).message);
        throw new PsamUnavailableError('PSAM_OUT_OF_SERVICE', `PSAM ${l.member.psamId ?? l.member.id} went away during the transaction (${(e as TransportError).code})`);
      }
      throw e;
    }
  }

  /** SELECT the PSAM applet under a lease (each transaction starts with it). */
  select(lease: PsamLease): Promise<void> {
    return this.use(lease, (ch) => selectPsam(ch));
  }

  health(): PsamMemberInfo[] {
    const now = Date.now();
    return this.members.map((m) => ({
      id: m.id,
      reader: m.reader.startsWith('emu:') ? `emu:${m.reader.slice(4).split('/').pop()}` : m.reader,
      psamId: m.psamId,
      state: m.state,
      inService: m.state !== 'out-of-service',
      heldBy: m.lease?.paymentId ?? null,
      heldForMs: m.lease ? now - m.lease.since : null,
      lastError: m.lastError,
      transactions: m.transactions,
    }));
  }

  /** Since start: acquires, how many of them had to wait for a PSAM, and the total wait (ms) of those served. */
  get stats(): { readonly acquires: number; readonly waited: number; readonly waitMs: number } {
    return { ...this.counters };
  }

  get heldCount(): number {
    return this.members.filter((m) => m.state === 'held').length;
  }

  inService(psamId: string): boolean {
    return this.members.some((m) => m.psamId === psamId && m.state !== 'out-of-service');
  }

  /** PSAM ids of members in service. */
  psamIds(): string[] {
    return this.members.filter((m) => m.state !== 'out-of-service' && m.psamId).map((m) => m.psamId!);
  }

  /** For tests and operators: take a member out of service by id, as if its card were pulled. */
  takeOut(memberId: string, reason = 'taken out by the operator'): void {
    const m = this.members.find((x) => x.id === memberId);
    if (m) this.outOfService(m, reason);
  }

  /** Probe out-of-service members now (instead of waiting for the next probe tick). */
  async probeNow(): Promise<void> {
    await Promise.all(this.members.filter((m) => m.state === 'out-of-service').map((m) => this.probe(m)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.probeTimer) clearInterval(this.probeTimer);
    for (const w of this.waiters.splice(0)) {
      if (w.timer) clearTimeout(w.timer);
      w.reject(new PsamUnavailableError('PSAM_POOL_CLOSED', 'the payment server is shutting down'));
    }
    for (const m of this.members) if (m.lease) this.endLease(m.lease);
    await this.watcher?.close().catch(() => undefined);
    await Promise.all(this.members.map(async (m) => {
      const ch = m.channel;
      m.channel = undefined;
      m.state = 'out-of-service';
      await ch?.close().catch(() => undefined);
    }));
  }
}
