// `purselab hsm keys`: the keys an HSM holds, with their versions, types, usage and key check values.

import { emit, parseCommandArgs, type CliCommand } from '../command.ts';
import { BACKEND_HELP, BACKEND_OPTIONS, configFromArgs, withHsm } from './hsm.ts';

export const hsmKeysCommand: CliCommand = {
  name: 'hsm keys',
  summary: 'list the keys in an HSM: label, version, type, usage, KCV',
  help: [
    'Usage: purselab hsm keys (--software FILE | --pkcs11 MODULE --token LABEL | --serial LINE) [--json]',
    '',
    'Lists every key the HSM holds that purselab can use, sorted by label and version. KCV = key check value:',
    '3DES: first 3 bytes of 3DES-ECB(K, 0^8); AES: first 3 bytes of AES-CMAC(K, 0^16); RSA: first 3 bytes of',
    'SHA-256 of the public key (SubjectPublicKeyInfo DER). No key material is ever shown.',
    '',
    'PKCS#11: a key is an object with CKA_LABEL = label and CKA_ID = version (2 bytes big-endian; no CKA_ID =',
    'version 0); usage mac = CKA_VERIFY, encrypt = CKA_DECRYPT, derive = CKA_DERIVE, wrap = CKA_UNWRAP.',
    '',
    ...BACKEND_HELP,
    '',
    'Example:',
    '  PURSELAB_HSM_PIN=1234 purselab hsm keys --pkcs11 /usr/lib/softhsm/libsofthsm2.so --token purselab',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseCommandArgs(args, BACKEND_OPTIONS);
    return withHsm(configFromArgs(values), async (hsm, what) => {
      const keys = await hsm.listKeys();
      emit(io, values.json === true, keys, () => {
        const rows = keys.map((k) => [k.label, String(k.version), k.type, k.usage.join(','), k.kcv || '-']);
        const head = ['LABEL', 'VERSION', 'TYPE', 'USAGE', 'KCV'];
        const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
        const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd();
        return [`${what}: ${keys.length} key(s)`, line(head), ...rows.map(line)];
      });
      return 0;
    });
  },
};
