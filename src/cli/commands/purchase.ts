// `purselab purchase --card READER --psam READER --amount 4.20 [...]`: one purchase between a purse card and a
// PSAM in two readers (PC/SC, or emu:IMAGE), with the protocol of src/terminal/purchase.ts. A refusal or an
// unproven debit is one line on stderr and a non-zero exit; the card number is always masked.

import { formatAmount, maskCardId, parseAmount, showAmount } from '../../terminal/amount.ts';
import { purchase, PurchaseError, type PurchaseKind, type PurchaseResult, type PurchaseVariant } from '../../terminal/purchase.ts';
import { readPurse } from '../../terminal/purse.ts';
import type { CardChannel } from '../../transport/channel.ts';
import { openChannel } from '../../transport/open.ts';
import { emit, parseCommandArgs, refusePositionals, requireOption, UsageError, type CliCommand } from '../command.ts';

function resultJson(r: PurchaseResult) {
  return {
    ok: true,
    kind: r.kind,
    variant: r.variant,
    card: maskCardId(r.cardId),
    psam: r.psamId,
    psamTransaction: r.psamTxn,
    amount: r.amount,
    currency: r.currency,
    exponent: r.exponent,
    balanceBefore: r.balanceBefore,
    balance: r.newBalance,
    counterBefore: r.counterBefore,
    counter: r.newCounter,
    verifiedBy: r.verifiedBy,
    psamConfirmed: r.psamConfirmed,
    s3: r.s3.toString('hex').toUpperCase(),
  };
}

export const purchaseCommand: CliCommand = {
  name: 'purchase',
  summary: 'run a purchase between a purse card and a PSAM in two readers (S2, debit, S3 verified)',
  help: [
    'Usage: purselab purchase --card READER --psam READER --amount AMOUNT [options]',
    '',
    'Runs one purchase (seed 003, docs/psam-applet.md): the card gives its start-up data, the PSAM checks it and',
    'issues DEBIT with S2, the card debits and answers S3, the PSAM verifies S3 and confirms its log record.',
    'With --variant early-release the PSAM returns the expected S3 with S2, the host compares, and posts S3 to',
    'the PSAM afterwards. The amount is in currency units with at most the card\'s decimals (4.20 EUR).',
    '',
    'Options:',
    '  --card READER            reader holding the purse card (PC/SC name or unique substring, or emu:PATH)',
    '  --psam READER            reader holding the PSAM (PC/SC name or unique substring, or emu:PATH)',
    '  --amount AMOUNT          e.g. 4.20 (in the card currency); points for --points',
    '  --variant V              standard (default) or early-release',
    '  --authenticate           zero-amount authentication instead (seed 003 FIG. 16): no --amount',
    '  --points                 redeem loyalty points (AMOUNT = points) from the points purse',
    '  --pin PIN                cardholder PIN, for cards that require it',
    '  --location TEXT          merchant location, up to 8 characters (default PURSELAB)',
    '  --json                   machine-readable result (amounts in minor units)',
    '',
    'Exit status: 0 debited and proven; 1 refused (nothing debited) or not proven (the message says which).',
    '',
    'Examples:',
    '  purselab purchase --card "Virtual PCD 00 00" --psam "Virtual PCD 00 01" --amount 4.20',
    '  purselab purchase --card emu:card.img --psam emu:psam.img --amount 4.20 --variant early-release --json',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      card: { type: 'string' },
      psam: { type: 'string' },
      amount: { type: 'string' },
      variant: { type: 'string' },
      authenticate: { type: 'boolean', default: false },
      points: { type: 'boolean', default: false },
      pin: { type: 'string' },
      location: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    refusePositionals(positionals, 'see purselab purchase --help');
    const cardReader = requireOption(values.card, '--card READER', 'purselab readers lists them; emu:PATH for a card image');
    const psamReader = requireOption(values.psam, '--psam READER');
    if (cardReader === psamReader) throw new UsageError('--card and --psam must be two different readers');
    const variant = (values.variant ?? 'standard') as PurchaseVariant;
    if (variant !== 'standard' && variant !== 'early-release') throw new UsageError(`--variant must be standard or early-release, got '${values.variant}'`);
    if (values.authenticate && values.points) throw new UsageError('--authenticate and --points do not mix');
    const kind: PurchaseKind = values.authenticate ? 'authentication' : values.points ? 'points' : 'purchase';
    if (kind === 'authentication' && values.amount !== undefined) throw new UsageError('--authenticate takes no --amount (it is always 0)');
    if (kind !== 'authentication' && values.amount === undefined) throw new UsageError('--amount is required, e.g. --amount 4.20');
    if (values.pin !== undefined && !/^[0-9]{4,12}$/.test(values.pin)) throw new UsageError('--pin must be 4..12 digits');
    if (values.location !== undefined && !/^[\x20-\x7e]{0,8}$/.test(values.location)) throw new UsageError('--location must be at most 8 printable ASCII characters');

    let card: CardChannel | undefined;
    let psam: CardChannel | undefined;
    try {
      card = await openChannel(cardReader);
      psam = await openChannel(psamReader);
      // The card's currency exponent decides how "4.20" is read.
      const info = await readPurse(card);
      const exponent = kind === 'points' ? 0 : info.exponent;
      let amount: number | undefined;
      if (kind !== 'authentication') {
        amount = parseAmount(values.amount!, exponent, '--amount');
        if (amount === 0) throw new UsageError('--amount must be more than 0');
      }
      const r = await purchase(card, psam, {
        kind,
        variant,
        ...(amount !== undefined ? { amount } : {}),
        ...(values.pin !== undefined ? { pin: values.pin } : {}),
        ...(values.location !== undefined ? { location: values.location } : {}),
      });
      const pts = kind === 'points';
      const what = kind === 'authentication' ? 'authenticated' : `debited ${showAmount(r.amount, r.currency, r.exponent, pts)}`;
      emit(io, values.json === true, resultJson(r), () => [
        `purchase: ${what} on card ${maskCardId(r.cardId)}; ${pts ? `points ${r.newBalance} (were ${r.balanceBefore})` : `balance ${showAmount(r.newBalance, info.currency, info.exponent)} (was ${formatAmount(r.balanceBefore, info.exponent)})`}, counter ${r.newCounter}`,
        `  PSAM ${r.psamId} transaction ${r.psamTxn}: ${r.verifiedBy === 'psam' ? 'S3 verified by the PSAM, record confirmed' : `S3 equals the expected S3 (early release)${r.psamConfirmed ? ', record confirmed' : ', record not yet confirmed'}`}`,
      ]);
      return 0;
    } catch (e) {
      if (e instanceof PurchaseError && values.json) {
        io.out(JSON.stringify({ ok: false, code: e.code, outcome: e.outcome, stage: e.stage, cardDebited: e.cardDebited, sw: e.sw?.toString(16).toUpperCase().padStart(4, '0') ?? null, psamTransaction: e.psamTxn ?? null, message: e.message }, null, 2));
      }
      throw e;
    } finally {
      await card?.close();
      await psam?.close();
    }
  },
};
