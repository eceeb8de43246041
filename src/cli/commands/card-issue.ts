// `purselab card issue --profile P --keys K --out FILE [--balance AMOUNT]`: personalises an emulated purse card
// (the IEP applet of docs/purse-applet.md) from a card profile and an issuer key set, and writes its card image
// atomically. The card keys are diversified here from the issuer masters; keys, PINs and the full card number
// are never printed.

import { saveCardImage } from '../../../card-applet-sim/os/image.ts';
import { issuePurseCard, loadPurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { REFERENCE_AID } from '../../../card-applet-sim/applets/reference/reference-applet.ts';
import { IEP_AID } from '../../crypto/purse-apdu.ts';
import { keyCheckValue } from '../../crypto/kcv.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { suiteFor } from '../../crypto/suites.ts';
import { toHex } from '../../apdu/hex.ts';
import { AmountError, formatAmount, maskCardId, parseAmount } from '../../terminal/amount.ts';
import { emit, outputFile, parseCommandArgs, protocolOption, refusePositionals, requireOption, UsageError, type CliCommand } from '../command.ts';

const HELP = [
  'Usage: purselab card issue --profile PROFILE.json --keys KEYSET.json --out CARD.img [options]',
  '',
  'Personalises an emulated stored-value card: installs the purse applet (IEP, AID',
  `${toHex(IEP_AID)}, docs/purse-applet.md) with the profile's card id (BIN + purse number),`,
  'currency, maximum balance, expiry, algorithm, key versions, optional loyalty points purse and PIN,',
  'and the three card keys (purchase, load, update) diversified by the card id from the issuer master',
  'keys of the key set (docs/crypto.md). Writes the card image atomically; serve it with',
  '`purselab emulate --card CARD.img` or open it as emu:CARD.img.',
  '',
  'Options:',
  '  --profile FILE        card profile (fixtures/profiles/*.json; format in',
  '                        card-applet-sim/applets/purse/README.md)',
  '  --keys FILE           issuer key set (e.g. fixtures/keys/demo-issuer.json: TEST keys only)',
  '  --out FILE            card image to write',
  "  --balance AMOUNT      balance at issue in currency units, e.g. 25.00 (default: the profile's)",
  "  --purse-number N      10-digit purse number (default: the profile's), to issue many cards",
  '  --protocol T=0|T=1    card protocol (default T=1)',
  '  --reference           also install the reference applet (docs/reference-applet.md)',
  '  --force               overwrite CARD.img if it exists',
  '  --json                print the result as JSON',
  '',
  'The output shows the card number masked (BIN + last 4 digits) and key check values, never keys or PINs.',
  '',
  'Examples:',
  '  purselab card issue --profile fixtures/profiles/demo-3des.json --keys fixtures/keys/demo-issuer.json --out card.img',
  '  purselab card issue --profile fixtures/profiles/demo-aes.json --keys fixtures/keys/demo-issuer.json \\',
  '      --out aes.img --balance 100.00 --purse-number 0000000041',
].join('\n');

export const cardIssueCommand: CliCommand = {
  name: 'card issue',
  summary: 'personalise an emulated purse card from a profile and an issuer key set (writes a card image)',
  help: HELP,
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      profile: { type: 'string' },
      keys: { type: 'string' },
      out: { type: 'string' },
      balance: { type: 'string' },
      'purse-number': { type: 'string' },
      protocol: { type: 'string' },
      reference: { type: 'boolean' },
      force: { type: 'boolean' },
      json: { type: 'boolean' },
    });
    const see = 'see purselab card issue --help';
    refusePositionals(positionals, see);
    const profilePath = requireOption(values.profile, '--profile', see);
    const keysPath = requireOption(values.keys, '--keys', see);
    const outPath = requireOption(values.out, '--out', see);
    const protocol = protocolOption(values.protocol);
    const purseNumber = values['purse-number'];
    if (purseNumber !== undefined && !/^[0-9]{10}$/.test(purseNumber)) throw new UsageError(`--purse-number must be exactly 10 digits, got '${purseNumber}'`);
    const out = outputFile(outPath, values.force);

    const profile = loadPurseProfile(profilePath);
    const keys = loadIssuerKeySet(keysPath);
    let balance: number | undefined;
    if (values.balance !== undefined) {
      try {
        balance = parseAmount(values.balance, profile.exponent, '--balance');
      } catch (e) {
        if (!(e instanceof AmountError)) throw e;
        throw new UsageError(`--balance must be an amount in currency units with at most ${profile.exponent} decimals (e.g. ${formatAmount(2500, profile.exponent)}), got '${values.balance}'`);
      }
      if (balance > profile.maxBalance) {
        throw new UsageError(`--balance ${values.balance} exceeds the profile's maximum balance ${formatAmount(profile.maxBalance, profile.exponent)}`);
      }
    }

    const issued = issuePurseCard(profile, keys, {
      ...(balance !== undefined ? { balance } : {}),
      ...(purseNumber !== undefined ? { purseNumber } : {}),
      card: { protocol },
      withReference: values.reference === true,
    });
    saveCardImage(issued.card, out);

    const p = issued.params;
    const suite = suiteFor(p.alg);
    const kcv = (k: Buffer) => toHex(keyCheckValue(suite.keyType, k));
    const result = {
      image: out,
      card: maskCardId(issued.cardId),
      aid: toHex(IEP_AID),
      algorithm: suite.name,
      currency: p.currency,
      exponent: p.exponent,
      balance: p.balance,
      maxBalance: p.maxBalance,
      expiry: p.expiry,
      keys: {
        purchase: { version: p.keys.purchase.version, kcv: kcv(p.keys.purchase.key) },
        load: { version: p.keys.load.version, kcv: kcv(p.keys.load.key) },
        update: { version: p.keys.update.version, kcv: kcv(p.keys.update.key) },
      },
      points: p.points ? { programme: p.points.programme, max: p.points.max, balance: p.points.balance } : null,
      pin: p.pin ? { tryLimit: p.pin.tryLimit, required: p.pin.required } : null,
      protocol,
      referenceApplet: values.reference === true ? toHex(REFERENCE_AID) : null,
    };
    emit(io, values.json === true, result, () => [
      `card issue: wrote ${out}: purse card ${result.card} (${protocol}, purse applet ${result.aid})`,
      `  suite ${suite.name} (alg 0x${p.alg.toString(16).padStart(2, '0')}); key versions / KCVs: purchase ${p.keys.purchase.version} ${result.keys.purchase.kcv}, load ${p.keys.load.version} ${result.keys.load.kcv}, update ${p.keys.update.version} ${result.keys.update.kcv}`,
      `  balance ${formatAmount(p.balance, p.exponent)} of max ${formatAmount(p.maxBalance, p.exponent)} (currency ${String(p.currency).padStart(3, '0')}, exponent ${p.exponent}), expires ${p.expiry.slice(0, 4)}-${p.expiry.slice(4, 6)}-${p.expiry.slice(6)}`,
      `  points purse: ${p.points ? `programme ${p.points.programme}, ${p.points.balance} of max ${p.points.max}` : 'none'}; PIN: ${p.pin ? `${p.pin.required ? 'required' : 'optional'}, ${p.pin.tryLimit} tries` : 'none'}`,
      ...(values.reference ? [`  reference applet ${toHex(REFERENCE_AID)} installed too`] : []),
    ]);
    return 0;
  },
};
