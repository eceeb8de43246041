// `purselab atr` and `purselab sw` run as a user runs them: spawned through bin/purselab.js, checking output and exit codes.

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { REFERENCE_AID, saveCardImage, SimulatedCard } from '../../../card-applet-sim/index.ts';
import { toHex } from '../../../src/apdu/hex.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function purselab(...args: string[]): { code: number | null; out: string; err: string } {
  return purselabWithInput(undefined, ...args);
}

function purselabWithInput(input: string | undefined, ...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['bin/purselab.js', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 30_000, ...(input !== undefined ? { input } : {}) });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A user-facing error is one line, names the command, and carries no stack trace. */
function expectOneLineError(err: string, pattern: RegExp): void {
  const lines = err.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(err).not.toMatch(/\n\s+at /);
}

describe('purselab atr', () => {
  it('explains an ATR given as separate hex arguments', () => {
    const r = purselab('atr', '3B', '68', '00', '00', '00', '73', 'C8', '40', '12', '00', '90', '00');
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toBe('ATR: 3B 68 00 00 00 73 C8 40 12 00 90 00');
    expect(lines).toContain('+ TS = 3B --> direct convention');
    expect(lines).toContain('+ No TCK (only T=0 offered)');
    expect(lines).toContain('+ Protocols offered: T=0');
    expect(r.err).toBe('');
  });

  it('prints the parsed structure with --json', () => {
    const r = purselab('atr', '3BDA18FF81B1FE751F030031C573C001400090000C', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.bytes).toBe('3BDA18FF81B1FE751F030031C573C001400090000C');
    expect(j.protocols).toEqual([1]);
    expect(j.t1Parameters).toEqual({ ifsc: 254, bwi: 7, cwi: 5, errorDetection: 'LRC' });
    expect(j.historical).toBe('0031C573C00140009000');
    expect(j.tck).toBe(0x0c);
  });

  it('bad hex: one-line error, exit 1', () => {
    const r = purselab('atr', '3B', 'ZZ');
    expect(r.code).toBe(1);
    expectOneLineError(r.err, /^purselab atr: ATR: 'Z' is not a hex digit$/);
    expect(r.out).toBe('');
  });

  it('wrong TCK: one-line error, exit 1', () => {
    const r = purselab('atr', '3BDA18FF81B1FE751F030031C573C001400090000D');
    expect(r.code).toBe(1);
    expectOneLineError(r.err, /^purselab atr: wrong TCK: ATR ends with 0D but .* is 0C$/);
  });

  it('truncated ATR: one-line error, exit 1', () => {
    const r = purselab('atr', '3B8F8001');
    expect(r.code).toBe(1);
    expectOneLineError(r.err, /^purselab atr: truncated ATR: T0 announces 15 historical bytes/);
  });

  it('no ATR given: usage error, exit 2', () => {
    const r = purselab('atr');
    expect(r.code).toBe(2);
    expectOneLineError(r.err, /^purselab atr: give the ATR as hex/);
  });
});

describe('purselab sw', () => {
  it('prints the meaning of one status word', () => {
    const r = purselab('sw', '63C2');
    expect(r.code).toBe(0);
    expect(r.out).toBe('63C2: warning, memory changed: counter 2 (typically 2 tries left)\n  category: warning (ISO 7816-4)\n');
  });

  it('accepts the SW as two bytes and prints JSON', () => {
    const r = purselab('sw', '6A', '82', '--json');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ sw: 0x6a82, hex: '6A82', category: 'checking error', meaning: 'checking error: file or application not found' });
  });

  it('prints the whole table without an argument', () => {
    const r = purselab('sw');
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines.length).toBeGreaterThan(50);
    expect(lines).toContain('6A82  checking error: file or application not found');
    expect(lines).toContain('9000  normal processing: no further qualification');
  });

  it('a malformed SW is a one-line error, exit 1', () => {
    const r = purselab('sw', '90G0');
    expect(r.code).toBe(1);
    expectOneLineError(r.err, /^purselab sw: '90G0' is not a status word \(expected 4 hex digits, e.g. 9000\)$/);
  });
});

