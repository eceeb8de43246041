// Persistent memory: typed fields, Java Card transactions (commit/abort/nested/auto-abort), transient memory,
// and the power-loss switch (including exhaustive tearing of the reference INCREMENT).

import { describe, expect, it } from 'vitest';
import {
  Applet,
  ApduContext,
  CardMemory,
  CardOsError,
  PersistentStore,
  PowerLostSignal,
  SimulatedCard,
  TransactionException,
  TransactionReason,
  cardFromImage,
  cardToImage,
} from '../../../card-applet-sim/index.ts';
import { AID, ProbeApplet, REF, probeCard, hex, readCounter, selectedReferenceCard } from './helpers.ts';

describe('persistent store', () => {
  it('typed fields with defaults, validation and names', () => {
    const s = new PersistentStore();
    const n = s.number('n', 5);
    const f = s.flag('f', true);
    const b = s.bytes('b', hex('0102'), { maxLength: 4 });
    const z = s.bytes('z', 3);
    expect([n.get(), n.value, f.get(), b.get(), z.get()]).toEqual([5, 5, true, hex('0102'), hex('000000')]);
    expect(() => n.set(1.5)).toThrow(RangeError);
    expect(() => n.set(Number.MAX_SAFE_INTEGER + 1)).toThrow(RangeError);
    expect(() => b.set(hex('0102030405'))).toThrow(/exceed its maximum of 4/);
    expect(() => b.write(1, hex('010203'))).toThrow(/does not fit/);
    expect(() => b.byteAt(2)).toThrow(RangeError);
    expect(() => s.number('n')).toThrow(/declared twice/);
    expect(() => s.number('bad name')).toThrow(RangeError);
    expect(() => s.bytes('big', 70000)).toThrow(RangeError);
    expect(s.names()).toEqual(['n', 'f', 'b', 'z']);
    b.set(hex('0A0B0C'));
    b.write(1, hex('FF'));
    expect(b.view()).toEqual(hex('0AFF0C'));
    expect(b.equals(hex('0AFF0C'))).toBe(true);
    expect(b.byteAt(1)).toBe(0xff);
    z.fill(0x55);
    expect(z.get()).toEqual(hex('555555'));
    expect(n.add(3)).toBe(8);
  });

  it('export/import state; unknown fields are kept; type errors are reported', () => {
    const s = new PersistentStore();
    s.number('n', 1);
    s.bytes('b', 2);
    s.flag('f');
    const state = { n: { n: 7 }, b: { b: 'ABCD' }, f: { f: true }, extra: { n: 3 } };
    expect(s.importState(state)).toEqual([]);
    expect(s.exportState()).toEqual({ n: { n: 7 }, b: { b: 'abcd' }, f: { f: true }, extra: { n: 3 } });
    expect(s.importState({ n: { b: '00' }, f: { n: 1 }, b: { b: 'XYZ' } } as never)).toEqual([
      "field 'n' must be a whole number",
      "field 'f' must be a boolean",
      "field 'b' must be hex bytes",
    ]);
  });

  it('writes before install are plain; after install every setter is one counted write', () => {
    const p = new ProbeApplet();
    p.value.set(3);
    p.blob.write(0, hex('01'));
    const card = new SimulatedCard();
    const w0 = card.persistentWrites;
    card.install(AID, p);
    expect(card.persistentWrites).toBe(w0);
    p.value.set(4);
    p.flag.set(true);
    p.blob.set(hex('0102'));
    p.blob.write(0, hex('FF'));
    p.value.add(1);
    expect(card.persistentWrites - w0).toBe(5);
    expect(p.value.get()).toBe(5);
  });
});

