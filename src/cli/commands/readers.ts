// `purselab readers [--watch] [--json] [--wait-card READER]`: lists PC/SC readers with the card in each (ATR),
// first waiting until the named readers hold a card (a script's way to know that pcscd sees the cards of
// `purselab emulate`), or follows reader and card events until Ctrl-C.

import { toHex } from '../../apdu/hex.ts';
import { PurselabError } from '../../errors.ts';
import { listReaders, waitForCards, type PcscEvent, type PcscReaderInfo } from '../../transport/pcsc.ts';
import { watchReaders } from '../../transport/pcsc-watcher.ts';
import { emit, parseCommandArgs, UsageError, type CliCommand, type CliIo } from '../command.ts';

function describeCard(r: PcscReaderInfo): string {
  if (!r.cardPresent) return 'no card';
  if (r.mute) return 'card present, mute (no ATR)';
  const use = r.exclusive ? ', in exclusive use' : r.inUse ? ', in use' : '';
  return `card present${use}  ATR ${toHex(r.atr, ' ')}`;
}

function readerJson(r: PcscReaderInfo) {
  return {
    name: r.name,
    card: r.cardPresent,
    atr: r.cardPresent && r.atr.length ? toHex(r.atr) : null,
    mute: r.mute,
    inUse: r.inUse,
    exclusive: r.exclusive,
    flags: r.flags,
  };
}

function eventJson(ev: PcscEvent, time: Date): Record<string, unknown> {
  const base: Record<string, unknown> = { time: time.toISOString(), event: ev.type };
  if ('reader' in ev) base.reader = ev.reader;
  if (ev.type === 'card-inserted') base.atr = toHex(ev.atr);
  if (ev.type === 'pcscd-lost') base.message = ev.message;
  return base;
}

function eventLine(ev: PcscEvent, time: Date): string {
  const t = time.toTimeString().slice(0, 8) + '.' + String(time.getMilliseconds()).padStart(3, '0');
  switch (ev.type) {
    case 'reader-added':
      return `${t}  reader added    ${ev.reader}`;
    case 'reader-removed':
      return `${t}  reader removed  ${ev.reader}`;
    case 'card-inserted':
      return `${t}  card inserted   ${ev.reader}  ATR ${ev.atr.length ? toHex(ev.atr, ' ') : '(none: mute card)'}`;
    case 'card-removed':
      return `${t}  card removed    ${ev.reader}`;
    case 'pcscd-lost':
      return `${t}  pcscd lost      ${ev.message}; waiting for it to come back`;
    case 'pcscd-back':
      return `${t}  pcscd back`;
  }
}

/** Resolves on SIGINT/SIGTERM; cancel() removes the handlers. */
function onSignal(): { done: Promise<NodeJS.Signals>; cancel: () => void } {
  let cancel = () => {};
  const done = new Promise<NodeJS.Signals>((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      cancel();
      resolve(sig);
    };
    cancel = () => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  return { done, cancel };
}

async function watch(io: CliIo, json: boolean): Promise<number> {
  const watcher = watchReaders({ initial: true });
  const signal = onSignal();
  watcher.on('event', (ev: PcscEvent) => {
    const now = new Date();
    io.out(json ? JSON.stringify(eventJson(ev, now)) : eventLine(ev, now));
  });
  try {
    await watcher.ready;
  } catch (e) {
    signal.cancel();
    throw e;
  }
  if (!json && watcher.readers().length === 0) io.out('(no readers yet; waiting for events, Ctrl-C to stop)');
  await signal.done;
  await watcher.close();
  return 0;
}

/** How long --wait-card waits by default: pcscd polls a vpcd slot about every 400 ms, a real reader at once. */
const WAIT_CARD_DEFAULT_MS = 10_000;

export const readersCommand: CliCommand = {
  name: 'readers',
  summary: 'list PC/SC readers and the card (ATR) in each; --watch follows reader and card events',
  help: [
    'Usage: purselab readers [--watch] [--json] [--wait-card READER]... [--timeout MS]',
    '',
    'Lists the readers pcscd knows, whether a card is in each, and its ATR.',
    'With --wait-card, first waits until each READER named (its exact name) holds a card, and exits 1',
    'if one does not within the timeout: after starting `purselab emulate`, this is how a script knows',
    'that pcscd sees the cards (it notices a vpcd card at its next poll of the reader, not at once).',
    'With --watch, prints the current state as events, then every reader added/removed and card',
    'inserted/removed until Ctrl-C (it keeps waiting across pcscd restarts).',
    '',
    'Options:',
    '  --watch        follow events until Ctrl-C (SIGINT/SIGTERM), then exit 0',
    '  --json         JSON (with --watch: one JSON object per line)',
    '  --wait-card READER  wait until READER holds a card (repeat for several readers)',
    `  --timeout MS   how long to wait for pcscd to report its readers (default 5000), or with`,
    `                 --wait-card for the cards (default ${WAIT_CARD_DEFAULT_MS})`,
    '',
    'Needs pcscd running (Debian packages pcscd and libpcsclite-dev). The emulated cards of',
    '`purselab emulate` appear in the "Virtual PCD" readers of the vpcd driver.',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      watch: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      'wait-card': { type: 'string', multiple: true },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const json = values.json === true;
    const waitCards = values['wait-card'] ?? [];
    if (values.watch && waitCards.length) throw new UsageError('--wait-card and --watch do not go together (--watch already shows every card as it comes)');
    if (values.watch) return watch(io, json);
    let timeoutMs: number | undefined;
    if (values.timeout !== undefined) {
      timeoutMs = Number(values.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new UsageError(`--timeout must be a positive whole number of milliseconds, got '${values.timeout}'`);
    }
    if (waitCards.length) {
      const waitMs = timeoutMs ?? WAIT_CARD_DEFAULT_MS;
      const missing = await waitForCards(waitCards, waitMs);
      if (missing !== undefined) throw new PurselabError('NO_CARD', `no card in reader '${missing}' after ${waitMs} ms (is pcscd running, and the reader's exact name given? \`purselab readers\` lists them)`);
    }
    const readers = await listReaders(timeoutMs !== undefined ? { timeoutMs } : {});
    emit(io, json, readers.map(readerJson), () => {
      if (readers.length === 0) return ['no readers (pcscd is running but has no reader: plug one in, or configure vpcd)'];
      const width = Math.max(...readers.map((r) => r.name.length));
      return readers.map((r) => `${r.name.padEnd(width)}  ${describeCard(r)}`);
    });
    return 0;
  },
};
