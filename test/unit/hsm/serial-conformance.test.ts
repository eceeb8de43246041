// The HSM conformance suite against the serial backend: over a socat pty pair at 115200 baud (with the
// simulator reproducing the line's speed), and over TCP, each to a fresh `purselab hsm-sim` process with an
// empty key store. Same inputs, same expected outputs and error codes as the software and PKCS#11 backends.

import { join } from 'node:path';
import { afterAll } from 'vitest';
import { SerialHsm, type SerialLine } from '../../../hsm-bridge/serial/backend.ts';
import { runConformance } from './conformance.ts';
import { ptyHostLine, socatMissing, startPtyPair, startSim, tempDir, type PtyPair, type SimProcess } from './serial-support/rig.ts';

const caps = { storedKeyAlg3: true, des3KekImport: true };
const dirs: { cleanup(): void }[] = [];
afterAll(() => dirs.forEach((d) => d.cleanup()));

/** A SerialHsm that also owns its simulator (and pty pair): close() stops them too. */
class OwnedSerialHsm extends SerialHsm {
  constructor(
    line: SerialLine,
    private readonly sim: SimProcess,
    private readonly pty?: PtyPair,
  ) {
    super({ line, timeoutMs: 10_000, maxInFlight: line.kind === 'tcp' ? 4 : 1 });
  }

  override async close(): Promise<void> {
    await super.close();
    await this.sim.stop();
    await this.pty?.kill();
  }
}

const socat = socatMissing();
runConformance(
  'serial (socat pty, 115200 baud, hsm-sim process)',
  async () => {
    const tmp = tempDir();
    dirs.push(tmp);
    const pty = await startPtyPair(tmp.dir);
    const sim = await startSim({ serial: pty.simPath, keystore: join(tmp.dir, 'sim.store') });
    return new OwnedSerialHsm(ptyHostLine(pty), sim, pty);
  },
  caps,
  socat ? { skip: socat } : {},
);

runConformance(
  'serial (TCP, pipelined, hsm-sim process)',
  async () => {
    const tmp = tempDir();
    dirs.push(tmp);
    const sim = await startSim({ tcp: 0, keystore: join(tmp.dir, 'sim.store') });
    return new OwnedSerialHsm({ kind: 'tcp', host: '127.0.0.1', port: sim.port }, sim);
  },
  caps,
);
