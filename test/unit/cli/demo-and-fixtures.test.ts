// The README's entry points, in-process: `purselab demo --in-process` completes with value conserved (card
// flows, then the servers' Internet flows), and the
// shipped APDU script passes against a freshly issued card with the reference applet.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const cli = (args: string[]) => spawnSync(process.execPath, ['bin/purselab.js', ...args], { encoding: 'utf8', timeout: 60_000 });
const tmp = mkdtempSync(join(tmpdir(), 'purselab-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('purselab demo --in-process', () => {
  it('loads, buys, authenticates, closes a MACed batch and reports value conserved (exit 0)', () => {
    const r = cli(['demo', '--in-process', '--keep', tmp]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('in-process emulator channels');
    expect(r.stdout).toMatch(/balance 5\.00 EUR -> 25\.00 EUR/);
    expect(r.stdout).toMatch(/batch 1: 3 records, purchases 5\.20 EUR, MAC verified/);
    expect(r.stdout).toMatch(/= 19\.80 EUR: conserved/);
    // The network half: +10.00 loaded from the bank, -4.20 paid at the merchant.
    expect(r.stdout).toMatch(/loaded; card 19\.80 EUR -> 29\.80 EUR/);
    expect(r.stdout).toMatch(/card 29\.80 EUR -> 25\.60 EUR/);
    expect(r.stdout).toMatch(/demo: every check held/);
    // The kept card image holds the final balance.
    const info = cli(['card', 'info', '--reader', `emu:${join(tmp, 'card.img')}`, '--json']);
    expect(info.status, info.stderr).toBe(0);
    expect(JSON.parse(info.stdout)).toMatchObject({ balance: 2560 });
  });
});

describe('fixtures/scripts/reference-applet.apdu', () => {
  it('passes against a new card with the reference applet, and fails against one without it', () => {
    const withRef = join(tmp, 'ref.img');
    const without = join(tmp, 'noref.img');
    const issue = (out: string, extra: string[]) =>
      cli(['card', 'issue', '--profile', 'fixtures/profiles/demo-aes.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', out, ...extra]);
    expect(issue(withRef, ['--reference']).status).toBe(0);
    expect(issue(without, []).status).toBe(0);
    const pass = cli(['script', 'fixtures/scripts/reference-applet.apdu', '--reader', `emu:${withRef}`]);
    expect(pass.status, pass.stdout + pass.stderr).toBe(0);
    expect(pass.stdout).toContain('5 passed, 0 failed');
    const fail = cli(['script', 'fixtures/scripts/reference-applet.apdu', '--reader', `emu:${without}`]);
    expect(fail.status).toBe(1);
  });
});
