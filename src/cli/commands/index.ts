// Registry of every CLI subcommand. Add a command by importing it and listing it here (one line each).

import type { CliCommand } from '../command.ts';

export const commands: CliCommand[] = [
];
