// Host-command client: a request queue over one line. Serial lines carry one command at a time; TCP may carry
// several, matched by the header, which holds a sequence number (a base-36 counter, e.g. "0001"). Every
// command has a timeout; a command is resent automatically only when it is idempotent (see commands.ts), and
// never after an answer that shows the HSM executed it. When the line drops, the client reconnects in the
// background; commands that were never written wait for the line (up to connectTimeoutMs).

import type { DeframeEvent } from './framing.ts';
import { decodeErrorDetail, type CommandSpec } from './commands.ts';
import {
  HsmBadHeaderError,
  HsmBadLrcError,
  HsmCommandError,
  HsmGarbledError,
  HsmLineDownError,
  HsmRemoteError,
  HsmTimeoutError,
  isRelayedCode,
  SerialHsmError,
  SerialUsageError,
} from './errors.ts';
import { HsmBadInputError, HsmNotOpenError } from '../errors.ts';
import { FieldError, FieldReader } from './fields.ts';
import { encodeRequest, MessageFormatError, parseResponse, responseCodeFor, type ResponseMessage } from './message.ts';
import type { Transport } from './transport.ts';

export interface HostCommandClientOptions {
  /** Length of the message header (payShield default 4). Must match the HSM's configuration. */
  readonly headerLength?: number;
  /** Per-command answer timeout (default 5000 ms). */
  readonly timeoutMs?: number;
  /** Automatic resends of an idempotent command after a lost/garbled answer (default 2). Never for others. */
  readonly retries?: number;
  /** Commands outstanding at once. Serial lines force 1; TCP default 1 (set higher for pipelining). */
  readonly maxInFlight?: number;
  /** How long a command waits for a line that is down before failing with LINE_DOWN (default: timeoutMs). */
  readonly connectTimeoutMs?: number;
  /** Reconnect back-off bounds in ms (default 50 .. 1000). */
  readonly reconnectDelayMs?: readonly [number, number];
  /**
   * After opening the line, send NC (diagnostics) until the HSM answers before releasing any command (default:
   * on for serial lines, where an open port says nothing about the device at the other end; off for TCP).
   */
  readonly probe?: boolean;
  /** Line events for logs (never key material: messages are not passed). */
  readonly onEvent?: (event: ClientEvent) => void;
}

export type ClientEvent =
  | { readonly kind: 'connected'; readonly description: string }
  | { readonly kind: 'down'; readonly reason: string }
  | { readonly kind: 'stale'; readonly header: string }
  | { readonly kind: 'retry'; readonly command: string; readonly reason: string }
  | { readonly kind: 'frame-error'; readonly reason: string };

export interface ClientStats {
  /** Requests written to the line (including resends). */
  sent: number;
  /** Automatic resends of idempotent commands. */
  resent: number;
  /** Late answers to commands that had already timed out, discarded by header. */
  stale: number;
  frameErrors: number;
  reconnects: number;
  /** Bytes written to the line and bytes of well-framed answers read, framing included (STX/ETX/LRC or length). */
  bytesOut: number;
  bytesIn: number;
}

export interface SendOptions {
  readonly idempotent: boolean;
  readonly timeoutMs?: number;
}

interface Job {
  readonly code: string;
  readonly body: string;
  readonly idempotent: boolean;
  readonly timeoutMs: number;
  retriesLeft: number;
  /** A line probe (NC after connecting): never queued, fails instead. */
  probe?: boolean;
  header?: string;
  timer?: NodeJS.Timeout;
  lineWait?: NodeJS.Timeout;
  /** What the line showed while this job was in flight: refines a timeout into a more precise error. */
  seen?: 'garbage' | 'bad-lrc' | 'bad-header';
  resolve(r: ResponseMessage): void;
  reject(e: Error): void;
}

export class HostCommandClient {
  readonly headerLength: number;
  readonly stats: ClientStats = { sent: 0, resent: 0, stale: 0, frameErrors: 0, reconnects: 0, bytesOut: 0, bytesIn: 0 };
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly maxInFlight: number;
  private readonly connectTimeoutMs: number;
  private readonly reconnectDelay: readonly [number, number];
  private readonly queue: Job[] = [];
  private readonly inFlight = new Map<string, Job>();
  /** Headers of commands given up on (timeout, garbled answer): their late answers are discarded quietly. */
  private readonly stale = new Set<string>();
  private seq = 0;
  private state: 'closed' | 'connecting' | 'probing' | 'up' | 'down' = 'closed';
  private readonly probe: boolean;
  private readonly probeTimeoutMs: number;
  private wantOpen = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private connectWaiters: { resolve(): void; reject(e: Error): void; timer: NodeJS.Timeout }[] = [];
  private lastDownReason = '';

