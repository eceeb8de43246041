// `purselab psam issue`, `purselab card info` and `purselab purchase`, spawned through bin/purselab.js as a user
// runs them, on emulated card images (emu:PATH; the PC/SC path is test/rig/purchase.test.ts).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCardImage } from '../../../card-applet-sim/index.ts';
import { A } from '../psam/helpers.ts';
import type { PsamApplet } from '../../../card-applet-sim/applets/psam/psam-applet.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'purselab-cli-'));
const CARD = join(dir, 'card.img');
const PSAM = join(dir, 'psam.img');

function purselab(...args: string[]) {
  const r = spawnSync(process.execPath, ['bin/purselab.js', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function oneLine(err: string): string {
  const lines = err.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(err).not.toMatch(/\n\s+at /);
  return lines[0]!;
}

beforeAll(() => {
  expect(purselab('card', 'issue', '--profile', 'fixtures/profiles/demo-3des.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', CARD, '--balance', '10.00').code).toBe(0);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('purselab psam issue', () => {
  it('writes a PSAM image with KCVs, never keys', () => {
    const r = purselab('psam', 'issue', '--profile', 'fixtures/profiles/psam-3des.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', PSAM, '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j).toMatchObject({ psamId: '9990029000000001', algorithm: '3DES', capacity: 1000, batchKey: { version: 1, kcv: '481AA4' }, adminKey: { version: 1, kcv: '51763D' } });
    expect(j.purchaseMasters).toEqual([
      { bin: '999001', algorithm: '3DES', keyVersion: 1, kcv: '1D564C' },
      { bin: '999001', algorithm: 'AES', keyVersion: 1, kcv: '4A7103' },
    ]);
    expect(r.out).not.toMatch(/AEDC83895D466D1F|98A27FE0C80EC773/i);
    const card = loadCardImage(PSAM);
    expect((card.getApplet(A.PSAM_AID) as PsamApplet).capacity.get()).toBe(1000);
  });

  it('refuses to overwrite, and explains a bad profile in one line', () => {
    expect(oneLine(purselab('psam', 'issue', '--profile', 'fixtures/profiles/psam-3des.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', PSAM).err)).toMatch(/already exists .*--force/);
    expect(oneLine(purselab('psam', 'issue', '--profile', 'fixtures/profiles/demo-3des.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', join(dir, 'x.img')).err)).toMatch(/PSAM profile .*unknown field/);
    expect(purselab('psam', 'issue', '--help').out).toMatch(/Usage: purselab psam issue/);
  });
});

describe('purselab card info', () => {
  it('shows the purse with the card number masked', () => {
    const r = purselab('card', 'info', '--reader', `emu:${CARD}`);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^card 999001\*{6}0017/);
    expect(r.out).toMatch(/balance +10\.00 EUR of max 500\.00/);
    expect(r.out).not.toMatch(/9990010000000017/);
    const j = JSON.parse(purselab('card', 'info', '--reader', `emu:${CARD}`, '--json').out);
    expect(j).toMatchObject({ card: '999001******0017', balance: 1000, maxBalance: 50000, currency: 978, exponent: 2, counter: 0, algorithm: '3DES', status: 'active', expiry: '2028-12-31' });
  });

  it('one-line errors: missing reader, no such image', () => {
    expect(oneLine(purselab('card', 'info').err)).toMatch(/--reader NAME is required/);
    expect(oneLine(purselab('card', 'info', '--reader', `emu:${join(dir, 'none.img')}`).err)).toMatch(/purselab card info: .*none\.img/);
  });
});

describe('purselab purchase', () => {
  it('debits 4.20 and shows the result; --json for machines; early release', () => {
    const r = purselab('purchase', '--card', `emu:${CARD}`, '--psam', `emu:${PSAM}`, '--amount', '4.20');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^purchase: debited 4\.20 EUR on card 999001\*{6}0017; balance 5\.80 EUR \(was 10\.00\), counter 1/);
    expect(r.out).toMatch(/PSAM 9990029000000001 transaction 1: S3 verified by the PSAM/);
    const j = JSON.parse(purselab('purchase', '--card', `emu:${CARD}`, '--psam', `emu:${PSAM}`, '--amount', '1', '--variant', 'early-release', '--json').out);
    expect(j).toMatchObject({ ok: true, variant: 'early-release', amount: 100, balance: 480, verifiedBy: 'expected-s3', psamConfirmed: true, psamTransaction: 2 });
  });

  it('insufficient funds: one line, exit 1, nothing debited (and --json says so too)', () => {
    const r = purselab('purchase', '--card', `emu:${CARD}`, '--psam', `emu:${PSAM}`, '--amount', '100.00');
    expect(r.code).toBe(1);
    expect(oneLine(r.err)).toBe('purselab purchase: insufficient funds: the card holds 4.80 EUR, the purchase is 100.00 EUR; nothing was debited');
    const j = purselab('purchase', '--card', `emu:${CARD}`, '--psam', `emu:${PSAM}`, '--amount', '100.00', '--json');
    expect(j.code).toBe(1);
    expect(JSON.parse(j.out)).toMatchObject({ ok: false, outcome: 'refused', stage: 'psam-init', cardDebited: 'no', sw: '9401' });
    expect(JSON.parse(purselab('card', 'info', '--reader', `emu:${CARD}`, '--json').out).balance).toBe(480);
  });

  it('usage errors (exit 2) and amount errors (exit 1), each one line', () => {
    const run = (...a: string[]) => purselab('purchase', '--card', `emu:${CARD}`, '--psam', `emu:${PSAM}`, ...a);
    expect(oneLine(run('--amount', '4.205').err)).toMatch(/'4\.205' has 3 decimals; this currency has 2/);
    expect(oneLine(run('--amount=-1').err)).toMatch(/not a plain decimal number/);
    expect(oneLine(run('--amount', '0').err)).toMatch(/more than 0/);
    expect(run('--amount', '1', '--variant', 'fast').code).toBe(2);
    expect(oneLine(run().err)).toMatch(/--amount is required/);
    expect(oneLine(purselab('purchase', '--card', 'x', '--psam', 'x', '--amount', '1').err)).toMatch(/two different readers/);
    expect(oneLine(run('--authenticate', '--amount', '1').err)).toMatch(/no --amount/);
    expect(purselab('purchase', '--help').out).toMatch(/--variant V +standard \(default\) or early-release/);
  }, 90_000); // eight CLI processes one after another (~1 s each through tsx; 10 s in CI beside other workers)

  it('--authenticate: counter + 1, balance unchanged', () => {
    const r = purselab('purchase', '--card', `emu:${CARD}`, '--psam', `emu:${PSAM}`, '--authenticate', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ kind: 'authentication', amount: 0, balance: 480, balanceBefore: 480, counter: 3 });
  });
});
