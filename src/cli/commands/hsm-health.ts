// `purselab hsm health`: does the HSM answer, and in what state is it.

import { emit, parseCommandArgs, type CliCommand } from '../command.ts';
import { BACKEND_HELP, BACKEND_OPTIONS, configFromArgs, withHsm } from './hsm.ts';

export const hsmHealthCommand: CliCommand = {
  name: 'hsm health',
  summary: 'check that an HSM answers (token, login, sessions / key store / line); exit 1 if not',
  help: [
    'Usage: purselab hsm health (--software FILE | --pkcs11 MODULE --token LABEL | --serial LINE) [--json]',
    '',
    'Opens the HSM, asks for its health and a few random bytes, and closes it. Exit status 0 when healthy, 1 when',
    'not (or when it cannot be opened: missing module, wrong PIN, unknown token, wrong passphrase...).',
    '',
    'PKCS#11 detail: token label and slot, manufacturer/model/serial, login state, session pool, number of',
    'mechanisms, whether single DES works (needed for derived 3DES card keys), PIN counter warnings.',
    '',
    ...BACKEND_HELP,
    '',
    'Example:',
    '  PURSELAB_HSM_MASTER=... purselab hsm health --software /var/lib/purselab/hsm.store',
  ].join('\n'),
  async run(args, io) {
    const { values } = parseCommandArgs(args, BACKEND_OPTIONS);
    return withHsm(configFromArgs(values), async (hsm, what) => {
      const t0 = process.hrtime.bigint();
      const h = await hsm.health();
      const random = h.ok ? (await hsm.randomBytes(8)).length === 8 : false;
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      const ok = h.ok && random;
      emit(io, values.json === true, { ...h, ok, target: what, ms }, () => [
        `${ok ? 'OK  ' : 'FAIL'} ${what}`,
        `     ${h.detail}`,
        `     answered in ${ms.toFixed(1)} ms`,
      ]);
      return ok ? 0 : 1;
    });
  },
};
