// `purselab emulate --vpcd HOST:PORT --card FILE [...]`: serves emulated cards (card images) to pcscd
// through the vpcd driver, one card per vpcd slot, until SIGINT/SIGTERM; then saves every image
// atomically and exits 0. `--responder` serves the do-nothing 9000 card (benchmark floor) instead.
// `--power-cut INS:K` cuts the card's power at the K-th persistent write of the next command with that INS
// (card-applet-sim/vpcd/power-cut.ts): no answer, rollback, image saved, the card re-inserted.

import { existsSync } from 'node:fs';
import { toHex } from '../../apdu/hex.ts';
import { PurselabError } from '../../errors.ts';
import { REFERENCE_AID } from '../../../card-applet-sim/applets/index.ts';
import { SimulatedCard } from '../../../card-applet-sim/os/card.ts';
import { loadCardImage, saveCardImage } from '../../../card-applet-sim/os/image.ts';
import { parseVpcdAddress, VpcdConnector, type VpcdCard } from '../../../card-applet-sim/vpcd/connector.ts';
import { parsePowerCut, PowerCutCard, type PowerCutSpec } from '../../../card-applet-sim/vpcd/power-cut.ts';
import { NullResponderCard } from '../../../card-applet-sim/vpcd/responder.ts';
import { parseCommandArgs, UsageError, type CliCommand, type CliIo } from '../command.ts';

const DEFAULT_VPCD = '127.0.0.1:35963';

interface Slot {
  readonly address: { host: string; port: number };
  readonly card: VpcdCard;
  /** Card image path (undefined for the responder). */
  readonly file: string | undefined;
  readonly sim: SimulatedCard | undefined;
  connector?: VpcdConnector;
}

/** A new card with the reference applet installed (what `--card FILE` creates when FILE does not exist). */
export function newReferenceCard(protocol: 'T=0' | 'T=1' = 'T=1'): SimulatedCard {
  const card = new SimulatedCard({ protocol });
  card.install(REFERENCE_AID, 'reference');
  return card;
}

function openSlotCard(file: string, protocol: 'T=0' | 'T=1' | undefined, io: CliIo, quiet: boolean): SimulatedCard {
  if (existsSync(file)) {
    if (protocol !== undefined) throw new UsageError(`--protocol only applies to new cards; ${file} already exists`);
    return loadCardImage(file);
  }
  const card = newReferenceCard(protocol ?? 'T=1');
  saveCardImage(card, file);
  if (!quiet) io.out(`emulate: ${file} did not exist: created a new ${card.protocol} card with the reference applet (${toHex(REFERENCE_AID)})`);
  return card;
}

const insHex = (ins: number) => ins.toString(16).toUpperCase().padStart(2, '0');

/** The card behind its power-cut switch: says on stdout (even with --quiet) whether it fired, and saves the image when it did. */
function powerCutSwitch(sim: SimulatedCard, file: string, cut: PowerCutSpec, io: CliIo, quiet: boolean): PowerCutCard {
  if (!quiet) io.out(`emulate: power-cut switch armed for ${file}: the next INS ${insHex(cut.ins)} loses power after persistent write ${cut.k}`);
  return new PowerCutCard(sim, cut, {
    onCut: ({ k, apduHeader }) => {
      // The torn transaction is already rolled back: the image holds committed state only.
      let saved = 'image saved';
      try {
        saveCardImage(sim, file);
      } catch (e) {
        saved = `image NOT saved (${(e as Error).message})`;
      }
      io.out(`emulate: power cut: ${file} lost power at persistent write ${k} of ${apduHeader} (no answer; uncommitted writes rolled back); ${saved}; re-inserting the card`);
    },
    onMiss: ({ ins, k, writes }) => {
      io.out(`emulate: power cut: the switch did not fire: INS ${insHex(ins)} ended after ${writes} persistent write(s), fewer than ${k}; disarmed`);
    },
  });
}

/** Resolves on the first SIGINT/SIGTERM. */
function nextSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}

