// A fixed amount of plain JavaScript work, timed: the bench prints it first, so each run's rates can be read
// against how fast the machine was at that moment. The shared 2-vCPU machine this project is measured on
// changes speed from one hour to the next (this loop took 162-188 ms in its fast hours, up to 386 ms in its
// slow ones), and every rate with it. Also printed: what the first cipher call after a short pause costs there,
// against the same call back to back (the machine's penalty for coming back to work).

import { createCipheriv } from 'node:crypto';
import { percentile } from './stats.ts';

/** Milliseconds for 10^8 iterations of a small integer loop (the best of three, after one to warm up). */
export function referenceLoopMs(): number {
  let best = Infinity;
  let sink = 0;
  for (let round = 0; round < 4; round++) {
    const t0 = process.hrtime.bigint();
    let x = 0;
    for (let i = 0; i < 1e8; i++) x += i % 7;
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    sink += x;
    if (round > 0) best = Math.min(best, ms);
  }
  if (sink < 0) throw new Error('unreachable'); // keeps the loop's result alive
  return best;
}

/** What the first node:crypto call after a pause costs, next to the same call made back to back. */
export interface WakeCost {
  /** Median microseconds of one AES-128-CBC update of one block, the call before it a moment ago. */
  readonly warmUs: number;
  /** Median microseconds of the same call as the first after a 3 ms pause. */
  readonly afterPauseUs: number;
}

/**
 * The cost of coming back to work after a pause, measured on one small node:crypto call (50 samples of each
 * kind, about 0.3 s). On the 2-vCPU machine this project is measured on, the first cipher call after a few
 * milliseconds of doing something else took about ten times as long as the next one (about 20-30 against 2-3
 * µs; plain JavaScript about twice as long; 5 µs after 0.3 ms). An emulated card behind vpcd, waiting 0.1-0.2 ms
 * for each command, and the serial simulator between two commands pay part of it every time; loops in one
 * process do not.
 */
export async function wakeCost(samples = 50): Promise<WakeCost> {
  const c = createCipheriv('aes-128-cbc', Buffer.alloc(16, 0x5a), Buffer.alloc(16));
  c.setAutoPadding(false);
  const block = Buffer.alloc(16);
  const timeOne = (): number => {
    const t0 = process.hrtime.bigint();
    c.update(block);
    return Number(process.hrtime.bigint() - t0) / 1e3;
  };
  for (let i = 0; i < 2000; i++) c.update(block); // compiled and warm
  const warm: number[] = [];
  const after: number[] = [];
  for (let i = 0; i < samples; i++) {
    await new Promise((r) => setTimeout(r, 3));
    after.push(timeOne());
    warm.push(timeOne());
  }
  return { warmUs: percentile(warm, 50), afterPauseUs: percentile(after, 50) };
}
