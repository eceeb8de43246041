// Card images: round trip, integrity errors (corrupt, truncated, wrong version, unknown applet type) as
// one-line CardImageErrors, and atomic saving (a crash between temp write and rename leaves the old image).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  Applet,
  CardImageError,
  SimulatedCard,
  appletTypes,
  cardFromImage,
  cardToImage,
  decodeCardImage,
  encodeCardImage,
  loadCardImage,
  saveCardImage,
  type CardImage,
} from '../../../card-applet-sim/index.ts';
import { AID, ProbeApplet, REF, hex, readCounter, referenceCard } from './helpers.ts';

appletTypes.registerClass(ProbeApplet);
const dir = mkdtempSync(join(tmpdir(), 'purselab-image-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const REPO = fileURLToPath(new URL('../../../', import.meta.url));

function sampleCard(): SimulatedCard {
  const card = referenceCard({ protocol: 'T=0', serial: hex('A1A2A3A4A5A6A7A8') });
  card.install(AID, 'test-probe', hex('CAFE'));
  card.setDefaultApplet(REF);
  card.reset();
  card.exchange('80 02 00 00 04 00000042');
  card.exchange('80 10 00 00 03 010203');
  const p = card.getApplet<ProbeApplet>(AID)!;
  p.value.set(-12345);
  p.flag.set(true);
  p.blob.write(0, hex('0102030405060708'));
  return card;
}

function expectOneLine(fn: () => unknown, pattern: RegExp): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CardImageError);
  expect((err as Error).message).toMatch(pattern);
  expect((err as Error).message).not.toContain('\n');
}

describe('card image round trip', () => {
  it('saves and loads configuration, applets, install params and persistent state', () => {
    const card = sampleCard();
    const path = join(dir, 'round.img');
    saveCardImage(card, path);
    const text = readFileSync(path, 'utf8');
    expect(text).toMatch(/^PURSELAB-CARD-IMAGE 1 \d+ [0-9a-f]{64}\n\{/);
    const back = loadCardImage(path);
    expect(back.isPowered).toBe(true);
    expect(back.protocol).toBe('T=0');
    expect(back.atr).toEqual(card.atr);
    expect(back.serial).toEqual(hex('A1A2A3A4A5A6A7A8'));
    expect(back.defaultApplet).toEqual(REF);
    expect(back.persistentWrites).toBe(card.persistentWrites);
    expect(back.applets.map((a) => [a.aidHex, a.typeName, a.params.toString('hex')])).toEqual([
      [REF.toString('hex').toUpperCase(), 'reference', ''],
      [AID.toString('hex').toUpperCase(), 'test-probe', 'cafe'],
    ]);
    // default applet selected at power-on, state intact
    expect(readCounter(back)).toEqual({ counter: 0x42, increments: 1, last: 0x42 });
    expect(back.exchange('80 12 00 00 00')).toEqual({ data: hex('010203'), sw: 0x9000 });
    const p = back.getApplet<ProbeApplet>(AID)!;
    expect([p.value.get(), p.flag.get(), p.blob.get()]).toEqual([-12345, true, hex('0102030405060708')]);
    // and it saves back identically
    const again = join(dir, 'round2.img');
    saveCardImage(back, again);
    expect(readFileSync(again, 'utf8')).toBe(text);
  });

  it('in-memory images: encode/decode/cardFromImage; poweredOff option', () => {
    const img = cardToImage(sampleCard());
    expect(decodeCardImage(encodeCardImage(img))).toEqual(img);
    const off = cardFromImage(img, { poweredOff: true });
    expect(off.isPowered).toBe(false);
  });

  it('an applet class without a registered type cannot be imaged', () => {
    class Anonymous extends Applet {
      process(): void {}
    }
    const card = new SimulatedCard();
    card.install(AID, new Anonymous());
    expectOneLine(() => cardToImage(card), /class Anonymous\) has no registered type name/);
  });

  it('only committed state is saved: a cut mid-transaction is rolled back before any image is taken', () => {
    const card = referenceCard();
    card.select(REF);
    card.exchange('80 02 00 00 04 00000001');
    card.armPowerLoss(2);
    expect(card.transmit(hex('80 02 00 00 04 00000005'))).toHaveLength(0);
    const path = join(dir, 'torn.img');
    saveCardImage(card, path);
    const back = loadCardImage(path);
    back.select(REF);
    expect(readCounter(back)).toEqual({ counter: 1, increments: 1, last: 1 });
  });
});

