// `purselab load BANKURL --reader NAME --amount 20.00 [--yes] [--user U --password P] [--resume TXN] [--json]`:
// the client of an Internet load (seed 003 FIG. 17): logs in at the bank, reads the card, shows the load screen
// and asks accept/cancel, then runs the load between the card, the load server and the bank
// (src/client/load-client.ts). Card numbers are masked; the password never appears in any output.

import { createInterface } from 'node:readline/promises';
import { internetLoad, LoadUnfinishedError, resumeInternetLoad, type InternetLoadResult, type LoadOffer } from '../../client/load-client.ts';
import { PurselabError } from '../../errors.ts';
import { formatAmount, showAmount } from '../../terminal/amount.ts';
import { recreditCard } from '../../client/load-recredit.ts';
import { readJsonFile } from '../../json-file.ts';
import type { Envelope } from '../../protocol/envelope.ts';
import type { CardChannel } from '../../transport/channel.ts';
import { openChannel } from '../../transport/open.ts';
import { parseCommandArgs, requireOption, UsageError, type CliCommand, type CliIo } from '../command.ts';

export const BANK_PASSWORD_ENV = 'PURSELAB_BANK_PASSWORD';

/** Ask on the terminal; anything but y/yes cancels. */
async function askOnTerminal(offer: LoadOffer, io: CliIo): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const q = offer.quote;
    io.err(`  funding account ${q.account} (expires ${q.accountExpiry}); card ${offer.card} balance ${showAmount(q.currentBalance, q.currency, q.exponent)}; max load ${showAmount(q.maxLoad, q.currency, q.exponent)}`);
    const answer = await rl.question(`Load ${offer.amountText} from account ${q.account} onto card ${offer.card}? [y/N] `);
    return /^\s*y(es)?\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}

function human(r: InternetLoadResult): string[] {
  const amt = showAmount(r.amount, r.currency, r.exponent);
  switch (r.status) {
    case 'cancelled':
      return ['load: cancelled; nothing was held or loaded'];
    case 'not-loaded':
      return [`load: NOT loaded (${r.basis ?? 'refused'}); load ${r.txnId ?? '-'}: hold ${r.hold?.state ?? '-'}, card ${r.card} balance ${showAmount(r.balance, r.currency, r.exponent)}`];
    default:
      return [`load: loaded ${amt} onto card ${r.card} (load ${r.txnId}, ${r.basis}); balance ${showAmount(r.balance, r.currency, r.exponent)} (was ${showAmount(r.balanceBefore, r.currency, r.exponent)}); bank hold ${r.hold?.state ?? '-'}`];
  }
}

/** `--recredit FILE`: the claim of `purselab payment recredit --json` ({ claim }) or the bare envelope. */
async function recreditFromFile(loadServer: string, reader: string, file: string, json: boolean, io: CliIo): Promise<number> {
  const raw = readJsonFile(file, (why) => {
    throw new UsageError(`--recredit ${file}: ${why}`);
  }) as { claim?: Envelope } & Partial<Envelope>;
  const claim = raw?.claim ?? (raw as Envelope);
  if (!claim || typeof claim.iv !== 'string' || typeof claim.ct !== 'string' || typeof claim.mac !== 'string') throw new UsageError(`--recredit ${file}: no sealed claim ({ iv, ct, mac }) in it`);
  const card = await openChannel(reader);
  try {
    const r = await recreditCard(card, { loadServer, claim, progress: (l) => (json ? undefined : io.err(l)) });
    if (json) io.out(JSON.stringify({ ok: r.status === 'credited', ...r }, null, 2));
    else io.out(`load: re-credit of payment ${r.paymentId} ${r.status} (${r.basis}); card ${r.card} balance ${showAmount(r.balance, r.currency, r.exponent)} (was ${formatAmount(r.balanceBefore, r.exponent)})`);
    return r.status === 'credited' ? 0 : 1;
  } finally {
    await card.close();
  }
}

