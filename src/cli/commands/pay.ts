// `purselab pay URL --reader NAME [--yes] [--pin PIN] [--json]`: the client terminal (seed 003 client 204):
// reads the merchant's payment page, reads the card, shows the amount and asks accept/cancel, then relays
// between the card, the payment server and the merchant (src/client/pay.ts). Card numbers are masked.

import { createInterface } from 'node:readline/promises';
import { ClientPaymentError, payAtMerchant, type PaymentOffer, type PayResult } from '../../client/pay.ts';
import { PurselabError } from '../../errors.ts';
import { formatAmount } from '../../terminal/amount.ts';
import type { CardChannel } from '../../transport/channel.ts';
import { openChannel } from '../../transport/open.ts';
import { parseCommandArgs, requireOption, UsageError, type CliCommand, type CliIo } from '../command.ts';

/** Ask on the terminal; anything but y/yes cancels. */
async function askOnTerminal(offer: PaymentOffer, io: CliIo): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const what = offer.kind === 'authentication' ? `Authenticate card ${offer.card} at ${offer.merchantId} (nothing is debited)` : `Pay ${offer.shown} to ${offer.merchantId} with card ${offer.card} (balance ${offer.balance})`;
    if (offer.description) io.err(`  ${offer.description}`);
    const answer = await rl.question(`${what}? [y/N] `);
    return /^\s*y(es)?\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}

function human(r: PayResult): string[] {
  const amount = r.kind === 'authentication' ? 'authentication' : `${formatAmount(r.amount, r.exponent)}`;
  switch (r.status) {
    case 'cancelled':
      return ['pay: cancelled; nothing was debited'];
    case 'declined':
      return [`pay: declined (${r.reason ?? 'no reason given'}): ${r.message}; the merchant released nothing (payment ${r.paymentId ?? '-'})`];
    default:
      return [
        `pay: ${r.status === 'paid' ? `paid ${amount}` : 'authenticated'} at ${r.merchantId}, order ${r.txnId}, payment ${r.paymentId}; card ${r.card} balance ${formatAmount(r.balanceAfter, r.exponent)} (was ${formatAmount(r.balanceBefore, r.exponent)})`,
        `  merchant: ${r.message}${r.goods ? `; goods: ${r.goods}` : ''}`,
      ];
  }
}

export const payCommand: CliCommand = {
  name: 'pay',
  summary: 'client terminal: pay a merchant\'s order (payment page URL) with the card in a reader',
  help: [
    'Usage: purselab pay URL --reader NAME [--yes] [--pin PIN] [--terminal-id ID] [--json]',
    '',
    'URL is the merchant\'s payment page (GET /orders/ID/pay of purselab serve merchant). The terminal reads the',
    'page (amount, currency, transaction id, merchant id, payment server, status URL), reads the card',
    '(INITIALIZE FOR PURCHASE), checks currency, expiry and balance, shows the amount and asks accept/cancel,',
    'then sends the draw request to the payment server, passes the Debit IEP to the card only if its amount is',
    'the merchant\'s, returns the card\'s answer to the payment server (or compares S3 itself, per variant), and',
    'relays the result to the merchant, which releases the goods. Card numbers are shown masked.',
    '',
    'Options:',
    '  --reader NAME      PC/SC reader with the card (name or unique part), or emu:PATH for a card image',
    '  --yes              accept without asking (scripts); without it the terminal asks on stdin, and refuses',
    '                     to run when stdin is not a terminal',
    '  --pin PIN          cardholder PIN, for cards that require one',
    '  --terminal-id ID   this terminal\'s id in the payment server\'s log',
    '  --json             the result as JSON on stdout (progress lines go to stderr)',
    '',
    'Exit status: 0 paid or authenticated and released; 1 declined, refused or failed (the message says',
    'whether the card was debited); 2 usage; 3 cancelled by the cardholder.',
    '',
    'Examples:',
    '  purselab pay http://127.0.0.1:8403/orders/0123456789ABCDEF0123/pay --reader "Virtual PCD 00 00"',
    '  purselab pay "$PAY_URL" --reader emu:card.img --yes --json',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      reader: { type: 'string' },
      yes: { type: 'boolean', default: false },
      pin: { type: 'string' },
      'terminal-id': { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    if (positionals.length !== 1) throw new UsageError(positionals.length ? `one URL only, got ${positionals.length} arguments` : 'the payment page URL is required (purselab pay URL --reader NAME)');
    const url = positionals[0]!;
    const reader = requireOption(values.reader, '--reader NAME', 'purselab readers lists them; emu:PATH for a card image');
    if (values.pin !== undefined && !/^[0-9]{4,12}$/.test(values.pin)) throw new UsageError('--pin must be 4..12 digits');
    if (values['terminal-id'] !== undefined && !/^[A-Za-z0-9._-]{1,32}$/.test(values['terminal-id'])) throw new UsageError('--terminal-id must be 1..32 characters of A-Z a-z 0-9 . _ -');
    if (!values.yes && !process.stdin.isTTY) throw new UsageError('stdin is not a terminal, so the amount cannot be confirmed: pass --yes to accept it without asking');
    const json = values.json === true;
    const progress = (line: string) => (json ? io.err(line) : io.out(line));

    // Ctrl-C before the cardholder accepts: stop at once. After: finish the step in progress (a card debited
    // without its result reaching the merchant is the one outcome to avoid); a second Ctrl-C quits anyway.
    let accepted = false;
    let card: CardChannel | undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      if (!accepted) {
        io.err(`${sig}: cancelled; nothing was debited`);
        void Promise.resolve(card?.close()).finally(() => process.exit(130));
        return;
      }
      io.err(`${sig}: finishing the payment in progress (again to quit now)`);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      card = await openChannel(reader);
      const r = await payAtMerchant(url, card, {
        confirm: async (offer) => {
          const ok = values.yes ? true : await askOnTerminal(offer, io);
          if (values.yes) progress(`pay: accepted ${offer.shown} for ${offer.merchantId} (--yes)`);
          accepted = ok;
          return ok;
        },
        onProgress: (step, msg) => progress(`  [${step}] ${msg}`),
        ...(values.pin !== undefined ? { pin: values.pin } : {}),
        ...(values['terminal-id'] !== undefined ? { terminalId: values['terminal-id'] } : {}),
      });
      if (json) io.out(JSON.stringify({ ok: r.released, ...r }, null, 2));
      else for (const line of human(r)) io.out(line);
      return r.status === 'cancelled' ? 3 : r.released ? 0 : 1;
    } catch (e) {
      if (json && e instanceof PurselabError) {
        const c = e instanceof ClientPaymentError ? { stage: e.stage, cardDebited: e.cardDebited, paymentId: e.paymentId ?? null } : {};
        io.out(JSON.stringify({ ok: false, code: e.code, ...c, message: e.message }, null, 2));
      }
      throw e;
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await card?.close();
    }
  },
};