  constructor(
    readonly transport: Transport,
    private readonly options: HostCommandClientOptions = {},
  ) {
    this.headerLength = options.headerLength ?? 4;
    if (!Number.isInteger(this.headerLength) || this.headerLength < 1 || this.headerLength > 32) {
      throw new SerialUsageError(`header length must be 1..32, got ${this.headerLength}`);
    }
    this.timeoutMs = options.timeoutMs ?? 5000;
    this.retries = options.retries ?? 2;
    this.maxInFlight = transport.supportsPipelining ? Math.max(1, options.maxInFlight ?? 1) : 1;
    this.connectTimeoutMs = options.connectTimeoutMs ?? this.timeoutMs;
    this.reconnectDelay = options.reconnectDelayMs ?? [50, 1000];
    this.probe = options.probe ?? transport.kind === 'serial';
    // NC + ND at this line's speed, three times over, at least 300 ms.
    this.probeTimeoutMs = Math.min(this.timeoutMs, Math.max(300, 3 * (transport.lineTimeMs?.(9 + 36 + this.headerLength * 2) ?? 0)));
  }

  get isUp(): boolean {
    return this.state === 'up';
  }

  /** Open the line; resolves once connected, rejects with LINE_DOWN after connectTimeoutMs. Keeps reconnecting until close(). */
  open(): Promise<void> {
    this.wantOpen = true;
    if (this.state === 'up') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.connectWaiters = this.connectWaiters.filter((w) => w.timer !== timer);
        reject(new HsmLineDownError(`cannot open ${this.transport.description}: ${this.lastDownReason || 'no answer'}`));
      }, this.connectTimeoutMs);
      this.connectWaiters.push({ resolve, reject, timer });
    });
    if (this.state === 'closed' || this.state === 'down') void this.connectOnce(this.reconnectDelay[0]);
    return p;
  }

  async close(): Promise<void> {
    this.wantOpen = false;
    this.state = 'closed';
    clearTimeout(this.reconnectTimer);
    const err = new HsmLineDownError(`${this.transport.description}: client closed`);
    for (const w of this.connectWaiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
    this.connectWaiters = [];
    for (const job of [...this.inFlight.values()]) this.finish(job, new HsmLineDownError(`${this.transport.description}: closed with command ${job.code} outstanding`, { command: job.code, outcomeUnknown: true }));
    for (const job of this.queue.splice(0)) this.finish(job, new HsmLineDownError(`${this.transport.description}: closed before command ${job.code} was sent`, { command: job.code }));
    await this.transport.close();
  }

  /** Send one command (code + fields) and return the raw answer, whatever its error code. */
  send(code: string, body: string, options: SendOptions): Promise<ResponseMessage> {
    if (!this.wantOpen) return Promise.reject(new HsmNotOpenError(`serial host-command (${this.transport.description})`));
    responseCodeFor(code); // validates the code
    return new Promise<ResponseMessage>((resolve, reject) => {
      const job: Job = {
        code,
        body,
        idempotent: options.idempotent,
        timeoutMs: options.timeoutMs ?? this.timeoutMs,
        retriesLeft: options.idempotent ? this.retries : 0,
        resolve,
        reject,
      };
      this.enqueue(job, false);
    });
  }

  /** Encode, send, check the error code, decode: the typed way to run a command from commands.ts. */
  async execute<Req, Res>(cmd: CommandSpec<Req, Res>, req: Req, options: { timeoutMs?: number } = {}): Promise<Res> {
    let body: string;
    try {
      body = cmd.encodeRequest(req);
    } catch (e) {
      // Arguments the protocol cannot even carry: the same code the software backend gives for bad arguments.
      if (e instanceof FieldError || e instanceof TypeError) throw new HsmBadInputError(`${cmd.name}: ${e.message}`);
      throw e;
    }
    const timeoutMs = options.timeoutMs ?? (cmd.slow ? Math.max(this.timeoutMs, SLOW_TIMEOUT_MS) : this.timeoutMs);
    const res = await this.send(cmd.code, body, { idempotent: cmd.idempotent, timeoutMs });
    if (res.errorCode === '00' || (cmd.verifies && res.errorCode === '01')) {
      if (res.errorCode === '01') return false as Res;
      try {
        return cmd.decodeResponse(new FieldReader(res.body));
      } catch (e) {
        if (e instanceof FieldError) throw new HsmGarbledError(`${cmd.response} answer to ${cmd.code} does not parse: ${e.message}`, { command: cmd.code, outcomeUnknown: !cmd.idempotent });
        throw e;
      }
    }
    const detail = cmd.origin === 'payShield' ? undefined : decodeErrorDetail(res.body);
    if (detail && isRelayedCode(detail.code)) throw new HsmRemoteError(detail.code, detail.message, cmd.code, res.errorCode);
    throw new HsmCommandError(cmd.code, res.errorCode, detail);
  }

  // ---- queue ---------------------------------------------------------------------------------------------------

  private enqueue(job: Job, front: boolean): void {
    if (front) this.queue.unshift(job);
    else this.queue.push(job);
    if (this.state !== 'up') this.armLineWait(job);
    this.pump();
  }

  private armLineWait(job: Job): void {
    if (job.lineWait) return;
    job.lineWait = setTimeout(() => {
      const i = this.queue.indexOf(job);
      if (i < 0) return;
      this.queue.splice(i, 1);
      this.finish(job, new HsmLineDownError(`${this.transport.description} is down (${this.lastDownReason || 'not connected'}); command ${job.code} not sent`, { command: job.code }));
    }, this.connectTimeoutMs);
  }

  private pump(): void {
    if (this.state !== 'up') {
      if (this.wantOpen && (this.state === 'down' || this.state === 'closed') && !this.reconnectTimer) void this.connectOnce(0);
      return;
    }
    while (this.inFlight.size < this.maxInFlight && this.queue.length) this.transmit(this.queue.shift()!);
  }

  private nextHeader(): string {
    const space = 36 ** Math.min(this.headerLength, 8);
    for (;;) {
      const h = (this.seq++ % space).toString(36).toUpperCase().padStart(this.headerLength, '0');
      if (!this.inFlight.has(h)) {
        this.stale.delete(h);
        return h;
      }
    }
  }

  private transmit(job: Job): void {
    clearTimeout(job.lineWait);
    job.lineWait = undefined;
    const header = this.nextHeader();
    job.header = header;
    job.seen = undefined;
    let bytes: Buffer;
    try {
      bytes = encodeRequest({ header, code: job.code, body: job.body }, this.headerLength);
    } catch (e) {
      this.finish(job, new SerialUsageError(`command ${job.code}: ${(e as Error).message}`));
      return;
    }
    this.inFlight.set(header, job);
    job.timer = setTimeout(() => this.onTimeout(job), job.timeoutMs);
    this.stats.sent++;
    this.stats.bytesOut += this.transport.frameBytes(bytes.length);
    this.transport.send(bytes).catch((e: Error) => {
      // A failed write never delivered a complete frame, so the HSM cannot have executed it: put the command
      // back at the head of the queue (not a repeat) and let the reconnect logic take over.
      if (this.inFlight.get(header) !== job) return;
      this.inFlight.delete(header);
      clearTimeout(job.timer);
      if (job.probe) job.reject(new HsmLineDownError(`probe write failed: ${e.message}`));
      else this.queue.unshift(job);
      this.onDown(e);
    });
  }

  private finish(job: Job, result: ResponseMessage | Error): void {
    clearTimeout(job.timer);
    clearTimeout(job.lineWait);
    if (job.header && this.inFlight.get(job.header) === job) this.inFlight.delete(job.header);
    if (result instanceof Error) job.reject(result);
    else job.resolve(result);
  }

  /** A sent command failed on the line: resend it if it is idempotent and has retries left, else fail it. */
  private fail(job: Job, error: SerialHsmError): void {
    if (job.header) {
      this.inFlight.delete(job.header);
      this.rememberStale(job.header);
    }
    clearTimeout(job.timer);
    if (job.idempotent && job.retriesLeft > 0) {
      job.retriesLeft--;
      this.stats.resent++;
      this.options.onEvent?.({ kind: 'retry', command: job.code, reason: error.message });
      this.enqueue(job, true);
    } else {
      this.finish(job, error);
    }
    this.pump();
  }

  private rememberStale(header: string): void {
    this.stale.add(header);
    if (this.stale.size > 256) this.stale.delete(this.stale.values().next().value!);
  }

  private onTimeout(job: Job): void {
    if (!job.header || this.inFlight.get(job.header) !== job) return;
    const detail = { command: job.code, outcomeUnknown: true };
    const what = `command ${job.code} (header ${job.header}) on ${this.transport.description}`;
    const ms = job.timeoutMs;
    const error =
      job.seen === 'bad-lrc'
        ? new HsmBadLrcError(`${what}: answer had a bad LRC, no good answer within ${ms} ms`, detail)
        : job.seen === 'bad-header'
          ? new HsmBadHeaderError(`${what}: answer carried a header we did not send, no matching answer within ${ms} ms`, detail)
          : job.seen === 'garbage'
            ? new HsmGarbledError(`${what}: garbled bytes, no valid answer within ${ms} ms`, detail)
            : new HsmTimeoutError(`${what}: no answer within ${ms} ms`, detail);
    this.fail(job, error);
  }

  // ---- line events ---------------------------------------------------------------------------------------------

  private async connectOnce(delayMs: number): Promise<void> {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    if (delayMs > 0) {
      await new Promise<void>((r) => {
        this.reconnectTimer = setTimeout(r, delayMs);
      });
      this.reconnectTimer = undefined;
    }
    if (!this.wantOpen || this.state === 'up' || this.state === 'connecting' || this.state === 'probing') return;
    this.state = 'connecting';
    try {
      await this.transport.connect({
        message: (m) => this.onMessage(m),
        frameError: (ev) => this.onFrameError(ev),
        down: (e) => this.onDown(e),
      });
    } catch (e) {
      if (!this.wantOpen) return;
      this.state = 'down';
      this.lastDownReason = (e as Error).message;
      const next = Math.min(this.reconnectDelay[1], Math.max(this.reconnectDelay[0], delayMs * 2));
      this.reconnectTimer = setTimeout(() => {
        this.reconnectTimer = undefined;
        void this.connectOnce(0);
      }, next);
      // Remember the back-off for the next failure.
      this.reconnectTimer.unref?.();
      this.backoff = next;
      return;
    }
    if (!this.wantOpen) {
      await this.transport.close();
      return;
    }
    if (this.probe) {
      this.state = 'probing';
      const answered = await this.probeLine();
      if (this.state !== 'probing') return; // the line went down meanwhile (onDown took over), or close()
      if (!answered) {
        this.state = 'down';
        this.lastDownReason = `line open but the HSM does not answer NC on ${this.transport.description}`;
        this.options.onEvent?.({ kind: 'down', reason: this.lastDownReason });
        await this.transport.close();
        const next = Math.min(this.reconnectDelay[1], Math.max(this.reconnectDelay[0], this.backoff * 2));
        this.backoff = next;
        void this.connectOnce(next);
        return;
      }
    }
    this.backoff = 0;
    this.state = 'up';
    this.options.onEvent?.({ kind: 'connected', description: this.transport.description });
    for (const w of this.connectWaiters.splice(0)) {
      clearTimeout(w.timer);
      w.resolve();
    }
    this.pump();
  }

  private backoff = 0;

  /** Send NC until the HSM answers (any error code counts as an answer), for up to connectTimeoutMs. */
  private async probeLine(): Promise<boolean> {
    const deadline = Date.now() + this.connectTimeoutMs;
    while (this.state === 'probing' && this.wantOpen && Date.now() < deadline) {
      try {
        await new Promise<ResponseMessage>((resolve, reject) =>
          this.transmit({ code: 'NC', body: '', idempotent: true, retriesLeft: 0, probe: true, timeoutMs: this.probeTimeoutMs, resolve, reject }),
        );
        return true;
      } catch {
        // not answering yet: try again
      }
    }
    return false;
  }

  private onDown(e: Error): void {
    if (this.state === 'closed' || this.state === 'down') return;
    if (this.state === 'up') this.stats.reconnects++;
    this.state = 'down';
    this.lastDownReason = e.message;
    this.options.onEvent?.({ kind: 'down', reason: e.message });
    void this.transport.close();
    for (const job of [...this.inFlight.values()]) {
      this.fail(job, new HsmLineDownError(`${this.transport.description} went down with command ${job.code} outstanding: ${e.message}`, { command: job.code, outcomeUnknown: true, cause: e }));
    }
    for (const job of this.queue) this.armLineWait(job);
    if (this.wantOpen && !this.reconnectTimer) {
      const delay = Math.min(this.reconnectDelay[1], Math.max(this.reconnectDelay[0], this.backoff * 2));
      this.backoff = delay;
      void this.connectOnce(delay);
    }
  }

  private onMessage(bytes: Buffer): void {
    this.stats.bytesIn += this.transport.frameBytes(bytes.length);
    let res: ResponseMessage;
    try {
      res = parseResponse(bytes, this.headerLength);
    } catch (e) {
      if (!(e instanceof MessageFormatError)) throw e;
      this.onUnreadable(bytes, `unreadable answer: ${e.message}`);
      return;
    }
    const job = this.inFlight.get(res.header);
    if (!job) {
      if (this.stale.has(res.header)) {
        this.stats.stale++;
        this.options.onEvent?.({ kind: 'stale', header: res.header });
        return;
      }
      this.stats.frameErrors++;
      this.options.onEvent?.({ kind: 'frame-error', reason: `answer with header '${res.header}' matches no command` });
      const sole = this.soleInFlight();
      if (sole) this.fail(sole, new HsmBadHeaderError(`answer to ${sole.code} came back with header '${res.header}', expected '${sole.header}'`, { command: sole.code, outcomeUnknown: true }));
      else for (const j of this.inFlight.values()) j.seen = 'bad-header';
      return;
    }
    const expected = responseCodeFor(job.code);
    if (res.code !== expected) {
      this.fail(job, new HsmGarbledError(`answer to ${job.code} has response code '${res.code}', expected '${expected}'`, { command: job.code, outcomeUnknown: true }));
      return;
    }
    if (res.errorCode === '90') {
      this.fail(job, new HsmBadLrcError(`the HSM reported a parity/LRC error (90) on our ${job.code} request; it did not execute it`, { command: job.code }));
      return;
    }
    if (res.errorCode === '51') {
      this.fail(job, new HsmBadHeaderError(`the HSM reported an invalid message header (51) on our ${job.code} request`, { command: job.code }));
      return;
    }
    this.finish(job, res);
    this.pump();
  }

  private soleInFlight(): Job | undefined {
    return this.inFlight.size === 1 ? this.inFlight.values().next().value : undefined;
  }

  /** Bytes we cannot read as an answer: blame the only outstanding command, or mark all of them. */
  private onUnreadable(bytes: Buffer, reason: string, kind: 'garbage' | 'bad-lrc' = 'garbage'): void {
    this.stats.frameErrors++;
    this.options.onEvent?.({ kind: 'frame-error', reason });
    // The header may still be readable: prefer an exact match.
    const header = bytes.subarray(0, this.headerLength).toString('latin1');
    const job = this.inFlight.get(header) ?? this.soleInFlight();
    if (job) {
      const detail = { command: job.code, outcomeUnknown: true };
      this.fail(job, kind === 'bad-lrc' ? new HsmBadLrcError(`answer to ${job.code}: ${reason}`, detail) : new HsmGarbledError(`answer to ${job.code}: ${reason}`, detail));
    } else {
      for (const j of this.inFlight.values()) j.seen ??= kind;
    }
  }

  private onFrameError(ev: Exclude<DeframeEvent, { kind: 'frame' }>): void {
    if (ev.kind === 'bad-lrc') {
      this.onUnreadable(ev.message, `bad LRC (expected ${hex2(ev.expected)}, received ${hex2(ev.received)})`, 'bad-lrc');
      return;
    }
    // Noise between frames is only remembered (a valid answer may still follow); a frame cut short is blamed.
    this.stats.frameErrors++;
    this.options.onEvent?.({ kind: 'frame-error', reason: ev.reason });
    if (ev.where === 'between-frames') {
      for (const j of this.inFlight.values()) j.seen ??= 'garbage';
      return;
    }
    this.onUnreadable(ev.bytes.subarray(1), `${ev.reason} (${ev.bytes.length} bytes)`);
  }
}

/** Minimum timeout of commands marked slow (RSA key generation). */
export const SLOW_TIMEOUT_MS = 30_000;

const hex2 = (n: number): string => n.toString(16).toUpperCase().padStart(2, '0');
