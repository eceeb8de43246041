// `purselab psam issue --profile P --keys K --out FILE`: personalises an emulated PSAM (docs/psam-applet.md)
// from a PSAM profile (fixtures/profiles/psam-*.json) and an issuer/acquirer key set, and writes its card image
// atomically. Keys are never printed: only key versions and check values.

import { saveCardImage } from '../../../card-applet-sim/os/image.ts';
import { issuePsamCard, loadPsamProfile } from '../../../card-applet-sim/applets/psam/issuing.ts';
import { loadIssuerKeySet } from '../../crypto/key-set.ts';
import { PSAM_AID } from '../../crypto/purse-apdu.ts';
import { keyCheckValue } from '../../crypto/kcv.ts';
import { suiteFor } from '../../crypto/suites.ts';
import { toHex } from '../../apdu/hex.ts';
import { emit, outputFile, parseCommandArgs, protocolOption, refusePositionals, requireOption, type CliCommand } from '../command.ts';

export const psamIssueCommand: CliCommand = {
  name: 'psam issue',
  summary: 'personalise an emulated PSAM (purchase security card) from a profile and a key set (writes a card image)',
  help: [
    'Usage: purselab psam issue --profile PROFILE.json --keys KEYSET.json --out PSAM.img [options]',
    '',
    `Installs the PSAM applet (AID ${toHex(PSAM_AID)}, docs/psam-applet.md) on a new emulated card with the`,
    "profile's PSAM id, the issuer purchase master keys it names (the PSAM derives each card's purchase key",
    'from them), its batch and admin keys (diversified here by the PSAM id from the acquirer masters), the',
    'batch capacity, accepted currencies and blocked cards. Writes the card image atomically; serve it with',
    '`purselab emulate --card PSAM.img` or open it as emu:PSAM.img.',
    '',
    'Options:',
    '  --profile FILE        PSAM profile (fixtures/profiles/psam-*.json; format in card-applet-sim/applets/psam/issuing.ts)',
    '  --keys FILE           key set with the issuer purchase masters and the acquirer batch/admin masters',
    '                        (e.g. fixtures/keys/demo-issuer.json: TEST keys only)',
    '  --out FILE            card image to write',
    '  --protocol T=0|T=1    card protocol (default T=1)',
    '  --force               overwrite PSAM.img if it exists',
    '  --json                print the result as JSON',
    '',
    'Example:',
    '  purselab psam issue --profile fixtures/profiles/psam-3des.json --keys fixtures/keys/demo-issuer.json --out psam.img',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      profile: { type: 'string' },
      keys: { type: 'string' },
      out: { type: 'string' },
      protocol: { type: 'string' },
      force: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });
    const see = 'see purselab psam issue --help';
    refusePositionals(positionals, see);
    const profilePath = requireOption(values.profile, '--profile', see);
    const keysPath = requireOption(values.keys, '--keys', see);
    const outPath = requireOption(values.out, '--out', see);
    const protocol = protocolOption(values.protocol);
    const out = outputFile(outPath, values.force);

    const profile = loadPsamProfile(profilePath);
    const keys = loadIssuerKeySet(keysPath);
    const { card, personalization: p } = issuePsamCard(profile, keys, { card: { protocol } });
    saveCardImage(card, out);

    const suite = suiteFor(p.alg);
    const kcv = (alg: number, k: Uint8Array) => toHex(keyCheckValue(suiteFor(alg).keyType, k));
    const result = {
      image: out,
      psamId: p.psamId,
      aid: toHex(PSAM_AID),
      algorithm: suite.name,
      protocol,
      capacity: p.capacity,
      batchKey: { version: p.batchKeyVersion, kcv: kcv(p.alg, p.batchKey) },
      adminKey: { version: p.adminKeyVersion, kcv: kcv(p.alg, p.adminKey) },
      purchaseMasters: p.purchaseMasters.map((m) => ({ bin: m.bin, algorithm: suiteFor(m.alg).name, keyVersion: m.keyVersion, kcv: kcv(m.alg, m.key) })),
      acceptedCurrencies: (p.acceptedCurrencies ?? []).map((c) => ({ currency: c.currency, exponent: c.exponent })),
      blockedCards: (p.blockedCards ?? []).length,
    };
    emit(io, values.json === true, result, () => [
      `psam issue: wrote ${out}: PSAM ${p.psamId} (${protocol}, PSAM applet ${result.aid})`,
      `  batch/admin keys ${suite.name}: batch v${p.batchKeyVersion} KCV ${result.batchKey.kcv}, admin v${p.adminKeyVersion} KCV ${result.adminKey.kcv}`,
      `  purchase masters: ${result.purchaseMasters.map((m) => `BIN ${m.bin} ${m.algorithm} v${m.keyVersion} KCV ${m.kcv}`).join('; ')}`,
      `  batch capacity ${p.capacity}; accepts ${result.acceptedCurrencies.map((c) => (c.exponent === 0 && c.currency > 999 ? `points ${c.currency}` : `${String(c.currency).padStart(3, '0')}/${c.exponent}`)).join(', ') || 'nothing'}; ${result.blockedCards} blocked card(s)`,
    ]);
    return 0;
  },
};
