// `purselab card issue`, card profiles, the issuer key set and the purse install parameters.

import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { cardIssueCommand } from '../../../src/cli/commands/card-issue.ts';
import { commands } from '../../../src/cli/commands/index.ts';
import type { CliIo } from '../../../src/cli/command.ts';
import { loadCardImage, saveCardImage } from '../../../card-applet-sim/index.ts';
import { ProfileError, buildPurseInstallParams, issuePurseCard, parsePurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { KeySetError, parseIssuerKeySet } from '../../../src/crypto/key-set.ts';
import { AmountError, formatAmount, maskCardId, parseAmount } from '../../../src/terminal/amount.ts';
import {
  PURSE_INSTALL_PARAMS_LAYOUT,
  decodePurseInstallParams,
  encodePurseInstallParams,
} from '../../../card-applet-sim/applets/purse/install-params.ts';
import { PurseApplet } from '../../../card-applet-sim/applets/purse/purse-applet.ts';
import { A, AID, KEYS, PIN, POINTS, PROFILES, attach, hex, load, purchase, repoPath, variant } from './helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'purselab-card-issue-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (l) => out.push(l), err: (l) => err.push(l) };
  let code: number;
  try {
    code = await cardIssueCommand.run(args, io);
  } catch (e) {
    err.push((e as Error).message);
    code = (e as { code?: string }).code === 'USAGE' ? 2 : 1;
  }
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const KEYS_PATH = repoPath('fixtures/keys/demo-issuer.json');
const profilePath = (name: string) => repoPath(`fixtures/profiles/${name}.json`);
const DEMO_KEYS_JSON = JSON.parse(readFileSync(KEYS_PATH, 'utf8')) as {
  masterKeys: { key: string }[];
  cards: { cardId: string; usage: string; key: string }[];
};

