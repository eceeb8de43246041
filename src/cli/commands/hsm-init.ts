// `purselab hsm init`: put the issuer and PSAM (acquirer) master keys, and the OPAL record keys, into an HSM.
//
// Keys never cross the HSM interface in clear. A key set whose values are in a file (the TEST set in
// fixtures/keys) is wrapped on the host under a fixture KEK first, and that KEK itself reaches the HSM
// wrapped under an RSA transport key made inside the HSM:
//   1. generateRsaKeyPair('purselab-transport', next version, wrap)        -> public key
//   2. importKey('purselab-demo-kek' v1, AES-128, wrap, RSA-OAEP(public key, demo KEK), transport)
//   3. importKey(master, ..., derive, AES-KW(demo KEK, master key), 'purselab-demo-kek' v1)   for each master
// Running it again is safe: keys already there with the expected KCV are left alone, a different key under
// the same label and version is an error.

import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { Hsm, KeyInfo, KeyRef } from '../../../hsm-bridge/hsm.ts';
import { DEFAULT_PAYMENT_KEYS, paymentOps } from '../../../hsm-bridge/payment.ts';
import { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import { aesKeyWrap, rsaOaepWrap } from '../../../hsm-bridge/wrap.ts';
import { cardIdToBcd, keyCheckValue, suiteFor } from '../../crypto/index.ts';
import { findMaster, loadIssuerKeySet, type IssuerKeySet } from '../../crypto/key-set.ts';
import { PurselabError } from '../../errors.ts';
import { maskCardId } from '../../terminal/amount.ts';
import { issuerFromPaymentOps, type LoadIssuer } from '../../terminal/load.ts';
import { emit, parseCommandArgs, refusePositionals, type CliCommand } from '../command.ts';
import { BACKEND_HELP, BACKEND_OPTIONS, configFromArgs, withHsm } from './hsm.ts';

export const DEFAULT_KEY_SET = fileURLToPath(new URL('../../../fixtures/keys/demo-issuer.json', import.meta.url));
export const TRANSPORT_LABEL = 'purselab-transport';
export const DEMO_KEK: KeyRef = { label: 'purselab-demo-kek', version: 1 };

/** The fixture KEK, derived like every TEST key of fixtures/keys (public: for test key sets only). */
export function demoKek(): Buffer {
  return createHash('sha256').update(`purselab TEST KEY ${DEMO_KEK.label} v${DEMO_KEK.version}`).digest().subarray(0, 16);
}

/** The HSM does not hold what the key set says (a different key under a label, a KCV the HSM reports wrong). */
class HsmKeySetError extends PurselabError {
  constructor(message: string) {
    super('HSM_KEYSET', message);
  }
}

type Status = 'imported' | 'present' | 'generated';

export const hsmInitCommand: CliCommand = {
  name: 'hsm init',
  summary: 'create the issuer and PSAM key set (and OPAL record keys) in an HSM, imported wrapped',
  help: [
    'Usage: purselab hsm init --pkcs11 MODULE --token LABEL [--pin-env VAR] [options]',
    '       purselab hsm init --software FILE [options]',
    '',
    'Creates in the HSM the master keys of a key set - issuer purchase/load/update masters and acquirer',
    "batch/admin masters (the PSAM's), each for the 3DES and the AES suite - with usage 'derive', plus the",
    "OPAL virtual-card record masters opal-record-enc / opal-record-mac (AES-128, generated inside the HSM).",
    '',
    'No key crosses the HSM interface in clear: a TEST key set (clear values in a file) is wrapped on the host',
    `under the fixture KEK '${DEMO_KEK.label}', which itself enters the HSM wrapped (RSA-OAEP) under a transport`,
    `key pair '${TRANSPORT_LABEL}' generated inside the HSM. Every imported key's KCV is checked against the`,
    "file, and each card/PSAM key of the file is derived inside the HSM and its KCV checked too.",
    'Safe to run again: keys already present with the right KCV are kept; a different key under the same label',
    'and version is an error. --software creates the key store if it does not exist.',
    '',
    'Options:',
    `  --keys FILE          key set (default ${DEFAULT_KEY_SET.replace(/.*\/fixtures\//, 'fixtures/')}: TEST keys, never for real value)`,
    '  --no-record-keys     do not create the OPAL record keys',
    '',
    ...BACKEND_HELP,
    '',
    'Examples:',
    '  softhsm2-util --init-token --free --label purselab --pin 1234 --so-pin 5678',
    '  PURSELAB_HSM_PIN=1234 purselab hsm init --pkcs11 /usr/lib/softhsm/libsofthsm2.so --token purselab',
    '  PURSELAB_HSM_MASTER=change-me purselab hsm init --software ./hsm.store',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      ...BACKEND_OPTIONS,
      keys: { type: 'string' },
      'no-record-keys': { type: 'boolean', default: false },
    });
    refusePositionals(positionals);
    const keySet = loadIssuerKeySet(values.keys ?? DEFAULT_KEY_SET, { complete: true });
    const config = configFromArgs(values, { create: true });
    return withHsm(config, async (hsm, what) => {
      const rows = await initKeys(hsm, keySet, values['no-record-keys'] !== true);
      const checks = await checkDerivations(hsm, keySet);
      const failed = checks.filter((c) => !c.ok);
      emit(io, values.json === true, { target: what, keys: rows, derivationChecks: checks }, () => [
        `${what}:`,
        ...rows.map((r) => `  ${r.status.padEnd(9)} ${`${r.label} v${r.version}`.padEnd(28)} ${r.type.padEnd(9)} ${r.usage.join(',').padEnd(7)} KCV ${r.kcv}`),
        `  derivation check: ${checks.length - failed.length}/${checks.length} card and PSAM keys derived inside the HSM match the key set`,
        ...failed.map((c) => `  MISMATCH ${c.what}: HSM ${c.got}, key set ${c.expected}`),
      ]);
      return failed.length ? 1 : 0;
    });
  },
};