describe('transactions', () => {
  it('commit keeps, abort restores every kind of write in reverse order; reads see new values inside', () => {
    const { card, p } = probeCard();
    const sys = p.system;
    p.blob.set(hex('0001020304050607'));
    sys.beginTransaction();
    expect(sys.inTransaction).toBe(true);
    p.value.set(10);
    p.value.set(11);
    p.flag.set(true);
    p.blob.write(2, hex('AAAA'));
    p.blob.set(hex('01'));
    p.blob.set(hex('FFFFFFFF'));
    p.blob.write(0, hex('EE'));
    expect([p.value.get(), p.flag.get(), p.blob.get()]).toEqual([11, true, hex('EEFFFFFF')]);
    sys.abortTransaction();
    expect([p.value.get(), p.flag.get(), p.blob.get()]).toEqual([0, false, hex('0001020304050607')]);
    sys.beginTransaction();
    p.value.set(12);
    p.blob.write(7, hex('77'));
    sys.commitTransaction();
    expect([p.value.get(), p.blob.get()]).toEqual([12, hex('0001020304050677')]);
    expect(sys.inTransaction).toBe(false);
    void card;
  });

  it('nested begin, commit or abort without begin: TransactionException with JC reason codes', () => {
    const m = new CardMemory();
    m.beginTransaction();
    expect(() => m.beginTransaction()).toThrow(expect.objectContaining({ reason: TransactionReason.IN_PROGRESS }));
    m.abortTransaction();
    expect(() => m.commitTransaction()).toThrow(TransactionException);
    expect(() => m.abortTransaction()).toThrow(expect.objectContaining({ reason: TransactionReason.NOT_IN_PROGRESS }));
  });

  it('atomically commits on return and aborts on throw', () => {
    const { p } = probeCard();
    expect(p.system.atomically(() => (p.value.set(5), 'ok'))).toBe('ok');
    expect(() =>
      p.system.atomically(() => {
        p.value.set(6);
        throw new Error('fail');
      }),
    ).toThrow('fail');
    expect(p.value.get()).toBe(5);
    expect(p.system.inTransaction).toBe(false);
  });

  it('a transaction left open at the end of a command is aborted and logged (JC behaviour)', () => {
    const { card, p } = probeCard((a, self) => {
      self.system.beginTransaction();
      self.value.set(99);
      if (a.p1 === 1) throw new Error('after write');
    });
    expect(card.transmitHex('80 10 00 00')).toBe('9000');
    expect(p.value.get()).toBe(0);
    expect(card.events.at(-1)).toMatchObject({ type: 'transaction-aborted' });
    expect(card.transmitHex('80 10 01 00')).toBe('6F00');
    expect(p.value.get()).toBe(0);
    expect(card.memory.inTransaction).toBe(false);
  });

  it('the reference error probes: open transaction, failed write, nested begin', () => {
    const card = selectedReferenceCard();
    card.transmitHex('80 02 00 00 04 00000007');
    expect(card.transmitHex('80 E0 00 02')).toBe('9000');
    expect(card.transmitHex('80 E0 00 03')).toBe('6581');
    expect(card.transmitHex('80 E0 00 04')).toBe('6F00');
    expect(card.lastException).toBeInstanceOf(TransactionException);
    expect(readCounter(card)).toEqual({ counter: 7, increments: 1, last: 7 });
  });

  it('INCREMENT is 3 writes + commit = 4 write points', () => {
    const card = selectedReferenceCard();
    const w = card.persistentWrites;
    card.transmitHex('80 02 00 00 04 00000001');
    expect(card.persistentWrites - w).toBe(4);
  });
});