describe('purselab card issue', () => {
  it('is registered as "card issue" with a helpful --help', () => {
    expect(commands.find((c) => c.name === 'card issue')).toBe(cardIssueCommand);
    for (const word of ['--profile', '--keys', '--out', '--balance', 'Example', 'fixtures/profiles']) expect(cardIssueCommand.help).toContain(word);
  });

  it('writes a card image with the purse applet personalised; the card works after a reload', async () => {
    const out = join(dir, 'des.img');
    const r = await run(['--profile', profilePath('demo-3des'), '--keys', KEYS_PATH, '--out', out, '--balance', '25.00']);
    expect(r.code).toBe(0);
    expect(r.out).toContain('999001******0017');
    const card = loadCardImage(out);
    const tc = await attach(card);
    expect(await tc.host.readPurseData()).toMatchObject({ cardId: '9990010000000017', alg: 1, balance: 2500, maxBalance: 50000, currency: 978, exponent: 2, expiry: '20281231', counter: 0 });
    // the issued keys are the diversified TEST card keys: a purchase and a load verify with the issuer's keys
    expect((await purchase(tc, { amount: 420 })).s3Valid).toBe(true);
    expect((await load(tc, { amount: 100 })).s3Valid).toBe(true);
    saveCardImage(card, out);
    expect(await (await attach(loadCardImage(out))).host.readPurseData()).toMatchObject({ balance: 2180, counter: 2 });
  });

  it('never prints keys, the PIN or the full card number (text and JSON)', async () => {
    for (const json of [false, true]) {
      const out = join(dir, `secret-${json}.img`);
      const r = await run(['--profile', profilePath('demo-loyalty-pin'), '--keys', KEYS_PATH, '--out', out, ...(json ? ['--json'] : [])]);
      expect(r.code).toBe(0);
      const text = r.out + r.err;
      expect(text).not.toContain('9990010000000033');
      expect(text).toContain('999001******0033');
      for (const m of DEMO_KEYS_JSON.masterKeys) expect(text.toUpperCase()).not.toContain(m.key);
      const params = (loadCardImage(out).getApplet(AID) as PurseApplet).params;
      for (const k of [params.keys.purchase.key, params.keys.load.key, params.keys.update.key]) expect(text.toUpperCase()).not.toContain(hex(k));
      expect(text).not.toContain(PIN.value);
      if (json) expect(JSON.parse(r.out)).toMatchObject({ card: '999001******0033', algorithm: '3DES', pin: { tryLimit: 3, required: true }, points: { programme: 7001 } });
    }
  });

  it('issues each fixture profile: 3DES, AES, loyalty + PIN', async () => {
    for (const [name, alg, authMode] of [
      ['demo-3des', 1, 0],
      ['demo-aes', 2, 0],
      ['demo-loyalty-pin', 1, 0x05],
    ] as const) {
      const out = join(dir, `${name}.img`);
      expect((await run(['--profile', profilePath(name), '--keys', KEYS_PATH, '--out', out])).code).toBe(0);
      const pd = await (await attach(loadCardImage(out))).host.readPurseData();
      expect(pd).toMatchObject({ alg, authMode, balance: 0 });
    }
  });

  it('--purse-number, --protocol T=0 and --reference', async () => {
    const out = join(dir, 'opts.img');
    const r = await run(['--profile', profilePath('demo-aes'), '--keys', KEYS_PATH, '--out', out, '--purse-number', '0000000041', '--protocol', 'T=0', '--reference']);
    expect(r.code).toBe(0);
    const card = loadCardImage(out);
    expect(card.protocol).toBe('T=0');
    expect(card.applets.length).toBe(2);
    const tc = await attach(card);
    expect((await tc.host.readPurseData()).cardId).toBe('9990010000000041');
    expect((await purchase(tc, { txType: 2, amount: 0 })).s3Valid).toBe(true); // keys diversified for the new number
  });

  it('refuses to overwrite without --force; --force replaces the image atomically', async () => {
    const out = join(dir, 'force.img');
    writeFileSync(out, 'old');
    const r = await run(['--profile', profilePath('demo-3des'), '--keys', KEYS_PATH, '--out', out]);
    expect(r.code).toBe(2);
    expect(r.err).toContain('already exists');
    expect(readFileSync(out, 'utf8')).toBe('old');
    expect((await run(['--profile', profilePath('demo-3des'), '--keys', KEYS_PATH, '--out', out, '--force'])).code).toBe(0);
    expect(loadCardImage(out).getApplet(AID)).toBeInstanceOf(PurseApplet);
  });

  it('usage errors: missing options, bad balance, bad purse number, bad protocol', async () => {
    const base = ['--profile', profilePath('demo-3des'), '--keys', KEYS_PATH];
    expect((await run(base)).err).toContain('--out is required');
    expect((await run(['--keys', KEYS_PATH, '--out', join(dir, 'x.img')])).err).toContain('--profile is required');
    const out = ['--out', join(dir, 'never.img')];
    expect((await run([...base, ...out, '--balance', '1.234'])).err).toContain('at most 2 decimals');
    expect((await run([...base, ...out, '--balance', '-1'])).code).toBe(2);
    expect((await run([...base, ...out, '--balance', '500.01'])).err).toContain('exceeds');
    expect((await run([...base, ...out, '--purse-number', '12'])).err).toContain('10 digits');
    expect((await run([...base, ...out, '--protocol', 'T=2'])).err).toContain('T=0 or T=1');
    expect(existsSync(join(dir, 'never.img'))).toBe(false);
  });

  it('a bad profile is a clear error naming the file and the field; nothing is written', async () => {
    const cases: [object, string][] = [
      [{ bin: '99900' }, "field 'bin'"],
      [{ purseNumber: 17 }, "field 'purseNumber'"],
      [{ algorithm: 'DES' }, "field 'algorithm'"],
      [{ currency: 'EUR' }, "field 'currency'"],
      [{ currency: 999 }, 'authentication currency'],
      [{ exponent: 12 }, "field 'exponent'"],
      [{ maxBalance: -1 }, "field 'maxBalance'"],
      [{ balance: 60000 }, "field 'balance'"],
      [{ expiry: '2028-02-30' }, "field 'expiry'"],
      [{ keyVersions: { purchase: 1, load: 1 } }, "field 'keyVersions.update'"],
      [{ keyVersions: { purchase: 1, load: 1, update: 1, admin: 1 } }, "field 'keyVersions.admin'"],
      [{ points: { programme: 0, max: 10 } }, "field 'points.programme'"],
      [{ points: { programme: 7001, max: 10, balance: 11 } }, "field 'points.balance'"],
      [{ pin: { value: '12', tryLimit: 3 } }, "field 'pin.value'"],
      [{ pin: { value: '1234', tryLimit: 16 } }, "field 'pin.tryLimit'"],
      [{ colour: 'red' }, "field 'colour': unknown field"],
    ];
    const good = JSON.parse(readFileSync(profilePath('demo-3des'), 'utf8'));
    for (const [change, message] of cases) {
      const p = join(dir, 'bad-profile.json');
      writeFileSync(p, JSON.stringify({ ...good, ...change }));
      const out = join(dir, 'bad.img');
      const r = await run(['--profile', p, '--keys', KEYS_PATH, '--out', out]);
      expect(r.code, JSON.stringify(change)).toBe(1);
      expect(r.err).toContain(`profile ${p}`);
      expect(r.err).toContain(message);
      expect(existsSync(out)).toBe(false);
    }
    const r = await run(['--profile', join(dir, 'missing.json'), '--keys', KEYS_PATH, '--out', join(dir, 'm.img')]);
    expect(r.err).toContain('cannot read');
    writeFileSync(join(dir, 'notjson.json'), '{');
    expect((await run(['--profile', join(dir, 'notjson.json'), '--keys', KEYS_PATH, '--out', join(dir, 'm.img')])).err).toContain('not valid JSON');
    // a PIN error never echoes the PIN
    writeFileSync(join(dir, 'pin.json'), JSON.stringify({ ...good, pin: { value: '98765x', tryLimit: 3 } }));
    expect((await run(['--profile', join(dir, 'pin.json'), '--keys', KEYS_PATH, '--out', join(dir, 'm.img')])).err).not.toContain('98765');
  });
});

