// A fixed amount of plain JavaScript work, timed: the bench prints it first, so each run's rates can be read
// against how fast the machine was at that moment. The shared 2-vCPU machine this project is measured on
// changes speed from one hour to the next (this loop took 162-188 ms in its fast hours, up to 386 ms in its
// slow ones), and every rate with it.

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
