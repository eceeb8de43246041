// SimulatedCard: an APDU-level card OS in the spirit of jCardSim's CardSimulator and the Java Card runtime.
// ATR and protocol (T=0/T=1), applet registry by AID, SELECT (exact/partial, first/next), ISO errors,
// T=0 GET RESPONSE and 6Cxx, command chaining, transactions and the power-loss switch. transmit() is
// synchronous and never throws.

import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { buildAtr, parseAtr } from '../../src/apdu/atr.ts';
import { fromHex, toHex } from '../../src/apdu/hex.ts';
import { LruCache } from '../../src/lru.ts';
import type { ResponseApdu } from '../../src/apdu/response.ts';
import { Applet, ApduContext, kBind, kClear, type CardProtocolName, type CardServices } from './applet.ts';
import { CardOsError, IsoException, isValidStatusWord, SW } from './iso.ts';
import { CardMemory } from './memory.ts';
import { appletTypes, type AppletTypeRegistry } from './registry.ts';

export interface SimulatedCardOptions {
  /** Transmission protocol the card runs (default 'T=1'). */
  protocol?: CardProtocolName;
  /** A complete ATR to answer with (validated; must offer `protocol`). Default: built from the options. */
  atr?: Uint8Array;
  /** Historical bytes for the default ATR (at most 15; default: card capabilities + "PURSELAB"). */
  historicalBytes?: Uint8Array;
  /** Accept extended-length APDUs (T=1 only; default true). */
  extendedLength?: boolean;
  /** The card's unique serial number, 1..16 bytes (default: 8 random bytes). */
  serial?: Uint8Array;
  /** Seed for a reproducible random generator (default: node:crypto randomness). */
  randomSeed?: Uint8Array | string;
  /** Registry used by install(aid, typeName) (default: the shared `appletTypes`). */
  registry?: AppletTypeRegistry;
  /** Start powered off (default: powered on, like a card already activated in a reader). */
  poweredOff?: boolean;
  /** Called for every card event (applet exceptions, aborted transactions, power loss...). */
  onEvent?: (event: CardEvent) => void;
}

export type CardEventType =
  | 'applet-exception' // process() threw something other than IsoException: answered 6F00
  | 'invalid-status-word' // IsoException with a SW an applet may not answer with: answered 6F00
  | 'select-failed' // select() returned false or threw: answered 6999
  | 'hook-exception' // deselect()/fci()/onInstall() threw
  | 'transaction-aborted' // a transaction was still open when the command ended
  | 'response-too-long'
  | 'power-loss' // the power-loss switch fired
  | 'os-error'; // a bug in the card OS itself (answered 6F00)

export interface CardEvent {
  readonly type: CardEventType;
  readonly message: string;
  /** AID (hex) of the applet involved, when one is. */
  readonly aid?: string;
  /** The command (hex) being processed. */
  readonly apdu?: string;
  readonly error?: unknown;
}

/** One installed applet as the card OS keeps it. */
export interface InstalledApplet {
  readonly aid: Buffer;
  readonly aidHex: string;
  readonly applet: Applet;
  /** Registered type name (undefined: the card cannot be saved as an image). */
  readonly typeName: string | undefined;
  /** Install parameters, kept in images and passed to the factory on restore. */
  readonly params: Buffer;
}

const EMPTY = Buffer.alloc(0);
const MAX_EVENTS = 256;
const MAX_RESPONSE = 65536;
const MAX_CHAIN = 65535;
const CHAINING_BIT = 0x10;
/** ISO 7816-4 card capabilities (tag 7): selection by full/partial DF name; data coding 21; chaining [+ extended]. */
function defaultHistorical(protocol: CardProtocolName, extended: boolean): Buffer {
  return Buffer.concat([Buffer.from([0x80, 0x73, 0xc0, 0x21, protocol === 'T=1' && extended ? 0xc0 : 0x80, 0x58]), Buffer.from('PURSELAB', 'ascii')]);
}

/** The ATR a card made with these options answers with (T=1: IFSC 254, BWI 4, CWI 5; TCK correct). */
export function defaultAtr(protocol: CardProtocolName = 'T=1', options: { historicalBytes?: Uint8Array; extendedLength?: boolean } = {}): Buffer {
  const historical = options.historicalBytes ?? defaultHistorical(protocol, options.extendedLength !== false);
  return protocol === 'T=1'
    ? buildAtr({ protocols: [1], t1: { ifsc: 254, bwi: 4, cwi: 5 }, historical })
    : buildAtr({ protocols: [0], historical });
}

