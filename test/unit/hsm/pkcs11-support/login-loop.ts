// A process for pkcs11-torn-token.test.ts (one or two at once): logs in to a SoftHSM2 token and out again, with
// a pause of 5 ms between, until SIGTERM (each login rewrites the token's file: the writes other processes'
// opens can meet). Prints "ready" once it is looping. It stops between two logins: SIGKILL in the middle of
// one can leave the token's file empty, and the token gone for good (docs/hsm-bridge.md, "Opening a token"). Without the pause, the logins follow each other so closely that
// another process's initialisations are torn in runs of up to 15 in a row (docs/hsm-bridge.md, "Opening a
// token"); with it, about one in ten, each on its own.
//
//   node --openssl-legacy-provider --import tsx login-loop.ts MODULE LABEL PIN   (SOFTHSM2_CONF set)

import { HsmTokenNotFoundError } from '../../../../hsm-bridge/errors.ts';
import { acquireModule, pkcs11js, releaseModule, type Handle } from '../../../../hsm-bridge/pkcs11/binding.ts';
import { openUntilWhole } from '../../../../hsm-bridge/pkcs11/torn-token.ts';

const [module, label, pin] = process.argv.slice(2);
const P = pkcs11js();
// another login loop can tear this one's first look at the token too: look again on a fresh initialisation,
// as the bridge's own open does (torn-token.ts)
let lib = acquireModule(module!);
let slot: Handle | undefined;
try {
  await openUntilWhole(
    async (again) => {
      if (again) {
        releaseModule(module!);
        lib = acquireModule(module!);
      }
      slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trim() === label);
      if (slot === undefined) throw new HsmTokenNotFoundError(label!, []);
    },
    () => true,
    20,
  );
} catch {
  process.stderr.write(`login-loop: no token '${label!}'\n`);
  process.exit(1);
}
const s = lib.C_OpenSession(slot!, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
process.stdout.write('ready\n');
let stop = false;
process.on('SIGTERM', () => (stop = true));
while (!stop) {
  await new Promise((r) => setTimeout(r, 5));
  try {
    lib.C_Login(s, P.CKU_USER, pin!);
    lib.C_Logout(s);
  } catch {
    // its own look at the token can be torn by the opener's login (CKR_GENERAL_ERROR): it goes on
  }
}
releaseModule(module!);
