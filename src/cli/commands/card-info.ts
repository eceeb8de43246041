// `purselab card info --reader NAME [--json]`: reads a purse card (READ PURSE DATA, docs/purse-applet.md) in a
// PC/SC reader or an emulated card image, and shows it with the card number masked. Changes nothing.

import { IEP_AID } from '../../crypto/purse-apdu.ts';
import { toHex } from '../../apdu/hex.ts';
import { currencyName, formatAmount, maskCardId, showAmount } from '../../terminal/amount.ts';
import { readPurse } from '../../terminal/purse.ts';
import { openChannel } from '../../transport/open.ts';
import { emit, parseCommandArgs, refusePositionals, requireOption, type CliCommand } from '../command.ts';

const ALG_NAMES: Record<number, string> = { 1: '3DES', 2: 'AES' };
const date = (d: string) => `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}`;

export const cardInfoCommand: CliCommand = {
  name: 'card info',
  summary: 'show a purse card (balance, currency, expiry, counter, keys...) from a reader or emu:IMAGE',
  help: [
    'Usage: purselab card info --reader NAME [--json]',
    '',
    `Selects the purse applet (AID ${toHex(IEP_AID)}) and reads its purse data (READ PURSE DATA): card`,
    'number (masked: BIN and last 4 digits), algorithm, status, expiry, currency, balance and maximum',
    'balance, transaction counter, key versions, loyalty points, PIN tries and the last credited load.',
    'Nothing on the card changes.',
    '',
    'Options:',
    '  --reader NAME   PC/SC reader name (exact or a unique substring), or emu:PATH for an emulated card image',
    '  --json          machine-readable output (amounts in minor units)',
    '',
    'Examples:',
    '  purselab card info --reader "Virtual PCD 00 00"',
    '  purselab card info --reader emu:card.img --json',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, { reader: { type: 'string' }, json: { type: 'boolean', default: false } });
    refusePositionals(positionals, 'see purselab card info --help');
    const channel = await openChannel(requireOption(values.reader, '--reader NAME', 'a PC/SC reader, or emu:PATH; purselab readers lists them'));
    let p;
    try {
      p = await readPurse(channel);
    } finally {
      await channel.close();
    }
    const points = p.pointsProgramme !== 0;
    const lastLoad = p.lastLoadCounter !== 0 || p.lastLoadAmount !== 0;
    const info = {
      reader: channel.readerName,
      card: maskCardId(p.cardId),
      bin: p.cardId.slice(0, 6),
      algorithm: ALG_NAMES[p.alg] ?? `0x${p.alg.toString(16).padStart(2, '0')}`,
      status: p.status === 0 ? 'active' : 'blocked',
      expiry: date(p.expiry),
      currency: p.currency,
      currencyCode: currencyName(p.currency),
      exponent: p.exponent,
      balance: p.balance,
      maxBalance: p.maxBalance,
      counter: p.counter,
      keyVersions: { purchase: p.purchaseKeyVersion, load: p.loadKeyVersion, update: p.updateKeyVersion },
      points: points ? { programme: p.pointsProgramme, balance: p.pointsBalance, max: p.pointsMax } : null,
      pin: p.pinTriesLeft === 0xff ? null : { triesLeft: p.pinTriesLeft, required: (p.authMode & 0x01) !== 0 },
      lastLoad: lastLoad ? { counter: p.lastLoadCounter, amount: p.lastLoadAmount, id: toHex(p.lastLoadTxnId) } : null,
    };
    emit(io, values.json === true, info, () => [
      `card ${info.card}  (${info.reader})`,
      `  status      ${info.status}, expires ${info.expiry}`,
      `  balance     ${showAmount(p.balance, p.currency, p.exponent)} of max ${formatAmount(p.maxBalance, p.exponent)} (currency ${String(p.currency).padStart(3, '0')}, exponent ${p.exponent})`,
      `  counter     ${p.counter}`,
      `  algorithm   ${info.algorithm}; key versions purchase ${p.purchaseKeyVersion}, load ${p.loadKeyVersion}, update ${p.updateKeyVersion}`,
      `  points      ${points ? `${p.pointsBalance} of max ${p.pointsMax} (programme ${String(p.pointsProgramme).padStart(4, '0')})` : 'none'}`,
      `  PIN         ${info.pin ? `${info.pin.required ? 'required' : 'optional'}, ${info.pin.triesLeft} tries left` : 'none'}`,
      `  last load   ${lastLoad ? `${showAmount(p.lastLoadAmount, p.currency, p.exponent)} at counter ${p.lastLoadCounter}` : 'none'}`,
    ]);
    return 0;
  },
};
