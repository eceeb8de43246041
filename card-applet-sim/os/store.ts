// An applet's persistent store: named, typed fields (numbers, flags, byte arrays). Every setter is one
// atomic persistent write that takes part in transactions and in the power-loss switch (see memory.ts).

import type { CardMemory, UndoableCell } from './memory.ts';

/** How one field is written in a card image. */
export type StoredValue = { n: number } | { f: boolean } | { b: string };
export type StoredState = Record<string, StoredValue>;

const NAME = /^[A-Za-z0-9_.:\-[\]]{1,64}$/;
/** Default and hard upper bound for a persistent byte array. */
export const MAX_PERSISTENT_BYTES = 65536;

abstract class Cell implements UndoableCell {
  /** Null until the applet is installed on a card: before that, writes are plain assignments. */
  mem: CardMemory | null = null;
  constructor(readonly name: string) {}
  abstract readonly kind: 'number' | 'flag' | 'bytes';
  abstract restore(saved: unknown, offset: number): void;
  abstract exportValue(): StoredValue;
  abstract importValue(v: StoredValue): string | undefined;

  /**
   * One atomic persistent write: `apply` changes the value. Once installed, the write is guarded (power
   * loss) and, in a transaction, first recorded for undo with `saved()` (what `restore(saved, offset)` takes).
   */
  protected persist(offset: number, saved: () => unknown, apply: () => void): void {
    const m = this.mem;
    if (m === null) {
      apply();
      return;
    }
    m.guard();
    if (m.inTransaction) m.record(this, saved(), offset);
    apply();
    m.written();
  }
}

/** A persistent number or flag: `set` replaces the value in one persistent write. */
abstract class ScalarCell<T> extends Cell {
  protected v: T;
  constructor(name: string, initial: T) {
    super(name);
    this.check(initial);
    this.v = initial;
  }
  protected check(_v: T): void {}
  get(): T {
    return this.v;
  }
  get value(): T {
    return this.v;
  }
  /** One persistent write (persist() written out: this is the hottest write path). */
  set(v: T): void {
    this.check(v);
    const m = this.mem;
    if (m === null) {
      this.v = v;
      return;
    }
    m.guard();
    if (m.inTransaction) m.record(this, this.v, 0);
    this.v = v;
    m.written();
  }
  restore(saved: unknown): void {
    this.v = saved as T;
  }
}

/** A persistent integer (any safe integer; applets enforce their own ranges). */
export class PersistentNumber extends ScalarCell<number> {
  readonly kind = 'number';
  protected override check(v: number): void {
    checkInt(this.name, v);
  }
  /** set(get() + delta), one persistent write; returns the new value. */
  add(delta: number): number {
    this.set(this.v + delta);
    return this.v;
  }
  exportValue(): StoredValue {
    return { n: this.v };
  }
  importValue(s: StoredValue): string | undefined {
    if (!('n' in s) || !Number.isSafeInteger(s.n)) return 'a whole number';
    this.v = s.n;
    return undefined;
  }
}

/** A persistent boolean. */
export class PersistentFlag extends ScalarCell<boolean> {
  readonly kind = 'flag';
  exportValue(): StoredValue {
    return { f: this.v };
  }
  importValue(s: StoredValue): string | undefined {
    if (!('f' in s) || typeof s.f !== 'boolean') return 'a boolean';
    this.v = s.f;
    return undefined;
  }
}

/**
 * A persistent byte array. `set` replaces the whole value (its length may change, up to maxLength);
 * `write` updates a range in place. Each call is one atomic persistent write (like Util.arrayCopy).
 */
export class PersistentBytes extends Cell {
  readonly kind = 'bytes';
  private buf: Buffer;
  constructor(name: string, initial: Buffer, readonly maxLength: number) {
    super(name);
    this.buf = initial;
  }
  get length(): number {
    return this.buf.length;
  }
  /** A copy of the value. */
  get(): Buffer {
    return Buffer.from(this.buf);
  }
  /**
   * The stored bytes themselves, without a copy: read them, never modify them (a change made through this
   * view would bypass transactions and tearing). A later `set` replaces the buffer, so do not keep it.
   */
  view(): Buffer {
    return this.buf;
  }
  byteAt(index: number): number {
    const b = this.buf[index];
    if (b === undefined) throw new RangeError(`persistent bytes '${this.name}': index ${index} outside 0..${this.buf.length - 1}`);
    return b;
  }
  /** Byte-wise equality (not constant-time: compare MACs and PINs with crypto.timingSafeEqual on view()). */
  equals(other: Uint8Array): boolean {
    return this.buf.equals(other);
  }
  /** Replace the whole value: one persistent write. */
  set(value: Uint8Array): void {
    if (value.length > this.maxLength) {
      throw new RangeError(`persistent bytes '${this.name}': ${value.length} bytes exceed its maximum of ${this.maxLength}`);
    }
    const next = Buffer.from(value);
    this.persist(-1, () => this.buf, () => {
      this.buf = next;
    });
  }
  /** Copy `length` bytes of `src` (from srcOffset) to `offset`: one atomic persistent write. */
  write(offset: number, src: Uint8Array, srcOffset = 0, length = src.length - srcOffset): void {
    if (!Number.isInteger(offset) || !Number.isInteger(srcOffset) || !Number.isInteger(length) || offset < 0 || srcOffset < 0 || length < 0
      || offset + length > this.buf.length || srcOffset + length > src.length) {
      throw new RangeError(`persistent bytes '${this.name}': write of ${length} byte(s) at ${offset} does not fit its ${this.buf.length} bytes`);
    }
    const buf = this.buf;
    const m = this.mem;
    if (m !== null) {
      m.guard();
      if (m.inTransaction) m.record(this, copyRange(buf, offset, length), offset);
    }
    if (length > 64) buf.set(src.subarray(srcOffset, srcOffset + length), offset);
    else for (let i = 0; i < length; i++) buf[offset + i] = src[srcOffset + i]!;
    m?.written();
  }
  /** Fill a range with one byte value: one atomic persistent write. */
  fill(value: number, offset = 0, length = this.buf.length - offset): void {
    this.write(offset, Buffer.alloc(Math.max(0, length), value));
  }
  restore(saved: unknown, offset: number): void {
    if (offset < 0) this.buf = saved as Buffer;
    else (saved as Buffer).copy(this.buf, offset);
  }
  exportValue(): StoredValue {
    return { b: this.buf.toString('hex') };
  }
  importValue(s: StoredValue): string | undefined {
    if (!('b' in s) || typeof s.b !== 'string' || !/^(?:[0-9a-fA-F]{2})*$/.test(s.b)) return 'hex bytes';
    const buf = Buffer.from(s.b, 'hex');
    if (buf.length > this.maxLength) return `at most ${this.maxLength} bytes`;
    this.buf = buf;
    return undefined;
  }
}

