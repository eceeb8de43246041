// Shared helpers for the PSAM and terminal suites: PSAMs and purse cards issued from the fixture profiles and
// the TEST key set, talked to through EmulatorChannel (the CardChannel code path PC/SC uses); card responses
// made with src/crypto/purse-mac.ts where a test plays the card; the issuer on the HSM bridge's software backend.

import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll } from 'vitest';
import { command } from '../../../src/apdu/command.ts';
import * as A from '../../../src/crypto/purse-apdu.ts';
import * as M from '../../../src/crypto/purse-mac.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import type { CardChannel } from '../../../src/transport/channel.ts';
import { SimulatedCard, cardFromImage, cardToImage, type CardImage, type SimulatedCardOptions } from '../../../card-applet-sim/index.ts';
import { PsamApplet, type PsamPersonalization } from '../../../card-applet-sim/applets/psam/psam-applet.ts';
import { issuePsamCard, loadPsamProfile } from '../../../card-applet-sim/applets/psam/issuing.ts';
import { issuePurseCard, loadPurseProfile, type PurseProfile } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { loadIssuerKeySet } from '../../../src/crypto/key-set.ts';
import { PurseApplet } from '../../../card-applet-sim/applets/purse/purse-applet.ts';
import type { SoftwareHsm } from '../../../hsm-bridge/software/software-hsm.ts';
import type { LoadIssuer } from '../../../src/terminal/load.ts';
import { softwareIssuer } from '../../../src/cli/commands/hsm-init.ts';

export { A, M };
export const repoPath = (rel: string): string => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));

export const KEYS = loadIssuerKeySet(repoPath('fixtures/keys/demo-issuer.json'));
export const PSAM_PROFILES = {
  des: loadPsamProfile(repoPath('fixtures/profiles/psam-3des.json')),
  aes: loadPsamProfile(repoPath('fixtures/profiles/psam-aes.json')),
} as const;
export const CARD_PROFILES = {
  des: loadPurseProfile(repoPath('fixtures/profiles/demo-3des.json')),
  aes: loadPurseProfile(repoPath('fixtures/profiles/demo-aes.json')),
  loyalty: loadPurseProfile(repoPath('fixtures/profiles/demo-loyalty-pin.json')),
} as const;

export const LOC = Buffer.from('MERCH001', 'ascii');
export const TODAY = '20260115';
export const NOW = '143005';
export const EUR = 978;
export const PROGRAMME = 7001;

const master = (usage: string, alg: number) => KEYS.masterKeys.find((m) => m.usage === usage && m.alg === alg && m.version === 1)!.key;
/** The card's purchase key, derived independently of the PSAM. */
export const cardPurchaseKey = (cardId: string, alg: number): Buffer => M.deriveCardKey(master('purchase', alg), cardId, alg);
/** The PSAM's batch / admin key as the acquirer derives it. */
export const psamKey = (usage: 'batch' | 'admin', psamId: string, alg: number): Buffer => M.derivePsamKey(master(usage, alg), psamId, alg);

// ---------------------------------------------------------------------------------------------
// Raw APDUs

export interface Rsp {
  data: Buffer;
  sw: number;
}

export async function tx(ch: CardChannel, cla: number, ins: number, p1: number, p2: number, data?: Uint8Array, le?: number): Promise<Rsp> {
  const r = await ch.transmit(command(cla, ins, p1, p2, data, le));
  return { data: r.data, sw: r.sw };
}

// ---------------------------------------------------------------------------------------------
// A test PSAM

export interface TestPsam {
  card: SimulatedCard;
  ch: EmulatorChannel;
  applet: PsamApplet;
  psamId: string;
  alg: number;
  batchKey: Buffer;
  adminKey: Buffer;
}

export async function attachPsam(card: SimulatedCard): Promise<TestPsam> {
  const applet = card.getApplet(A.PSAM_AID) as PsamApplet;
  const ch = new EmulatorChannel(card, { readerName: 'test PSAM' });
  const r = await tx(ch, 0x00, 0xa4, 0x04, 0x00, A.PSAM_AID, 256);
  if (r.sw !== 0x9000) throw new Error(`SELECT PSAM: ${r.sw.toString(16)}`);
  const psamId = A.decodePsamData((await tx(ch, 0x80, A.PsamIns.READ_PSAM_DATA, 0, 0, undefined, 256)).data).psamId;
  const alg = applet.alg.get();
  return { card, ch, applet, psamId, alg, batchKey: psamKey('batch', psamId, alg), adminKey: psamKey('admin', psamId, alg) };
}

