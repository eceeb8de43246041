// Bench suite "transport": per-APDU latency (median, p99) host -> pcsclite -> the real pcscd -> vpcd ->
// `purselab emulate` with the reference applet, and the same path with the do-nothing 9000 responder as
// the floor, so the emulator's own cost is a ratio (target <= 1.10x). Both cards run as separate
// processes in two free vpcd slots, exactly as in use; the two are measured in interleaved rounds so
// drift hits both alike. Reports the loopback quickack route (the ~40 ms vpcd stall) and, when it is
// off, measures the difference (as root, by turning the route on for the run and restoring it).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { command, type CommandApdu } from '../../apdu/command.ts';
import { TransportError } from '../../transport/errors.ts';
import { PcscContext, type PcscChannel } from '../../transport/pcsc.ts';
import { isRoot, QUICKACK_ROUTE_CMD, quickackRouteActive, setQuickackRoute, VPCD_SLOTS } from '../../transport/pcsc-vpcd.ts';
import { REFERENCE_AID } from '../../../card-applet-sim/applets/index.ts';
import { fmt, summarize, timeCalls, type LatencySummary } from './stats.ts';
import type { BenchSuite } from './suite.ts';

const TARGET_RATIO = 1.1;
const CLI = fileURLToPath(new URL('../../../bin/purselab.js', import.meta.url));
/** Same bytes to both cards: the reference applet's ECHO of 4 bytes (the responder ignores them). */
const ECHO: CommandApdu = command(0x80, 0x01, 0x00, 0x00, Buffer.from('DEADBEEF', 'hex'), 256);

interface Pair {
  floor: LatencySummary;
  emulator: LatencySummary;
}

