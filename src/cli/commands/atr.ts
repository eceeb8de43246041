// `purselab atr HEX`: explains an answer-to-reset the way pcsc_scan does (or prints the parsed structure as JSON).

import { explainAtr, parseAtr } from '../../apdu/atr.ts';
import { fromHex, hexifyBytes } from '../../apdu/hex.ts';
import { emit, parseCommandArgs, UsageError, type CliCommand } from '../command.ts';

export const atrCommand: CliCommand = {
  name: 'atr',
  summary: 'explain an ATR (TS, T0, interface bytes, protocols, historical bytes, TCK)',
  help: [
    'Usage: purselab atr HEX [--json]',
    '',
    'Parses an answer-to-reset per ISO 7816-3 and explains every byte. The hex may contain spaces',
    '(quote it, or pass the bytes as separate arguments). A wrong TCK, truncated or over-long ATR is an error.',
    '',
    'Options:',
    '  --json    print the parsed structure',
    '',
    'Example:',
    '  purselab atr 3B DA 18 FF 81 B1 FE 75 1F 03 00 31 C5 73 C0 01 40 00 90 00 0C',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { json: { type: 'boolean', default: false } });
    if (!positionals.length) throw new UsageError('give the ATR as hex, e.g. purselab atr 3B 68 00 00 00 73 C8 40 12 00 90 00');
    const atr = parseAtr(fromHex(positionals.join(''), 'ATR'));
    emit(io, values.json === true, hexifyBytes(atr), () => explainAtr(atr));
    return 0;
  },
};