/** Bring the KEK and every master of the key set into the HSM; returns one row per key. */
export async function initKeys(hsm: Hsm, keySet: IssuerKeySet, recordKeys: boolean): Promise<(KeyInfo & { status: Status })[]> {
  const have = new Map((await hsm.listKeys()).map((k) => [`${k.label}/${k.version}`, k]));
  const rows: (KeyInfo & { status: Status })[] = [];
  const kek = demoKek();
  const kekKcv = keyCheckValue('AES-128', kek).toString('hex').toUpperCase();

  const present = have.get(`${DEMO_KEK.label}/${DEMO_KEK.version}`);
  if (present) {
    if (present.kcv !== kekKcv) throw new HsmKeySetError(`${DEMO_KEK.label} v${DEMO_KEK.version} in the HSM has KCV ${present.kcv}, not the fixture KEK's ${kekKcv}`);
    rows.push({ ...present, status: 'present' });
  } else {
    const versions = [...have.values()].filter((k) => k.label === TRANSPORT_LABEL).map((k) => k.version);
    const transport = { label: TRANSPORT_LABEL, version: versions.length ? Math.max(...versions) + 1 : 1 };
    const { publicKeyDer } = await hsm.generateRsaKeyPair(transport, 2048, ['wrap']);
    const info = await hsm.importKey(DEMO_KEK, 'AES-128', ['wrap'], rsaOaepWrap(publicKeyDer, kek), transport);
    if (info.kcv !== kekKcv) throw new HsmKeySetError(`the HSM reports KCV ${info.kcv} for the imported KEK, expected ${kekKcv}`);
    rows.push({ ...info, status: 'imported' });
  }

  for (const m of keySet.masterKeys) {
    const expected = m.kcv;
    const p = have.get(`${m.label}/${m.version}`);
    if (p) {
      if (p.kcv !== expected) throw new HsmKeySetError(`'${m.label}' v${m.version} is already in the HSM with KCV ${p.kcv}, the key set's has ${expected}: refusing to continue`);
      rows.push({ ...p, status: 'present' });
      continue;
    }
    const info = await hsm.importKey({ label: m.label, version: m.version }, m.keyType, ['derive'], aesKeyWrap(kek, m.key), DEMO_KEK);
    if (info.kcv !== expected) throw new HsmKeySetError(`the HSM reports KCV ${info.kcv} for '${m.label}' v${m.version}, the key set says ${expected}`);
    rows.push({ ...info, status: 'imported' });
  }

  if (recordKeys) {
    for (const ref of [DEFAULT_PAYMENT_KEYS.recordEnc, DEFAULT_PAYMENT_KEYS.recordMac]) {
      const p = have.get(`${ref.label}/${ref.version}`);
      rows.push(p ? { ...p, status: 'present' } : { ...(await hsm.generateKey(ref, 'AES-128', ['derive'])), status: 'generated' });
    }
  }
  kek.fill(0);
  return rows;
}

/**
 * An in-memory software HSM holding the masters of `keySet` (brought in by initKeys; the OPAL record keys too when asked) and
 * the load issuer on its payment operations: the issuer of the demo, the purchase bench and the tests.
 */
export async function softwareIssuer(keySet: IssuerKeySet, options: { recordKeys?: boolean } = {}): Promise<{ hsm: SoftwareHsm; issuer: LoadIssuer; rows: (KeyInfo & { status: Status })[] }> {
  const hsm = SoftwareHsm.inMemory();
  await hsm.open();
  const rows = await initKeys(hsm, keySet, options.recordKeys === true);
  return { hsm, issuer: issuerFromPaymentOps(paymentOps(hsm)), rows };
}

/** Derive every card and PSAM key of the key set inside the HSM and compare KCVs with the file. */
export async function checkDerivations(hsm: Hsm, keySet: IssuerKeySet): Promise<{ what: string; ok: boolean; got: string; expected: string }[]> {
  const out: { what: string; ok: boolean; got: string; expected: string }[] = [];
  for (const d of [...keySet.cards, ...keySet.psams]) {
    const id = d.cardId ?? d.psamId;
    const master = findMaster(keySet, d.usage, d.alg, d.keyVersion);
    if (!id || !master) continue;
    const got = (await hsm.keyCheckValue({ master: { label: master.label, version: master.version }, cardId: cardIdToBcd(id) })).toString('hex').toUpperCase();
    const expected = d.kcv.toUpperCase();
    out.push({ what: `${d.usage} key of ${d.cardId ? 'card' : 'PSAM'} ${maskCardId(id)} (${suiteFor(d.alg).name})`, ok: got === expected, got, expected });
  }
  return out;
}
