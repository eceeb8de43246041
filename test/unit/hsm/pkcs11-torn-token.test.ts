// Opening a SoftHSM2 token while another process logs in to it, again and again. SoftHSM2 2.6.1 rewrites the
// token's file at every login and releases its lock before writing it, so a fresh initialisation of the
// module can read the token as empty (hsm-bridge/pkcs11/torn-token.ts). Pkcs11Hsm.open tries such an open
// again on a fresh initialisation: every open below works, and some of them needed it.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { HsmDeviceError, HsmPinError, HsmTokenNotFoundError } from '../../../hsm-bridge/errors.ts';
import { opensslLegacyActive } from '../../../hsm-bridge/pkcs11/binding.ts';
import { childExecArgv } from '../../../hsm-bridge/pkcs11/session-processes.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { looksTorn, openUntilWhole } from '../../../hsm-bridge/pkcs11/torn-token.ts';

const missing = softhsmMissing();
const skip = missing ?? (opensslLegacyActive() ? undefined : 'needs --openssl-legacy-provider in this worker (vitest.config.ts execArgv sets it)');
// more than one token, as in a real store: the scan at initialisation reads them all
const rig = missing ? undefined : createTempTokens(['purselab-torn', 'purselab-torn-other']);
afterAll(() => rig?.remove());

const support = (name: string): string => fileURLToPath(new URL(`./pkcs11-support/${name}`, import.meta.url));

/**
 * The opener stops once this many opens were tried again, or after this long (it usually takes 10-60 opens,
 * under a second; at times of little contention a few hundred).
 */
const WANT_RESCANS = 2;
const MAX_MS = 45_000;

/** Start a support script on the test token (module, label, PIN, then args); its stdout is collected. */
function start(script: string, args: string[]): { child: ChildProcess; out: () => string } {
  const t = rig!.token('purselab-torn');
  const child = spawn(process.execPath, [...childExecArgv(), support(script), t.module, t.label, t.pin, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  return { child, out: () => out };
}

describe.skipIf(!!skip)(`PKCS#11 open while another process logs in${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('every open works; some were tried again after a torn first look at the token', async () => {
    const writer = start('login-loop.ts', []);
    try {
      await new Promise<void>((resolve, reject) => {
        writer.child.stdout!.on('data', () => writer.out().includes('ready') && resolve());
        writer.child.once('exit', (code) => reject(new Error(`login-loop exited ${String(code)}`)));
      });
      const opener = start('open-repeatedly.ts', [String(MAX_MS), String(WANT_RESCANS)]);
      const [code] = (await once(opener.child, 'exit')) as [number | null];
      expect(code).toBe(0);
      const report = JSON.parse(opener.out()) as { rounds: number; opened: number; errors: string[]; rescans: number };
      expect(report.errors).toEqual([]);
      expect(report.opened).toBe(report.rounds);
      // the race happened (else this test proves nothing) and the opens that met it were tried again
      expect(report.rescans).toBeGreaterThan(0);
    } finally {
      writer.child.kill('SIGKILL');
    }
  }, 120_000);
});

describe('torn first look: what is tried again', () => {
  const torn = new HsmTokenNotFoundError('purselab', ['other']);
  /** An open that fails with `e` until its try number `works` (never, by default); counts its tries. */
  const failing = (e: Error, works = Infinity) => {
    const f = async (): Promise<void> => {
      if (++f.tries < works) throw e;
    };
    f.tries = 0;
    return f;
  };
  it('tries again after a torn look while the module can be initialised anew, up to the limit', async () => {
    const twice = failing(torn, 3);
    await openUntilWhole(twice, () => true);
    expect(twice.tries).toBe(3);
    const never = failing(torn);
    await expect(openUntilWhole(never, () => true, 4)).rejects.toBe(torn);
    expect(never.tries).toBe(4);
  });
  it('does not try again when the module stays loaded by someone else, or the failure is not a torn look', async () => {
    const shared = failing(torn);
    await expect(openUntilWhole(shared, () => false)).rejects.toBe(torn);
    expect(shared.tries).toBe(1);
    const pin = new HsmPinError('HSM_PIN_INCORRECT', 'wrong user PIN');
    const wrongPin = failing(pin);
    await expect(openUntilWhole(wrongPin, () => true)).rejects.toBe(pin);
    expect(wrongPin.tries).toBe(1);
  });
  it('a torn look is a missing token, or a login that finds no user PIN or fails in general', () => {
    expect(looksTorn(torn)).toBe(true);
    expect(looksTorn(new HsmDeviceError('login', 'CKR_USER_PIN_NOT_INITIALIZED'))).toBe(true);
    expect(looksTorn(new HsmDeviceError('login', 'CKR_GENERAL_ERROR'))).toBe(true);
    expect(looksTorn(new HsmDeviceError('login', 'CKR_DEVICE_MEMORY'))).toBe(false);
    expect(looksTorn(new HsmPinError('HSM_PIN_INCORRECT', 'wrong user PIN'))).toBe(false);
  });
});
