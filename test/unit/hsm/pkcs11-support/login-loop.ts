// A process for pkcs11-torn-token.test.ts: logs in to a SoftHSM2 token and out again, with a pause of 5 ms
// between, until it is killed (each login rewrites the token's file: the writes other processes' opens can
// meet). Prints "ready" once it is looping. Without the pause, the logins follow each other so closely that
// another process's initialisations are torn in runs of up to 15 in a row (docs/hsm-bridge.md, "Opening a
// token"); with it, about one in ten, each on its own.
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
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  Atomics.wait(pause, 0, 0, 5);
  try {
    lib.C_Login(s, P.CKU_USER, pin!);
    lib.C_Logout(s);
  } catch {
    // its own look at the token can be torn by the opener's login (CKR_GENERAL_ERROR): it goes on
  }
}