describe('issuing: key set and diversification', () => {
  it('diversifies the card keys of the fixture key set (cards[] of demo-issuer.json)', () => {
    for (const profile of [PROFILES.des, PROFILES.aes]) {
      const p = buildPurseInstallParams(profile, KEYS);
      for (const usage of ['purchase', 'load', 'update'] as const) {
        const expected = DEMO_KEYS_JSON.cards.find((c) => c.cardId === p.cardId && c.usage === usage)!.key;
        expect(hex(p.keys[usage].key)).toBe(expected);
      }
    }
  });

  it('a key set whose master fails its KCV, or lacks the master for the profile, is refused without printing keys', () => {
    const json = JSON.parse(readFileSync(KEYS_PATH, 'utf8'));
    json.masterKeys[0].key = json.masterKeys[0].key.replace(/^../, '00');
    expect(() => parseIssuerKeySet(json, 'k.json')).toThrow(/issuer-purchase-3des: the key does not match its KCV/);
    try {
      parseIssuerKeySet(json, 'k.json');
    } catch (e) {
      expect((e as Error).message).not.toContain(json.masterKeys[0].key);
    }
    const fresh = JSON.parse(readFileSync(KEYS_PATH, 'utf8'));
    fresh.masterKeys = fresh.masterKeys.filter((m: { label: string }) => m.label !== 'issuer-load-aes');
    expect(() => buildPurseInstallParams(PROFILES.aes, parseIssuerKeySet(fresh, 'k.json'))).toThrow(KeySetError);
    expect(() => buildPurseInstallParams(variant(PROFILES.des, { keyVersions: { purchase: 2, load: 1, update: 1 } }), KEYS)).toThrow(/purchase master for the 3DES suite, version 2/);
    expect(() => buildPurseInstallParams(variant(PROFILES.des, { bin: '123456' }), KEYS)).toThrow(/issuer BIN 999001/);
  });

  it('masks card numbers and formats amounts', () => {
    expect(maskCardId('1234567890127890')).toBe('123456******7890');
    expect(formatAmount(420, 2)).toBe('4.20');
    expect(formatAmount(5, 3)).toBe('0.005');
    expect(formatAmount(7, 0)).toBe('7');
    expect(parseAmount('4.2', 2)).toBe(420);
    expect(parseAmount('4', 2)).toBe(400);
    expect(() => parseAmount('4.201', 2)).toThrow(AmountError);
    expect(() => parseAmount('4,20', 2)).toThrow(AmountError);
    expect(() => parseAmount('', 2)).toThrow(AmountError);
  });

  it('parsePurseProfile accepts both date forms and the numeric algorithm ids', () => {
    const good = JSON.parse(readFileSync(profilePath('demo-aes'), 'utf8'));
    expect(parsePurseProfile({ ...good, expiry: '20281231', algorithm: 2 }).alg).toBe(2);
    expect(() => parsePurseProfile([], 'x')).toThrow(ProfileError);
  });
});

