// The shape of one CLI subcommand, and the small helpers every subcommand shares.

import { existsSync } from 'node:fs';
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

/** `unexpected argument 'X'` (and the hint in brackets, if given) when there are positional arguments. */
export function refusePositionals(positionals: readonly string[], hint?: string): void {
  if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'${hint ? ` (${hint})` : ''}`);
}

/**
 * The value of a required string option; `FLAG is required` (and the hint in brackets, if given) when it is
 * missing or empty. `flag` is how the message names it, e.g. '--reader NAME'.
 */
export function requireOption(value: string | undefined, flag: string, hint?: string): string {
  if (!value) throw new UsageError(`${flag} is required${hint ? ` (${hint})` : ''}`);
  return value;
}

/** The card protocol of `--protocol T=0|T=1` (default T=1) for the commands that write a card image. */
export function protocolOption(value: string | undefined): 'T=0' | 'T=1' {
  const protocol = value ?? 'T=1';
  if (protocol !== 'T=0' && protocol !== 'T=1') throw new UsageError(`--protocol must be T=0 or T=1, got '${protocol}'`);
  return protocol;
}

/** An output file that may be written: it does not exist yet, or `--force` was given. */
export function outputFile(path: string, force: boolean | undefined): string {
  if (existsSync(path) && !force) throw new UsageError(`${path} already exists (use --force to overwrite it)`);
  return path;
}

/** Print either JSON (for machines) or lines (for people). */
export function emit(io: CliIo, json: boolean, value: unknown, human: () => string[]): void {
  if (json) io.out(JSON.stringify(value, null, 2));
  else for (const line of human()) io.out(line);
}
