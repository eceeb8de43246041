// The shape of one CLI subcommand, and the small helpers every subcommand shares.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { PurselabError } from '../errors.ts';

export interface CliIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

export interface CliCommand {
  /** The word after `purselab`, e.g. "readers" or "hsm init" (multi-word commands are allowed). */
  readonly name: string;
  /** One line for `purselab --help`. */
  readonly summary: string;
  /** Full help text for `purselab NAME --help`: usage line, options, examples. */
  readonly help: string;
  /** Run with the arguments after the command name; resolve to the process exit code. */
  run(args: string[], io: CliIo): Promise<number>;
}

export class UsageError extends PurselabError {
  constructor(message: string) {
    super('USAGE', message);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs (positionals allowed) with errors turned into one-line usage errors. */
export function parseCommandArgs<O extends Options>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.split('\n')[0] ?? 'bad arguments');
  }
}

/** Print either JSON (for machines) or lines (for people). */
export function emit(io: CliIo, json: boolean, value: unknown, human: () => string[]): void {
  if (json) io.out(JSON.stringify(value, null, 2));
  else for (const line of human()) io.out(line);
}
