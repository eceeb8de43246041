// The host-command HSM simulator: answers the protocol of docs/serial-hsm-protocol.md on a serial line (a
// real tty, e.g. one end of a socat pty pair) or on TCP, executing every command on an `Hsm` (the software
// backend, with keys in its key store under the simulator's own local master key).
//
// Line behaviour, as documented: a frame with a bad LRC is answered with error 90 and not executed; a frame
// too short to hold header + command code, or whose code cannot be answered, is ignored (logged and
// journalled); an unknown command gets error 68; malformed fields get 15. On a serial line the simulator
// also reproduces the line's speed — a pty moves bytes instantly whatever its baud rate — by waiting until the
// request's last character would have arrived and pacing its answer at the configured baud rate (8N1).

import { randomBytes } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { PurselabError } from '../../src/errors.ts';
import type { Hsm, KeyUsage } from '../hsm.ts';
import { A0, BU, COMMANDS, encodeErrorDetail, NC, type AnyCommand, type FaultPlan } from './commands.ts';
import { FieldError, FieldReader } from './fields.ts';
import { defaultInterCharMs, encodeSerialFrame, encodeTcpFrame, ETX, lrc, SerialDeframer, STX, TcpDeframer, wireTimeMs, type DeframeEvent } from './framing.ts';
import { isRelayedCode, WIRE_CODE_FOR } from './errors.ts';
import { PAYMENT_HANDLERS } from './payment.ts';
import { TtyLine } from './tty-line.ts';
import { encodeResponse, MessageFormatError, parseRequest, responseCodeFor, type RequestMessage } from './message.ts';

/** One line of the journal (JSON Lines): every frame the simulator received, and what became of it. Never key material. */
export interface JournalEntry {
  readonly n: number;
  readonly at: string;
  readonly line: string;
  readonly header?: string;
  readonly code?: string;
  readonly errorCode?: string;
  /** True when the command ran against the HSM (its effects, if any, happened). */
  readonly executed: boolean;
  readonly fault?: string;
  readonly rejected?: string;
}

export interface SimulatorOptions {
  /** The backend that holds the keys and does the cryptography (opened by the caller). */
  readonly hsm: Hsm;
  /** 16H: answered in NC (derived from the local master key by the caller; never the key itself). */
  readonly lmkCheck: string;
  /** 9A firmware number answered in NC. */
  readonly firmware?: string;
  /** Header length the hosts use (default 4). */
  readonly headerLength?: number;
  /** Accept the xa (arm a fault) command. Off by default: then xa is answered with error 68. */
  readonly allowFaults?: boolean;
  /** Journal file (JSON Lines), appended synchronously before each answer is sent. */
  readonly journalPath?: string;
  readonly log?: (line: string) => void;
  /** What "die" faults do (default: exit the process at once with status 75, no cleanup, like a power cut). */
  readonly die?: () => void;
}

/** The answer to one received frame: the response message to send (or none), and the fault to apply to it. */
export interface SimReply {
  readonly message?: Buffer;
  readonly fault?: FaultPlan;
}

export const DEFAULT_FIRMWARE = 'PL-SIM-01';

/** payShield key types A0 accepts here, and the usage we give the generated key. */
const A0_KEY_TYPES: Record<string, KeyUsage[]> = {
  '000': ['wrap'], // ZMK
  '001': ['encrypt'], // ZPK
  '002': ['encrypt'], // TPK / TMK / PVK
  '003': ['mac'], // TAK
  '008': ['mac'], // ZAK
  '009': ['derive'], // BDK
  '00A': ['encrypt'], // ZEK
  '00B': ['encrypt'], // DEK / TEK
  '109': ['derive'], // MK-AC (issuer master key for card key derivation)
};

const a0Label = (handle: string): string => `a0-${handle.toLowerCase()}`;

export class HsmSimulator {
  readonly headerLength: number;
  private readonly firmware: string;
  private journalN = 0;
  private readonly faults: { plan: FaultPlan; left: number }[] = [];

