// A benchmark suite: named, self-contained, prints its own figures and returns them for --json.

import type { CliIo } from '../command.ts';

export interface BenchContext {
  readonly io: CliIo;
  /** Scale factor for iteration counts (--quick uses 0.1). */
  readonly scale: number;
  readonly json: boolean;
}

/** A suite's figures: numbers (and a few strings and flags) keyed by name. */
export type BenchFigures = Record<string, number | string | boolean>;

export interface BenchSuite {
  readonly name: string;
  readonly summary: string;
  /** Returns the measured figures (numbers keyed by name); prints them unless ctx.json. */
  run(ctx: BenchContext): Promise<BenchFigures>;
}