describe('transient memory', () => {
  it('CLEAR_ON_DESELECT clears on deselect and reset; CLEAR_ON_RESET only on reset / power', () => {
    const card = new SimulatedCard();
    const a = new ProbeApplet();
    card.install(AID, a);
    card.install(REF, 'reference');
    card.select(AID);
    const fill = () => {
      a.onDeselect.fill(1);
      a.onReset.fill(2);
      a.numDeselect.value = 3;
      a.numReset.value = 4;
    };
    const state = () => [a.onDeselect[0], a.onReset[0], a.numDeselect.value, a.numReset.value];
    fill();
    card.select(REF);
    expect(state()).toEqual([0, 2, 0, 4]);
    fill();
    card.reset();
    expect(state()).toEqual([0, 0, 0, 0]);
    fill();
    card.powerOff();
    expect(state()).toEqual([0, 0, 0, 0]);
    card.powerOn();
    card.select(AID);
    fill();
    card.select(AID); // reselecting the same applet deselects it first
    expect(state()).toEqual([0, 2, 0, 4]);
  });

  it('power loss clears transient memory too', () => {
    const { card, p } = probeCard((_a, self) => {
      self.value.set(1);
    });
    p.onReset.fill(9);
    p.numReset.value = 9;
    card.armPowerLoss(1);
    expect(card.transmit(hex('80100000'))).toHaveLength(0);
    expect([p.onReset[0], p.numReset.value]).toEqual([0, 0]);
  });

  it('transient writes are not persistent writes', () => {
    const { card, p } = probeCard((_a, self) => {
      self.onDeselect.fill(7);
      self.numReset.value++;
    });
    const w = card.persistentWrites;
    card.transmitHex('80100000');
    expect(card.persistentWrites).toBe(w);
    expect(p.numReset.value).toBe(1);
  });
});

