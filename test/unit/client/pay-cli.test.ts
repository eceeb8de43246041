// `purselab pay` argument handling as a user meets it: without a terminal on stdin it refuses to run unless
// --yes was given (never hangs on a prompt nobody can answer), and usage errors are one line with exit 2.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { repoPath } from '../psam/helpers.ts';

const run = (args: string[]) => spawnSync(process.execPath, [repoPath('bin/purselab.js'), 'pay', ...args], { input: '', encoding: 'utf8', timeout: 30_000 });

describe('purselab pay (CLI)', () => {
  it('refuses to ask on a stdin that is not a terminal: a clear message, exit 2, nothing opened', () => {
    const r = run(['http://127.0.0.1:9/orders/0123456789ABCDEF0123/pay', '--reader', 'emu:/nonexistent/card.img']);
    expect(r.status).toBe(2);
    expect(r.stderr.trim()).toBe('purselab pay: stdin is not a terminal, so the amount cannot be confirmed: pass --yes to accept it without asking');
  });

  it('usage errors: no URL, no reader, a bad PIN', () => {
    expect(run(['--reader', 'x', '--yes']).stderr).toMatch(/the payment page URL is required/);
    expect(run(['http://x/pay', '--yes']).stderr).toMatch(/--reader NAME is required/);
    const pin = run(['http://x/pay', '--reader', 'x', '--yes', '--pin', '12']);
    expect(pin.status).toBe(2);
    expect(pin.stderr).toMatch(/--pin must be 4\.\.12 digits/);
  });

  it('--help explains the flow and the exit codes', () => {
    const r = run(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Usage: purselab pay URL --reader NAME/);
    expect(r.stdout).toMatch(/3 cancelled by the cardholder/);
  });
});
