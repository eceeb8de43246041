// The applet-facing API (in the spirit of javacard.framework.Applet / APDU / JCSystem): an abstract Applet
// with process/select/deselect hooks, the per-command ApduContext, card services (transactions, random,
// identity) and transient memory cleared on reset or deselect.

import { toHex } from '../../src/apdu/hex.ts';
import { IsoException, SW } from './iso.ts';
import { PersistentStore } from './store.ts';

export type CardProtocolName = 'T=0' | 'T=1';
/** When a transient object is cleared: CLEAR_ON_RESET ('reset') or CLEAR_ON_DESELECT ('deselect'). */
export type ClearEvent = 'reset' | 'deselect';

/** What the card OS offers an installed applet (javacard.framework.JCSystem and friends). */
export interface CardServices {
  /** The applet's own AID. */
  readonly aid: Buffer;
  /** The card's unique serial number (identity), from the card configuration. */
  readonly cardSerial: Buffer;
  readonly protocol: CardProtocolName;
  /** Start a transaction; nesting throws TransactionException(IN_PROGRESS). */
  beginTransaction(): void;
  /** Commit: every write since begin becomes permanent at once (the commit is itself a write point). */
  commitTransaction(): void;
  /** Undo every write since begin. */
  abortTransaction(): void;
  readonly inTransaction: boolean;
  /** begin; fn(); commit — or abort and rethrow when fn throws. */
  atomically<T>(fn: () => T): T;
  /** n random bytes (seeded and reproducible when the card was made with `randomSeed`). */
  random(n: number): Buffer;
  randomFill(target: Uint8Array): void;
  /** Persistent write points on this card so far (for applets that want to assert their own cost). */
  readonly persistentWrites: number;
}

/** A transient number (javacard: a one-element transient array). */
export interface TransientNumber {
  value: number;
}

/** @internal Symbols the card OS uses to drive an applet; not part of the applet author's API. */
export const kBind = Symbol('purselab.applet.bind');
export const kClear = Symbol('purselab.applet.clearTransient');
export const kType = Symbol('purselab.applet.type');

/**
 * Base class of every applet. Declare persistent fields with `this.store` as class fields, transient ones
 * with `this.transientBytes` / `this.transientNumber`, implement `process`:
 *
 *   class Echo extends Applet {
 *     process(apdu: ApduContext) { apdu.requireCla(0x80); return apdu.data; }
 *   }
 *
 * process() answers by returning the response data (or calling apdu.send), or by throwing IsoException.
 * The OS answers 9000 when it returns normally, the exception's SW when it throws one, and 6F00 (logged in
 * card.events) for any other exception. A transaction still open when process() ends is aborted.
 */
export abstract class Applet {
  /** Name under which the applet type is registered (see registry.ts); subclasses may set it. */
  static typeName: string | undefined;

  /** The applet's persistent fields. */
  readonly store = new PersistentStore();

  private services: CardServices | null = null;
  private readonly transientBufs: { buf: Buffer; on: ClearEvent }[] = [];
  private readonly transientNums: { num: TransientNumber; on: ClearEvent }[] = [];
  [kType]: string | undefined;

  /** Card services; available from install on (not in the constructor). */
  get system(): CardServices {
    if (this.services === null) throw new Error(`${this.constructor.name}: card services are available only once the applet is installed`);
    return this.services;
  }
  get installed(): boolean {
    return this.services !== null;
  }
  /** The registered type name used in card images. */
  get typeName(): string | undefined {
    return this[kType] ?? (this.constructor as typeof Applet).typeName;
  }

  /** Handle one command (never SELECT by AID or GET RESPONSE: the OS handles those). */
  abstract process(apdu: ApduContext): Uint8Array | void;

  /** Called when the applet is being selected; return false to refuse (the OS answers 6999). */
  select(): boolean {
    return true;
  }
  /** Called when another SELECT takes the applet out of selection (not on reset or power loss). */
  deselect(): void {}
  /** Whether the applet takes command chaining (CLA bit 0x10) for this instruction; else the OS answers 6884. */
  acceptsChaining(_ins: number): boolean {
    return false;
  }
  /** Response data to SELECT (P2 = 00); default a minimal FCI: 6F L 84 L AID. Return undefined for none. */
  fci(): Uint8Array | undefined {
    const aid = this.system.aid;
    return Buffer.concat([Buffer.from([0x6f, aid.length + 2, 0x84, aid.length]), aid]);
  }
  /** Called once when the applet is installed fresh (not when it is restored from a card image). */
  onInstall(): void {}

