// vpcd connector: plugs one emulated card into one slot of pcscd's vpcd driver over TCP.
//
// pcscd (through libifdvpcd) listens on a TCP port per slot; the card side ("vicc") connects to it.
// From then on pcscd sends control bytes (power off/on, reset, get ATR) and command APDUs, and we
// answer get-ATR with the ATR and each APDU with the card's response, every message framed as a
// 2-byte big-endian length + body (frame.ts). The connector reconnects with backoff when pcscd is
// not there yet, restarts, or the socket closes; it drops the connection on a frame no vpcd would
// send. One write per frame and TCP_NODELAY on our side (docs/pcsc-and-vpcd.md explains why).

import { EventEmitter } from 'node:events';
import net from 'node:net';
import {
  encodeFrame,
  VPCD_CTRL_ATR,
  VPCD_CTRL_OFF,
  VPCD_CTRL_ON,
  VPCD_CTRL_RESET,
  VpcdFrameDecoder,
  VpcdFrameError,
  type VpcdMessage,
} from './frame.ts';

/** What the connector needs from a card. The emulator's SimulatedCard satisfies it. */
export interface VpcdCard {
  /** Power the card up; returns the ATR. */
  powerOn(): Buffer;
  powerOff(): void;
  /** Warm reset; returns the ATR. */
  reset(): Buffer;
  /** The card's ATR (answered to vpcd's get-ATR, which it also uses as a presence probe). */
  readonly atr: Buffer;
  /** One command APDU in, response (data + SW1 SW2) out. */
  transmit(apdu: Buffer): Buffer;
}

export interface VpcdConnectorOptions {
  host: string;
  port: number;
  card: VpcdCard;
  /** Prefix of log lines; default "vpcd HOST:PORT". */
  label?: string;
  /** One-line log sink; default stderr. */
  log?: (line: string) => void;
  /** Reconnect backoff: first delay and cap (ms). Defaults 100 and 2000. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Give up a TCP connect attempt after this long (ms); default 5000. */
  connectTimeoutMs?: number;
}

export type VpcdConnectorState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'stopped';

export interface VpcdConnectorStats {
  /** TCP connections established. */
  connects: number;
  /** Connections on which pcscd actually spoke (accepted us and sent at least one frame). */
  sessions: number;
  apdus: number;
  controls: number;
  badFrames: number;
  cardErrors: number;
}

/** "HOST:PORT", ":PORT", "PORT" or "HOST" (default port 35963, vpcd's first slot). */
export function parseVpcdAddress(spec: string, defaultPort = 35963): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(spec.trim());
  const bare = /^\d+$/.test(spec.trim());
  if (!m || spec.trim() === '') throw new Error(`bad vpcd address '${spec}' (expected HOST:PORT, e.g. 127.0.0.1:35963)`);
  const host = bare ? '127.0.0.1' : (m[1] ?? m[2] ?? '') || '127.0.0.1';
  const port = bare ? Number(spec.trim()) : m[3] !== undefined ? Number(m[3]) : defaultPort;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`bad vpcd port in '${spec}' (1..65535)`);
  return { host, port };
}

const SW_NO_PRECISE_DIAGNOSIS = Buffer.from([0x6f, 0x00]);

/**
 * Events: 'connected' (TCP up), 'session' (pcscd spoke on this connection), 'disconnected' (reason),
 * 'apdu' (command, response) — for tracing; no 'error' event (errors are logged and retried).
 */
export class VpcdConnector extends EventEmitter {
  readonly host: string;
  readonly port: number;
  readonly label: string;
  readonly stats: VpcdConnectorStats = { connects: 0, sessions: 0, apdus: 0, controls: 0, badFrames: 0, cardErrors: 0 };
  private readonly card: VpcdCard;
  private readonly log: (line: string) => void;
  private readonly minBackoff: number;
  private readonly maxBackoff: number;
  private readonly connectTimeout: number;
  private socket: net.Socket | undefined;
  private decoder = new VpcdFrameDecoder();
  private timer: NodeJS.Timeout | undefined;
  private backoff: number;
  private _state: VpcdConnectorState = 'idle';
  private spoke = false;
  private reportedWaiting = false;
  private closeWaiters: Array<() => void> = [];
  /** Why we dropped the current connection ourselves (already logged). */
  private dropped: string | undefined;

  constructor(options: VpcdConnectorOptions) {
    super();
    this.host = options.host;
    this.port = options.port;
    this.card = options.card;
    this.label = options.label ?? `vpcd ${options.host}:${options.port}`;
    this.log = options.log ?? ((line) => process.stderr.write(line + '\n'));
    this.minBackoff = options.minBackoffMs ?? 100;
    this.maxBackoff = options.maxBackoffMs ?? 2000;
    this.connectTimeout = options.connectTimeoutMs ?? 5000;
    this.backoff = this.minBackoff;
  }

  get state(): VpcdConnectorState {
    return this._state;
  }

  /** Start connecting (and keep reconnecting until stop()). */
  start(): this {
    if (this._state !== 'idle') return this;
    this.connect();
    return this;
  }

