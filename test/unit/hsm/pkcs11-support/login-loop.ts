// A process for pkcs11-torn-token.test.ts: logs in to a SoftHSM2 token and out again as fast as it can until
// it is killed (each login rewrites the token's file: the writes other processes' opens can meet). Prints
// "ready" once it is looping.
//
//   node --openssl-legacy-provider --import tsx login-loop.ts MODULE LABEL PIN   (SOFTHSM2_CONF set)

import { acquireModule, pkcs11js } from '../../../../hsm-bridge/pkcs11/binding.ts';

const [module, label, pin] = process.argv.slice(2);
const lib = acquireModule(module!);
const P = pkcs11js();
const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === label);
if (slot === undefined) {
  process.stderr.write(`login-loop: no token '${label!}'\n`);
  process.exit(1);
}
const s = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
process.stdout.write('ready\n');
for (;;) {
  try {
    lib.C_Login(s, P.CKU_USER, pin!);
    lib.C_Logout(s);
  } catch {
    // its own look at the token can be torn by the opener's login (CKR_GENERAL_ERROR): it goes on
  }
}
