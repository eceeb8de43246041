// `purselab sw [SW]`: the meaning of a status word, or the whole ISO 7816-4 table (plus registered applications).

import { ISO_SOURCE, listStatusWords, lookupSw, parseSw } from '../../apdu/status-words.ts';
import { emit, parseCommandArgs, UsageError, type CliCommand } from '../command.ts';

export const swCommand: CliCommand = {
  name: 'sw',
  summary: 'print the meaning of a status word (SW1SW2), or the whole table',
  help: [
    'Usage: purselab sw [SW] [--json]',
    '',
    'With an SW (4 hex digits, e.g. 6A82 or "63 C2"), prints its meaning and ISO 7816-4 category.',
    'Without one, prints the table: X in a pattern stands for any hex digit.',
    '',
    'Options:',
    '  --json    machine-readable output',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean', default: false } });
    const json = values.json === true;
    if (!positionals.length) {
      const table = listStatusWords();
      emit(io, json, table, () => table.map((e) => `${e.pattern}  ${e.meaning}${e.source === ISO_SOURCE ? '' : `  [${e.source}]`}`));
      return 0;
    }
    if (positionals.length > 2) throw new UsageError('give one status word, e.g. purselab sw 6A82');
    const m = lookupSw(parseSw(positionals.join('')));
    emit(io, json, m, () => [`${m.hex}: ${m.meaning}`, `  category: ${m.category}${m.source ? ` (${m.source})` : ''}`]);
    return 0;
  },
};