function checkAid(aid: Uint8Array | string, what = 'AID'): Buffer {
  const b = typeof aid === 'string' ? fromHex(aid, what) : Buffer.from(aid);
  if (b.length < 5 || b.length > 16) throw new CardOsError(`${what} must be 5..16 bytes (ISO 7816-5), got ${b.length}: ${toHex(b)}`);
  return b;
}

function swBuffer(sw: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b[0] = sw >> 8;
  b[1] = sw & 0xff;
  return b;
}

function respond(data: Uint8Array, offset: number, length: number, sw: number): Buffer {
  const b = Buffer.allocUnsafe(length + 2);
  b.set(length === data.length && offset === 0 ? data : data.subarray(offset, offset + length), 0);
  b[length] = sw >> 8;
  b[length + 1] = sw & 0xff;
  return b;
}

/** Seeded generator: SHA-256(seed || counter) blocks. Reproducible, not for production keys. */
class SeededRandom {
  private counter = 0;
  private pool = Buffer.alloc(0);
  constructor(private readonly seed: Buffer) {}
  fill(target: Uint8Array): void {
    let off = 0;
    while (off < target.length) {
      if (this.pool.length === 0) {
        const c = Buffer.alloc(8);
        c.writeBigUInt64BE(BigInt(this.counter++));
        this.pool = createHash('sha256').update(this.seed).update(c).digest();
      }
      const n = Math.min(this.pool.length, target.length - off);
      target.set(this.pool.subarray(0, n), off);
      this.pool = this.pool.subarray(n);
      off += n;
    }
  }
}

interface Chain {
  readonly cla: number;
  readonly ins: number;
  readonly p1: number;
  readonly p2: number;
  readonly parts: Buffer[];
  total: number;
}

export class SimulatedCard {
  readonly protocol: CardProtocolName;
  readonly extendedLength: boolean;
  readonly serial: Buffer;
  /** The persistent-memory manager (transactions, write counter, power-loss switch). */
  readonly memory = new CardMemory();
  readonly registry: AppletTypeRegistry;
  private atrBytes: Buffer;
  private powered: boolean;
  private readonly installed: InstalledApplet[] = [];
  private readonly byAid = new Map<string, InstalledApplet>();
  private selected: InstalledApplet | null = null;
  private defaultAid: string | undefined;
  // T=0 / 61xx response still to be fetched with GET RESPONSE.
  private pending: Buffer | null = null;
  private pendingOffset = 0;
  private pendingSw = 0x9000;
  private chain: Chain | null = null;
  private readonly rng: SeededRandom | null;
  private readonly eventLog: CardEvent[] = [];
  private readonly onEvent: ((e: CardEvent) => void) | undefined;
  private currentApdu: Uint8Array | null = null;
  private powerLosses = 0;