/** A copy of `length` bytes of `b` from `offset`. */
function copyRange(b: Buffer, offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  if (length > 64) b.copy(out, 0, offset, offset + length);
  else for (let i = 0; i < length; i++) out[i] = b[offset + i]!;
  return out;
}

function checkInt(name: string, v: number): void {
  if (!Number.isSafeInteger(v)) throw new RangeError(`persistent number '${name}' must be a safe integer, got ${v}`);
}

/**
 * The persistent fields of one applet. Declare them as class fields so they exist from construction:
 *
 *   readonly balance = this.store.number('balance', 0);
 *   readonly key = this.store.bytes('key', 16);
 *
 * Before install the fields are plain memory; from install on, every setter goes through the card's
 * memory manager. A card image stores the fields by name and restores them into a fresh instance.
 */
export class PersistentStore {
  private readonly cells = new Map<string, Cell>();
  /** Fields found in an image that this applet version does not declare: kept so they round-trip. */
  private orphans: StoredState = {};
  private mem: CardMemory | null = null;

  number(name: string, initial = 0): PersistentNumber {
    return this.add(new PersistentNumber(this.checkName(name), initial));
  }
  flag(name: string, initial = false): PersistentFlag {
    return this.add(new PersistentFlag(this.checkName(name), initial));
  }
  /** A byte array: `initial` is a length (zero-filled) or the initial bytes. */
  bytes(name: string, initial: number | Uint8Array, options: { maxLength?: number } = {}): PersistentBytes {
    this.checkName(name);
    const buf = typeof initial === 'number' ? Buffer.alloc(checkLength(name, initial)) : Buffer.from(initial);
    const max = options.maxLength ?? Math.max(buf.length, MAX_PERSISTENT_BYTES);
    if (!Number.isInteger(max) || max < buf.length || max > MAX_PERSISTENT_BYTES) {
      throw new RangeError(`persistent bytes '${name}': maxLength must be ${buf.length}..${MAX_PERSISTENT_BYTES}, got ${max}`);
    }
    return this.add(new PersistentBytes(name, buf, max));
  }

  /** Names of the declared fields, in declaration order. */
  names(): string[] {
    return [...this.cells.keys()];
  }
  get attached(): boolean {
    return this.mem !== null;
  }

  /** Bind to a card's memory (done by the card OS at install). */
  attach(mem: CardMemory): void {
    if (this.mem !== null && this.mem !== mem) throw new Error('this applet instance is already installed on another card');
    this.mem = mem;
    for (const c of this.cells.values()) c.mem = mem;
  }
  detach(): void {
    this.mem = null;
    for (const c of this.cells.values()) c.mem = null;
  }

  exportState(): StoredState {
    const out: StoredState = { ...this.orphans };
    for (const [name, c] of this.cells) out[name] = c.exportValue();
    return out;
  }

  /** Load field values from an image; returns a list of problems (empty when all is well). */
  importState(state: StoredState): string[] {
    const problems: string[] = [];
    const orphans: StoredState = {};
    for (const [name, v] of Object.entries(state)) {
      const c = this.cells.get(name);
      if (v === null || typeof v !== 'object') {
        problems.push(`field '${name}' is not an object`);
        continue;
      }
      if (!c) {
        orphans[name] = v;
        continue;
      }
      const want = c.importValue(v);
      if (want !== undefined) problems.push(`field '${name}' must be ${want}`);
    }
    this.orphans = orphans;
    return problems;
  }

  private checkName(name: string): string {
    if (!NAME.test(name)) throw new RangeError(`persistent field name '${name}' must be 1..64 characters of A-Z a-z 0-9 _ . : - [ ]`);
    if (this.cells.has(name)) throw new RangeError(`persistent field '${name}' is declared twice`);
    return name;
  }
  private add<C extends Cell>(c: C): C {
    this.cells.set(c.name, c);
    c.mem = this.mem;
    return c;
  }
}

function checkLength(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > MAX_PERSISTENT_BYTES) throw new RangeError(`persistent bytes '${name}': length must be 0..${MAX_PERSISTENT_BYTES}, got ${n}`);
  return n;
}
