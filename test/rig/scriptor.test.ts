// A third-party PC/SC client on the rig: pcsc-tools' `scriptor` sends an APDU script to the emulated
// reference applet through pcscd + vpcd and gets the responses docs/reference-applet.md documents.

import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeRig, detectRig, freeSlots, killAll, startEmulator, tempDir, type Proc, type RigState } from './rig.ts';

const SCRIPTOR = spawnSync('sh', ['-c', 'command -v scriptor'], { encoding: 'utf8' }).stdout.trim();
const detected = await detectRig(1);
const rig: RigState = SCRIPTOR ? detected : { ...detected, ok: false, reason: "pcsc-tools' scriptor is not installed (apt-get install pcsc-tools)" };

// One exchange per line: the command scriptor sends and the response (data + SW) the applet documents.
const EXCHANGES: [string, string][] = [
  ['00 A4 04 00 0A F0 70 75 72 73 65 6C 61 62 01 00', '6F 11 84 0A F0 70 75 72 73 65 6C 61 62 01 A5 03 80 01 01 90 00'], // SELECT: FCI
  ['80 01 00 00 05 68 65 6C 6C 6F 00', '68 65 6C 6C 6F 90 00'], // ECHO "hello"
  ['80 02 00 00 04 00 00 00 07 00', '00 00 00 07 90 00'], // INCREMENT by 7 -> counter 7
  ['80 02 00 00 04 00 00 00 03 00', '00 00 00 0A 90 00'], // INCREMENT by 3 -> counter 10
  ['80 04 00 00 00', '00 00 00 0A 00 00 00 02 00 00 00 03 90 00'], // READ COUNTER: value, increments, last
  ['80 CA 00 08 00', '00 01 02 03 04 05 06 07 90 00'], // GET DATA 8 bytes
  ['80 02 00 00 04 00 00 00 00 00', '6A 80'], // INCREMENT by 0: wrong data
  ['80 7F 00 00 00', '6D 00'], // unknown instruction
];

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

  it('gets the documented responses, and a reset clears the selection', () => {
    const script = join(tmp.path, 'reference.scr');
    writeFileSync(script, ['# purselab reference applet', ...EXCHANGES.map(([c]) => c), 'reset', '80 04 00 00 00', ''].join('\n'));
    const r = spawnSync(SCRIPTOR, ['-r', reader, script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(0);
    // scriptor prints "> COMMAND" then "< RESPONSE : meaning" (long responses wrap at 16 bytes).
    const responses = r.stdout
      .split('\n> ')
      .slice(1)
      .map((block) => {
        const rsp = block.slice(block.indexOf('\n< ') + 3);
        return rsp.split(' : ')[0]!.replace(/\s+/g, ' ').trim();
      });
    expect(r.stdout).toContain('Using T=1 protocol');
    expect(responses.slice(0, EXCHANGES.length)).toEqual(EXCHANGES.map(([, rsp]) => rsp));
    expect(responses[EXCHANGES.length]).toMatch(/^OK: 3B 8E/); // reset: the ATR
    expect(responses[EXCHANGES.length + 1]).toBe('69 85'); // nothing selected after the reset
  });
});
