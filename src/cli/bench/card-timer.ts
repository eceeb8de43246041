// The timer `bench purchase` keeps around its emulated cards over pcscd, in a SharedArrayBuffer so that the
// cards' thread (the bench's own, or a worker of their own) writes it and the host side reads it without a
// message: the nanoseconds inside the cards' transmit, the APDUs they answered, the floor switch, and a ring of
// the last commands' times with which card, CLA and INS each was (labelled by card-commands.ts when read).

import { commandLabelOf, type CardRole } from './card-commands.ts';

/** How many of the last commands the ring keeps (a purchase sends 6). */
export const RING = 64;

/** One command's time inside its card, labelled. */
export interface TimedCommand {
  readonly label: string;
  readonly us: number;
}

/**
 * Layout: [0] ns inside transmit (both cards), [8] APDUs the cards answered (n counts them from 0), [16] floor
 * mode on (int32); then RING int64 ns and RING int32 codes (who << 16 | CLA << 8 | INS): command n at n % RING.
 */
export class CardTimer {
  static readonly BYTES = 24 + 12 * RING;
  private readonly counters: BigInt64Array;
  private readonly flag: Int32Array;
  private readonly ringNs: BigInt64Array;
  private readonly ringCode: Int32Array;

  constructor(readonly sab: SharedArrayBuffer = new SharedArrayBuffer(CardTimer.BYTES)) {
    if (sab.byteLength < CardTimer.BYTES) throw new Error(`a card timer needs ${CardTimer.BYTES} shared bytes, got ${sab.byteLength}`);
    this.counters = new BigInt64Array(sab, 0, 2);
    this.flag = new Int32Array(sab, 16, 1);
    this.ringNs = new BigInt64Array(sab, 24, RING);
    this.ringCode = new Int32Array(sab, 24 + 8 * RING, RING);
  }

  /** The cards' side: one command answered in `ns`. */
  record(who: CardRole, apdu: Uint8Array, ns: bigint): void {
    Atomics.add(this.counters, 0, ns);
    const slot = Number(Atomics.load(this.counters, 1) % BigInt(RING));
    Atomics.store(this.ringNs, slot, ns);
    Atomics.store(this.ringCode, slot, (who << 16) | ((apdu[0] ?? 0) << 8) | (apdu[1] ?? 0));
    Atomics.add(this.counters, 1, 1n);
  }

  /** Nanoseconds inside the cards' transmit so far. */
  ns(): bigint {
    return Atomics.load(this.counters, 0);
  }

  /** APDUs the cards answered so far. */
  apdus(): number {
    return Number(Atomics.load(this.counters, 1));
  }

  get floor(): boolean {
    return Atomics.load(this.flag, 0) === 1;
  }

  set floor(on: boolean) {
    Atomics.store(this.flag, 0, on ? 1 : 0);
  }

  /** The commands answered from APDU number `from` (a value of apdus()) to now; undefined when the ring no longer has them all. */
  commandsSince(from: number): TimedCommand[] | undefined {
    const to = this.apdus();
    if (to - from > RING || to < from) return undefined;
    const out: TimedCommand[] = [];
    for (let n = from; n < to; n++) {
      const code = Atomics.load(this.ringCode, n % RING);
      const label = commandLabelOf((code >>> 16) as CardRole, (code >>> 8) & 0xff, code & 0xff);
      out.push({ label, us: Number(Atomics.load(this.ringNs, n % RING)) / 1e3 });
    }
    return out;
  }
}
