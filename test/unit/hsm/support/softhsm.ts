// A throw-away SoftHSM2 token for tests and benchmarks: its own token directory and config in a temp dir
// (never /var/lib/softhsm), SOFTHSM2_CONF pointed at it for this process, one initialised token.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_MODULE = process.env.PURSELAB_SOFTHSM_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';

export interface TempToken {
  readonly dir: string;
  readonly module: string;
  readonly label: string;
  readonly pin: string;
  readonly soPin: string;
  /** Run pkcs11-tool against this token (OpenSC), returning its stdout. */
  pkcs11Tool(args: string[]): string;
  remove(): void;
}

/** Why SoftHSM2 cannot be used here, or undefined when it can. */
export function softhsmMissing(): string | undefined {
  if (!existsSync(SOFTHSM_MODULE)) return `SoftHSM2 module not found at ${SOFTHSM_MODULE} (apt-get install softhsm2)`;
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'pipe' });
  } catch {
    return 'softhsm2-util is not on PATH (apt-get install softhsm2)';
  }
  return undefined;
}

export function pkcs11ToolMissing(): string | undefined {
  try {
    execFileSync('pkcs11-tool', ['--help'], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    return (e as { status?: number }).status === undefined ? 'pkcs11-tool (OpenSC) is not on PATH' : undefined;
  }
}

/**
 * Create a token in a fresh temp directory and point this process's SOFTHSM2_CONF at it. Must run before
 * the module is first initialised in this process (SoftHSM2 reads its config at C_Initialize).
 */
export function createTempToken(label = 'purselab-test', pin = '123456', soPin = '12345678'): TempToken {
  const dir = mkdtempSync(join(tmpdir(), 'purselab-softhsm-'));
  const tokens = join(dir, 'tokens');
  execFileSync('mkdir', ['-p', tokens]);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  process.env.SOFTHSM2_CONF = conf;
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], { env, stdio: 'pipe' });
  return {
    dir,
    module: SOFTHSM_MODULE,
    label,
    pin,
    soPin,
    pkcs11Tool: (args) =>
      execFileSync('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', label, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString(),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