  constructor(private readonly options: SimulatorOptions) {
    this.headerLength = options.headerLength ?? 4;
    this.firmware = options.firmware ?? DEFAULT_FIRMWARE;
    if (!/^[0-9A-F]{16}$/.test(options.lmkCheck)) throw new RangeError('lmkCheck must be 16 upper-case hex digits');
    if (this.firmware.length !== 9) throw new RangeError('firmware number must be 9 characters');
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private journal(e: Omit<JournalEntry, 'n' | 'at'>): void {
    if (!this.options.journalPath) return;
    const entry: JournalEntry = { n: ++this.journalN, at: new Date().toISOString(), ...e };
    appendFileSync(this.options.journalPath, JSON.stringify(entry) + '\n');
  }

  private die(): void {
    (this.options.die ?? (() => process.exit(75)))();
  }

  /** Take the fault armed for this command code, if any (one use). */
  private takeFault(code: string): FaultPlan | undefined {
    const i = this.faults.findIndex((f) => f.plan.match === '**' || f.plan.match === code);
    if (i < 0) return undefined;
    const f = this.faults[i]!;
    if (--f.left <= 0) this.faults.splice(i, 1);
    return f.plan;
  }

  /** Handle one received frame (message bytes between the framing). `lrcOk` false: it arrived with a bad LRC. */
  async handle(bytes: Buffer, line: string, lrcOk = true): Promise<SimReply> {
    let req: RequestMessage;
    try {
      req = parseRequest(bytes, this.headerLength);
    } catch (e) {
      if (!(e instanceof MessageFormatError)) throw e;
      if (e.part === 'charset' || e.part === 'trailer') {
        // Header and code are readable: answer 15 (or 90 when the LRC was bad too).
        const text = bytes.toString('latin1');
        const header = text.slice(0, this.headerLength);
        const code = text.slice(this.headerLength, this.headerLength + 2);
        const reply = this.errorReply(header, code, lrcOk ? '15' : '90');
        this.journal({ line, header, code, executed: false, rejected: lrcOk ? e.message : 'bad LRC', ...(reply.message ? { errorCode: lrcOk ? '15' : '90' } : {}) });
        return reply;
      }
      this.log(`ignored a frame on ${line}: ${e.message}`);
      this.journal({ line, executed: false, rejected: e.message });
      return {};
    }
    const { header, code } = req;
    if (!lrcOk) {
      this.log(`bad LRC on ${code} (header ${header}) on ${line}: answered 90, not executed`);
      this.journal({ line, header, code, errorCode: '90', executed: false, rejected: 'bad LRC' });
      return this.errorReply(header, code, '90', req.trailer);
    }
    const cmd = COMMANDS.get(code);
    if (!cmd) {
      this.journal({ line, header, code, errorCode: '68', executed: false, rejected: 'unknown command' });
      return this.errorReply(header, code, '68', req.trailer);
    }
    if (cmd.code === 'xa') return this.armFault(req, cmd, line);

    const fault = this.takeFault(code);
    if (fault?.kind === 'die-before') {
      this.journal({ line, header, code, executed: false, fault: fault.kind });
      this.log(`fault die-before on ${code}: exiting`);
      this.die();
      return {};
    }
    const { errorCode, body } = await this.execute(cmd, req.body);
    this.journal({ line, header, code, errorCode, executed: true, ...(fault ? { fault: fault.kind } : {}) });
    if (fault?.kind === 'die-after') {
      this.log(`fault die-after on ${code}: exiting after executing it`);
      this.die();
      return {};
    }
    const message = encodeResponse({ header, code: cmd.response, errorCode, body, ...(req.trailer !== undefined ? { trailer: req.trailer } : {}) }, this.headerLength);
    return fault ? { message, fault } : { message };
  }

  private errorReply(header: string, code: string, errorCode: string, trailer?: string): SimReply {
    let response: string;
    try {
      response = responseCodeFor(code);
    } catch {
      return {};
    }
    if (!/^[\x20-\x7e]*$/.test(header)) return {};
    return { message: encodeResponse({ header, code: response, errorCode, body: '', ...(trailer !== undefined ? { trailer } : {}) }, this.headerLength) };
  }

  private armFault(req: RequestMessage, cmd: AnyCommand, line: string): SimReply {
    let errorCode = '00';
    if (!this.options.allowFaults) errorCode = '68';
    else {
      try {
        const plan = cmd.decodeRequest(new FieldReader(req.body)) as FaultPlan;
        this.faults.push({ plan, left: Math.max(1, plan.count) });
        this.log(`fault armed: ${plan.kind} x${plan.count} on ${plan.match}${plan.kind === 'delay' ? ` (${plan.ms} ms)` : ''}`);
      } catch (e) {
        if (!(e instanceof FieldError)) throw e;
        errorCode = '15';
      }
    }
    this.journal({ line, header: req.header, code: req.code, errorCode, executed: false, rejected: 'control' });
    return { message: encodeResponse({ header: req.header, code: cmd.response, errorCode, body: '' }, this.headerLength) };
  }

  /** Run one command on the HSM. Returns the error code and the response fields. */
  private async execute(cmd: AnyCommand, body: string): Promise<{ errorCode: string; body: string }> {
    let req: unknown;
    try {
      req = cmd.decodeRequest(new FieldReader(body));
    } catch (e) {
      if (e instanceof FieldError) return { errorCode: '15', body: cmd.origin === 'payShield' ? '' : encodeErrorDetail('BAD_FIELDS', e.message) };
      throw e;
    }
    try {
      switch (cmd.code) {
        case NC.code:
          return ok(NC.encodeResponse({ lmkCheck: this.options.lmkCheck, firmware: this.firmware }));
        case A0.code:
          return await this.a0(req as Parameters<typeof A0.encodeRequest>[0]);
        case BU.code:
          return await this.bu(req as Parameters<typeof BU.encodeRequest>[0]);
      }
      const run = PURSELAB_HANDLERS[cmd.code];
      if (!run) return { errorCode: '68', body: '' };
      const result = await run(this.options.hsm, req);
      if (cmd.verifies) return { errorCode: result ? '00' : '01', body: '' };
      return ok(cmd.encodeResponse(result));
    } catch (e) {
      const { errorCode, remote, message } = classify(e);
      this.log(`${cmd.code} failed: ${errorCode} ${remote}: ${message}`);
      if (errorCode === '41') this.log(`internal error detail: ${(e as Error)?.stack ?? String(e)}`);
      return { errorCode, body: cmd.origin === 'payShield' ? '' : encodeErrorDetail(remote, message) };
    }
  }

  private async a0(req: Parameters<typeof A0.encodeRequest>[0]): Promise<{ errorCode: string; body: string }> {
    if (req.mode !== '0') return { errorCode: '15', body: '' };
    if (req.keyScheme !== 'U') return { errorCode: '26', body: '' };
    const usage = A0_KEY_TYPES[req.keyType.toUpperCase()];
    if (!usage) return { errorCode: '04', body: '' };
    // The "key under LMK" is an opaque 128-bit handle to a key kept in the key store; see the protocol doc.
    const handle = randomBytes(16).toString('hex').toUpperCase();
    const info = await this.options.hsm.generateKey({ label: a0Label(handle), version: 1 }, 'DES3-2KEY', usage);
    return ok(A0.encodeResponse({ keyUnderLmk: 'U' + handle, kcv: info.kcv.toUpperCase().slice(0, 6) }));
  }

  private async bu(req: Parameters<typeof BU.encodeRequest>[0]): Promise<{ errorCode: string; body: string }> {
    if (!/^([0-9]{2}|FF)$/.test(req.keyTypeCode)) return { errorCode: '04', body: '' };
    if (req.key[0] !== 'U') return { errorCode: '26', body: '' };
    if (req.keyLengthFlag !== '1') return { errorCode: '05', body: '' };
    if (!/^U[0-9A-F]{32}$/.test(req.key)) return { errorCode: '15', body: '' };
    const ref = { label: a0Label(req.key.slice(1)), version: 1 };
    let kcv: Buffer;
    try {
      kcv = await this.options.hsm.keyCheckValue(ref);
    } catch (e) {
      // A token that does not decrypt under the LMK fails the parity check on a real payShield.
      if (e instanceof PurselabError && e.code === 'HSM_KEY_NOT_FOUND') return { errorCode: '10', body: '' };
      throw e;
    }
    if (req.kcvType === '1') return ok(BU.encodeResponse({ kcv: kcv.subarray(0, 3).toString('hex').toUpperCase() }));
    // 16H: the whole first block of E(K, 0^8); needs a key the HSM lets us encrypt with.
    try {
      const block = await this.options.hsm.encrypt(ref, 'CBC', Buffer.alloc(8), Buffer.alloc(8));
      return ok(BU.encodeResponse({ kcv: block.subarray(0, 8).toString('hex').toUpperCase() }));
    } catch {
      return { errorCode: '29', body: '' };
    }
  }
}

const ok = (body: string): { errorCode: string; body: string } => ({ errorCode: '00', body });

/**
 * Map a backend error to a wire error code, plus the backend's own code and message (sent in the error fields of
 * purselab answers). Interface errors travel as their WIRE_CODE_FOR code; anything else is 41, internal error.
 */
function classify(e: unknown): { errorCode: string; remote: string; message: string } {
  const remote = e instanceof PurselabError ? e.code : 'INTERNAL';
  const message = e instanceof PurselabError ? e.message : 'internal error in the simulator';
  const errorCode = isRelayedCode(remote) ? WIRE_CODE_FOR[remote]! : '41';
  return { errorCode, remote, message };
}

type Handler = (hsm: Hsm, req: any) => Promise<unknown>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** purselab commands: one Hsm call each (payment commands: paymentOps() of the backend). */
const PURSELAB_HANDLERS: Record<string, Handler> = {
  pa: (hsm) => hsm.listKeys(),
  pc: (hsm, r) => hsm.generateKey(r.ref, r.type, r.usage),
  pe: (hsm, r) => hsm.importKey(r.ref, r.type, r.usage, r.wrapped, r.kek),
  pg: (hsm, r) => hsm.keyCheckValue(r),
  pi: (hsm, r) => hsm.macGenerate(r.key, r.algorithm, r.data),
  pk: (hsm, r) => hsm.macVerify(r.key, r.algorithm, r.data, r.mac),
  pm: (hsm, r) => hsm.encrypt(r.key, r.mode, r.iv, r.data),
  po: (hsm, r) => hsm.decrypt(r.key, r.mode, r.iv, r.data),
  pq: (hsm, n) => hsm.randomBytes(n),
  ps: async (hsm, r) => (await hsm.generateRsaKeyPair(r.ref, r.bits, r.usage)).publicKeyDer,
  pu: (hsm, r) => hsm.sign(r.key, r.data),
  pw: (hsm, r) => hsm.verify(r.key, r.data, r.signature),
  ...PAYMENT_HANDLERS,
};

export function registerSimHandler(code: string, handler: Handler): void {
  if (PURSELAB_HANDLERS[code]) throw new Error(`simulator handler for ${code} already registered`);
  PURSELAB_HANDLERS[code] = handler;
}

// ---- faults applied to an answer on the way out ----------------------------------------------------------------

/** Turn the answer into what the fault says the host receives. `serial`: frame with STX/ETX/LRC, else length prefix. */
function faultyFrame(message: Buffer, fault: FaultPlan | undefined, serial: boolean, headerLength: number): Buffer | undefined {
  const frame = (m: Buffer): Buffer => (serial ? encodeSerialFrame(m) : encodeTcpFrame(m));
  switch (fault?.kind) {
    case undefined:
    case 'delay':
      return frame(message);
    case 'drop':
    case 'die-before':
    case 'die-after':
      return undefined;
    case 'bad-header': {
      const m = Buffer.from(message);
      for (let i = 0; i < headerLength; i++) m[i] = 0x5a; // 'Z'
      return frame(m);
    }
    case 'garble': {
      // Corrupt the characters after the header with bytes no host-command message may contain; on serial
      // the LRC is made consistent, so only the content check catches it.
      const m = Buffer.from(message);
      for (let i = headerLength; i < m.length; i += 2) m[i] = 0x80 | (m[i]! & 0x7f);
      if (!serial) return encodeTcpFrame(m);
      const out = Buffer.alloc(m.length + 3);
      out[0] = STX;
      m.copy(out, 1);
      out[m.length + 1] = ETX;
      out[m.length + 2] = lrc(m, ETX);
      return out;
    }
    case 'bad-lrc': {
      if (!serial) return frame(message); // TCP frames have no LRC
      const f = encodeSerialFrame(message);
      f[f.length - 1] = f[f.length - 1]! ^ 0x5a;
      return f;
    }
    case 'noise':
      // Line noise instead of an answer: never contains STX, so no frame starts (on TCP: a nonsense length).
      return serial ? Buffer.from([0xff, 0x7f, 0x41, 0x00, 0xfe, 0x13, 0x80]) : Buffer.from([0x00, 0x00, 0x13, 0x80]);
  }
}

// ---- precise timing for wire-time emulation -------------------------------------------------------------------

const nowNs = (): bigint => process.hrtime.bigint();

/** How much earlier than their wire time the chunks before an answer's last are put on the line. */
const EARLY_NS = 1_000_000n;

/** The last stretch of a precise sleep, waited without yielding: one turn of the event loop can take longer. */
const HOLD_NS = 150_000n;

/**
 * Sleep until an hrtime instant: a timer for the bulk, then yield-spinning (timers fire up to a few ms late on a
 * busy machine) until the last 0.15 ms, which is waited in a loop that does not yield, for precision to a few
 * microseconds. `precise` false: the timer alone.
 */
async function sleepUntil(target: bigint, precise = true): Promise<void> {
  const ms = Number(target - nowNs()) / 1e6;
  if (!precise) {
    if (ms >= 1) await sleep(ms);
    return;
  }
  if (ms > 3.5) await sleep(ms - 3);
  while (nowNs() < target - HOLD_NS) await new Promise<void>((r) => setImmediate(r));
  while (nowNs() < target);
}

// ---- serial line front-end ------------------------------------------------------------------------------------

export interface SerialSimOptions {
  readonly path: string;
  readonly baudRate?: number;
  /** Reproduce the line's speed (default true). Off: answer as fast as the pty allows. */
  readonly wireTime?: boolean;
  /** Timing of each answered frame, for diagnosing a lab setup (see LineTiming). */
  readonly trace?: (t: LineTiming) => void;
  /** Give up on a request when no byte arrives for this long mid-frame (default: 50 ms or 20 character times). */
  readonly interCharTimeoutMs?: number;
}

/** Milliseconds, all from the moment the request's first bytes were read from the tty. */
export interface LineTiming {
  readonly code: string;
  /** process.hrtime.bigint() when the request's first bytes were read (monotonic: comparable across processes). */
  readonly startNs: bigint;
  /** When the request's last character would have arrived (its wire time). */
  readonly requestWireMs: number;
  /** When the simulator started executing (lateness = this - requestWireMs). */
  readonly executeAtMs: number;
  readonly executeMs: number;
  /** The answer's wire time, and when its last byte was actually written. */
  readonly answerWireMs: number;
  readonly answerDoneMs: number;
}

export class SerialSimLine {
  readonly baudRate: number;
  private line: TtyLine | undefined;
  private readonly deframer = new SerialDeframer();
  private chain: Promise<void> = Promise.resolve();
  private frameStartNs: bigint = 0n;
  private interCharTimer: NodeJS.Timeout | undefined;
  private closing = false;