export async function newPsam(which: keyof typeof PSAM_PROFILES = 'des', overrides: Partial<PsamPersonalization> = {}, card: SimulatedCardOptions = {}): Promise<TestPsam> {
  const { card: c } = issuePsamCard(PSAM_PROFILES[which], KEYS, { overrides, card: { serial: Buffer.alloc(8, 0x50), randomSeed: 'psam', ...card } });
  return attachPsam(c);
}

/** The PSAM's whole persistent state (for "nothing changed" checks). */
export const psamState = (p: { applet: PsamApplet }): string => JSON.stringify(p.applet.store.exportState());

export const adminMacFn = (adminKey: Buffer) => (f: M.PsamAdminFields) => M.psamAdminMac(adminKey, f);

// ---------------------------------------------------------------------------------------------
// Playing the card (purse-mac.ts): start-up data and DEBIT responses

export interface FakeCard {
  cardId: string;
  alg: number;
  keyVersion: number;
  key: Buffer;
  startup: A.StartupData;
}

export function fakeCard(s: Partial<A.StartupData> = {}): FakeCard {
  const startup: A.StartupData = {
    alg: 1,
    keyVersion: 1,
    cardId: '9990010000000017',
    expiry: '20281231',
    balance: 10_000,
    currency: EUR,
    exponent: 2,
    authMode: 0,
    counter: 41,
    status: 0,
    ...s,
  };
  const key = startup.alg === 1 || startup.alg === 2 ? cardPurchaseKey(startup.cardId, startup.alg) : Buffer.alloc(16);
  return { cardId: startup.cardId, alg: startup.alg, keyVersion: startup.keyVersion, key, startup };
}

export function params(p: Partial<A.PurchaseParams> = {}): A.PurchaseParams {
  return { txType: M.TxType.PURCHASE, amount: 420, currency: EUR, exponent: 2, date: TODAY, time: NOW, location: LOC, ...p };
}

export async function psamInit(psam: TestPsam, card: FakeCard, p: Partial<A.PurchaseParams> = {}, p1 = 0): Promise<Rsp> {
  return tx(psam.ch, 0x80, A.PsamIns.INITIALIZE_PURCHASE, p1, 0, A.encodePsamInitPurchase(card.startup, params(p)), 256);
}

/** What a genuine card answers to the PSAM's DEBIT: NEWCTR, CVR and S3 (purse-mac.ts). */
export function cardDebitAnswer(card: FakeCard, debit: A.DebitCommand, txType: number = M.TxType.PURCHASE): A.VerifyS3Command {
  const s2f: M.PurchaseS2Fields = {
    txType,
    alg: card.alg,
    keyVersion: card.keyVersion,
    cardId: card.cardId,
    counter: card.startup.counter,
    psamId: debit.psamId,
    psamTxn: debit.psamTxn,
    amount: debit.amount,
    currency: debit.currency,
    exponent: debit.exponent,
    date: debit.date,
    time: debit.time,
    location: debit.location,
  };
  if (!M.verifyPurchaseS2(card.key, s2f, debit.s2)) throw new Error('fake card: S2 does not verify');
  const s3 = M.purchaseS3(card.key, M.expectedPurchaseS3Fields(s2f, card.startup.authMode));
  return { psamTxn: debit.psamTxn, newCounter: card.startup.counter + 1, cvr: card.startup.authMode, s3 };
}

export async function verifyS3(psam: TestPsam, v: A.VerifyS3Command): Promise<Rsp> {
  return tx(psam.ch, 0x80, A.PsamIns.VERIFY_S3, 0, 0, A.encodeVerifyS3Command(v), 256);
}

export async function readData(psam: TestPsam): Promise<A.PsamData> {
  const r = await tx(psam.ch, 0x80, A.PsamIns.READ_PSAM_DATA, 0, 0, undefined, 256);
  if (r.sw !== 0x9000) throw new Error(`READ PSAM DATA: ${r.sw.toString(16)}`);
  return A.decodePsamData(r.data);
}