export const emulateCommand: CliCommand = {
  name: 'emulate',
  summary: 'serve emulated cards (card images) to pcscd through vpcd; saves the images on Ctrl-C',
  help: [
    'Usage: purselab emulate [--vpcd HOST:PORT] --card FILE [--vpcd HOST:PORT --card FILE ...] [--power-cut INS:K[@N]]',
    '       purselab emulate [--vpcd HOST:PORT ...] --responder',
    '',
    "Connects each card to a slot of pcscd's vpcd driver (vsmartcard-vpcd), where every PC/SC client",
    '(purselab, pcsc_scan, scriptor, opensc-tool) sees it in a "Virtual PCD" reader. The n-th --vpcd',
    'pairs with the n-th --card; one --card without --vpcd uses 127.0.0.1:35963 (the first slot).',
    'A FILE that does not exist becomes a new card with the reference applet (docs/reference-applet.md).',
    'Reconnects when pcscd restarts. On SIGINT/SIGTERM the card images are saved (atomically) and the',
    'command exits 0.',
    '',
    'Options:',
    '  --vpcd HOST:PORT   a vpcd slot (default 127.0.0.1:35963; the second slot is 35964)',
    '  --card FILE        card image to serve in the slot of the same position',
    '  --protocol T=0|T=1 protocol of a NEW card (default T=1)',
    '  --responder        serve the do-nothing card (answers 9000 to everything): benchmark floor',
    '  --power-cut INS:K[@N]  tearing test: when the next command with instruction byte INS (hex) reaches',
    '                     the N-th --card (default 1), arm its power-loss switch so that the K-th persistent',
    '                     write inside that command cuts power (docs/card-os.md). The command gets no answer',
    '                     (pcscd sees it fail and the card removed), uncommitted writes are rolled back, the',
    '                     image is saved at once (old or new state, never a mix) and the card is inserted',
    '                     again (cold reset, same ATR). One shot: a command with fewer than K writes',
    '                     disarms it ("did not fire ... after M persistent write(s)" on stdout).',
    '                     E.g. --power-cut 42:3 = the 3rd write of CREDIT FOR LOAD',
    '  --quiet            print errors only',
    '',
    'Example (two cards in the two default slots):',
    '  purselab emulate --vpcd 127.0.0.1:35963 --card a.img --vpcd 127.0.0.1:35964 --card b.img',
    'Power cut at the 2nd persistent write of the next CREDIT FOR LOAD (INS 42):',
    '  purselab emulate --vpcd 127.0.0.1:35963 --card card.img --power-cut 42:2',
    '',
    'Latency: without the loopback quickack route each APDU stalls ~40 ms in vpcd (Nagle + delayed',
    'ACK); as root: ip route replace local 127.0.0.1 dev lo table local quickack 1 (docs/pcsc-and-vpcd.md).',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      vpcd: { type: 'string', multiple: true },
      card: { type: 'string', multiple: true },
      protocol: { type: 'string' },
      responder: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      'power-cut': { type: 'string', multiple: true },
    });
    if (positionals.length) throw new UsageError(`unexpected argument '${positionals[0]}' (cards are given with --card FILE)`);
    const quiet = values.quiet === true;
    const vpcds = values.vpcd ?? [];
    const cards = values.card ?? [];
    const protocol = values.protocol;
    if (protocol !== undefined && protocol !== 'T=0' && protocol !== 'T=1') throw new UsageError(`--protocol must be T=0 or T=1, got '${protocol}'`);
    if (values.responder && cards.length) throw new UsageError('--responder and --card do not mix: the responder replaces the cards');
    if (!values.responder && cards.length === 0) throw new UsageError('give at least one --card FILE (or --responder)');
    const addresses = (vpcds.length ? vpcds : [DEFAULT_VPCD]).map((a) => {
      try {
        return parseVpcdAddress(a);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
    });
    if (!values.responder && addresses.length !== cards.length) {
      throw new UsageError(`${addresses.length} --vpcd slot(s) but ${cards.length} --card file(s): give one --card per --vpcd`);
    }
    const seen = new Set<string>();
    for (const a of addresses) {
      const key = `${a.host}:${a.port}`;
      if (seen.has(key)) throw new UsageError(`vpcd slot ${key} is given twice (one card per slot)`);
      seen.add(key);
    }
    const files = new Set<string>();
    for (const f of cards) {
      if (files.has(f)) throw new UsageError(`card image ${f} is given twice`);
      files.add(f);
    }

    const cuts = new Map<number, PowerCutSpec>();
    for (const spec of values['power-cut'] ?? []) {
      let cut: PowerCutSpec;
      try {
        cut = parsePowerCut(spec);
      } catch (e) {
        throw new UsageError((e as Error).message);
      }
      if (values.responder) throw new UsageError('--power-cut needs emulated cards (--card), not the responder');
      if (cut.card > cards.length) throw new UsageError(`--power-cut ${spec}: there is no --card number ${cut.card}`);
      if (cuts.has(cut.card)) throw new UsageError(`--power-cut is given twice for --card number ${cut.card}`);
      cuts.set(cut.card, cut);
    }

    const slots: Slot[] = addresses.map((address, i) => {
      if (values.responder) return { address, card: new NullResponderCard(), file: undefined, sim: undefined };
      const file = cards[i]!;
      const sim = openSlotCard(file, protocol as 'T=0' | 'T=1' | undefined, io, quiet);
      const cut = cuts.get(i + 1);
      return { address, card: cut ? powerCutSwitch(sim, file, cut, io, quiet) : sim, file, sim };
    });

    const signal = nextSignal();
    for (const slot of slots) {
      const what = slot.file ? `card ${slot.file}` : 'responder';
      const connector = new VpcdConnector({
        ...slot.address,
        card: slot.card,
        label: `emulate: ${what} @ ${slot.address.host}:${slot.address.port}`,
        log: (line) => io.err(line),
      });
      slot.connector = connector;
      connector.on('session', () => {
        if (!quiet) io.out(`emulate: vpcd session open for ${what} on ${slot.address.host}:${slot.address.port} (pcscd lists the card at its next poll of the reader)`);
      });
      connector.start();
      if (!quiet) io.out(`emulate: ${what} (ATR ${toHex(slot.card.atr, ' ')}) -> vpcd ${slot.address.host}:${slot.address.port}`);
    }

    const sig = await signal;
    // Further Ctrl-C while the images are written must not kill us half-way (the writes are atomic
    // anyway, but the newest state would be lost).
    const ignore = () => io.err('emulate: already shutting down (saving the card images)');
    process.on('SIGINT', ignore);
    process.on('SIGTERM', ignore);
    if (!quiet) io.out(`emulate: ${sig}: removing the cards and saving the images`);
    await Promise.all(slots.map((s) => s.connector?.stop()));
    let failed = 0;
    for (const slot of slots) {
      if (!slot.sim || !slot.file) continue;
      try {
        saveCardImage(slot.sim, slot.file);
        if (!quiet) io.out(`emulate: saved ${slot.file}`);
      } catch (e) {
        failed++;
        io.err(`emulate: could not save ${slot.file}: ${e instanceof PurselabError ? e.message : (e as Error).message}`);
      }
    }
    process.off('SIGINT', ignore);
    process.off('SIGTERM', ignore);
    return failed ? 1 : 0;
  },
};