  constructor(
    private readonly sim: HsmSimulator,
    private readonly options: SerialSimOptions,
    private readonly log: (line: string) => void = () => undefined,
  ) {
    this.baudRate = options.baudRate ?? 115200;
  }

  get description(): string {
    return `${this.options.path} ${this.baudRate} 8N1`;
  }

  private charNs(chars: number): bigint {
    return this.options.wireTime === false ? 0n : BigInt(Math.round(wireTimeMs(chars, this.baudRate) * 1e6));
  }

  /** Open the tty (setting its baud rate and 8N1), drop stale input, start answering. Resolves once answering; `onLost` is told when the line goes away other than by stop(). */
  async start(onLost?: (e: Error) => void): Promise<void> {
    this.line = await TtyLine.open(
      { path: this.options.path, baudRate: this.baudRate },
      {
        data: (chunk) => this.onData(chunk),
        down: (e) => {
          if (this.closing) return;
          this.line = undefined;
          onLost?.(e);
        },
      },
    );
  }

  private onData(chunk: Buffer): void {
    const t = nowNs();
    const wasMid = this.deframer.midFrame;
    const events = this.deframer.push(chunk);
    let first = true;
    for (const ev of events) {
      const start = first && wasMid ? this.frameStartNs : t;
      first = false;
      this.enqueue(ev, start);
    }
    if (this.deframer.midFrame && (!wasMid || events.length)) this.frameStartNs = t;
    clearTimeout(this.interCharTimer);
    if (this.deframer.pending) {
      this.interCharTimer = setTimeout(() => {
        for (const ev of this.deframer.abandon('inter-character timeout')) this.enqueue(ev, nowNs());
      }, this.options.interCharTimeoutMs ?? defaultInterCharMs(this.baudRate));
    }
  }

