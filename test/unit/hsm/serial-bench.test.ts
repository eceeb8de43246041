// The serial benchmark functions run end to end (few iterations): figures are produced, the bytes counted are
// the documented frame sizes, and latency is never below the wire time (the simulator paces at the baud rate).

import { describe, expect, it } from 'vitest';
import { measureSerial, serialTarget, SERIAL_WIRE_TARGET } from '../../../hsm-bridge/serial/bench.ts';
import { wireTimeMs } from '../../../hsm-bridge/serial/framing.ts';
import { socatMissing } from './serial-support/rig.ts';

const why = socatMissing();
if (why) console.warn(`SKIPPED serial bench tests: ${why}`);

describe.skipIf(why !== undefined)(`serial benchmark${why ? ` (skipped: ${why})` : ''}`, () => {
  it('measureSerial: MAC verify and derivation at 115200 baud, next to the wire time of their bytes', async () => {
    const r = await measureSerial({ iterations: 15, warmup: 3 });
    expect(r.available).toBe(true);
    expect(r.target).toBe(SERIAL_WIRE_TARGET);
    const [mac, derive] = r.ops;
    // docs/serial-hsm-protocol.md section 8: 141 + 11 and 52 + 21 framed bytes
    expect(mac).toMatchObject({ op: 'macVerify', bytesOut: 141, bytesIn: 11 });
    expect(derive).toMatchObject({ op: 'derive', bytesOut: 52, bytesIn: 21 });
    for (const f of r.ops) {
      expect(f.wireMs).toBeCloseTo(wireTimeMs(f.bytesOut + f.bytesIn, 115200), 6);
      expect(f.medianRatio!).toBeGreaterThanOrEqual(0.98);
      expect(f.opsPerSec).toBeGreaterThan(0);
    }
  }, 60_000);

  it('serialTarget: opens a simulator over a pty for `purselab bench hsm` and reports wire figures', async () => {
    const t = serialTarget({
      loadKeys: (h) => h.generateKey({ label: 'k', version: 1 }, 'AES-128', ['mac']),
      ops: [{ key: 'cmac', label: 'AES-CMAC', run: (h) => h.macGenerate({ label: 'k', version: 1 }, 'AES-CMAC', Buffer.alloc(16)) }],
      wireSamples: 5,
    });
    const opened = await t.open();
    if ('skip' in opened) throw new Error(opened.skip);
    try {
      expect((await opened.hsm.health()).ok).toBe(true);
      const f = await opened.extraFigures();
      expect(f['cmac.wireBytes']).toBeGreaterThan(0);
      expect(f['cmac.latencyOverWire'] as number).toBeGreaterThanOrEqual(0.98);
      expect(f.baudRate).toBe(115200);
    } finally {
      await opened.close();
    }
  }, 60_000);
});
