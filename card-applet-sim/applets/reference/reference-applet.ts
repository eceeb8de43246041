// The reference applet: proves the card platform end to end (ECHO, a transactional COUNTER, long responses,
// a chained STORE, transient session counters and an error probe). Every command is specified byte by byte,
// with examples the tests replay, in docs/reference-applet.md.

import { Applet, type ApduContext } from '../../os/applet.ts';
import { IsoException, SW } from '../../os/iso.ts';

/** F0 "purselab" 01: a proprietary (category F) AID. */
export const REFERENCE_AID = Buffer.from('F070757273656C616201', 'hex');

export const REF_CLA = 0x80;
export const RefIns = {
  ECHO: 0x01,
  INCREMENT: 0x02,
  READ_COUNTER: 0x04,
  SESSION_INFO: 0x06,
  STORE: 0x10,
  READ_STORE: 0x12,
  GET_DATA: 0xca,
  ERROR_PROBE: 0xe0,
} as const;

/** Largest STORE value and GET DATA length. */
export const REF_MAX_STORE = 4096;
export const REF_MAX_GET_DATA = 4096;
export const REF_VERSION = 1;

const U32 = 0x1_0000_0000;

export class ReferenceApplet extends Applet {
  static override typeName = 'reference';

  /** Counter value (0..FFFFFFFF). */
  readonly counter = this.store.number('counter', 0);
  /** Number of INCREMENT commands applied. */
  readonly increments = this.store.number('increments', 0);
  /** N of the last INCREMENT. */
  readonly lastAmount = this.store.number('last', 0);
  /** Value written by STORE. */
  readonly blob = this.store.bytes('store', 0, { maxLength: REF_MAX_STORE });

  private readonly sinceSelect = this.transientNumber('deselect');
  private readonly sinceReset = this.transientNumber('reset');

  override fci(): Uint8Array {
    const aid = this.system.aid;
    // 6F L [84 L AID] [A5 03 [80 01 version]]
    return Buffer.concat([Buffer.from([0x6f, aid.length + 7, 0x84, aid.length]), aid, Buffer.from([0xa5, 0x03, 0x80, 0x01, REF_VERSION])]);
  }

  override acceptsChaining(ins: number): boolean {
    return ins === RefIns.STORE;
  }

  process(apdu: ApduContext): Uint8Array | void {
    if (this.sinceSelect.value < 0xffff) this.sinceSelect.value++;
    if (this.sinceReset.value < 0xffff) this.sinceReset.value++;
    apdu.requireCla(REF_CLA);
    switch (apdu.ins) {
      case RefIns.ECHO:
        apdu.requireP1P2(0, 0);
        return apdu.data;
      case RefIns.INCREMENT:
        return this.increment(apdu);
      case RefIns.READ_COUNTER: {
        apdu.requireP1P2(0, 0);
        apdu.requireLc(0);
        const out = Buffer.alloc(12);
        out.writeUInt32BE(this.counter.get(), 0);
        out.writeUInt32BE(this.increments.get() % U32, 4);
        out.writeUInt32BE(this.lastAmount.get(), 8);
        return out;
      }
      case RefIns.SESSION_INFO: {
        apdu.requireP1P2(0, 0);
        apdu.requireLc(0);
        const out = Buffer.alloc(4);
        out.writeUInt16BE(this.sinceSelect.value, 0);
        out.writeUInt16BE(this.sinceReset.value, 2);
        return out;
      }
      case RefIns.STORE: {
        apdu.requireP1P2(0, 0);
        apdu.check(apdu.lc <= REF_MAX_STORE, SW.FILE_FULL);
        this.blob.set(apdu.data);
        const out = Buffer.alloc(2);
        out.writeUInt16BE(apdu.lc, 0);
        return out;
      }
      case RefIns.READ_STORE: {
        apdu.requireLc(0);
        const offset = apdu.p1p2;
        apdu.check(offset <= this.blob.length, SW.WRONG_P1P2);
        return this.blob.view().subarray(offset);
      }
      case RefIns.GET_DATA: {
        apdu.requireLc(0);
        const n = apdu.p1p2;
        apdu.check(n >= 1 && n <= REF_MAX_GET_DATA, SW.INCORRECT_P1P2);
        const out = Buffer.allocUnsafe(n);
        for (let i = 0; i < n; i++) out[i] = i & 0xff;
        return out;
      }
      case RefIns.ERROR_PROBE:
        return this.errorProbe(apdu);
      default:
        throw new IsoException(SW.INS_NOT_SUPPORTED);
    }
  }

  /** INCREMENT: counter += N, increments += 1, last = N, all in one transaction (3 writes + commit). */
  private increment(apdu: ApduContext): Uint8Array {
    apdu.requireP1P2(0, 0);
    apdu.requireLc(4);
    const n = apdu.data.readUInt32BE(0);
    apdu.check(n !== 0, SW.WRONG_DATA);
    const next = this.counter.get() + n;
    apdu.check(next < U32, SW.FILE_FULL);
    this.system.atomically(() => {
      this.counter.set(next);
      this.increments.add(1);
      this.lastAmount.set(n);
    });
    const out = Buffer.alloc(4);
    out.writeUInt32BE(next, 0);
    return out;
  }

  private errorProbe(apdu: ApduContext): void {
    apdu.requireLc(0);
    const { p1, p2 } = apdu;
    if ((p1 >= 0x62 && p1 <= 0x6f && p1 !== 0x6c) || (p1 >= 0x90 && p1 <= 0x9f)) throw new IsoException(apdu.p1p2);
    apdu.check(p1 === 0, SW.INCORRECT_P1P2);
    const sys = this.system;
    switch (p2) {
      case 0x01:
        throw new TypeError('reference applet: error probe 01 (an applet bug)');
      case 0x02: // leave a transaction open: the OS aborts it, the counter does not change
        sys.beginTransaction();
        this.counter.set(this.counter.get() + 1 < U32 ? this.counter.get() + 1 : 0);
        return;
      case 0x03: // write inside a transaction, then fail: the write is rolled back
        sys.beginTransaction();
        this.counter.set(this.counter.get() + 1 < U32 ? this.counter.get() + 1 : 0);
        throw new IsoException(0x6581);
      case 0x04: // nested beginTransaction: TransactionException
        sys.beginTransaction();
        sys.beginTransaction();
        return;
      case 0x05: // an invalid status word
        throw new IsoException(0x1234);
      default:
        throw new IsoException(SW.INCORRECT_P1P2);
    }
  }
}