  private enqueue(ev: DeframeEvent, startNs: bigint): void {
    this.chain = this.chain.then(() => this.process(ev, startNs)).catch((e) => this.log(`serial line error: ${(e as Error).message}`));
  }

  private async process(ev: DeframeEvent, startNs: bigint): Promise<void> {
    if (ev.kind === 'garbage') {
      this.log(`discarded ${ev.bytes.length} byte(s) on ${this.options.path}: ${ev.reason}`);
      return;
    }
    // The request's last character arrives one frame-time after its first.
    const requestWire = this.charNs(ev.message.length + 3);
    await sleepUntil(startNs + requestWire);
    const executeAt = nowNs();
    const reply = await this.sim.handle(ev.message, this.description, ev.kind === 'frame');
    const executed = nowNs();
    if (!reply.message) return;
    if (reply.fault?.kind === 'delay') await sleep(reply.fault.ms);
    const out = faultyFrame(reply.message, reply.fault, true, this.sim.headerLength);
    if (!out) return;
    await this.paced(out);
    if (this.options.trace) {
      const ms = (ns: bigint): number => Number(ns) / 1e6;
      this.options.trace({
        code: ev.message.subarray(this.sim.headerLength, this.sim.headerLength + 2).toString('latin1'),
        startNs,
        requestWireMs: ms(requestWire),
        executeAtMs: ms(executeAt - startNs),
        executeMs: ms(executed - executeAt),
        answerWireMs: ms(this.charNs(out.length)),
        answerDoneMs: ms(nowNs() - startNs),
      });
    }
  }