describe('power-loss switch', () => {
  it('the k-th write completes, then power is cut: later writes never happen, the card is off', () => {
    const { card, p } = probeCard((_a, self) => {
      self.value.set(1);
      self.flag.set(true);
      self.blob.write(0, hex('AA'));
    });
    card.armPowerLoss(2);
    expect(card.transmit(hex('80100000'))).toHaveLength(0);
    expect(card.isPowered).toBe(false);
    expect(card.powerLossCount).toBe(1);
    expect(card.events.at(-1)?.type).toBe('power-loss');
    expect([p.value.get(), p.flag.get(), p.blob.byteAt(0)]).toEqual([1, true, 0]);
    expect(card.transmit(hex('80100000'))).toHaveLength(0);
    card.powerOn();
    expect(card.isPowered).toBe(true);
    expect(card.selectedAid).toBeUndefined();
  });

  it('inside a transaction: a cut before the commit rolls back, a cut at the commit keeps the new state', () => {
    const body = (_a: ApduContext, self: ProbeApplet) => {
      self.system.atomically(() => {
        self.value.set(self.value.get() + 1);
        self.blob.write(0, Buffer.from([self.value.get()]));
      });
    };
    for (const [k, expected] of [[1, 0], [2, 0], [3, 1]] as const) {
      const { card, p } = probeCard(body);
      card.armPowerLoss(k);
      expect(card.transmit(hex('80100000'))).toHaveLength(0);
      card.powerOn();
      expect([p.value.get(), p.blob.byteAt(0)], `k=${k}`).toEqual([expected, expected]);
    }
    const { card, p } = probeCard(body);
    card.armPowerLoss(4);
    expect(card.transmitHex('80100000')).toBe('9000');
    expect(p.value.get()).toBe(1);
    expect(card.memory.powerLossArmedIn).toBe(1); // still armed: the next write cuts power
    card.disarmPowerLoss();
    expect(card.transmitHex('80100000')).toBe('9000');
  });

  it('stays armed across commands and fires in a later one', () => {
    const { card, p } = probeCard((_a, self) => void self.value.add(1));
    card.armPowerLoss(3);
    expect(card.transmitHex('80100000')).toBe('9000');
    expect(card.transmitHex('80100000')).toBe('9000');
    expect(card.transmit(hex('80100000'))).toHaveLength(0);
    expect(p.value.get()).toBe(3);
  });

  it('an applet that swallows the signal cannot write any more', () => {
    const { card, p } = probeCard((_a, self) => {
      try {
        self.value.set(1);
      } catch (e) {
        expect(e).toBeInstanceOf(PowerLostSignal);
      }
      try {
        self.flag.set(true);
      } catch {
        /* swallowed again */
      }
      return hex('AA');
    });
    card.armPowerLoss(1);
    expect(card.transmit(hex('80100000 00'))).toHaveLength(0);
    expect([p.value.get(), p.flag.get()]).toEqual([1, false]);
  });

  it('power loss in select() is a lost SELECT; during install the applet is not installed', () => {
    class Writes extends Applet {
      readonly n = this.store.number('n');
      override select(): boolean {
        this.n.add(1);
        return true;
      }
      override onInstall(): void {
        this.n.set(100);
      }
      process(): void {}
    }
    const card = new SimulatedCard();
    const w = card.install(AID, new Writes()) as Writes;
    card.armPowerLoss(1);
    expect(card.transmit(hex('00A40400 08 A000000001020304'))).toHaveLength(0);
    card.powerOn();
    expect(w.n.get()).toBe(101);
    card.armPowerLoss(1);
    expect(() => card.install(REF, new Writes())).toThrow(CardOsError);
    expect(card.getApplet(REF)).toBeUndefined();
  });

  it('armPowerLoss takes a whole number >= 1', () => {
    const card = new SimulatedCard();
    for (const k of [0, -1, 1.5, NaN]) expect(() => card.armPowerLoss(k)).toThrow(RangeError);
  });

  it('exhaustive tearing of the reference INCREMENT: always the old or the new state, never a mix', () => {
    const base = selectedReferenceCard();
    base.transmitHex('80 02 00 00 04 00000010');
    const before = readCounter(base);
    const after = { counter: before.counter + 3, increments: before.increments + 1, last: 3 };
    const image = cardToImage(base); // every k starts from the same committed state
    const seen: string[] = [];
    let k = 1;
    for (; ; k++) {
      const card = cardFromImage(image);
      card.select(REF);
      card.armPowerLoss(k);
      const r = card.transmit(hex('80 02 00 00 04 00000003 00'));
      if (card.isPowered) {
        expect(r.toString('hex')).toBe('000000139000');
        expect(readCounter(card)).toEqual(after);
        break;
      }
      expect(r).toHaveLength(0);
      card.powerOn();
      card.select(REF);
      const state = readCounter(card);
      expect([before, after]).toContainEqual(state);
      seen.push(state.counter === before.counter ? 'old' : 'new');
    }
    expect(k).toBe(5); // 4 write points: k = 1..4 tear, k = 5 completes
    expect(seen).toEqual(['old', 'old', 'old', 'new']);
  });

  it('tearing over a sequence of commands leaves a consistent prefix of them', () => {
    const cmds = ['80 02 00 00 04 00000001', '80 10 00 00 02 AABB', '80 02 00 00 04 00000002', '80 02 00 00 04 00000004'];
    let total = 0;
    for (let k = 1; ; k++) {
      const card = selectedReferenceCard();
      card.armPowerLoss(k);
      let done = 0;
      for (const c of cmds) {
        if (card.transmit(hex(c)).length === 0) break;
        done++;
      }
      if (done === cmds.length) {
        total = k - 1;
        break;
      }
      card.powerOn();
      card.select(REF);
      const s = readCounter(card);
      const stored = card.exchange('80 12 00 00 00').data.toString('hex');
      // the command in flight may or may not have taken effect (commit / single write is the last point)
      const prefixes = [done, done + 1].map((n) => {
        const applied = cmds.slice(0, n);
        const incs = applied.filter((c) => c.startsWith('80 02')).map((c) => parseInt(c.slice(-8), 16));
        return { counter: incs.reduce((a, b) => a + b, 0), increments: incs.length, stored: applied.some((c) => c.startsWith('80 10')) ? 'aabb' : '' };
      });
      expect(prefixes).toContainEqual({ counter: s.counter, increments: s.increments, stored });
    }
    expect(total).toBe(4 + 1 + 4 + 4);
  });
});
