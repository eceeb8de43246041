// Throw-away SoftHSM2 tokens for tests and benchmarks: one temp directory per process holding the token
// store and a config (never /var/lib/softhsm), SOFTHSM2_CONF pointed at it for this process, and the tokens
// initialised up front (SoftHSM2 reads its config and scans its tokens at C_Initialize).

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_MODULE = process.env.PURSELAB_SOFTHSM_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';

export interface TempToken {
  readonly dir: string;
  readonly module: string;
  readonly label: string;
  readonly pin: string;
  readonly soPin: string;
  /** Run OpenSC's pkcs11-tool against this token, returning its stdout. */
  pkcs11Tool(args: string[]): string;
}

export interface TempTokens {
  readonly dir: string;
  readonly module: string;
  readonly tokens: readonly TempToken[];
  token(label: string): TempToken;
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
    return (e as { code?: string }).code === 'ENOENT' ? 'pkcs11-tool (OpenSC) is not on PATH' : undefined;
  }
}

/**
 * Create a temp token store with one token per label (user PIN 123456, SO PIN 12345678) and point this
 * process's SOFTHSM2_CONF at it. Call before the module is first initialised in this process.
 */
export function createTempTokens(labels: readonly string[], pin = '123456', soPin = '12345678'): TempTokens {
  const dir = mkdtempSync(join(tmpdir(), 'purselab-softhsm-'));
  const store = join(dir, 'tokens');
  mkdirSync(store);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${store}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`);
  process.env.SOFTHSM2_CONF = conf;
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  const tokens = labels.map((label): TempToken => {
    execFileSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', pin, '--so-pin', soPin], { env, stdio: 'pipe' });
    return {
      dir,
      module: SOFTHSM_MODULE,
      label,
      pin,
      soPin,
      pkcs11Tool: (args) =>
        execFileSync('pkcs11-tool', ['--module', SOFTHSM_MODULE, '--token-label', label, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }).toString(),
    };
  });
  return {
    dir,
    module: SOFTHSM_MODULE,
    tokens,
    token: (label) => {
      const t = tokens.find((x) => x.label === label);
      if (!t) throw new Error(`no temp token '${label}'`);
      return t;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
