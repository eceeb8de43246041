// SoftHSM2 (and any module that uses OpenSSL) runs on Node's own OpenSSL 3 when loaded into Node, and
// OpenSSL 3 keeps single DES in its legacy provider, which Node loads only when started with
// --openssl-legacy-provider. The PKCS#11 backend needs single DES for derived 2-key 3DES card keys, so the
// CLI commands that open a PKCS#11 token run themselves again with that flag when it is missing.

import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import { opensslLegacyActive } from './binding.ts';

const GUARD = 'PURSELAB_LEGACY_RELAUNCHED';

const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * When this process lacks the legacy provider, run the same command line again in a child Node with
 * --openssl-legacy-provider (stdio inherited) and resolve with its exit code; otherwise undefined
 * (carry on in this process). SIGINT, SIGTERM and SIGHUP sent to this process are passed on to the child
 * (a server stopped with SIGTERM shuts down cleanly); a SIGKILL cannot be, so supervisors that kill hard
 * should start Node with NODE_OPTIONS=--openssl-legacy-provider and avoid the relaunch.
 * Set PURSELAB_NO_RELAUNCH=1 to never do it.
 */
export function relaunchWithLegacyOpenSsl(): Promise<number> | undefined {
  if (opensslLegacyActive() || process.env[GUARD] || process.env.PURSELAB_NO_RELAUNCH) return undefined;
  const args = ['--openssl-legacy-provider', ...process.execArgv, ...process.argv.slice(1)];
  const child = spawn(process.execPath, args, { stdio: 'inherit', env: { ...process.env, [GUARD]: '1' } });
  const forward = (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, forward);
  const done = () => {
    for (const s of FORWARDED) process.off(s, forward);
  };
  return new Promise((resolve) => {
    child.on('error', () => {
      done();
      resolve(1);
    });
    child.on('exit', (code, signal) => {
      done();
      resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1));
    });
  });
}