/** One complete purchase against the PSAM, the card played by purse-mac.ts. */
export async function fakePurchase(psam: TestPsam, card: FakeCard, p: Partial<A.PurchaseParams> = {}): Promise<{ debit: A.DebitCommand; v: A.VerifyS3Command; result: A.DebitResult }> {
  const r = await psamInit(psam, card, p);
  if (r.sw !== 0x9000) throw new Error(`INITIALIZE PURCHASE: ${r.sw.toString(16)}`);
  const { debit } = A.decodePsamInitPurchaseResponse(r.data);
  const v = cardDebitAnswer(card, debit, p.txType ?? M.TxType.PURCHASE);
  const vr = await verifyS3(psam, v);
  if (vr.sw !== 0x9000) throw new Error(`VERIFY S3: ${vr.sw.toString(16)}`);
  card.startup = { ...card.startup, counter: card.startup.counter + 1, balance: card.startup.balance - (p.txType === M.TxType.AUTHENTICATION ? 0 : (p.amount ?? 420)) };
  return { debit, v, result: A.decodeDebitResult(vr.data) };
}

// ---------------------------------------------------------------------------------------------
// Real purse cards (the purse applet)

export interface TestCard {
  card: SimulatedCard;
  ch: EmulatorChannel;
  applet: PurseApplet;
  cardId: string;
}

export function attachCard(card: SimulatedCard): TestCard {
  const applet = card.getApplet(A.IEP_AID) as PurseApplet;
  return { card, ch: new EmulatorChannel(card, { readerName: 'test card' }), applet, cardId: applet.cardId };
}

export function newCard(profile: PurseProfile = CARD_PROFILES.des, balance = 10_000, card: SimulatedCardOptions = {}): TestCard {
  const { card: c } = issuePurseCard(profile, KEYS, { balance, card: { serial: Buffer.alloc(8, 0x42), randomSeed: 'card', ...card } });
  return attachCard(c);
}

export const cardState = (c: { applet: PurseApplet }): string => JSON.stringify(c.applet.store.exportState());

export { cardToImage, cardFromImage, type CardImage };

// ---------------------------------------------------------------------------------------------
// The issuer: HSM bridge payment operations on an in-memory software HSM holding the TEST masters

/** The issuer on an in-memory software HSM holding the TEST key set (softwareIssuer of hsm init). */
export async function demoIssuer(): Promise<{ issuer: LoadIssuer; hsm: SoftwareHsm }> {
  return softwareIssuer(KEYS);
}

/**
 * The demo issuer for the tests of the enclosing describe (or file): opened in beforeAll, closed in afterAll.
 * The LoadIssuer returned passes every call on to it.
 */
export function useDemoIssuer(): LoadIssuer {
  let d: { issuer: LoadIssuer; hsm: SoftwareHsm } | undefined;
  beforeAll(async () => {
    d = await demoIssuer();
  });
  afterAll(async () => d?.hsm.close());
  const current = (): LoadIssuer => {
    if (!d) throw new Error('useDemoIssuer: the issuer is opened in beforeAll; use it inside a test');
    return d.issuer;
  };
  return {
    verifyS1: (fields, s1) => current().verifyS1(fields, s1),
    generateS2: (fields) => current().generateS2(fields),
    verifyS3: (fields, s3) => current().verifyS3(fields, s3),
    verifyEnquiryS1: (fields, s1, pending) => current().verifyEnquiryS1(fields, s1, pending),
  };
}

// ---------------------------------------------------------------------------------------------
// A channel in the middle: sees (and may change or drop) every command and response

import type { CommandApdu } from '../../../src/apdu/command.ts';
import type { ResponseApdu } from '../../../src/apdu/response.ts';
import { TransportError } from '../../../src/transport/errors.ts';

export class TamperChannel implements CardChannel {
  /** Change a command before the card sees it (return it unchanged to pass it on). */
  onCommand: (c: CommandApdu) => CommandApdu = (c) => c;
  /** Change the card's answer; return undefined to lose it (the host sees a transport error). */
  onResponse: (c: CommandApdu, r: ResponseApdu) => ResponseApdu | undefined = (_c, r) => r;
  readonly log: { ins: number; sw: number }[] = [];
  constructor(readonly inner: CardChannel) {}
  get readerName() {
    return `tamper(${this.inner.readerName})`;
  }
  get atr() {
    return this.inner.atr;
  }
  get protocol() {
    return this.inner.protocol;
  }
  async transmit(command: CommandApdu): Promise<ResponseApdu> {
    const c = this.onCommand(command);
    const r = await this.inner.transmit(c);
    this.log.push({ ins: c.ins, sw: r.sw });
    const out = this.onResponse(c, r);
    if (!out) throw new TransportError('CARD_REMOVED', 'response lost on the way (test)');
    return out;
  }
  transmitRaw(bytes: Uint8Array): Promise<Buffer> {
    return this.inner.transmitRaw(bytes);
  }
  reset(options?: { cold?: boolean }): Promise<Buffer> {
    return this.inner.reset(options);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
