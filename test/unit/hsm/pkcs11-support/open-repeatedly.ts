// A process for pkcs11-torn-token.test.ts: opens and closes a Pkcs11Hsm on a SoftHSM2 token again and again
// (each open initialises the module anew: nobody else in this process holds it) until WANT opens have been
// tried again after a torn first look at the token, or MAX_MS have passed, and prints one JSON line: opens
// done, those that worked, the errors of those that did not, and the opens tried again.
//
//   node --openssl-legacy-provider --import tsx open-repeatedly.ts MODULE LABEL PIN MAX_MS WANT   (SOFTHSM2_CONF set)

import { Pkcs11Hsm } from '../../../../hsm-bridge/pkcs11/pkcs11-hsm.ts';

const [module, tokenLabel, pin, maxMs, want] = process.argv.slice(2);
const until = Date.now() + Number(maxMs);
let rounds = 0;
let opened = 0;
let rescans = 0;
const errors: string[] = [];
while (Date.now() < until && rescans < Number(want)) {
  rounds++;
  const hsm = new Pkcs11Hsm({ module: module!, tokenLabel: tokenLabel!, pin: pin! });
  try {
    await hsm.open();
    opened++;
  } catch (e) {
    errors.push(`${(e as { code?: string }).code ?? ''}: ${(e as Error).message}`);
  } finally {
    rescans += hsm.tokenRescans;
    await hsm.close();
  }
}
process.stdout.write(`${JSON.stringify({ rounds, opened, errors, rescans })}\n`);
