// One way to describe and create any backend, for servers and the CLI: `createHsm(config)` returns an Hsm that
// is not yet opened. Secrets are never part of the config, only the names of the environment variables
// that hold them.

import { HsmBadInputError } from './errors.ts';
import type { Hsm } from './hsm.ts';
import type { Pkcs11HsmOptions } from './pkcs11/pkcs11-hsm.ts';
import type { SoftwareHsmOptions } from './software/software-hsm.ts';

export type HsmConfig =
  | ({ readonly backend: 'software' } & Pick<SoftwareHsmOptions, 'path' | 'create' | 'passphraseEnv' | 'prompt' | 'scrypt'>)
  | ({ readonly backend: 'pkcs11' } & Omit<Pkcs11HsmOptions, 'pin'>)
  | { readonly backend: 'serial'; /** tcp:HOST:PORT or [serial:]PATH[@BAUD][;inter-char-ms=N] */ readonly line: string; readonly headerLength?: number };

/** Create (not open) the backend a config describes. Backends are loaded on demand (no native addon unless used). */
export async function createHsm(config: HsmConfig): Promise<Hsm> {
  switch (config?.backend) {
    case 'software': {
      const { SoftwareHsm } = await import('./software/software-hsm.ts');
      const { backend: _b, ...opts } = config;
      return new SoftwareHsm(opts);
    }
    case 'pkcs11': {
      const { Pkcs11Hsm } = await import('./pkcs11/pkcs11-hsm.ts');
      const { backend: _b, ...opts } = config;
      return new Pkcs11Hsm(opts);
    }
    case 'serial': {
      const { SerialHsm, parseLine } = await import('./serial/backend.ts');
      return new SerialHsm({ line: parseLine(config.line), ...(config.headerLength ? { headerLength: config.headerLength } : {}) });
    }
    default:
      throw new HsmBadInputError(`unknown HSM backend ${JSON.stringify((config as { backend?: unknown })?.backend)} (software, pkcs11, serial)`);
  }
}

/** A short, secret-free description of a config for logs and CLI output. */
export function describeConfig(config: HsmConfig): string {
  switch (config.backend) {
    case 'software':
      return config.path ? `software key store ${config.path}` : 'software (in memory)';
    case 'pkcs11':
      return `PKCS#11 token '${config.tokenLabel}' via ${config.module}`;
    case 'serial':
      return `host-command HSM on ${config.line}`;
  }
}

export const HSM_SPEC_ENV = 'PURSELAB_HSM';

/**
 * A config from one string (env PURSELAB_HSM, server settings):
 *   software:PATH                      key-store file (passphrase: PURSELAB_HSM_MASTER)
 *   pkcs11:MODULE#TOKEN[#PIN_ENV][;processes=N][;master-copies=off]
 *                                      PKCS#11 module and token label (PIN: PURSELAB_HSM_PIN or PIN_ENV);
 *                                      processes=N: N session processes (docs/hsm-bridge.md: for tokens whose
 *                                      work does not spread over threads, such as SoftHSM2);
 *                                      master-copies=off: derive card keys from the token objects themselves,
 *                                      never from session copies of the master keys (default on)
 *   serial:LINE                        host-command HSM: LINE = tcp:HOST:PORT or PATH[@BAUD][;inter-char-ms=N]
 *                                      (N: how long a partial answer may go quiet before it is dropped, default 50)
 */
export function parseHsmSpec(text: string): HsmConfig {
  const m = /^(software|pkcs11|serial):(.+)$/.exec(text.trim());
  if (!m) throw new HsmBadInputError(`cannot read HSM spec '${text}' (software:PATH | pkcs11:MODULE#TOKEN[#PIN_ENV][;processes=N][;master-copies=off] | serial:LINE)`);
  const rest = m[2]!;
  if (m[1] === 'software') return { backend: 'software', path: rest };
  if (m[1] === 'serial') return { backend: 'serial', line: rest };
  const [main, ...options] = rest.split(';');
  const [module, tokenLabel, pinEnv] = main!.split('#');
  if (!module || !tokenLabel) throw new HsmBadInputError(`pkcs11 spec needs MODULE#TOKEN, got '${rest}'`);
  let processes: number | undefined;
  let masterCopies: boolean | undefined;
  for (const o of options) {
    const p = /^processes=(\d{1,2})$/.exec(o.trim());
    const c = /^master-copies=(on|off)$/.exec(o.trim());
    if (p) processes = Number(p[1]);
    else if (c) masterCopies = c[1] === 'on';
    else throw new HsmBadInputError(`pkcs11 spec option '${o}' is not known (processes=N, master-copies=on|off)`);
  }
  return {
    backend: 'pkcs11',
    module,
    tokenLabel,
    ...(pinEnv ? { pinEnv } : {}),
    ...(processes !== undefined ? { processes } : {}),
    ...(masterCopies !== undefined ? { masterCopies } : {}),
  };
}
