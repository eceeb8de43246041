// The two one-way pipes between the parent and a PKCS#11 session process (session-processes.ts): calls go
// down one, results come up the other. Node's own child pipes (stdio 'pipe') are a Unix socket pair, and on
// the 2-vCPU VM this project is measured on a message that wakes the other side costs about twice as much
// through a socket pair as through a pipe (a ping-pong of 120-byte messages, the child asleep in a blocking
// read: round trip 22-28 us and 15-20 us of the parent's CPU against 15 us and 10-12 us). Node has no pipe(),
// so the pipes are FIFOs made with `mkfifo` in a private temporary directory, opened, and unlinked at once:
// nothing is left on disk and no other process can open them afterwards.
//
// Open modes: the child's ends block (it sleeps in read), the parent's are non-blocking (its event loop reads
// one, its writes must never stall). Each pipe ends as a socket pair does: when the child exits the parent
// reads end of file, when the parent closes its end or dies the child does.

import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PipePair {
  /** The child's fd 3: it reads the calls here (blocking). */
  readonly childReads: number;
  /** The child's fd 4: it writes its results here (blocking). */
  readonly childWrites: number;
  /** The parent's writing end (non-blocking), as a raw descriptor for direct writes. */
  readonly callsFd: number;
  /** The same end as a stream, for what does not fit in the pipe now. */
  readonly calls: Socket;
  /** The parent's reading end: the results. */
  readonly results: Socket;
  /** Close the parent's copies of the child's ends (after spawn: the child has its own). */
  closeChildEnds(): void;
}

/** The pipes, or undefined where FIFOs cannot be made (no `mkfifo`): the caller then uses a socket pair. */
export function openPipePair(): PipePair | undefined {
  let dir: string;
  try {
    dir = mkdtempSync(join(tmpdir(), 'purselab-hsm-'));
  } catch {
    return undefined;
  }
  const down = join(dir, 'calls');
  const up = join(dir, 'results');
  const opened: number[] = [];
  const open = (path: string, flags: number): number => {
    const fd = openSync(path, flags);
    opened.push(fd);
    return fd;
  };
  // calls: a read-write descriptor, held only while opening, so that neither of the two ends waits for the other
  let keepOpen: number | undefined;
  try {
    execFileSync('mkfifo', ['-m', '600', down, up], { stdio: 'ignore' });
    keepOpen = openSync(down, constants.O_RDWR);
    const childReads = open(down, constants.O_RDONLY);
    const callsFd = open(down, constants.O_WRONLY | constants.O_NONBLOCK);
    // results: the parent's non-blocking read end opens without a writer, then the child's end finds a reader
    const resultsFd = open(up, constants.O_RDONLY | constants.O_NONBLOCK);
    const childWrites = open(up, constants.O_WRONLY);
    return {
      childReads,
      childWrites,
      callsFd,
      calls: new Socket({ fd: callsFd, readable: false, writable: true }),
      results: new Socket({ fd: resultsFd, readable: true, writable: false }),
      closeChildEnds: () => {
        closeSync(childReads);
        closeSync(childWrites);
      },
    };
  } catch {
    for (const fd of opened) closeSync(fd);
    return undefined;
  } finally {
    if (keepOpen !== undefined) closeSync(keepOpen);
    rmSync(dir, { recursive: true, force: true });
  }
}
