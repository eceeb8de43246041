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
import { Pkcs11Hsm } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { childExecArgv } from '../../../hsm-bridge/pkcs11/session-processes.ts';
import { createTempTokens, softhsmMissing } from '../../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { looksTorn, openUntilWhole, readUntilWhole } from '../../../hsm-bridge/pkcs11/torn-token.ts';

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
/** The health checks stop once this many read the token again, or after this long. */
const WANT_REREADS = 3;
const HEALTH_MS = 20_000;

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

/** Resolves once a login loop says it is looping. */
function ready(w: ReturnType<typeof start>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    w.child.stdout!.on('data', () => w.out().includes('ready') && resolve());
    w.child.once('exit', (code) => reject(new Error(`login-loop exited ${String(code)}`)));
  });
}

/**
 * Stop a login loop between two logins (SIGTERM): killed in the middle of one, it can leave the token's file
 * empty and the token gone for the tests after it. SIGKILL only if it does not stop.
 */
async function stop(w: ReturnType<typeof start>): Promise<void> {
  if (w.child.exitCode !== null || w.child.signalCode !== null) return;
  const gone = once(w.child, 'exit');
  w.child.kill('SIGTERM');
  const t = setTimeout(() => w.child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

describe.skipIf(!!skip)(`PKCS#11 open while another process logs in${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('every open works; some were tried again after a torn first look at the token', async () => {
    const writer = start('login-loop.ts', []);
    try {
      await ready(writer);
      const opener = start('open-repeatedly.ts', [String(MAX_MS), String(WANT_RESCANS)]);
      const [code] = (await once(opener.child, 'exit')) as [number | null];
      expect(code).toBe(0);
      const report = JSON.parse(opener.out()) as { rounds: number; opened: number; errors: string[]; rescans: number };
      expect(report.errors).toEqual([]);
      expect(report.opened).toBe(report.rounds);
      // the race happened (else this test proves nothing) and the opens that met it were tried again
      expect(report.rescans).toBeGreaterThan(0);
    } finally {
      await stop(writer);
    }
  }, 120_000);
});

describe.skipIf(!!skip)(`PKCS#11 health while other processes log in${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('every health check of a running backend answers; some read the token again after a torn read', async () => {
    // two processes logging in: a running process's C_GetTokenInfo then meets a torn token file often
    // (docs/hsm-bridge.md, "Opening a token": about one call in ten)
    const writers = [start('login-loop.ts', []), start('login-loop.ts', [])];
    const t = rig!.token('purselab-torn');
    const hsm = new Pkcs11Hsm({ module: t.module, tokenLabel: t.label, pin: t.pin });
    try {
      await Promise.all(writers.map(ready));
      await hsm.open();
      const failures: string[] = [];
      const until = Date.now() + HEALTH_MS;
      let checks = 0;
      while (Date.now() < until && hsm.tokenRereads < WANT_REREADS) {
        const h = await hsm.health();
        checks++;
        if (!h.ok) failures.push(h.detail);
      }
      expect(failures).toEqual([]);
      expect(checks).toBeGreaterThan(0);
      // the race happened, and the checks that met it read the token again
      expect(hsm.tokenRereads).toBeGreaterThan(0);
    } finally {
      await Promise.all(writers.map(stop));
      await hsm.close();
    }
  }, 60_000);
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
  it("a running process's token info read is made again only after CKR_GENERAL_ERROR, up to the limit", async () => {
    const pkcs11Error = (ckr: string) => Object.assign(new Error(ckr), { name: 'Pkcs11Error' });
    /** A read that throws `e` until its try number `works` (never, by default); counts its tries. */
    const reading = (e: Error, works = Infinity) => {
      const f = (): string => {
        if (++f.tries < works) throw e;
        return 'info';
      };
      f.tries = 0;
      return f;
    };
    let again = 0;
    const torn3 = reading(pkcs11Error('CKR_GENERAL_ERROR'), 3);
    await expect(readUntilWhole(torn3, () => again++)).resolves.toBe('info');
    expect([torn3.tries, again]).toEqual([3, 2]);
    const general = pkcs11Error('CKR_GENERAL_ERROR');
    const never = reading(general);
    await expect(readUntilWhole(never, () => undefined, 5)).rejects.toBe(general);
    expect(never.tries).toBe(5);
    const removed = pkcs11Error('CKR_TOKEN_NOT_PRESENT');
    const gone = reading(removed);
    await expect(readUntilWhole(gone, () => undefined)).rejects.toBe(removed);
    expect(gone.tries).toBe(1);
  });
  it('a torn look is a missing token, or a login that finds no user PIN or fails in general', () => {
    expect(looksTorn(torn)).toBe(true);
    expect(looksTorn(new HsmDeviceError('login', 'CKR_USER_PIN_NOT_INITIALIZED'))).toBe(true);
    expect(looksTorn(new HsmDeviceError('login', 'CKR_GENERAL_ERROR'))).toBe(true);
    expect(looksTorn(new HsmDeviceError('login', 'CKR_DEVICE_MEMORY'))).toBe(false);
    expect(looksTorn(new HsmPinError('HSM_PIN_INCORRECT', 'wrong user PIN'))).toBe(false);
  });
});