  constructor(options: SimulatedCardOptions = {}) {
    const protocol = options.protocol ?? 'T=1';
    if (protocol !== 'T=0' && protocol !== 'T=1') throw new CardOsError(`protocol must be 'T=0' or 'T=1', got '${String(protocol)}'`);
    this.protocol = protocol;
    this.extendedLength = protocol === 'T=1' && options.extendedLength !== false;
    if (options.atr) {
      const protocols = atrProtocols(options.atr); // throws AtrFormatError with a precise message
      if (!protocols.includes(protocol === 'T=1' ? 1 : 0)) {
        throw new CardOsError(`the ATR offers T=${protocols.join(', T=')} but the card is configured for ${protocol}`);
      }
      this.atrBytes = Buffer.from(options.atr);
    } else {
      const o: { historicalBytes?: Uint8Array; extendedLength: boolean } = { extendedLength: this.extendedLength };
      if (options.historicalBytes) o.historicalBytes = options.historicalBytes;
      this.atrBytes = defaultAtr(protocol, o);
    }
    const serial = options.serial ? Buffer.from(options.serial) : randomBytes(8);
    if (serial.length < 1 || serial.length > 16) throw new CardOsError(`card serial must be 1..16 bytes, got ${serial.length}`);
    this.serial = serial;
    this.rng = options.randomSeed !== undefined ? new SeededRandom(Buffer.from(options.randomSeed)) : null;
    this.registry = options.registry ?? appletTypes;
    this.onEvent = options.onEvent;
    this.memory.onPowerLoss = () => this.losePower();
    this.powered = options.poweredOff !== true;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Power

  /** The ATR (a copy). */
  get atr(): Buffer {
    return Buffer.from(this.atrBytes);
  }
  get isPowered(): boolean {
    return this.powered;
  }
  /** How many times the power-loss switch has fired on this card. */
  get powerLossCount(): number {
    return this.powerLosses;
  }

  /** Cold reset: power up (rolling back anything uncommitted), clear transient memory, select the default applet. */
  powerOn(): Buffer {
    this.memory.powerUp();
    this.powered = true;
    this.clearVolatile();
    this.selectDefault();
    return this.atr;
  }
  /** Warm reset (powers on if the card is off). Same effect on the card's state as powerOn. */
  reset(): Buffer {
    return this.powerOn();
  }
  /** Power off cleanly: RAM (transient memory, selection) is lost; persistent memory stays. */
  powerOff(): void {
    this.memory.abortIfOpen();
    this.powered = false;
    this.clearVolatile();
  }

  /** Cut power at the k-th persistent write point from now (see docs/card-os.md). Stays armed until it fires. */
  armPowerLoss(k: number): void {
    this.memory.armPowerLoss(k);
  }
  disarmPowerLoss(): void {
    this.memory.disarmPowerLoss();
  }
  /** Persistent write points so far (setter calls on persistent fields + transaction commits). */
  get persistentWrites(): number {
    return this.memory.writeCount;
  }

  private losePower(): void {
    this.powered = false;
    this.powerLosses++;
    this.clearVolatile();
    this.event({ type: 'power-loss', message: 'power-loss switch fired: card is off, uncommitted writes rolled back' });
  }

  private clearVolatile(): void {
    this.selected = null;
    this.pending = null;
    this.chain = null;
    for (const a of this.installed) a.applet[kClear]('reset');
  }

  private selectDefault(): void {
    if (this.defaultAid === undefined) return;
    const target = this.byAid.get(this.defaultAid);
    if (!target) return;
    let ok = false;
    try {
      ok = target.applet.select() === true;
    } catch (e) {
      if (this.memory.powerLost) return;
      this.event({ type: 'select-failed', aid: target.aidHex, message: `default applet select() threw: ${String(e)}`, error: e });
    }
    this.memory.abortIfOpen();
    if (this.memory.powerLost) return;
    if (ok) this.selected = target;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Applets

  /**
   * Install an applet instance or a registered type by name under `aid` (5..16 bytes). onInstall() runs
   * (with persistent writes counted); if it throws or power is lost, nothing is installed and this throws.
   */
  install(aid: Uint8Array | string, applet: Applet | string, params: Uint8Array = EMPTY, options: { defaultSelected?: boolean } = {}): Applet {
    const entry = this.addApplet(aid, applet, params);
    try {
      entry.applet.onInstall();
      if (this.memory.abortIfOpen()) this.event({ type: 'transaction-aborted', aid: entry.aidHex, message: 'onInstall() left a transaction open: aborted' });
    } catch (e) {
      this.memory.abortIfOpen();
      this.removeApplet(entry);
      if (this.memory.powerLost) throw new CardOsError(`power was lost while installing ${entry.aidHex}: the applet is not installed`);
      throw new CardOsError(`onInstall() of applet ${entry.aidHex} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    if (this.memory.powerLost) {
      this.removeApplet(entry);
      throw new CardOsError(`power was lost while installing ${entry.aidHex}: the applet is not installed`);
    }
    if (options.defaultSelected) this.setDefaultApplet(entry.aid);
    return entry.applet;
  }

  /** @internal used by the image loader: install without running onInstall (state comes from the image). */
  restoreApplet(aid: Uint8Array | string, type: string, params: Uint8Array): Applet {
    return this.addApplet(aid, type, params).applet;
  }

  private addApplet(aid: Uint8Array | string, appletOrType: Applet | string, params: Uint8Array): InstalledApplet {
    const aidBytes = checkAid(aid);
    const aidHex = toHex(aidBytes);
    if (this.byAid.has(aidHex)) throw new CardOsError(`an applet is already installed under AID ${aidHex}`);
    const applet = typeof appletOrType === 'string' ? this.registry.create(appletOrType, params) : appletOrType;
    if (!(applet instanceof Applet)) throw new CardOsError(`install(${aidHex}): not an Applet`);
    if (applet.installed) throw new CardOsError(`install(${aidHex}): this applet instance is already installed (make a new instance per AID)`);
    const entry: InstalledApplet = { aid: aidBytes, aidHex, applet, typeName: applet.typeName, params: Buffer.from(params) };
    applet.store.attach(this.memory);
    applet[kBind](this.servicesFor(aidBytes));
    this.installed.push(entry);
    this.byAid.set(aidHex, entry);
    return entry;
  }

  private removeApplet(entry: InstalledApplet): void {
    const i = this.installed.indexOf(entry);
    if (i >= 0) this.installed.splice(i, 1);
    this.byAid.delete(entry.aidHex);
    if (this.selected === entry) this.selected = null;
    if (this.defaultAid === entry.aidHex) this.defaultAid = undefined;
    entry.applet[kBind](null);
    entry.applet.store.detach();
  }

  /** Remove an applet and its persistent state. */
  uninstall(aid: Uint8Array | string): void {
    const entry = this.byAid.get(toHex(checkAid(aid)));
    if (!entry) throw new CardOsError(`no applet is installed under AID ${toHex(checkAid(aid))}`);
    this.removeApplet(entry);
  }

  /** The applet selected implicitly at power-on/reset (undefined: none). */
  setDefaultApplet(aid: Uint8Array | string | undefined): void {
    if (aid === undefined) {
      this.defaultAid = undefined;
      return;
    }
    const hex = toHex(checkAid(aid));
    if (!this.byAid.has(hex)) throw new CardOsError(`no applet is installed under AID ${hex}`);
    this.defaultAid = hex;
  }
  get defaultApplet(): Buffer | undefined {
    return this.defaultAid === undefined ? undefined : Buffer.from(this.defaultAid, 'hex');
  }

  /** Installed applets in install order (the order partial SELECT walks). */
  get applets(): readonly InstalledApplet[] {
    return this.installed;
  }
  getApplet<A extends Applet = Applet>(aid: Uint8Array | string): A | undefined {
    return this.byAid.get(toHex(checkAid(aid)))?.applet as A | undefined;
  }
  /** The AID of the currently selected applet. */
  get selectedAid(): Buffer | undefined {
    return this.selected ? Buffer.from(this.selected.aid) : undefined;
  }

  private servicesFor(aid: Buffer): CardServices {
    return new AppletServices(this.memory, this.serial, this.protocol, Buffer.from(aid), (t) => this.randomFill(t));
  }

  private randomFill(t: Uint8Array): void {
    if (this.rng) this.rng.fill(t);
    else randomFillSync(t);
  }

  // ---------------------------------------------------------------------------------------------------------
  // Events

  /** Recent card events (the last 256), oldest first. */
  get events(): readonly CardEvent[] {
    return this.eventLog;
  }
  /** The error of the most recent 'applet-exception' event. */
  get lastException(): unknown {
    for (let i = this.eventLog.length - 1; i >= 0; i--) if (this.eventLog[i]!.type === 'applet-exception') return this.eventLog[i]!.error;
    return undefined;
  }
  clearEvents(): void {
    this.eventLog.length = 0;
  }
  private event(e: CardEvent): void {
    const full: CardEvent = this.currentApdu && e.apdu === undefined ? { ...e, apdu: toHex(this.currentApdu) } : e;
    if (this.eventLog.length >= MAX_EVENTS) this.eventLog.shift();
    this.eventLog.push(full);
    try {
      this.onEvent?.(full);
    } catch {
      /* a listener's problem is not the card's */
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Host-side helpers for tests

  /** transmit() with hex in and out: transmitHex('80 01 00 00 02 AABB 00') -> 'AABB9000'. */
  transmitHex(hex: string): string {
    return toHex(this.transmit(fromHex(hex, 'APDU')));
  }

  /**
   * One command with the ISO exchange rules applied synchronously (61xx -> GET RESPONSE, 6Cxx -> re-issue),
   * as a host channel would. Returns { data, sw }; sw is 0 when the card gave no answer (power lost / off).
   */
  exchange(apdu: Uint8Array | string): ResponseApdu {
    let cmd = typeof apdu === 'string' ? fromHex(apdu, 'APDU') : Buffer.from(apdu);
    let r = this.transmit(cmd);
    if (r.length < 2) return { data: EMPTY, sw: 0 };
    if (r[r.length - 2] === 0x6c && cmd.length >= 5) {
      cmd = Buffer.from(cmd);
      cmd[cmd.length - 1] = r[r.length - 1]!; // short Le is the last byte
      r = this.transmit(cmd);
      if (r.length < 2) return { data: EMPTY, sw: 0 };
    }
    const chunks: Buffer[] = [];
    for (let round = 0; round < 300; round++) {
      chunks.push(r.subarray(0, r.length - 2));
      if (r[r.length - 2] !== 0x61) break;
      r = this.transmit(Buffer.from([cmd[0]! & ~CHAINING_BIT & 0xff, 0xc0, 0, 0, r[r.length - 1]!]));
      if (r.length < 2) return { data: EMPTY, sw: 0 };
    }
    return { data: Buffer.concat(chunks), sw: r.readUInt16BE(r.length - 2) };
  }

  /** SELECT by AID (00 A4 04 00 Lc AID), with GET RESPONSE under T=0. */
  select(aid: Uint8Array | string): ResponseApdu {
    const a = typeof aid === 'string' ? fromHex(aid, 'AID') : Buffer.from(aid);
    return this.exchange(Buffer.concat([Buffer.from([0x00, 0xa4, 0x04, 0x00, a.length]), a]));
  }

  // ---------------------------------------------------------------------------------------------------------
  // The APDU path

  /**
   * One raw APDU in, response bytes (data + SW1 SW2) out. Never throws. Returns an empty buffer when the card
   * is unpowered, or when the power-loss switch fires during the command (the card is then off).
   */
  transmit(apdu: Uint8Array): Buffer {
    if (!this.powered) return EMPTY;
    let out: Buffer;
    this.currentApdu = apdu;
    try {
      out = this.dispatch(apdu);
    } catch (e) {
      if (!this.memory.powerLost) this.event({ type: 'os-error', message: `card OS error: ${String(e)}`, error: e });
      out = swBuffer(SW.UNKNOWN);
    }
    this.currentApdu = null;
    if (this.memory.powerLost) {
      this.powered = false;
      return EMPTY;
    }
    return out;
  }

  private dispatch(b: Uint8Array): Buffer {
    const n = b.length;
    if (n < 4) {
      this.pending = null;
      return swBuffer(SW.WRONG_LENGTH);
    }
    const cla = b[0]!;
    const ins = b[1]!;
    const p1 = b[2]!;
    const p2 = b[3]!;
    // Length fields (ISO 7816-4 5.1): cases 1-4, short and extended.
    let lc = 0;
    let dataOff = 0;
    let le: number | undefined;
    let extended = false;
    const rest = n - 4;
    if (rest === 0) {
      // case 1
    } else if (rest === 1) {
      le = b[4] === 0 ? 256 : b[4]!;
    } else if (b[4] !== 0) {
      lc = b[4]!;
      dataOff = 5;
      if (rest === 2 + lc) le = b[5 + lc] === 0 ? 256 : b[5 + lc]!;
      else if (rest !== 1 + lc) return this.fail(SW.WRONG_LENGTH);
    } else {
      extended = true;
      if (rest === 3) {
        const v = (b[5]! << 8) | b[6]!;
        le = v === 0 ? 65536 : v;
      } else if (rest < 3) {
        return this.fail(SW.WRONG_LENGTH);
      } else {
        lc = (b[5]! << 8) | b[6]!;
        dataOff = 7;
        if (lc === 0) return this.fail(SW.WRONG_LENGTH);
        if (rest === 5 + lc) {
          const v = (b[7 + lc]! << 8) | b[8 + lc]!;
          le = v === 0 ? 65536 : v;
        } else if (rest !== 3 + lc) return this.fail(SW.WRONG_LENGTH);
      }
      if (!this.extendedLength) return this.fail(SW.WRONG_LENGTH);
    }
    // Class byte (ISO 7816-4 5.4.1; proprietary classes 8x-Bx / Cx-Fx follow the same channel coding, as Java Card does).
    if (cla === 0xff) return this.fail(SW.CLA_NOT_SUPPORTED);
    let channel: number;
    if ((cla & 0x40) === 0) {
      if ((cla & 0xe0) === 0x20) return this.fail(SW.CLA_NOT_SUPPORTED); // 20..3F: RFU
      channel = cla & 0x03;
    } else {
      channel = 4 + (cla & 0x0f);
    }
    if (channel !== 0) return this.fail(SW.LOGICAL_CHANNEL_NOT_SUPPORTED);
    const hi = ins & 0xf0;
    if (hi === 0x60 || hi === 0x90) return this.fail(SW.INS_NOT_SUPPORTED); // 6X, 9X: invalid INS (ISO 7816-3)
    const interindustry = (cla & 0x80) === 0;
    if (ins === 0xc0) return this.getResponse(p1, p2, lc, le);
    this.pending = null;
    const chained = (cla & CHAINING_BIT) !== 0;
    if (interindustry && ins === 0xa4 && p1 === 0x04) {
      this.chain = null;
      if (chained) return swBuffer(SW.COMMAND_CHAINING_NOT_SUPPORTED);
      return this.selectByName(b, dataOff, lc, p2, le, extended);
    }
    if (interindustry && ins === 0x70) {
      this.chain = null;
      return swBuffer(SW.LOGICAL_CHANNEL_NOT_SUPPORTED); // MANAGE CHANNEL: basic channel only
    }
    const target = this.selected;
    if (target === null) {
      this.chain = null;
      return swBuffer(interindustry && ins === 0xa4 ? SW.INCORRECT_P1P2 : SW.CONDITIONS_NOT_SATISFIED);
    }
    const baseCla = cla & ~CHAINING_BIT & 0xff;
    let data = copyOf(b, dataOff, lc);
    let fromChain = false;
    const ch = this.chain;
    if (chained) {
      if (ch === null) {
        if (!this.accepts(target, ins)) return swBuffer(SW.COMMAND_CHAINING_NOT_SUPPORTED);
        this.chain = { cla: baseCla, ins, p1, p2, parts: [data], total: data.length };
        return swBuffer(SW.NO_ERROR);
      }
      if (ch.cla !== baseCla || ch.ins !== ins || ch.p1 !== p1 || ch.p2 !== p2) {
        this.chain = null;
        return swBuffer(SW.LAST_COMMAND_EXPECTED);
      }
      ch.total += data.length;
      if (ch.total > MAX_CHAIN) {
        this.chain = null;
        return swBuffer(SW.WRONG_LENGTH);
      }
      ch.parts.push(data);
      return swBuffer(SW.NO_ERROR);
    }
    if (ch !== null) {
      this.chain = null;
      if (ch.cla !== baseCla || ch.ins !== ins || ch.p1 !== p1 || ch.p2 !== p2) return swBuffer(SW.LAST_COMMAND_EXPECTED);
      if (ch.total + data.length > MAX_CHAIN) return swBuffer(SW.WRONG_LENGTH);
      ch.parts.push(data);
      data = Buffer.concat(ch.parts, ch.total + data.length);
      fromChain = true;
    }
    const ctx = new ApduContext(baseCla, ins, p1, p2, data, le, extended, fromChain, this.protocol);
    let out: Uint8Array | undefined;
    let sw: number;
    try {
      const r = target.applet.process(ctx);
      out = r ?? ctx.out;
      sw = ctx.sw;
      if (!isValidStatusWord(sw)) {
        this.event({ type: 'invalid-status-word', aid: target.aidHex, message: `applet answered status word ${swText(sw)}, which applets may not use` });
        out = undefined;
        sw = SW.UNKNOWN;
      }
    } catch (e) {
      if (this.memory.powerLost) throw e;
      out = undefined;
      if (e instanceof IsoException) {
        sw = e.sw;
        if (!isValidStatusWord(sw)) {
          this.event({ type: 'invalid-status-word', aid: target.aidHex, message: `applet threw IsoException with status word ${swText(sw)}, which applets may not use`, error: e });
          sw = SW.UNKNOWN;
        }
      } else {
        this.event({ type: 'applet-exception', aid: target.aidHex, message: `${ctx.describe()}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`, error: e });
        sw = SW.UNKNOWN;
      }
    }
    if (this.memory.abortIfOpen()) this.event({ type: 'transaction-aborted', aid: target.aidHex, message: `${ctx.describe()}: transaction left open at the end of the command was aborted` });
    if (out !== undefined && !(out instanceof Uint8Array)) {
      this.event({ type: 'applet-exception', aid: target.aidHex, message: `${ctx.describe()}: process() returned ${typeof out}, not bytes` });
      return swBuffer(SW.UNKNOWN);
    }
    return this.finish(out, sw, lc === 0 && le !== undefined, le, target);
  }

  private fail(sw: number): Buffer {
    this.pending = null;
    this.chain = null;
    return swBuffer(sw);
  }

  private accepts(target: InstalledApplet, ins: number): boolean {
    try {
      return target.applet.acceptsChaining(ins) === true;
    } catch (e) {
      this.event({ type: 'hook-exception', aid: target.aidHex, message: `acceptsChaining() threw: ${String(e)}`, error: e });
      return false;
    }
  }

  /**
   * Shape the response for the protocol. T=1: data directly when it fits Le (Le absent counts as 256), else
   * the first Le bytes + 61xx. T=0: a case 2 command gets exactly Le bytes or 6C(Na); any other case with
   * response data gets 61xx and the data through GET RESPONSE.
   */
  private finish(out: Uint8Array | undefined, sw: number, case2: boolean, le: number | undefined, target: InstalledApplet | null): Buffer {
    const na = out === undefined ? 0 : out.length;
    if (na === 0) return swBuffer(sw);
    if (na > MAX_RESPONSE) {
      this.event({ type: 'response-too-long', aid: target?.aidHex, message: `applet answered ${na} bytes; the most is ${MAX_RESPONSE}` });
      return swBuffer(SW.UNKNOWN);
    }
    const data = out!;
    if (this.protocol === 'T=1') {
      const ne = le ?? 256;
      if (na <= ne) return respond(data, 0, na, sw);
      return this.partial(data, ne, sw);
    }
    if (case2) {
      if (na === le) return respond(data, 0, na, sw);
      if (na <= 256) return swBuffer(SW.CORRECT_LENGTH_00 | (na & 0xff));
      return this.partial(data, le!, sw);
    }
    this.pending = Buffer.from(data);
    this.pendingOffset = 0;
    this.pendingSw = sw;
    return swBuffer(SW.BYTES_REMAINING_00 | (na >= 256 ? 0 : na));
  }

  /** Send `count` bytes now and keep the rest for GET RESPONSE (61xx). */
  private partial(data: Uint8Array, count: number, sw: number): Buffer {
    this.pending = Buffer.from(data);
    this.pendingOffset = count;
    this.pendingSw = sw;
    const left = data.length - count;
    return respond(data, 0, count, SW.BYTES_REMAINING_00 | (left >= 256 ? 0 : left));
  }

  private getResponse(p1: number, p2: number, lc: number, le: number | undefined): Buffer {
    const pending = this.pending;
    if (pending === null) return this.fail(SW.CONDITIONS_NOT_SATISFIED);
    if (p1 !== 0 || p2 !== 0) return swBuffer(SW.INCORRECT_P1P2);
    if (lc !== 0 || le === undefined) return swBuffer(SW.WRONG_LENGTH);
    const left = pending.length - this.pendingOffset;
    if (le >= left) {
      if (le > left && this.protocol === 'T=0') return swBuffer(SW.CORRECT_LENGTH_00 | (left & 0xff)); // left <= 255 here
      this.pending = null;
      return respond(pending, this.pendingOffset, left, this.pendingSw);
    }
    const off = this.pendingOffset;
    this.pendingOffset += le;
    const still = left - le;
    return respond(pending, off, le, SW.BYTES_REMAINING_00 | (still >= 256 ? 0 : still));
  }

  /** SELECT by DF name (P1 = 04): exact or partial AID, first (P2 b2b1 = 00) or next (10) occurrence. */
  private selectByName(b: Uint8Array, dataOff: number, lc: number, p2: number, le: number | undefined, extended: boolean): Buffer {
    const occurrence = p2 & 0x03;
    const control = p2 & 0x0c;
    if ((p2 & 0xf0) !== 0 || (occurrence !== 0 && occurrence !== 2) || control === 0x08) return swBuffer(SW.INCORRECT_P1P2);
    if (lc > 16) return swBuffer(SW.WRONG_LENGTH);
    let target: InstalledApplet | undefined;
    if (lc === 0) {
      target = this.defaultAid !== undefined ? this.byAid.get(this.defaultAid) : undefined;
    } else if (occurrence === 0) {
      // The applet with exactly this AID, else the first (in install order) whose AID starts with it.
      for (const a of this.installed) {
        if (!startsWith(a.aid, b, dataOff, lc)) continue;
        if (a.aid.length === lc) {
          target = a;
          break;
        }
        target ??= a;
      }
    } else {
      const matches = this.installed.filter((a) => startsWith(a.aid, b, dataOff, lc));
      const i = this.selected ? matches.indexOf(this.selected) : -1;
      target = matches[i + 1];
    }
    if (!target) return swBuffer(SW.FILE_NOT_FOUND);
    // Deselect the current applet (even when it is the target: Java Card reselects).
    const current = this.selected;
    if (current !== null) {
      this.selected = null;
      try {
        current.applet.deselect();
      } catch (e) {
        if (this.memory.powerLost) throw e;
        this.event({ type: 'hook-exception', aid: current.aidHex, message: `deselect() threw: ${String(e)}`, error: e });
      }
      if (this.memory.abortIfOpen()) this.event({ type: 'transaction-aborted', aid: current.aidHex, message: 'deselect() left a transaction open: aborted' });
      current.applet[kClear]('deselect');
    }
    let ok = false;
    try {
      ok = target.applet.select() === true;
      if (!ok) this.event({ type: 'select-failed', aid: target.aidHex, message: 'select() returned false' });
    } catch (e) {
      if (this.memory.powerLost) throw e;
      this.event({ type: 'select-failed', aid: target.aidHex, message: `select() threw: ${String(e)}`, error: e });
    }
    if (this.memory.abortIfOpen()) this.event({ type: 'transaction-aborted', aid: target.aidHex, message: 'select() left a transaction open: aborted' });
    if (!ok) {
      target.applet[kClear]('deselect');
      return swBuffer(SW.APPLET_SELECT_FAILED);
    }
    this.selected = target;
    if (control === 0x0c) return swBuffer(SW.NO_ERROR);
    let fci: Uint8Array | undefined;
    try {
      fci = target.applet.fci();
    } catch (e) {
      if (this.memory.powerLost) throw e;
      this.event({ type: 'hook-exception', aid: target.aidHex, message: `fci() threw: ${String(e)}`, error: e });
    }
    void extended;
    return this.finish(fci, SW.NO_ERROR, false, le, target);
  }
}

function swText(sw: unknown): string {
  return typeof sw === 'number' && Number.isInteger(sw) && sw >= 0 ? sw.toString(16).toUpperCase().padStart(4, '0') : String(sw);
}

/** Does `aid` start with the `length` bytes of `b` at `offset`? */
function startsWith(aid: Buffer, b: Uint8Array, offset: number, length: number): boolean {
  if (length > aid.length) return false;
  for (let i = 0; i < length; i++) if (aid[i] !== b[offset + i]) return false;
  return true;
}

/** A copy of `length` bytes of `b` from `offset` (a loop for command-sized data: cheaper than a view plus a copy). */
function copyOf(b: Uint8Array, offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  if (length > 64) out.set(b.subarray(offset, offset + length), 0);
  else for (let i = 0; i < length; i++) out[i] = b[offset + i]!;
  return out;
}

/** The protocols an ATR offers (parseAtr), remembered for the last few ATRs: cards rebuilt from images share a handful. */
const atrSeen = new LruCache<string, readonly number[]>(16);
function atrProtocols(atr: Uint8Array): readonly number[] {
  const hex = toHex(atr);
  let protocols = atrSeen.get(hex);
  if (!protocols) atrSeen.set(hex, (protocols = parseAtr(atr).protocols));
  return protocols;
}

/**
 * What an installed applet may use of its card (CardServices): its AID, the card's serial, transactions on the
 * card's persistent memory, random bytes. A class with its methods on the prototype: a card rebuilt from its
 * image for every OPAL session makes one of these per applet, without a closure per method.
 */
class AppletServices implements CardServices {
  constructor(
    private readonly mem: CardMemory,
    private readonly serial: Buffer,
    readonly protocol: CardProtocolName,
    private readonly ownAid: Buffer,
    private readonly fill: (t: Uint8Array) => void,
  ) {}

  get aid(): Buffer {
    return Buffer.from(this.ownAid);
  }
  get cardSerial(): Buffer {
    return Buffer.from(this.serial);
  }
  beginTransaction(): void {
    this.mem.beginTransaction();
  }
  commitTransaction(): void {
    this.mem.commitTransaction();
  }
  abortTransaction(): void {
    this.mem.abortTransaction();
  }
  get inTransaction(): boolean {
    return this.mem.inTransaction;
  }
  atomically<T>(fn: () => T): T {
    return this.mem.atomically(fn);
  }
  random(n: number): Buffer {
    const b = Buffer.alloc(n);
    this.fill(b);
    return b;
  }
  randomFill(target: Uint8Array): void {
    this.fill(target);
  }
  get persistentWrites(): number {
    return this.mem.writeCount;
  }
}
