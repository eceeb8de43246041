// What a machine without PC/SC sees: the PC/SC commands fail with one line naming what to install or
// start, exit 1, no stack trace, no hang. Runs everywhere (no pcscd needed).

import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const REPO = resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const cli = (args: string[], env: NodeJS.ProcessEnv) =>
  spawnSync(process.execPath, [join(REPO, 'bin/purselab.js'), ...args], { cwd: REPO, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 20_000 });

let bindingLoads = true;
try {
  await import('pcsclite' as string);
} catch {
  bindingLoads = false;
}

describe('PC/SC commands without PC/SC', () => {
  it.each([['readers'], ['readers', '--watch'], ['apdu', '--reader', 'Any Reader', '00A4040000']].map((a) => [a.join(' '), a] as const))('without the binding: purselab %s', (_label, args) => {
    const r = cli(args, { PURSELAB_PCSCLITE_MODULE: 'purselab-no-such-pcsclite' });
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/not installed: install the Debian packages pcscd libpcsclite-dev/);
  });

  it.skipIf(!bindingLoads)('binding present, pcscd not running (no socket): says pcscd is not running', () => {
    const r = cli(['readers'], { PCSCLITE_CSOCK_NAME: '/nonexistent/purselab/pcscd.comm' });
    expect(r.status).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/pcscd is not running/);
  });

  it('emulate and readers have help', () => {
    for (const c of ['emulate', 'readers']) {
      const r = cli([c, '--help'], {});
      expect(r.status).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: purselab ${c}`));
    }
  });
});
