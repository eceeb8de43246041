// `purselab apdu --reader NAME [HEX...]`: sends APDUs from arguments, a file or stdin and prints each response with its SW meaning.

import { readFile } from 'node:fs/promises';
import { parseCommand, type CommandApdu } from '../../apdu/command.ts';
import { fromHex, toHex } from '../../apdu/hex.ts';
import { encodeResponse, parseResponse, swHex, type ResponseApdu } from '../../apdu/response.ts';
import { parseScript, ScriptSyntaxError } from '../../apdu/script.ts';
import { describeSw, lookupSw } from '../../apdu/status-words.ts';
import { PurselabError } from '../../errors.ts';
import { openChannel } from '../../transport/open.ts';
import { emit, parseCommandArgs, requireOption, UsageError, type CliCommand } from '../command.ts';

interface Outgoing {
  readonly bytes: Buffer;
  readonly command: CommandApdu;
}

/** Lines for one exchange: "> command", "< data" (when there is data), "< SW: meaning". Shared with `script`. */
export function formatExchange(sent: Uint8Array | undefined, r: ResponseApdu | undefined): string[] {
  const lines: string[] = [];
  if (sent) lines.push(`> ${toHex(sent, ' ')}`);
  if (r) {
    if (r.data.length) lines.push(`< ${toHex(r.data, ' ')}`);
    lines.push(`< ${describeSw(r.sw)}`);
  }
  return lines;
}

/** Read a text file named on the command line; a missing or unreadable file is a one-line error. Shared with `script`. */
export async function readInputFile(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new PurselabError('NO_SUCH_FILE', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** --timeout MS as a number (undefined when not given). Shared with `script`. */
export function parseTimeout(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = Number(text);
  if (!Number.isInteger(ms) || ms <= 0) throw new UsageError(`--timeout must be a positive whole number of milliseconds, got '${text}'`);
  return ms;
}

function fromArgument(text: string, n: number): Outgoing {
  const bytes = fromHex(text, `APDU ${n}`);
  if (bytes.length < 4) {
    throw new UsageError(`APDU ${n} ('${text}') is shorter than a 4-byte header; quote an APDU that contains spaces: "00 A4 04 00 00"`);
  }
  return { bytes, command: parseCommand(bytes) };
}

/** A file or stdin: one hex APDU per line, # comments and blank lines allowed (the script format without expectations). */
function fromLines(text: string, source: string): Outgoing[] {
  return parseScript(text, source).steps.map((step) => {
    if (step.kind !== 'apdu' || step.expect.length) {
      throw new ScriptSyntaxError(source, step.line, 'purselab apdu sends plain APDUs; use purselab script for resets and expected responses');
    }
    return { bytes: step.bytes, command: step.command };
  });
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

async function collect(positionals: string[], file: string | undefined): Promise<Outgoing[]> {
  const out: Outgoing[] = [];
  for (const [i, arg] of positionals.entries()) {
    out.push(...(arg === '-' ? fromLines(await readStdin(), '<stdin>') : [fromArgument(arg, i + 1)]));
  }
  if (file !== undefined) {
    out.push(...fromLines(await readInputFile(file), file));
  }
  return out;
}

export const apduCommand: CliCommand = {
  name: 'apdu',
  summary: 'send APDUs (arguments, --file or stdin) to a card and print the responses with SW meanings',
  help: [
    'Usage: purselab apdu --reader NAME [HEX...] [--file F] [-] [--raw] [--json]',
    '',
    'Each argument is one APDU in hex (quote APDUs that contain spaces). --file F reads one APDU per line',
    '(# comments and blank lines allowed); a "-" argument reads the same format from stdin.',
    'APDUs are checked before the card is touched; a malformed one is an error and nothing is sent.',
    '',
    'Options:',
    '  --reader NAME   PC/SC reader name (exact or a unique substring), or emu:PATH for an emulated card image',
    '  --file F        read APDUs from F',
    '  --raw           send the exact bytes: no GET RESPONSE on 61xx, no re-issue on 6Cxx, no chaining',
    '  --timeout MS    per-APDU timeout in milliseconds',
    '  --json          print the exchanges as JSON',
    '',
    'Example:',
    '  purselab apdu --reader "ACS ACR39U" "00 A4 04 00 07 F0 00 00 00 01 01 01 00" 00CA9F7F00',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      reader: { type: 'string' },
      file: { type: 'string' },
      raw: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    const reader = requireOption(values.reader, '--reader NAME', 'purselab readers lists them');
    const timeoutMs = parseTimeout(values.timeout);
    const apdus = await collect(positionals, values.file);
    if (!apdus.length) throw new UsageError('no APDUs to send: give them as arguments, with --file F, or "-" for stdin');
    const json = values.json === true;
    const exchanges: { command: string; response: string; data: string; sw: string; meaning: string }[] = [];
    const channel = await openChannel(reader, timeoutMs !== undefined ? { timeoutMs } : {});
    try {
      for (const a of apdus) {
        const opts = timeoutMs !== undefined ? { timeoutMs } : {};
        const r = values.raw ? parseResponse(await channel.transmitRaw(a.bytes, opts)) : await channel.transmit(a.command, opts);
        if (json) {
          exchanges.push({ command: toHex(a.bytes), response: toHex(encodeResponse(r)), data: toHex(r.data), sw: swHex(r.sw), meaning: lookupSw(r.sw).meaning });
        } else {
          for (const line of formatExchange(a.bytes, r)) io.out(line);
        }
      }
    } finally {
      await channel.close();
    }
    emit(io, json, { reader: channel.readerName, mode: values.raw ? 'raw' : 'iso', exchanges }, () => []);
    return 0;
  },
};
