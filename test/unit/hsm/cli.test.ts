// purselab hsm init / keys / health on the software backend (the PKCS#11 path is in pkcs11.test.ts).

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import type { CliIo } from '../../../src/cli/command.ts';
import { hsmHealthCommand } from '../../../src/cli/commands/hsm-health.ts';
import { DEFAULT_KEY_SET, hsmInitCommand } from '../../../src/cli/commands/hsm-init.ts';
import { hsmKeysCommand } from '../../../src/cli/commands/hsm-keys.ts';
import { codeOf } from './conformance.ts';

export function captureIo(): CliIo & { lines: string[]; text(): string } {
  const lines: string[] = [];
  return { lines, out: (l) => lines.push(l), err: (l) => lines.push(l), text: () => lines.join('\n') };
}

const keySet = JSON.parse(readFileSync(DEFAULT_KEY_SET, 'utf8')) as { masterKeys: { label: string; version: number; kcv: string }[] };

describe('purselab hsm (software backend)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'purselab-hsmcli-'));
  const store = join(dir, 'hsm.store');
  beforeAll(() => {
    process.env.PURSELAB_HSM_MASTER = 'cli-test';
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('init creates the key set, with every KCV and derivation checked', async () => {
    const io = captureIo();
    expect(await hsmInitCommand.run(['--software', store], io)).toBe(0);
    expect(io.text()).toContain('derivation check: 10/10');
    for (const m of keySet.masterKeys) expect(io.text()).toMatch(new RegExp(`imported\\s+${m.label} v${m.version}\\s.*KCV ${m.kcv}`));
    expect(io.text()).toMatch(/generated opal-record-enc v1/);
  });

  it('init again keeps what is there', async () => {
    const io = captureIo();
    expect(await hsmInitCommand.run(['--software', store, '--json'], io)).toBe(0);
    const out = JSON.parse(io.text()) as { keys: { status: string }[]; derivationChecks: { ok: boolean }[] };
    expect(out.keys.every((k) => k.status === 'present')).toBe(true);
    expect(out.derivationChecks.every((c) => c.ok)).toBe(true);
  });

  it('keys lists labels, versions and KCVs as the key set has them', async () => {
    const io = captureIo();
    expect(await hsmKeysCommand.run(['--software', store, '--json'], io)).toBe(0);
    const keys = JSON.parse(io.text()) as { label: string; version: number; kcv: string }[];
    for (const m of keySet.masterKeys) expect(keys.find((k) => k.label === m.label && k.version === m.version)?.kcv).toBe(m.kcv);
    expect(keys.map((k) => k.label)).toContain('purselab-transport');
  });

  it('health answers and exits 0', async () => {
    const io = captureIo();
    expect(await hsmHealthCommand.run(['--software', store], io)).toBe(0);
    expect(io.lines[0]).toMatch(/^OK /);
  });

  it('refuses to overwrite a different key under a key-set label', async () => {
    const other = join(dir, 'other.store');
    const h = new SoftwareHsm({ path: other, create: true, passphrase: 'cli-test', scrypt: { N: 1024, r: 8, p: 1 } });
    await h.open();
    await h.generateKey({ label: 'issuer-load-3des', version: 1 }, 'DES3-2KEY', ['derive']);
    await h.close();
    const io = captureIo();
    const e = await hsmInitCommand.run(['--software', other], io).catch((x) => x);
    expect(e.message).toMatch(/issuer-load-3des' v1 is already in the HSM with KCV/);
  });

  it('says what is wrong with the command line', async () => {
    expect(await codeOf(hsmKeysCommand.run([], captureIo()))).toBe('USAGE');
    expect(await codeOf(hsmKeysCommand.run(['--software', store, '--pkcs11', 'x'], captureIo()))).toBe('USAGE');
    expect(await codeOf(hsmKeysCommand.run(['--pkcs11', '/x.so'], captureIo()))).toBe('USAGE');
    expect(hsmInitCommand.help).toContain('--pkcs11 MODULE --token LABEL');
  });
});