function startEmulate(args: string[]): ChildProcess {
  const child = spawn(process.execPath, [CLI, 'emulate', '--quiet', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr!.resume();
  return child;
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** `rounds` alternating blocks of floor and emulator APDUs; every APDU timed on its own. */
async function measure(floor: PcscChannel, emu: PcscChannel, perSide: number, rounds: number): Promise<Pair> {
  const f: number[] = [];
  const e: number[] = [];
  const block = Math.max(1, Math.round(perSide / rounds));
  for (let r = 0; r < rounds; r++) {
    f.push(...(await timeCalls(block, () => floor.transmit(ECHO))));
    e.push(...(await timeCalls(block, () => emu.transmit(ECHO))));
  }
  return { floor: summarize(f), emulator: summarize(e) };
}

const ms = (s: LatencySummary) => `median ${fmt(s.medianMs)} ms, p99 ${fmt(s.p99Ms)} ms (n=${s.count})`;

export const transportBench: BenchSuite = {
  name: 'transport',
  summary: 'per-APDU latency through real pcscd + vpcd: emulator vs a do-nothing responder (floor)',
  async run(ctx) {
    const io = ctx.io;
    const say = (line: string) => {
      if (!ctx.json) io.out(line);
    };
    const skip = (reason: string) => {
      say(`  skipped: ${reason}`);
      return { skipped: true, reason };
    };

    let pc: PcscContext;
    try {
      pc = await PcscContext.open();
    } catch (e) {
      return skip(`${e instanceof TransportError ? e.message : String(e)} (start the rig: bash .ci/rig-up.sh)`);
    }
    const children: ChildProcess[] = [];
    const tmp = mkdtempSync(join(tmpdir(), 'purselab-bench-'));
    const channels: PcscChannel[] = [];
    let routeChanged = false;
    try {
      const free = VPCD_SLOTS.filter((s) => pc.readers().some((r) => r.name === s.reader && !r.cardPresent));
      if (free.length < 2) {
        const names = pc.readers().map((r) => `${r.name}${r.cardPresent ? ' (card in)' : ''}`);
        return skip(`needs 2 free vpcd slots, found ${free.length} (readers: ${names.join(', ') || 'none'}; start the rig: bash .ci/rig-up.sh)`);
      }
      const [floorSlot, emuSlot] = free as [(typeof free)[0], (typeof free)[0]];
      children.push(startEmulate(['--vpcd', `127.0.0.1:${floorSlot.port}`, '--responder']));
      children.push(startEmulate(['--vpcd', `127.0.0.1:${emuSlot.port}`, '--card', join(tmp, 'bench.img')]));
      for (const slot of [floorSlot, emuSlot]) {
        if (!(await pc.waitFor(slot.reader, (r) => r?.cardPresent === true, 20_000))) {
          return skip(`the emulated card did not appear in '${slot.reader}' within 20 s`);
        }
      }
      const floor = await pc.connect(floorSlot.reader);
      channels.push(floor);
      const emu = await pc.connect(emuSlot.reader);
      channels.push(emu);
      const sel = await emu.transmit(command(0x00, 0xa4, 0x04, 0x00, REFERENCE_AID, 256));
      if (sel.sw !== 0x9000) throw new Error(`SELECT of the reference applet answered ${sel.sw.toString(16)}`);

      const route = await quickackRouteActive();
      say(`  path: pcsclite -> pcscd -> vpcd (${floorSlot.reader} = responder, ${emuSlot.reader} = emulator), ${emu.protocol}, ECHO 4 bytes`);
      say(`  loopback quickack route: ${route === undefined ? 'unknown (no `ip`)' : route ? 'on' : 'OFF'}`);

      // Warm-up (JIT, pcscd threads) on both paths.
      const quick = route === true;
      await measure(floor, emu, quick ? 100 : 4, quick ? 2 : 1);
      const perSide = quick ? Math.max(200, Math.round(2000 * ctx.scale)) : Math.max(10, Math.round(100 * ctx.scale));
      const now = await measure(floor, emu, perSide, quick ? 10 : 2);

      let withRoute: Pair | undefined = quick ? now : undefined;
      let stalled: Pair | undefined = quick ? undefined : now;
      if (!quick) {
        say(`  WARNING: the loopback quickack route is off: each APDU waits for a delayed ACK (~40 ms) because vpcd`);
        say(`  writes the length and the body in two writes (Nagle). Fix (root): ${QUICKACK_ROUTE_CMD}`);
        if (isRoot() && (await setQuickackRoute(true))) {
          routeChanged = true;
          say('  running as root: measuring again with the route on for this run (restored afterwards)');
          await measure(floor, emu, 100, 2);
          withRoute = await measure(floor, emu, Math.max(200, Math.round(2000 * ctx.scale)), 10);
        }
      }

      if (stalled) {
        say(`  without quickack: responder ${ms(stalled.floor)}`);
        say(`                    emulator  ${ms(stalled.emulator)}`);
      }
      const result: Record<string, number | string | boolean> = {
        quickackRoute: route === undefined ? 'unknown' : route,
        protocol: emu.protocol,
      };
      if (withRoute) {
        const r = withRoute.emulator.medianMs / withRoute.floor.medianMs;
        const met = r <= TARGET_RATIO;
        say(`  ${stalled ? 'with quickack:   ' : ''}responder (floor) ${ms(withRoute.floor)}`);
        say(`  ${stalled ? '                 ' : ''}emulator          ${ms(withRoute.emulator)}`);
        say(`  emulator cost: ${r.toFixed(2)}x the floor (median; target <= ${TARGET_RATIO.toFixed(2)}x: ${met ? 'met' : 'NOT met'})`);
        Object.assign(result, {
          floorMedianMs: Number(withRoute.floor.medianMs.toFixed(4)),
          floorP99Ms: Number(withRoute.floor.p99Ms.toFixed(4)),
          emulatorMedianMs: Number(withRoute.emulator.medianMs.toFixed(4)),
          emulatorP99Ms: Number(withRoute.emulator.p99Ms.toFixed(4)),
          emulatorVsFloor: Number(r.toFixed(3)),
          targetRatio: TARGET_RATIO,
          targetMet: met,
        });
      }
      if (stalled) {
        Object.assign(result, {
          stalledFloorMedianMs: Number(stalled.floor.medianMs.toFixed(3)),
          stalledEmulatorMedianMs: Number(stalled.emulator.medianMs.toFixed(3)),
        });
        if (withRoute) {
          const diff = stalled.floor.medianMs - withRoute.floor.medianMs;
          say(`  measured difference: the route saves ${fmt(diff)} ms per APDU (${fmt(stalled.floor.medianMs / withRoute.floor.medianMs)}x faster)`);
          result.quickackSavesMs = Number(diff.toFixed(3));
        } else {
          say(`  not root: cannot measure with the route here (docs/pcsc-and-vpcd.md: 0.15-0.3 ms per APDU with it on the reference machine)`);
          const r = stalled.emulator.medianMs / stalled.floor.medianMs;
          say(`  emulator cost (stalled path, dominated by the stall): ${r.toFixed(2)}x the floor`);
          result.emulatorVsFloor = Number(r.toFixed(3));
        }
      }
      return result;
    } finally {
      if (routeChanged) await setQuickackRoute(false);
      for (const c of channels) await c.close().catch(() => undefined);
      await pc.close();
      await Promise.all(children.map(stop));
      rmSync(tmp, { recursive: true, force: true });
    }
  },
};