  /** Write so that each byte appears when it would have finished crossing the line. */
  private async paced(frame: Buffer): Promise<void> {
    const line = this.line;
    if (!line) return;
    const t0 = nowNs();
    const last = t0 + this.charNs(frame.length);
    const perChunk = this.options.wireTime === false ? frame.length : Math.max(1, Math.round(this.baudRate / 10 / 500)); // ~2 ms of characters
    for (let off = 0; off < frame.length; off += perChunk) {
      const end = Math.min(frame.length, off + perChunk);
      // Only the last character's arrival time matters to the host: be precise there, cheap before. A timer
      // fires late, up to a millisecond here: the chunks before the last aim that much early, so a late one
      // cannot delay the last character.
      if (end === frame.length) await sleepUntil(last);
      else await sleepUntil(t0 + this.charNs(end) - EARLY_NS, false);
      await line.write(frame.subarray(off, end));
    }
  }

  /** Close the tty. `drain` (default true): let the command being executed finish and answer first (at most 5 s). */
  async stop(drain = true): Promise<void> {
    this.closing = true;
    clearTimeout(this.interCharTimer);
    if (drain) await Promise.race([this.chain.catch(() => undefined), sleep(5000)]);
    const line = this.line;
    this.line = undefined;
    await line?.close();
  }
}

// ---- TCP front-end --------------------------------------------------------------------------------------------

export interface TcpSimOptions {
  readonly port: number;
  readonly host?: string;
}

export class TcpSimServer {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly sim: HsmSimulator,
    private readonly options: TcpSimOptions,
    private readonly log: (line: string) => void = () => undefined,
  ) {}

  /** Listen; resolves with the bound port (useful with port 0). */
  async start(): Promise<number> {
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host ?? '127.0.0.1', () => resolve());
    });
    this.server = server;
    return (server.address() as net.AddressInfo).port;
  }

  private serve(socket: net.Socket): void {
    socket.setNoDelay(true);
    this.sockets.add(socket);
    const line = `tcp ${socket.remoteAddress}:${socket.remotePort}`;
    const deframer = new TcpDeframer();
    let chain = Promise.resolve();
    socket.on('data', (chunk: Buffer) => {
      for (const ev of deframer.push(chunk)) {
        if (ev.kind !== 'frame') {
          this.log(`${line}: framing lost (${ev.kind === 'garbage' ? ev.reason : 'bad frame'}), closing the connection`);
          socket.destroy();
          return;
        }
        chain = chain
          .then(async () => {
            const reply = await this.sim.handle(ev.message, line, true);
            if (!reply.message || socket.destroyed) return;
            if (reply.fault?.kind === 'delay') await sleep(reply.fault.ms);
            const out = faultyFrame(reply.message, reply.fault, false, this.sim.headerLength);
            if (out && !socket.destroyed) socket.write(out);
          })
          .catch((e) => this.log(`${line}: ${(e as Error).message}`));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
