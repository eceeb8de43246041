// Card OS: power and ATR, install/registry, SELECT variants, the ISO errors a real card gives, applet
// exceptions, and transmit() never throwing.

import { describe, expect, it } from 'vitest';
import { parseAtr } from '../../../src/apdu/atr.ts';
import {
  Applet,
  ApduContext,
  AppletTypeRegistry,
  CardOsError,
  IsoException,
  SimulatedCard,
  appletTypes,
  defaultAtr,
} from '../../../card-applet-sim/index.ts';
import { AID, EchoApplet, ProbeApplet, REF, REF_HEX, hex, probeCard, referenceCard, selectedReferenceCard, swOf } from './helpers.ts';

appletTypes.registerClass(EchoApplet);
appletTypes.registerClass(ProbeApplet);

describe('the five-line example', () => {
  it('installs, selects and echoes', () => {
    const card = new SimulatedCard();
    card.install(AID, new EchoApplet());
    card.select(AID);
    expect(card.transmitHex('80 01 00 00 02 AABB 00')).toBe('AABB9000');
  });
});

describe('power and ATR', () => {
  it('default T=1 ATR is valid, offers T=1 and announces chaining + extended length', () => {
    const card = new SimulatedCard();
    const atr = parseAtr(card.atr);
    expect(atr.protocols).toEqual([1]);
    expect(atr.tck).toBeDefined();
    expect(atr.t1Parameters?.ifsc).toBe(254);
    const caps = atr.historicalInfo.objects.find((o) => o.tag === 7);
    expect(caps?.value[2]).toBe(0xc0);
    expect(card.atr.toString('hex').toUpperCase()).toBe('3B8E8131FE458073C021C05850555253454C414201');
    expect(card.powerOn()).toEqual(card.atr);
  });

  it('T=0 card: ATR offers T=0 only and has no TCK', () => {
    const card = new SimulatedCard({ protocol: 'T=0' });
    const atr = parseAtr(card.atr);
    expect(atr.protocols).toEqual([0]);
    expect(atr.tck).toBeUndefined();
    expect(card.protocol).toBe('T=0');
    expect(card.extendedLength).toBe(false);
  });

  it('configurable ATR and historical bytes; a bad or mismatching ATR is refused', () => {
    const custom = defaultAtr('T=1', { historicalBytes: Buffer.from('HELLO') });
    expect(new SimulatedCard({ historicalBytes: Buffer.from('HELLO') }).atr).toEqual(custom);
    expect(new SimulatedCard({ atr: custom }).atr).toEqual(custom);
    const badTck = Buffer.from(custom);
    badTck[badTck.length - 1]! ^= 1;
    expect(() => new SimulatedCard({ atr: badTck })).toThrow(/TCK/);
    expect(() => new SimulatedCard({ atr: custom, protocol: 'T=0' })).toThrow(CardOsError);
  });

  it('starts powered; powerOff makes transmit answer nothing; powerOn/reset bring it back', () => {
    const card = selectedReferenceCard();
    expect(card.isPowered).toBe(true);
    card.powerOff();
    expect(card.isPowered).toBe(false);
    expect(card.transmit(hex('80010000'))).toHaveLength(0);
    expect(card.exchange('80010000').sw).toBe(0);
    expect(card.reset()).toEqual(card.atr);
    expect(card.isPowered).toBe(true);
    // after reset nothing is selected
    expect(card.transmitHex('80010000')).toBe('6985');
    expect(new SimulatedCard({ poweredOff: true }).transmit(hex('00A40400'))).toHaveLength(0);
  });

  it('a default applet is selected at power-on and by SELECT with no data', () => {
    const card = referenceCard();
    card.setDefaultApplet(REF);
    card.reset();
    expect(card.transmitHex('80 01 00 00 01 AA 00')).toBe('AA9000');
    card.install(AID, new EchoApplet());
    card.select(AID);
    expect(card.selectedAid).toEqual(AID);
    expect(card.transmitHex('00 A4 04 0C')).toBe('9000');
    expect(card.selectedAid).toEqual(REF);
  });
});