  /** A transient byte array, zeroed on reset (and power loss) or on deselect. */
  protected transientBytes(length: number, clearOn: ClearEvent = 'deselect'): Buffer {
    if (!Number.isInteger(length) || length < 0 || length > 65536) throw new RangeError(`transient array length must be 0..65536, got ${length}`);
    const buf = Buffer.alloc(length);
    this.transientBufs.push({ buf, on: clearOn });
    return buf;
  }
  /** A transient number, set to 0 on reset (and power loss) or on deselect. */
  protected transientNumber(clearOn: ClearEvent = 'deselect'): TransientNumber {
    const num = { value: 0 };
    this.transientNums.push({ num, on: clearOn });
    return num;
  }

  /** @internal */
  [kBind](services: CardServices | null): void {
    this.services = services;
  }
  /** @internal Reset clears both kinds; deselect clears CLEAR_ON_DESELECT only. */
  [kClear](event: ClearEvent): void {
    for (const t of this.transientBufs) if (event === 'reset' || t.on === 'deselect') t.buf.fill(0);
    for (const t of this.transientNums) if (event === 'reset' || t.on === 'deselect') t.num.value = 0;
  }
}

/** One command as the applet sees it (after the OS reassembled any command chain). */
export class ApduContext {
  /** @internal response data set with send() */
  out: Uint8Array | undefined = undefined;
  /** @internal status word set with send()/status() */
  sw = 0x9000;

  constructor(
    /** CLA with the chaining bit cleared. */
    readonly cla: number,
    readonly ins: number,
    readonly p1: number,
    readonly p2: number,
    /** The command data (the whole chain for a chained command). */
    readonly data: Buffer,
    /** Le (Ne): 1..256 short, 1..65536 extended; undefined when the command has no Le (cases 1 and 3). */
    readonly le: number | undefined,
    /** True when the command came in extended-length form. */
    readonly extended: boolean,
    /** True when the data was reassembled from a command chain. */
    readonly chained: boolean,
    readonly protocol: CardProtocolName,
  ) {}

  get lc(): number {
    return this.data.length;
  }
  get p1p2(): number {
    return (this.p1 << 8) | this.p2;
  }
  /** The most response bytes the host asked for: Le, or 256 when the command had no Le. */
  get ne(): number {
    return this.le ?? 256;
  }

  /** Answer with data and a status word (default 9000). Returning data from process() does the same. */
  send(data: Uint8Array, sw = 0x9000): void {
    this.out = data;
    this.sw = sw;
  }
  /** Answer with a status word and no data (e.g. a warning 63Cx). */
  status(sw: number): void {
    this.out = undefined;
    this.sw = sw;
  }

  /** Throw IsoException(sw) unless `condition` holds. */
  check(condition: boolean, sw: number): asserts condition {
    if (!condition) throw new IsoException(sw);
  }
  /** 6E00 unless CLA is one of `classes`. */
  requireCla(...classes: number[]): void {
    if (!classes.includes(this.cla)) throw new IsoException(SW.CLA_NOT_SUPPORTED);
  }
  /** 6A86 unless P1 and P2 are as given (undefined = any). */
  requireP1P2(p1: number | undefined, p2: number | undefined): void {
    if ((p1 !== undefined && this.p1 !== p1) || (p2 !== undefined && this.p2 !== p2)) throw new IsoException(SW.INCORRECT_P1P2);
  }
  /** 6700 unless Lc is exactly `min` (or within min..max). */
  requireLc(min: number, max = min): void {
    if (this.data.length < min || this.data.length > max) throw new IsoException(SW.WRONG_LENGTH);
  }
  /** Hex of the command header, for log messages. */
  describe(): string {
    return `${toHex(Buffer.from([this.cla, this.ins, this.p1, this.p2]))} Lc=${this.data.length} Le=${this.le ?? '-'}`;
  }
}