export const loadCommand: CliCommand = {
  name: 'load',
  summary: 'client: load value onto the card in a reader from a bank account (bank + load server with the issuer HSM)',
  help: [
    'Usage: purselab load BANKURL --reader NAME --amount AMOUNT [--yes] [--user U] [--password P] [--json]',
    '       purselab load BANKURL --reader NAME --resume TXN [--user U] [--password P] [--json]',
    '       purselab load LOADSERVERURL --reader NAME --recredit CLAIMFILE [--json]',
    '',
    'Loads value onto a purse card over the Internet (seed 003 FIG. 17, docs/bank-and-load-server.md): logs in at',
    'the bank, reads the card\'s balance and maximum, shows the load screen (max load = maximum - balance) and asks',
    'accept/cancel; the bank holds the amount, the card\'s S1 goes to the load server (issuer HSM), its S2 to the',
    'card, the card\'s S3 back, and the sealed Load Result to the bank, which then debits the account. A negative',
    'result code or a lost answer runs the zero-value Load Request that settles what the card really did.',
    'A load cut off (network, server restart) is finished with --resume TXN: debited exactly when credited.',
    '',
    'Options:',
    '  --reader NAME      reader holding the card (PC/SC name or unique substring, or emu:PATH)',
    '  --amount AMOUNT    e.g. 20.00 (in the card currency)',
    '  --yes              accept without asking (scripts); without it the terminal asks on stdin, and refuses',
    '                     to run when stdin is not a terminal',
    '  --user U           bank login (default: $USER)',
    `  --password P       bank password (default: $${BANK_PASSWORD_ENV}; prefer the variable over the command line)`,
    '  --resume TXN       finish the load TXN that was cut off (no --amount)',
    '  --recredit FILE    re-credit a failed purchase: FILE is the sealed claim of `purselab payment recredit --json`',
    '                     (or the bare envelope); the URL is then the issuer\'s load server; once per payment',
    '  --json             machine-readable result (amounts in minor units)',
    '',
    'Exit status: 0 loaded; 1 not loaded (refused, cancelled) or unfinished (the message says how to resume).',
    '',
    'Examples:',
    `  ${BANK_PASSWORD_ENV}=alice-demo-pw purselab load http://127.0.0.1:8400 --reader "Virtual PCD 00 00" --amount 20.00 --user alice`,
    '  purselab load http://127.0.0.1:8400 --reader emu:card.img --resume 1F2E3D4C5B6A7988 --user alice --password alice-demo-pw',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      reader: { type: 'string' },
      amount: { type: 'string' },
      yes: { type: 'boolean', default: false },
      user: { type: 'string' },
      password: { type: 'string' },
      resume: { type: 'string' },
      recredit: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    if (positionals.length !== 1) throw new UsageError('give exactly one BANKURL (the bank server), e.g. purselab load http://127.0.0.1:8400 --reader NAME --amount 20.00');
    const bankUrl = positionals[0]!;
    try {
      const u = new URL(bankUrl);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      throw new UsageError(`BANKURL must be an http(s) URL, got '${bankUrl}'`);
    }
    const reader = requireOption(values.reader, '--reader NAME', 'purselab readers lists them; emu:PATH for a card image');
    if (values.recredit !== undefined) return recreditFromFile(bankUrl, reader, values.recredit, values.json === true, io);
    if (values.resume !== undefined && !/^[0-9A-Fa-f]{16}$/.test(values.resume)) throw new UsageError('--resume takes the 16-hex-digit load id printed when the load was cut off');
    if (values.resume !== undefined && values.amount !== undefined) throw new UsageError('--resume takes no --amount');
    if (values.resume === undefined && values.amount === undefined) throw new UsageError('--amount is required, e.g. --amount 20.00');
    const user = values.user ?? process.env.USER;
    if (!user) throw new UsageError('--user U is required (the bank login)');
    const password = values.password ?? process.env[BANK_PASSWORD_ENV];
    if (!password) throw new UsageError(`--password P or ${BANK_PASSWORD_ENV} is required`);
    if (values.resume === undefined && !values.yes && !process.stdin.isTTY) throw new UsageError('stdin is not a terminal, so the load cannot be confirmed: pass --yes to accept it without asking');

    const progress = (line: string) => {
      if (!values.json) io.err(line);
    };
    let card: CardChannel | undefined;
    try {
      card = await openChannel(reader);
      const r =
        values.resume !== undefined
          ? await resumeInternetLoad(card, { bankUrl, user, password, txnId: values.resume, progress })
          : await internetLoad(card, {
              bankUrl,
              user,
              password,
              amount: values.amount!,
              progress,
              confirm: async (offer) => {
                if (values.yes) {
                  progress(`load: accepted ${offer.amountText} from ${offer.quote.account} (--yes)`);
                  return true;
                }
                return askOnTerminal(offer, io);
              },
            });
      if (values.json) io.out(JSON.stringify({ ok: r.status === 'loaded', ...r }, null, 2));
      else for (const l of human(r)) io.out(l);
      return r.status === 'loaded' ? 0 : 1;
    } catch (e) {
      if (values.json && e instanceof PurselabError) {
        io.out(JSON.stringify({ ok: false, code: e.code, txnId: e instanceof LoadUnfinishedError ? e.txnId : null, message: e.message }, null, 2));
      }
      throw e;
    } finally {
      await card?.close();
    }
  },
};