describe('purselab apdu and script against an emulated card (emu:IMAGE)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'purselab-cli-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const image = join(dir, 'card.img');
  const card = new SimulatedCard({ protocol: 'T=0' });
  card.install(REFERENCE_AID, 'reference');
  saveCardImage(card, image);
  const select = `00A40400${toHex(Buffer.from([REFERENCE_AID.length]))}${toHex(REFERENCE_AID)}00`;
  const reader = `emu:${image}`;
  const file = (name: string, text: string): string => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };

  it('apdu: ISO mode follows 61xx; every response is printed with its SW meaning', () => {
    const r = purselab('apdu', '--reader', reader, select, '80FF0000');
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toBe(`> ${toHex(Buffer.from(select, 'hex'), ' ')}`);
    expect(lines[1]).toMatch(/^< 6F /);
    expect(lines[2]).toBe('< 9000: normal processing: no further qualification');
    expect(lines.slice(3)).toEqual(['> 80 FF 00 00', '< 6D00: checking error: instruction code not supported or invalid']);
  });

  it('apdu: --raw shows the literal 61xx; APDUs can come from stdin', () => {
    const r = purselabWithInput(`# select\n${select}\n`, 'apdu', '--reader', reader, '--raw', '--json', '-');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).exchanges).toEqual([expect.objectContaining({ command: select, sw: expect.stringMatching(/^61/) })]);
  });

  it('apdu: a malformed APDU is refused before anything is sent', () => {
    const r = purselab('apdu', '--reader', reader, '00', 'A4', '04', '00');
    expect(r.code).toBe(2);
    expectOneLineError(r.err, /^purselab apdu: APDU 1 \('00'\) is shorter than a 4-byte header; quote an APDU/);
  });

  it('script: exit 0 when every step passes', () => {
    const f = file('pass.apdu', `reset\nlabel: select\n${select} -> 61XX\n80FF0000 -> 6D00\n`);
    const r = purselab('script', f, '--reader', reader);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^PASS .*pass\.apdu:1  reset\n  ATR 3B /m);
    expect(r.out).toMatch(/^PASS .*pass\.apdu:3 \[select\]/m);
    expect(r.out.trimEnd().split('\n').at(-1)).toBe('PASS: 3 passed, 0 failed (3 steps, raw mode)');
  });

  it('script: exit 1 and the reason when a step fails; --iso checks the assembled response', () => {
    const f = file('fail.apdu', `${select} -> 6F * 9000\n80FF0000 -> 9000\n`);
    const raw = purselab('script', f, '--reader', reader);
    expect(raw.code).toBe(1);
    expect(raw.out).toMatch(/FAIL .*fail\.apdu:1 /);
    const iso = purselab('script', f, '--reader', reader, '--iso', '--json');
    expect(iso.code).toBe(1);
    const j = JSON.parse(iso.out);
    expect(j.steps.map((s: { pass: boolean }) => s.pass)).toEqual([true, false]);
    expect(j.steps[1].reason).toBe('SW 6D00: checking error: instruction code not supported or invalid; expected 9000');
  });

  it('script: a syntax error names the line, exit 1, before the card is opened', () => {
    const f = file('bad.apdu', '# ok\n00A4040002 3F -> 9000\n');
    const r = purselab('script', f, '--reader', 'emu:/nonexistent/card.img');
    expect(r.code).toBe(1);
    expectOneLineError(r.err, /^purselab script: .*bad\.apdu:2: Lc says 2 data bytes but 1 bytes follow it/);
  });

  it('script: --reader is required (usage error, exit 2)', () => {
    const r = purselab('script', file('x.apdu', ''));
    expect(r.code).toBe(2);
    expectOneLineError(r.err, /--reader NAME is required/);
  });
});