  /** Resolves once pcscd has spoken on the current connection (it accepted us), or rejects after timeoutMs. */
  waitForSession(timeoutMs = 10_000): Promise<void> {
    if (this._state === 'connected' && this.spoke) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('session', onSession);
        reject(new Error(`${this.label}: pcscd did not talk to the card within ${timeoutMs} ms`));
      }, timeoutMs);
      const onSession = () => {
        clearTimeout(t);
        resolve();
      };
      this.once('session', onSession);
    });
  }

  /** Disconnect (pcscd then sees the card removed) and stop reconnecting. Idempotent. */
  stop(): Promise<void> {
    if (this._state === 'stopped' && !this.socket) return Promise.resolve();
    this._state = 'stopped';
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const s = this.socket;
    if (!s) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    s.destroy();
    return done;
  }

  private connect(): void {
    if (this._state === 'stopped') return;
    this._state = 'connecting';
    this.spoke = false;
    this.decoder = new VpcdFrameDecoder();
    const s = net.connect({ host: this.host, port: this.port, noDelay: true });
    this.socket = s;
    s.setTimeout(this.connectTimeout);
    let failure: string | undefined;
    let up = false;
    s.once('connect', () => {
      up = true;
      s.setTimeout(0);
      s.setNoDelay(true);
      s.setKeepAlive(true, 10_000);
      this._state = 'connected';
      this.stats.connects++;
      this.reportedWaiting = false;
      this.emit('connected');
    });
    s.on('timeout', () => {
      failure = `no answer within ${this.connectTimeout} ms`;
      s.destroy();
    });
    s.on('data', (chunk: Buffer) => this.onData(s, chunk));
    s.on('error', (e: NodeJS.ErrnoException) => {
      failure = e.code ?? e.message;
    });
    s.on('close', () => this.onClose(s, up, failure));
  }

  private onClose(s: net.Socket, wasUp: boolean, failure: string | undefined): void {
    if (this.socket !== s) return;
    this.socket = undefined;
    const dropped = this.dropped;
    this.dropped = undefined;
    const reason = dropped ?? failure ?? (this._state === 'stopped' ? 'stopped' : 'closed by pcscd');
    if (this._state === 'stopped') {
      if (wasUp) this.emit('disconnected', reason);
      for (const w of this.closeWaiters.splice(0)) w();
      return;
    }
    if (this.spoke) this.backoff = this.minBackoff;
    if (wasUp) {
      if (!dropped) this.log(`${this.label}: connection lost (${reason}); reconnecting`);
      this.emit('disconnected', reason);
    } else if (!this.reportedWaiting) {
      this.log(`${this.label}: cannot reach pcscd's vpcd port (${reason}); retrying every <= ${this.maxBackoff} ms`);
      this.reportedWaiting = true;
    }
    this._state = 'waiting';
    const delay = this.backoff;
    this.backoff = Math.min(this.maxBackoff, this.backoff * 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, delay);
  }

  private drop(s: net.Socket, why: string): void {
    this.log(`${this.label}: ${why}; dropping the connection and reconnecting`);
    this.dropped = why;
    s.destroy();
  }

  private onData(s: net.Socket, chunk: Buffer): void {
    let messages: VpcdMessage[];
    try {
      messages = this.decoder.push(chunk);
    } catch (e) {
      this.stats.badFrames++;
      this.drop(s, e instanceof VpcdFrameError ? e.message : `bad frame: ${(e as Error).message}`);
      return;
    }
    if (messages.length && !this.spoke) {
      this.spoke = true;
      this.stats.sessions++;
      this.emit('session');
    }
    for (const m of messages) {
      if (s.destroyed) return;
      if (m.kind === 'apdu') this.onApdu(s, m.apdu);
      else this.onControl(s, m.code);
    }
  }

  private onControl(s: net.Socket, code: number): void {
    this.stats.controls++;
    try {
      switch (code) {
        case VPCD_CTRL_OFF:
          this.card.powerOff();
          return;
        case VPCD_CTRL_ON:
          this.card.powerOn();
          return;
        case VPCD_CTRL_RESET:
          this.card.reset();
          return;
        case VPCD_CTRL_ATR:
          s.write(encodeFrame(this.card.atr));
          return;
        default:
          this.stats.badFrames++;
          this.drop(s, `unknown vpcd control byte 0x${code.toString(16).padStart(2, '0')}`);
      }
    } catch (e) {
      this.stats.cardErrors++;
      this.drop(s, `card failed control ${code}: ${(e as Error).message}`);
    }
  }

  private onApdu(s: net.Socket, apdu: Buffer): void {
    this.stats.apdus++;
    let rsp: Buffer;
    try {
      rsp = this.card.transmit(apdu);
      if (rsp instanceof Uint8Array && rsp.length === 0) {
        // The card went mute (unpowered, or its power-loss switch fired mid-command). A reader would
        // time out; over vpcd the faithful equivalent is the card leaving the slot: pcscd reports the
        // command failed and the card removed, and after our reconnect a fresh insertion (cold reset).
        this.drop(s, `card gave no answer to ${apdu.subarray(0, 4).toString('hex').toUpperCase()} (power lost)`);
        return;
      }
      if (!(rsp instanceof Uint8Array) || rsp.length < 2 || rsp.length > 0xffff) {
        throw new Error(`card returned a ${rsp?.length ?? 'non-buffer'}-byte response (need 2..65535)`);
      }
    } catch (e) {
      this.stats.cardErrors++;
      this.log(`${this.label}: card error on APDU ${apdu.subarray(0, 4).toString('hex').toUpperCase()}: ${(e as Error).message}; answered 6F00`);
      rsp = SW_NO_PRECISE_DIAGNOSIS;
    }
    // The card may have stopped us from inside transmit (tests simulate a pulled card that way).
    if (!s.destroyed) s.write(encodeFrame(rsp));
    if (this.listenerCount('apdu')) this.emit('apdu', apdu, rsp);
  }
}
