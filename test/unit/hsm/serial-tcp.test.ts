// The serial backend over TCP (2-byte length prefix) to `purselab hsm-sim --tcp` in its own process: pipelined
// commands matched by header, faults with typed errors, the simulator dying under a command (LINE_DOWN), and
// the reconnect once it is back; the journal proves nothing ran twice.

import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SerialHsm } from '../../../hsm-bridge/serial/backend.ts';
import { pc } from '../../../hsm-bridge/serial/commands.ts';
import { encodeTcpFrame, TcpDeframer } from '../../../hsm-bridge/serial/framing.ts';
import type { SerialHsmError } from '../../../hsm-bridge/serial/errors.ts';
import { SIM_READY_MS } from '../../../hsm-bridge/serial/lab.ts';
import { executions, startSim, tempDir, type SimProcess } from './serial-support/rig.ts';

async function failure(f: () => Promise<unknown>): Promise<SerialHsmError> {
  try {
    await f();
  } catch (e) {
    return e as SerialHsmError;
  }
  throw new Error('expected an error');
}

describe('serial backend over TCP to hsm-sim in its own process', () => {
  let tmp: ReturnType<typeof tempDir>;
  let sim: SimProcess;
  let hsm: SerialHsm;
  let journal: string;
  let keystore: string;
  let port: number;
  let n = 0;
  const label = (what: string): string => `${what}-${++n}`;
  const restart = async (): Promise<void> => {
    sim = await startSim({ tcp: port, keystore, journal, allowFaults: true });
  };

  beforeAll(async () => {
    tmp = tempDir();
    journal = join(tmp.dir, 'journal.jsonl');
    keystore = join(tmp.dir, 'sim.store');
    sim = await startSim({ tcp: 0, keystore, journal, allowFaults: true });
    port = sim.port;
    hsm = new SerialHsm({ line: { kind: 'tcp', host: '127.0.0.1', port }, timeoutMs: 1500, retries: 0, maxInFlight: 8, connectTimeoutMs: SIM_READY_MS });
    await hsm.open();
  }, 60_000);

  afterAll(async () => {
    await hsm?.close();
    await sim?.stop();
    tmp?.cleanup();
  });

  it('answers NC, and pipelines 40 concurrent commands matched by header', async () => {
    expect((await hsm.diagnostics()).firmware).toBe('PL-SIM-01');
    const k = { label: label('mk'), version: 1 };
    await hsm.generateKey(k, 'DES3-2KEY', ['mac', 'derive']);
    const before = executions(journal, 'pi');
    const data = (i: number): Buffer => Buffer.from(`message ${i}`);
    const card = (i: number): Buffer => Buffer.from(`60123456789${String(10000 + i).slice(1)}0`.slice(0, 16), 'hex');
    const macs = await Promise.all(Array.from({ length: 40 }, (_, i) => hsm.macGenerate({ master: k, cardId: card(i) }, 'ISO9797-1-ALG3', data(i))));
    expect(executions(journal, 'pi')).toBe(before + 40);
    // each answer belongs to its own request: verify them one by one, and cross-check one mismatch
    for (let i = 0; i < 40; i += 7) expect(await hsm.macVerify({ master: k, cardId: card(i) }, 'ISO9797-1-ALG3', data(i), macs[i]!)).toBe(true);
    expect(await hsm.macVerify({ master: k, cardId: card(1) }, 'ISO9797-1-ALG3', data(1), macs[2]!)).toBe(false);
  });

  it('garbled answer: GARBLED; wrong header: BAD_HEADER; dropped: TIMEOUT; each executed once, next command works', async () => {
    for (const [kind, code] of [
      ['garble', 'GARBLED'],
      ['bad-header', 'BAD_HEADER'],
      ['drop', 'TIMEOUT'],
    ] as const) {
      const before = executions(journal, 'pc');
      await hsm.armSimulatorFault({ kind, match: 'pc' });
      const e = await failure(() => hsm.generateKey({ label: label(kind), version: 1 }, 'AES-128', ['mac']));
      expect(e.code, e.message).toBe(code);
      expect(e.outcomeUnknown).toBe(true);
      expect(executions(journal, 'pc')).toBe(before + 1);
      expect(await hsm.randomBytes(3)).toHaveLength(3);
    }
  });

  it('noise instead of an answer: framing lost, GARBLED, and a fresh connection for the next command', async () => {
    const reconnects = hsm.client.stats.reconnects;
    await hsm.armSimulatorFault({ kind: 'noise', match: 'pc' });
    const e = await failure(() => hsm.generateKey({ label: label('noise'), version: 1 }, 'AES-128', ['mac']));
    expect(e.code, e.message).toBe('GARBLED');
    expect(await hsm.randomBytes(3)).toHaveLength(3);
    expect(hsm.client.stats.reconnects).toBe(reconnects + 1);
  });

  it('simulator dies after executing a command: LINE_DOWN (outcome unknown); back up, the next command works', async () => {
    const ref = { label: label('die-after'), version: 1 };
    const before = executions(journal, 'pc');
    await hsm.armSimulatorFault({ kind: 'die-after', match: 'pc' });
    // Long timeout for this one command: only the connection dropping may end it, however slow the key store's fsync.
    const e = await failure(() => hsm.client.execute(pc, { ref, type: 'DES3-2KEY', usage: ['mac'] }, { timeoutMs: 20_000 }));
    expect(e.code, e.message).toBe('LINE_DOWN');
    expect(e.outcomeUnknown).toBe(true);
    expect((await sim.exited).code).toBe(75);
    // listKeys waits for the line while the simulator restarts; Promise.all keeps its rejection, if any, handled
    const [keys] = await Promise.all([hsm.listKeys(), sleep(200).then(restart)]);
    expect(keys.filter((k) => k.label === ref.label)).toHaveLength(1);
    expect(executions(journal, 'pc')).toBe(before + 1);
  }, 60_000);

  it('simulator killed under a delayed answer: LINE_DOWN; nothing repeated after the restart', async () => {
    const ref = { label: label('killed'), version: 1 };
    const before = executions(journal, 'pc');
    await hsm.armSimulatorFault({ kind: 'delay', ms: 8000, match: 'pc' });
    const pending = failure(() => hsm.client.execute(pc, { ref, type: 'DES3-2KEY', usage: ['mac'] }, { timeoutMs: 20_000 }));
    for (let i = 0; i < 500 && executions(journal, 'pc') === before; i++) await sleep(20);
    await sim.stop('SIGKILL');
    const down = await pending;
    expect(down.code, down.message).toBe('LINE_DOWN');
    await restart();
    expect(await hsm.randomBytes(5)).toHaveLength(5);
    expect(executions(journal, 'pc')).toBe(before + 1);
    expect((await hsm.listKeys()).filter((k) => k.label === ref.label)).toHaveLength(1);
  }, 60_000);

  it('no simulator at all: open() fails with LINE_DOWN after connectTimeoutMs', async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const free = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const nowhere = new SerialHsm({ line: { kind: 'tcp', host: '127.0.0.1', port: free }, connectTimeoutMs: 600 });
    const e = await failure(() => nowhere.open());
    expect(e.code, e.message).toBe('LINE_DOWN');
    await nowhere.close();
  });

  it('simulator: a zero length prefix drops the connection (cannot resynchronise a byte stream)', async () => {
    const socket = net.createConnection({ host: '127.0.0.1', port });
    await new Promise((r) => socket.once('connect', r));
    const deframer = new TcpDeframer();
    const frames: string[] = [];
    socket.on('data', (d) => deframer.push(d).forEach((e) => e.kind === 'frame' && frames.push(e.message.toString('latin1'))));
    socket.write(encodeTcpFrame(Buffer.from('T001NC')));
    while (!frames.length) await sleep(10);
    expect(frames[0]).toMatch(/^T001ND00/);
    const closed = new Promise((r) => socket.once('close', r));
    socket.write(Buffer.from([0, 0, 0x41]));
    await closed;
  });
});