describe('purse install parameters', () => {
  const params = buildPurseInstallParams(variant(PROFILES.aes, { points: { ...POINTS, balance: 10 }, pin: PIN }), KEYS, { balance: 99 });

  it('round-trip through the fixed layout, and the card image keeps them', () => {
    const bytes = encodePurseInstallParams(params);
    expect(bytes.length).toBe(PURSE_INSTALL_PARAMS_LAYOUT.length);
    expect(PURSE_INSTALL_PARAMS_LAYOUT.length).toBe(96); // README.md table
    expect(decodePurseInstallParams(bytes)).toEqual(params);
    const { card } = issuePurseCard(variant(PROFILES.aes, { points: { ...POINTS, balance: 10 }, pin: PIN }), KEYS, { balance: 99 });
    const path = join(dir, 'params.img');
    saveCardImage(card, path);
    const image = JSON.parse(readFileSync(path, 'utf8').split('\n').slice(1).join('\n'));
    expect(image.applets[0]).toMatchObject({ aid: hex(A.IEP_AID), type: 'purse', params: hex(bytes) });
    expect((loadCardImage(path).getApplet(AID) as PurseApplet).params).toEqual(params);
  });

  it('keep the initial values only: the store holds the live state after an image round trip', async () => {
    const { card } = issuePurseCard(PROFILES.des, KEYS, { balance: 1000 });
    const tc = await attach(card);
    await purchase(tc, { amount: 1 });
    const path = join(dir, 'live.img');
    saveCardImage(card, path);
    expect(await (await attach(loadCardImage(path))).host.readPurseData()).toMatchObject({ balance: 999, counter: 1 });
  });

  it('are validated: each bad field is a clear error', () => {
    const bad = (change: object) => () => encodePurseInstallParams({ ...params, ...change });
    expect(bad({ alg: 3 })).toThrow(/alg/);
    expect(bad({ currency: 999 })).toThrow(/currency/);
    expect(bad({ balance: 60000 })).toThrow(/balance/);
    expect(bad({ points: { programme: 0, max: 1, balance: 0 } })).toThrow(/points.programme/);
    expect(bad({ pin: { pin: '12', tryLimit: 3, required: true } })).toThrow(/pin.pin/);
    expect(bad({ pin: { pin: '1234', tryLimit: 0, required: true } })).toThrow(/pin.tryLimit/);
    expect(bad({ cardId: '123' })).toThrow(/cardId/);
    expect(() => decodePurseInstallParams(Buffer.alloc(0))).toThrow(/needs install parameters/);
    const b = encodePurseInstallParams(params);
    b[0] = 2;
    expect(() => decodePurseInstallParams(b)).toThrow(/version/);
    expect(() => decodePurseInstallParams(b.subarray(1))).toThrow();
  });

  it('installing the purse without parameters fails cleanly (nothing installed)', async () => {
    const { SimulatedCard } = await import('../../../card-applet-sim/index.ts');
    const card = new SimulatedCard();
    expect(() => card.install(AID, 'purse')).toThrow(/install parameters/);
    expect(card.applets.length).toBe(0);
  });
});
