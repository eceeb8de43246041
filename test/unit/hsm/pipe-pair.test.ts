// The two pipes between the parent and a PKCS#11 session process (hsm-bridge/pkcs11/pipe-pair.ts): bytes go
// down one and come back up the other; each side sees end of file when the other goes; the FIFOs leave
// nothing on disk and no descriptor behind; without `mkfifo` the caller is told to use a socket pair.

import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { openPipePair, type PipePair } from '../../../hsm-bridge/pkcs11/pipe-pair.ts';
import { fifoEnds } from './pkcs11-support/fifo-ends.ts';

/** A child that reads fd 3 and writes each chunk back upper-cased on fd 4, and says 'eof' when fd 3 ends. */
const ECHO = `
const fs = require('node:fs');
const b = Buffer.alloc(4096);
for (;;) {
  const n = fs.readSync(3, b, 0, b.length, null);
  if (n === 0) { fs.writeSync(4, 'eof'); break; }
  fs.writeSync(4, b.toString('latin1', 0, n).toUpperCase());
}`;

const ourTempDirs = (): string[] => readdirSync(tmpdir()).filter((n) => n.startsWith('purselab-hsm-'));

let pair: PipePair | undefined;
afterEach(() => {
  pair?.calls.destroy();
  pair?.results.destroy();
  pair = undefined;
});

const startEcho = (p: PipePair) => {
  const child = spawn(process.execPath, ['-e', ECHO], { stdio: ['ignore', 'inherit', 'inherit', p.childReads, p.childWrites] });
  p.closeChildEnds();
  const got: Buffer[] = [];
  p.results.on('data', (c: Buffer) => got.push(c));
  const text = (): string => Buffer.concat(got).toString('latin1');
  const until = async (want: string): Promise<void> => {
    for (let i = 0; i < 500 && !text().includes(want); i++) await new Promise((r) => setTimeout(r, 10));
  };
  return { child, text, until };
};

describe('pipe pair to a session process', () => {
  it('carries bytes down one pipe and back up the other, and leaves no FIFO on disk', async () => {
    const before = ourTempDirs();
    pair = openPipePair();
    expect(pair).toBeDefined();
    expect(ourTempDirs()).toEqual(before); // made, opened and unlinked at once
    const echo = startEcho(pair!);
    pair!.calls.write('hello ');
    await echo.until('HELLO ');
    // the raw descriptor takes a frame directly too (what SessionProcesses.write does first)
    const { writeSync } = await import('node:fs');
    expect(writeSync(pair!.callsFd, 'world')).toBe(5);
    await echo.until('WORLD');
    expect(echo.text()).toBe('HELLO WORLD');
    echo.child.kill();
  });

  it('the child reads end of file when the parent closes its end; the parent reads end of file when the child exits', async () => {
    pair = openPipePair()!;
    const echo = startEcho(pair);
    const exited = new Promise<number | null>((r) => echo.child.once('exit', (code) => r(code)));
    const ended = new Promise<void>((r) => pair!.results.once('end', () => r()));
    pair.calls.end();
    await echo.until('eof');
    expect(echo.text()).toBe('eof');
    expect(await exited).toBe(0);
    await ended; // the child was the only writer of the results pipe
  });

  it('leaves no descriptor behind once both streams are closed', async () => {
    const base = fifoEnds();
    pair = openPipePair()!;
    expect(fifoEnds()).toBe(base + 4); // two parent ends, two child ends until spawn
    const echo = startEcho(pair);
    expect(fifoEnds()).toBe(base + 2);
    const exited = new Promise<void>((r) => echo.child.once('exit', () => r()));
    pair.calls.end();
    await exited;
    pair.results.destroy();
    for (let i = 0; i < 100 && fifoEnds() !== base; i++) await new Promise((r) => setTimeout(r, 10));
    expect(fifoEnds()).toBe(base);
  });

  it('says undefined (use a socket pair) where mkfifo cannot run', () => {
    const path = process.env.PATH;
    process.env.PATH = '/nonexistent';
    try {
      const before = ourTempDirs();
      expect(openPipePair()).toBeUndefined();
      expect(ourTempDirs()).toEqual(before);
    } finally {
      process.env.PATH = path;
    }
  });
});
