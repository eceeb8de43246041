// purselab CLI entry point: dispatches to subcommands, prints help, turns errors into one-line messages.

import { PurselabError } from '../errors.ts';
import type { CliCommand, CliIo } from './command.ts';
import { commands } from './commands/index.ts';

// A reader that stops early (`purselab readers | head -1`) closes the pipe: that is the end of the output, not an
// error to crash on. Long-running commands (servers, emulate) keep their own shutdown path through the signal.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
}

const io: CliIo = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
};

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length), 8);
  const lines = [
    'purselab — smart-card payment stack: PC/SC host, card emulator, HSM bridge, payment and load servers',
    '',
    'Usage: purselab COMMAND [options]      purselab COMMAND --help for details',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Common options: --json (machine-readable output), --help',
    'Environment: PURSELAB_DEBUG=1 prints stack traces for unexpected errors.',
  ];
  return lines.join('\n');
}

/** Longest command name that prefixes the argument list (so "hsm init" wins over "hsm"). */
function findCommand(argv: string[]): { cmd: CliCommand; rest: string[] } | undefined {
  let best: { cmd: CliCommand; rest: string[] } | undefined;
  for (const cmd of commands) {
    const words = cmd.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && (!best || words.length > best.cmd.name.split(' ').length)) {
      best = { cmd, rest: argv.slice(words.length) };
    }
  }
  return best;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(topHelp());
    return argv.length === 0 ? 2 : 0;
  }
  const found = findCommand(argv);
  if (!found) {
    io.err(`purselab: unknown command '${argv[0]}' (purselab --help lists the commands)`);
    return 2;
  }
  if (found.rest.includes('--help') || found.rest.includes('-h')) {
    io.out(found.cmd.help);
    return 0;
  }
  try {
    return await found.cmd.run(found.rest, io);
  } catch (e) {
    if (e instanceof PurselabError) {
      io.err(`purselab ${found.cmd.name}: ${e.message}`);
      return e.code === 'USAGE' ? 2 : 1;
    }
    io.err(`purselab ${found.cmd.name}: unexpected error: ${(e as Error)?.message ?? String(e)}`);
    if (process.env.PURSELAB_DEBUG) io.err((e as Error)?.stack ?? '');
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