describe('install and the applet registry', () => {
  it('installs by type name, rejects bad AIDs, duplicates and reused instances', () => {
    const card = new SimulatedCard();
    const a = card.install(REF, 'reference');
    expect(a.typeName).toBe('reference');
    expect(card.getApplet(REF)).toBe(a);
    expect(() => card.install(REF, 'reference')).toThrow(/already installed/);
    expect(() => card.install('A0000001', 'reference')).toThrow(/5\.\.16 bytes/);
    expect(() => card.install('A000000001020304050607080910111213', 'reference')).toThrow(/5\.\.16 bytes/);
    expect(() => card.install(AID, 'no-such-type')).toThrow(/not registered \(known: .*reference/);
    expect(() => card.install(AID, a)).toThrow(/already installed/);
    card.uninstall(REF);
    expect(card.getApplet(REF)).toBeUndefined();
    expect(card.transmitHex('00 A4 04 00 0A' + REF_HEX)).toBe('6A82');
  });

  it('registry: names, duplicates refused, registerClass idempotent, factories get install params', () => {
    const reg = new AppletTypeRegistry();
    let got: Buffer | undefined;
    reg.register('x', (p) => {
      got = p;
      return new EchoApplet();
    });
    expect(() => reg.register('x', () => new EchoApplet())).toThrow(/already registered/);
    expect(() => reg.register('Bad Name', () => new EchoApplet())).toThrow(CardOsError);
    reg.registerClass(EchoApplet);
    reg.registerClass(EchoApplet);
    expect(reg.names()).toEqual(['test-echo', 'x']);
    const card = new SimulatedCard({ registry: reg });
    card.install(AID, 'x', hex('0102'));
    expect(got).toEqual(hex('0102'));
    expect(card.applets[0]!.params).toEqual(hex('0102'));
  });

  it('onInstall runs once with card services; a failing onInstall leaves nothing installed', () => {
    class Init extends Applet {
      readonly v = this.store.number('v', 0);
      override onInstall(): void {
        this.v.set(this.system.aid.length);
      }
      process(): void {}
    }
    class Bad extends Applet {
      override onInstall(): void {
        throw new Error('nope');
      }
      process(): void {}
    }
    const card = new SimulatedCard();
    const a = card.install(AID, new Init()) as Init;
    expect(a.v.get()).toBe(8);
    expect(() => card.install(REF, new Bad())).toThrow(/onInstall\(\) of applet .* failed: nope/);
    expect(card.getApplet(REF)).toBeUndefined();
  });

  it('card services: identity, protocol, seeded random', () => {
    const a1 = new ProbeApplet();
    const a2 = new ProbeApplet();
    const c1 = new SimulatedCard({ serial: hex('0102030405060708'), randomSeed: 'seed' });
    const c2 = new SimulatedCard({ serial: hex('0102030405060708'), randomSeed: 'seed' });
    c1.install(AID, a1);
    c2.install(AID, a2);
    expect(a1.system.cardSerial).toEqual(hex('0102030405060708'));
    expect(a1.system.aid).toEqual(AID);
    expect(a1.system.protocol).toBe('T=1');
    const r1 = a1.system.random(50);
    expect(r1).toEqual(a2.system.random(50));
    expect(a1.system.random(50)).not.toEqual(r1);
    const unseeded = new ProbeApplet();
    new SimulatedCard().install(AID, unseeded);
    expect(unseeded.system.random(16)).toHaveLength(16);
    expect(() => new ProbeApplet().system).toThrow(/only once the applet is installed/);
  });
});

describe('SELECT', () => {
  function threeApplets() {
    const card = new SimulatedCard();
    const a = new ProbeApplet();
    const b = new ProbeApplet();
    const c = new ProbeApplet();
    card.install('A00000000101', a);
    card.install('A0000000010203', b);
    card.install('A00000000102', c);
    return { card, a, b, c };
  }

  it('exact match wins over an earlier partial match; partial picks the first in install order', () => {
    const { card } = threeApplets();
    expect(card.select('A00000000102').sw).toBe(0x9000);
    expect(card.selectedAid).toEqual(hex('A00000000102'));
    expect(card.select('A000000001').sw).toBe(0x9000);
    expect(card.selectedAid).toEqual(hex('A00000000101'));
    expect(card.select('A0000000010203').sw).toBe(0x9000);
    expect(card.selectedAid).toEqual(hex('A0000000010203'));
  });

  it('next occurrence walks the partial matches in install order, then 6A82', () => {
    const { card } = threeApplets();
    const next = '00 A4 04 02 05 A000000001';
    expect(card.transmitHex('00 A4 04 0C 05 A000000001')).toBe('9000');
    expect(card.selectedAid).toEqual(hex('A00000000101'));
    expect(card.transmitHex(next.replace('02 05', '0E 05'))).toBe('9000');
    expect(card.selectedAid).toEqual(hex('A0000000010203'));
    expect(swOf(card.transmit(hex(next)))).toBe(0x9000);
    expect(card.selectedAid).toEqual(hex('A00000000102'));
    expect(card.transmitHex(next)).toBe('6A82');
    // the failed SELECT leaves the current applet selected
    expect(card.selectedAid).toEqual(hex('A00000000102'));
    // with nothing selected, "next" starts at the first match
    card.reset();
    expect(card.transmitHex('00 A4 04 0E 05 A000000001')).toBe('9000');
    expect(card.selectedAid).toEqual(hex('A00000000101'));
  });

  it('FCI: default minimal template, none for P2=0C, applet-defined FCI', () => {
    const card = new SimulatedCard();
    card.install(AID, new EchoApplet());
    expect(card.transmitHex('00 A4 04 00 08 A000000001020304')).toBe('6F0A8408A0000000010203049000');
    expect(card.transmitHex('00 A4 04 04 08 A000000001020304 00')).toBe('6F0A8408A0000000010203049000');
    expect(card.transmitHex('00 A4 04 0C 08 A000000001020304')).toBe('9000');
    const ref = referenceCard();
    expect(ref.transmitHex(`00 A4 04 00 0A ${REF_HEX}`)).toBe(`6F11840A${REF_HEX}A5038001019000`);
  });

  it('bad P2 or Lc, unknown AIDs, and SELECT forms the OS does not handle', () => {
    const card = referenceCard();
    for (const p2 of ['01', '03', '08', '10', 'F0']) expect(card.transmitHex(`00 A4 04 ${p2} 0A ${REF_HEX}`), p2).toBe('6A86');
    expect(card.transmitHex(`00 A4 04 00 11 ${REF_HEX}00000000000000`)).toBe('6700');
    expect(card.transmitHex('00 A4 04 00 05 A000000099')).toBe('6A82');
    expect(card.transmitHex('00 A4 04 00')).toBe('6A82'); // no name and no default applet
    // SELECT by file id with nothing selected: 6A86; with an applet selected it goes to the applet (Java Card)
    expect(card.transmitHex('00 A4 00 00 02 3F00')).toBe('6A86');
    card.select(REF);
    expect(card.transmitHex('00 A4 00 00 02 3F00')).toBe('6E00');
    expect(card.transmitHex(`10 A4 04 00 0A ${REF_HEX}`)).toBe('6884');
  });

  it('select/deselect hooks, reselect, refusing select answers 6999 and leaves nothing selected', () => {
    const card = new SimulatedCard();
    const a = new ProbeApplet();
    const b = new ProbeApplet();
    card.install('A00000000101', a);
    card.install('A00000000102', b);
    card.select('A00000000101');
    card.select('A00000000101');
    card.select('A00000000102');
    expect(a.calls).toEqual(['select', 'deselect', 'select', 'deselect']);
    expect(b.calls).toEqual(['select']);
    a.selectResult = false;
    expect(card.select('A00000000101').sw).toBe(0x6999);
    expect(b.calls).toEqual(['select', 'deselect']);
    expect(card.selectedAid).toBeUndefined();
    expect(card.transmitHex('80 01 00 00')).toBe('6985');
    expect(card.events.at(-1)?.type).toBe('select-failed');
  });

  it('a throwing select() is 6999 and logged; a throwing deselect() is logged and the switch goes on', () => {
    class Grumpy extends Applet {
      override select(): boolean {
        throw new Error('select boom');
      }
      process(): void {}
    }
    class Leaving extends Applet {
      override deselect(): void {
        throw new Error('deselect boom');
      }
      process(): void {}
    }
    const card = new SimulatedCard();
    card.install('A00000000101', new Grumpy());
    card.install('A00000000102', new Leaving());
    card.install('A00000000103', new EchoApplet());
    expect(card.select('A00000000101').sw).toBe(0x6999);
    expect(card.events.at(-1)).toMatchObject({ type: 'select-failed', aid: 'A00000000101' });
    expect(card.select('A00000000102').sw).toBe(0x9000);
    expect(card.select('A00000000103').sw).toBe(0x9000);
    expect(card.events.at(-1)).toMatchObject({ type: 'hook-exception', aid: 'A00000000102' });
    expect(card.selectedAid).toEqual(hex('A00000000103'));
  });
});

describe('ISO errors from the card OS', () => {
  const cases: [string, string, string][] = [
    ['empty', '', '6700'],
    ['1 byte', '80', '6700'],
    ['3 bytes', '800100', '6700'],
    ['Lc longer than the data', '80010000 05 AABB', '6700'],
    ['Lc shorter than the data', '80010000 01 AABBCC', '6700'],
    ['extended Lc 0000', '80010000 000000 AA', '6700'],
    ['truncated extended length', '80010000 00 01', '6700'],
    ['extended Lc mismatch', '80010000 000003 AABB', '6700'],
    ['CLA FF', 'FF010000', '6E00'],
    ['CLA 20 (RFU)', '20010000', '6E00'],
    ['CLA 3F (RFU)', '3F010000', '6E00'],
    ['INS 6X', '80610000', '6D00'],
    ['INS 9X', '80900000', '6D00'],
    ['logical channel 1', '81010000', '6881'],
    ['logical channel 3', '03010000', '6881'],
    ['further interindustry channel 4', '40010000', '6881'],
    ['MANAGE CHANNEL', '00700000 01', '6881'],
    ['GET RESPONSE with nothing pending', '00C00000 10', '6985'],
  ];
  it.each(cases)('%s -> %s', (_name, apdu, sw) => {
    const card = selectedReferenceCard();
    expect(card.transmitHex(apdu)).toBe(sw);
  });

  it('6985 for applet commands while no applet is selected', () => {
    const card = referenceCard();
    expect(card.transmitHex('80 01 00 00 01 AA 00')).toBe('6985');
  });

  it('applet-level 6E00 / 6D00 / 6A86 / 6700 through the ApduContext helpers', () => {
    const card = selectedReferenceCard();
    expect(card.transmitHex('00 01 00 00 01 AA 00')).toBe('6E00');
    expect(card.transmitHex('80 7E 00 00')).toBe('6D00');
    expect(card.transmitHex('80 01 00 01 01 AA 00')).toBe('6A86');
    expect(card.transmitHex('80 02 00 00 03 000001')).toBe('6700');
  });

  it('extended APDUs are refused when the card has no extended length', () => {
    const card = selectedReferenceCard({ extendedLength: false });
    expect(card.transmitHex('80 CA 00 10 00 00 10')).toBe('6700');
    expect(card.transmitHex('80 CA 00 10 10')).toMatch(/9000$/);
  });
});

describe('applet exceptions and responses', () => {
  it('IsoException gives its SW and discards data set before it', () => {
    const { card } = probeCard((a) => {
      a.send(hex('0102'));
      IsoException.throwIt(0x6a88);
    });
    expect(card.transmitHex('80 10 00 00')).toBe('6A88');
  });

  it('any other exception is 6F00 and logged with the command', () => {
    const boom = new RangeError('boom');
    const { card } = probeCard(() => {
      throw boom;
    });
    expect(card.transmitHex('80 10 00 00 01 AA')).toBe('6F00');
    expect(card.lastException).toBe(boom);
    expect(card.events.at(-1)).toMatchObject({ type: 'applet-exception', aid: AID.toString('hex').toUpperCase(), apdu: '8010000001AA' });
    card.clearEvents();
    expect(card.events).toHaveLength(0);
  });

  it('throwing a non-Error, answering an invalid SW or non-bytes are all 6F00', () => {
    expect(probeCard(() => { throw 'str'; }).card.transmitHex('80100000')).toBe('6F00'); // prettier-ignore
    expect(probeCard(() => { throw new IsoException(0x9); }).card.transmitHex('80100000')).toBe('6F00'); // prettier-ignore
    expect(probeCard((a) => a.status(0x6100)).card.transmitHex('80100000')).toBe('6F00');
    expect(probeCard(() => 'text' as unknown as Uint8Array).card.transmitHex('80100000')).toBe('6F00');
    expect(probeCard(() => Buffer.alloc(70000)).card.transmitHex('80100000')).toBe('6F00');
  });

  it('send() with a warning SW, status() without data, returning data', () => {
    expect(probeCard((a) => a.send(hex('AA'), 0x6310)).card.transmitHex('80100000 00')).toBe('AA6310');
    expect(probeCard((a) => a.status(0x63c1)).card.transmitHex('80100000')).toBe('63C1');
    expect(probeCard(() => hex('0102')).card.transmitHex('80100000 00')).toBe('01029000');
  });

  it('the ApduContext exposes the command fields', () => {
    let seen: ApduContext | undefined;
    const { card } = probeCard((a) => {
      seen = a;
    });
    card.transmitHex('84 22 33 44 02 AABB 10');
    expect(seen).toMatchObject({ cla: 0x84, ins: 0x22, p1: 0x33, p2: 0x44, le: 16, extended: false, chained: false, protocol: 'T=1' });
    expect(seen!.data).toEqual(hex('AABB'));
    expect(seen!.p1p2).toBe(0x3344);
    expect(seen!.lc).toBe(2);
    card.transmitHex('80 22 00 00 00 00 02 AABB 01 00');
    expect(seen).toMatchObject({ extended: true, le: 256 });
    card.transmitHex('80 22 00 00 00 00 00');
    expect(seen).toMatchObject({ extended: true, le: 65536 });
    expect(seen!.ne).toBe(65536);
  });
});

describe('transmit never throws', () => {
  it('answers every random and mutated input with a response or nothing, and keeps working', () => {
    const card = selectedReferenceCard();
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) >>> 0) / 0x80000000;
    const valid = [hex('8001000004DEADBEEF00'), hex('8002000004 00000001'), hex('80CA010400'), hex(`00A404000A${REF_HEX}`), hex('9010000001AA'), hex('80E00003')];
    for (let i = 0; i < 20_000; i++) {
      let b: Buffer;
      if (i % 2) {
        b = Buffer.from(valid[i % valid.length]!);
        const n = 1 + Math.floor(rnd() * 3);
        for (let j = 0; j < n; j++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
        if (rnd() < 0.2) b = b.subarray(0, Math.floor(rnd() * b.length));
      } else {
        b = Buffer.alloc(Math.floor(rnd() * 12));
        for (let j = 0; j < b.length; j++) b[j] = Math.floor(rnd() * 256);
      }
      const r = card.transmit(b);
      expect(r.length).toBeGreaterThanOrEqual(2);
      const sw = swOf(r);
      expect(sw >> 12 === 6 || sw >> 12 === 9, sw.toString(16)).toBe(true);
    }
    expect(card.events.filter((e) => e.type === 'os-error')).toEqual([]);
    card.select(REF);
    expect(card.transmitHex('80 01 00 00 01 AA 00')).toBe('AA9000');
  });
});

void REF_HEX;
