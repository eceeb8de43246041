// A PKCS#11 session process: one Pkcs11Hsm with synchronous calls, serving whole operations for a parent
// Pkcs11Hsm over the IPC channel (Pkcs11HsmOptions.processes, hsm-bridge/pkcs11/session-processes.ts). Its own
// module instance, sessions and login: SoftHSM2 in one process does not run faster on more threads, but it
// does in more processes. Leaves when the parent disconnects.

import { HsmBadInputError } from '../errors.ts';
import { Pkcs11Hsm, type Pkcs11HsmOptions } from './pkcs11-hsm.ts';
import { describeError, revive, SERVED_METHODS, type ServedMethod, type SessionReply, type SessionRequest } from './session-protocol.ts';

let hsm: Pkcs11Hsm | undefined;

function send(reply: SessionReply): void {
  process.send?.(reply);
}

async function handle(m: SessionRequest): Promise<void> {
  try {
    if (m.t === 'open') {
      const options: Pkcs11HsmOptions = { ...m.options, calls: 'sync', processes: 0 };
      hsm = new Pkcs11Hsm(options);
      await hsm.open();
      send({ id: m.id, ok: true });
      return;
    }
    if (!hsm) throw new HsmBadInputError('session process: not opened');
    if (!SERVED_METHODS.includes(m.method)) throw new HsmBadInputError(`session process: ${String(m.method)} is not served`);
    const fn = hsm[m.method as ServedMethod] as (...a: unknown[]) => Promise<unknown>;
    const value = await fn.apply(hsm, m.args.map(revive));
    send({ id: m.id, ok: true, value });
  } catch (e) {
    send({ id: m.id, ok: false, error: describeError(e) });
  }
}

process.on('message', (m: SessionRequest) => void handle(m));
process.on('disconnect', () => {
  void (hsm?.close() ?? Promise.resolve()).finally(() => process.exit(0));
});
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => undefined); // the parent decides when we go
