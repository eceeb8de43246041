// `purselab hsm-sim`: help, usage errors, a wrong master passphrase, and clean shutdown on SIGINT / SIGTERM.

import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../../hsm-bridge/serial/lab.ts';
import { SerialHsm } from '../../../hsm-bridge/serial/backend.ts';
import { startSim, tempDir } from './serial-support/rig.ts';

const cli = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ['bin/purselab.js', 'hsm-sim', ...args], { cwd: REPO_ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 30_000 });

describe('purselab hsm-sim', () => {
  it('--help explains the serial and TCP forms, the key store and the faults', () => {
    const r = cli(['--help']);
    expect(r.status).toBe(0);
    for (const s of ['--serial PATH', '--baud', '--tcp PORT', '--keystore FILE', '--allow-faults', 'PURSELAB_HSM_SIM_MASTER', 'SIGINT']) expect(r.stdout).toContain(s);
  });

  it('usage errors exit 2 with one line', () => {
    for (const [args, msg] of [
      [['--keystore', 'x'], 'exactly one of --serial PATH or --tcp PORT'],
      [['--tcp', '0', '--serial', '/dev/null', '--keystore', 'x'], 'exactly one'],
      [['--tcp', '0'], '--keystore FILE is required'],
      [['--tcp', '99999', '--keystore', 'x'], '--tcp must be an integer'],
      [['--tcp', '0', '--baud', '9600', '--keystore', 'x'], '--baud goes with --serial'],
      [['--tcp', '0', '--inter-char-ms', '500', '--keystore', 'x'], '--inter-char-ms goes with --serial'],
      [['--serial', '/dev/null', '--inter-char-ms', '0', '--keystore', 'x'], '--inter-char-ms must be an integer 1..60000'],
      [['--tcp', '0', '--keystore', 'x', '--firmware', 'short'], '9 printable characters'],
    ] as const) {
      const r = cli([...args]);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain(msg);
    }
  }, 90_000); // eight simulator processes one after another (~1 s each through tsx; 9 s in CI beside other workers)

  it('a missing store or a wrong master passphrase is a one-line error, not a simulator', async () => {
    const tmp = tempDir();
    try {
      const store = join(tmp.dir, 's.store');
      const missing = cli(['--tcp', '0', '--keystore', store], { PURSELAB_HSM_SIM_MASTER: 'a' });
      expect(missing.status).toBe(1);
      expect(missing.stderr).toMatch(/does not exist/);
      const sim = await startSim({ tcp: 0, keystore: store });
      expect(await sim.stop()).toBe(0);
      const wrong = cli(['--tcp', '0', '--keystore', store], { PURSELAB_HSM_SIM_MASTER: 'not-the-passphrase' });
      expect(wrong.status).toBe(1);
      expect(wrong.stderr).toMatch(/passphrase/);
    } finally {
      tmp.cleanup();
    }
  }, 60_000);

  it('stops cleanly on SIGINT and on SIGTERM (exit 0), keys kept in the store', async () => {
    const tmp = tempDir();
    try {
      const keystore = join(tmp.dir, 's.store');
      let sim = await startSim({ tcp: 0, keystore });
      const hsm = new SerialHsm({ line: { kind: 'tcp', host: '127.0.0.1', port: sim.port }, connectTimeoutMs: 10_000 });
      await hsm.open();
      const info = await hsm.generateKey({ label: 'kept', version: 1 }, 'AES-128', ['mac']);
      expect(await sim.stop('SIGINT')).toBe(0);
      expect(sim.stderr()).toContain('SIGINT: shutting down');
      sim = await startSim({ tcp: sim.port, keystore, create: false });
      expect((await hsm.listKeys()).filter((k) => k.label === 'kept')).toEqual([info]);
      await hsm.close();
      expect(await sim.stop('SIGTERM')).toBe(0);
      expect(sim.stderr()).toContain('stopped');
    } finally {
      tmp.cleanup();
    }
  }, 60_000);
});