describe('bad images give one clear line', () => {
  const good = encodeCardImage(cardToImage(sampleCard()));
  const write = (name: string, bytes: Buffer | string): string => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  it('missing file, directory, empty file, not an image', () => {
    expectOneLine(() => loadCardImage(join(dir, 'nope.img')), /card image .*nope\.img does not exist/);
    expectOneLine(() => loadCardImage(dir), /is a directory/);
    expectOneLine(() => loadCardImage(write('empty.img', '')), /is empty \(0 bytes\)/);
    expectOneLine(() => loadCardImage(write('text.img', 'hello\nworld')), /is not a purselab card image/);
  });

  it('a flipped byte anywhere in the body is a checksum mismatch', () => {
    const nl = good.indexOf(0x0a);
    for (const at of [nl + 1, nl + 50, good.length - 2]) {
      const bad = Buffer.from(good);
      bad[at]! ^= 0x01;
      expectOneLine(() => loadCardImage(write('flip.img', bad)), /is corrupt: SHA-256 checksum mismatch/);
    }
  });

  it('truncation at any point is reported as truncated', () => {
    const nl = good.indexOf(0x0a);
    for (const n of [10, nl - 5, nl, nl + 1, nl + 100, good.length - 1]) {
      expectOneLine(() => loadCardImage(write('cut.img', good.subarray(0, n))), /truncated/);
    }
  });

  it('trailing bytes, an unsupported version, a damaged header', () => {
    expectOneLine(() => loadCardImage(write('extra.img', Buffer.concat([good, Buffer.from('x')]))), /corrupt: 1 unexpected byte/);
    const v2 = Buffer.from(good.toString('latin1').replace(/^PURSELAB-CARD-IMAGE 1 /, 'PURSELAB-CARD-IMAGE 2 '), 'latin1');
    expectOneLine(() => loadCardImage(write('v2.img', v2)), /version 2 is not supported \(this build reads version 1\)/);
    const badHeader = Buffer.from(good.toString('latin1').replace(/^(PURSELAB-CARD-IMAGE 1 \d+ )[0-9a-f]{4}/, '$1zzzz'), 'latin1');
    expectOneLine(() => loadCardImage(write('hdr.img', badHeader)), /truncated or corrupt: its header line/);
  });

  it('well-formed files with invalid content: schema, unknown applet type, mismatching field types', () => {
    const base = cardToImage(sampleCard());
    const variant = (change: (j: Record<string, unknown>) => void): Buffer => {
      const j = JSON.parse(JSON.stringify(base)) as Record<string, unknown>;
      change(j);
      return encodeCardImage(j as unknown as CardImage);
    };
    expectOneLine(() => loadCardImage(write('s1.img', variant((j) => ((j.card as Record<string, unknown>).protocol = 'T=2')))), /card\.protocol must be/);
    expectOneLine(() => loadCardImage(write('s2.img', variant((j) => ((j.applets as { aid: string }[])[0]!.aid = 'ZZ')))), /applets\[0\]\.aid must be 5\.\.16 bytes of hex/);
    expectOneLine(() => loadCardImage(write('s3.img', variant((j) => ((j.applets as { type: string }[])[1]!.type = 'purse-v9')))), /applet type 'purse-v9' is not registered \(known: .*reference/);
    expectOneLine(() => loadCardImage(write('s4.img', variant((j) => ((j.applets as { state: object }[])[0]!.state = { counter: { b: '00' } })))), /field 'counter' must be a whole number/);
    expectOneLine(() => loadCardImage(write('s5.img', variant((j) => ((j.card as Record<string, unknown>).atr = 'FF00')))), /card configuration is invalid/);
    expectOneLine(() => loadCardImage(write('s6.img', variant((j) => (j.applets = [...(j.applets as object[]), (j.applets as object[])[0]])))), /appears twice/);
  });
});

describe('atomic saving', () => {
  it('an error between the temp write and the rename leaves the old image and no temp file', () => {
    const path = join(dir, 'atomic.img');
    const card = referenceCard();
    card.select(REF);
    saveCardImage(card, path);
    const old = readFileSync(path);
    card.exchange('80 02 00 00 04 00000009');
    let tmpSeen = '';
    expect(() =>
      saveCardImage(card, path, {
        beforeRename: (tmp) => {
          tmpSeen = tmp;
          expect(existsSync(tmp)).toBe(true);
          throw new Error('simulated crash');
        },
      }),
    ).toThrow('simulated crash');
    expect(readFileSync(path)).toEqual(old);
    expect(existsSync(tmpSeen)).toBe(false);
    const back = loadCardImage(path);
    back.select(REF);
    expect(readCounter(back).counter).toBe(0);
  });

  it('a process killed (SIGKILL) between the temp write and the rename leaves the old image intact', () => {
    const path = join(dir, 'killed.img');
    const card = referenceCard();
    saveCardImage(card, path);
    const old = readFileSync(path);
    const script = join(dir, 'crash.mts');
    writeFileSync(
      script,
      [
        `import { loadCardImage, saveCardImage, REFERENCE_AID } from ${JSON.stringify(join(REPO, 'card-applet-sim/index.ts'))};`,
        `const card = loadCardImage(${JSON.stringify(path)});`,
        `card.select(REFERENCE_AID);`,
        `card.exchange('8002000004000000FF');`,
        `saveCardImage(card, ${JSON.stringify(path)}, { beforeRename: () => process.kill(process.pid, 'SIGKILL') });`,
        `console.log('not reached');`,
      ].join('\n'),
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], { cwd: REPO, encoding: 'utf8', timeout: 60_000 });
    expect(r.signal).toBe('SIGKILL');
    expect(r.stdout).not.toContain('not reached');
    expect(readFileSync(path)).toEqual(old);
    expect(readdirSync(dir).some((f) => f.startsWith('killed.img.') && f.endsWith('.tmp'))).toBe(true); // the crash left its temp file
    const back = loadCardImage(path);
    back.select(REF);
    expect(readCounter(back).counter).toBe(0);
  });
});
