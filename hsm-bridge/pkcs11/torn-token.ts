// Looking at a token again when the first look was torn: at open, and when a running process reads the
// token's info.
//
// SoftHSM2 2.6.1 (Debian's) keeps each token in files and rewrites the token's own file (token.object) at
// every login, to update its flags. It truncates the file, releases its lock, and only then writes the new
// bytes (strace: ftruncate, F_UNLCK, write). A process that initialises the module in that moment, typically
// one that was waiting for the lock and is woken by the release, reads the token as empty. Then the token
// has no label, so it is not found, or its login fails with CKR_USER_PIN_NOT_INITIALIZED or CKR_GENERAL_ERROR.
// With another process logging in every 5 ms, about one initialisation in ten was hit; with logins back to
// back, more, and in runs (docs/hsm-bridge.md, "Opening a token"). Where the bridge starts processes that log
// in to the same token (session processes, servers started together), such an open is tried again on a fresh
// initialisation of the module, a few times, with short random pauses (openUntilWhole). A token that is
// really missing is reported after those tries.
//
// A process already running keeps the keys it read before; only its reads of the token's info
// (C_GetTokenInfo, for health) meet the torn file, as CKR_GENERAL_ERROR. Those are made again after a short
// pause (readUntilWhole).

import { HsmDeviceError, HsmTokenNotFoundError } from '../errors.ts';
import { ckrOf } from './binding.ts';

/** Opens tried at most, counting the first. */
export const TORN_OPEN_ATTEMPTS = 8;

/** The failures a torn read of the token's file gives at open. */
export function looksTorn(e: unknown): boolean {
  if (e instanceof HsmTokenNotFoundError) return true;
  return e instanceof HsmDeviceError && (e.ckr === 'CKR_USER_PIN_NOT_INITIALIZED' || e.ckr === 'CKR_GENERAL_ERROR');
}

/**
 * Run `open` until it succeeds; try again only after a failure that looks torn, and only while `fresh()` says
 * the next try initialises the module anew (nobody else in this process holds it). `open` is told which try
 * it is (0 for the first) and must leave nothing behind when it fails.
 */
export async function openUntilWhole(open: (again: number) => Promise<void>, fresh: () => boolean, attempts = TORN_OPEN_ATTEMPTS): Promise<void> {
  for (let again = 0; ; again++) {
    try {
      await open(again);
      return;
    } catch (e) {
      if (again + 1 >= attempts || !looksTorn(e) || !fresh()) throw e;
      // a random pause: two processes that tore each other's reads do not meet again in step
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 10 * (again + 1)));
    }
  }
}

/** Reads of the token's info in a running process tried at most, counting the first. */
export const TORN_READ_ATTEMPTS = 8;

/**
 * Run a synchronous token call that reads the token's own file (C_GetTokenInfo) in a process that has the
 * module open: another process's login can tear that read too, and SoftHSM2 then answers CKR_GENERAL_ERROR
 * (about one call in ten with two processes logging in every 5 ms, and in runs: a read made again at once
 * can meet the same torn file). The call is made again after a pause of 1-3 ms, up to `attempts` times in
 * all; `again` is told each time.
 */
export async function readUntilWhole<T>(read: () => T, again: () => void, attempts = TORN_READ_ATTEMPTS): Promise<T> {
  for (let tries = 1; ; tries++) {
    try {
      return read();
    } catch (e) {
      if (tries >= attempts || ckrOf(e) !== 'CKR_GENERAL_ERROR') throw e;
      again();
      await new Promise((r) => setTimeout(r, 1 + Math.random() * 2));
    }
  }
}
