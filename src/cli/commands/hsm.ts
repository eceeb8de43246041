// `purselab hsm`: the HSM bridge's commands (init, keys, health), and what they share: choosing a backend
// from the command line (or PURSELAB_HSM), opening and closing it.

import { createHsm, describeConfig, HSM_SPEC_ENV, parseHsmSpec, type HsmConfig } from '../../../hsm-bridge/config.ts';
import type { Hsm } from '../../../hsm-bridge/hsm.ts';
import { DEFAULT_PIN_ENV } from '../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';
import { relaunchWithLegacyOpenSsl } from '../../../hsm-bridge/pkcs11/relaunch.ts';
import { DEFAULT_MASTER_ENV } from '../../../hsm-bridge/software/passphrase.ts';
import { UsageError, type CliCommand } from '../command.ts';

/** parseArgs options every hsm subcommand takes to pick its backend. */
export const BACKEND_OPTIONS = {
  software: { type: 'string' },
  pkcs11: { type: 'string' },
  token: { type: 'string' },
  'pin-env': { type: 'string' },
  sessions: { type: 'string' },
  serial: { type: 'string' },
  json: { type: 'boolean', default: false },
} as const;

export const BACKEND_HELP: readonly string[] = [
  'Backend (exactly one; or set PURSELAB_HSM, e.g. software:keys.store or pkcs11:/usr/lib/softhsm/libsofthsm2.so#purselab):',
  '  --software FILE        software key store (master passphrase: env ' + DEFAULT_MASTER_ENV + ', or asked on a terminal)',
  '  --pkcs11 MODULE        PKCS#11 module (shared library), with:',
  '    --token LABEL        token label (the slot is found by it)',
  `    --pin-env VAR        environment variable holding the user PIN (default ${DEFAULT_PIN_ENV})`,
  '    --sessions N         session pool size (default 4)',
  '  --serial LINE          host-command HSM: tcp:HOST:PORT or /dev/ttyX[@BAUD][;inter-char-ms=N] (see',
  '                         purselab hsm-sim; N: how long a partial answer may go quiet, default 50 ms;',
  "                         quote a LINE with ';' in a shell)",
  '  --json                 machine-readable output',
  '',
  'A PKCS#11 command re-runs itself under node --openssl-legacy-provider when needed: SoftHSM2 inside Node uses',
  "Node's OpenSSL, whose single DES (for derived 3DES card keys) is in the legacy provider.",
];

type BackendValues = { [K in keyof typeof BACKEND_OPTIONS]?: (typeof BACKEND_OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

export function configFromArgs(v: BackendValues, extra: { create?: boolean } = {}): HsmConfig {
  const chosen = (['software', 'pkcs11', 'serial'] as const).filter((k) => v[k] !== undefined);
  if (chosen.length > 1) throw new UsageError(`choose one backend, not ${chosen.map((c) => `--${c}`).join(' and ')}`);
  if (chosen.length === 0) {
    const spec = process.env[HSM_SPEC_ENV];
    if (!spec) throw new UsageError(`no HSM backend: give --software FILE, --pkcs11 MODULE --token LABEL or --serial LINE (or set ${HSM_SPEC_ENV})`);
    const c = parseHsmSpec(spec);
    return c.backend === 'software' ? { ...c, ...extra } : c;
  }
  if (v.token !== undefined && !v.pkcs11) throw new UsageError('--token goes with --pkcs11');
  if (v.software !== undefined) return { backend: 'software', path: v.software, ...extra };
  if (v.serial !== undefined) return { backend: 'serial', line: v.serial };
  if (!v.token) throw new UsageError('--pkcs11 needs --token LABEL');
  let sessions: number | undefined;
  if (v.sessions !== undefined) {
    sessions = Number(v.sessions);
    if (!Number.isInteger(sessions) || sessions < 1 || sessions > 256) throw new UsageError(`--sessions must be 1..256, got '${v.sessions}'`);
  }
  return { backend: 'pkcs11', module: v.pkcs11!, tokenLabel: v.token, ...(v['pin-env'] ? { pinEnv: v['pin-env'] } : {}), ...(sessions ? { sessions } : {}) };
}

/**
 * Open the configured backend, run fn, close it. For PKCS#11 without the OpenSSL legacy provider the whole
 * command re-runs in a child Node instead (the child's exit code is returned).
 */
export async function withHsm(config: HsmConfig, fn: (hsm: Hsm, what: string) => Promise<number>): Promise<number> {
  if (config.backend === 'pkcs11') {
    const relaunched = relaunchWithLegacyOpenSsl();
    if (relaunched) return relaunched;
  }
  const hsm = await createHsm(config);
  await hsm.open();
  try {
    return await fn(hsm, describeConfig(config));
  } finally {
    await hsm.close();
  }
}

export const hsmCommand: CliCommand = {
  name: 'hsm',
  summary: 'HSM bridge: create the issuer/PSAM key set, list keys and KCVs, check health',
  help: [
    'Usage: purselab hsm init|keys|health [options]     purselab hsm SUBCOMMAND --help for details',
    '',
    'Subcommands:',
    '  init     create the issuer and PSAM key set (and the OPAL record keys) in an HSM, imported wrapped',
    '  keys     list the keys: label, version, type, usage, key check value',
    '  health   check the HSM answers (token, login, sessions; key store; line)',
    '',
    ...BACKEND_HELP,
    '',
    'Related: purselab hsm-sim (serial host-command HSM simulator), purselab bench hsm. Docs: docs/hsm-bridge.md.',
  ].join('\n'),
  async run(args) {
    throw new UsageError(args.length ? `unknown hsm subcommand '${args[0]}' (init, keys, health)` : 'which one? purselab hsm init|keys|health (purselab hsm --help)');
  },
};
