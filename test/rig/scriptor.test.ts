// A third-party PC/SC client on the rig: pcsc-tools' `scriptor` sends an APDU script to the emulated
// reference applet through pcscd + vpcd and gets the responses docs/reference-applet.md documents.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeRig, detectRig, freeSlots, killAll, REPO, startEmulator, tempDir, type Proc, type RigState } from './rig.ts';

const SCRIPTOR = spawnSync('sh', ['-c', 'command -v scriptor'], { encoding: 'utf8' }).stdout.trim();
const detected = await detectRig(1);
const rig: RigState = SCRIPTOR ? detected : { ...detected, ok: false, reason: "pcsc-tools' scriptor is not installed (apt-get install pcsc-tools)" };

// The documented session (generated from docs/reference-applet.md by the emulator's tests): command
// lines, `reset`, and after each command a "#= RESPONSE" line with the exact expected response.
const SCRIPT = join(REPO, 'card-applet-sim/applets/reference/reference.scriptor');

interface Step {
  readonly command: string;
  expect?: string;
}

function parseScript(text: string): Step[] {
  const steps: Step[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#=')) {
      const last = steps[steps.length - 1];
      if (!last || last.expect !== undefined) throw new Error(`stray expectation '${line}' in ${SCRIPT}`);
      last.expect = line.slice(2).trim().toUpperCase();
    } else if (line && !line.startsWith('#')) {
      steps.push({ command: line });
    }
  }
  return steps;
}

/** scriptor's transcript: for each "> COMMAND" block, the response after "< " (wrapped lines joined, meaning dropped). */
function parseTranscript(out: string): string[] {
  return out
    .split('\n> ')
    .slice(1)
    .map((block) => {
      const rsp = block.slice(block.indexOf('\n< ') + 3);
      return rsp.split(' : ')[0]!.replace(/\s+/g, ' ').trim().toUpperCase();
    });
}

describeRig("third-party client: pcsc-tools' scriptor against the emulated reference applet", rig, () => {
  const tmp = tempDir();
  let emu: Proc;
  let reader = '';

  beforeAll(async () => {
    const [slot] = await freeSlots(1);
    reader = slot!.reader;
    emu = await startEmulator(['--vpcd', `127.0.0.1:${slot!.port}`, '--card', join(tmp.path, 'scriptor.img')], [reader]);
  });

  afterAll(async () => {
    await emu?.stop();
    await killAll();
    tmp.remove();
  });

  it('gets every response docs/reference-applet.md documents (reference.scriptor)', () => {
    expect(existsSync(SCRIPT), `${SCRIPT} is missing`).toBe(true);
    const steps = parseScript(readFileSync(SCRIPT, 'utf8'));
    expect(steps.filter((s) => s.expect !== undefined).length).toBeGreaterThan(40);
    const r = spawnSync(SCRIPTOR, ['-r', reader, SCRIPT], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('Using T=1 protocol');
    const got = parseTranscript(r.stdout);
    expect(got).toHaveLength(steps.length);
    const mismatches = steps
      .map((s, i) => ({ ...s, got: got[i]! }))
      .filter((s) => (s.command === 'reset' ? !/^OK: 3B /.test(s.got) : s.got !== s.expect))
      .map((s) => `${s.command} -> ${s.got} (documented: ${s.expect ?? 'OK: ATR'})`);
    expect(mismatches).toEqual([]);
  });
});
