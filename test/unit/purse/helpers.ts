// Shared helpers for the purse (IEP) applet suites: issue cards from the fixture profiles, talk to them through
// EmulatorChannel (the CardChannel code path PC/SC uses), and play the PSAM and issuer roles with
// src/crypto/purse-mac.ts and the TEST keys of fixtures/keys/demo-issuer.json.

import { fileURLToPath } from 'node:url';
import { command } from '../../../src/apdu/command.ts';
import type { ResponseApdu } from '../../../src/apdu/response.ts';
import type { CardChannel } from '../../../src/transport/channel.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import * as A from '../../../src/crypto/purse-apdu.ts';
import * as M from '../../../src/crypto/purse-mac.ts';
import { SimulatedCard, cardFromImage, cardToImage, type CardImage, type SimulatedCardOptions } from '../../../card-applet-sim/index.ts';
import {
  issuePurseCard,
  loadPurseProfile,
  type PurseProfile,
} from '../../../card-applet-sim/applets/purse/issuing.ts';
import { PurseApplet } from '../../../card-applet-sim/applets/purse/purse-applet.ts';
import { loadIssuerKeySet, type IssuerKeySet } from '../../../src/crypto/key-set.ts';

export { A, M };
export const AID = A.IEP_AID;
export const repoPath = (rel: string): string => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));

export const KEYS: IssuerKeySet = loadIssuerKeySet(repoPath('fixtures/keys/demo-issuer.json'));
export const PROFILES = {
  des: loadPurseProfile(repoPath('fixtures/profiles/demo-3des.json')),
  aes: loadPurseProfile(repoPath('fixtures/profiles/demo-aes.json')),
  loyalty: loadPurseProfile(repoPath('fixtures/profiles/demo-loyalty-pin.json')),
} as const;

/** The 3DES profile with a points purse and/or a PIN added (or removed). */
export function variant(base: PurseProfile, change: Partial<PurseProfile>): PurseProfile {
  return { ...base, ...change };
}
export const POINTS = { programme: 7001, max: 1_000_000, balance: 0 };
export const PIN = { value: '1234', tryLimit: 3, required: true };

export const LOC = Buffer.from('MERCH001', 'ascii');
export const PSAM_ID = '9990029000000001';
export const TODAY = '20260115';
export const NOW = '143005';

/** Issuer-side card keys: derived here from the masters, independently of the card's install parameters. */
export function issuerKeys(cardId: string, alg: number): { kP: Buffer; kL: Buffer; kU: Buffer } {
  const master = (usage: string) => KEYS.masterKeys.find((m) => m.usage === usage && m.alg === alg && m.version === 1)!.key;
  return {
    kP: M.deriveCardKey(master('purchase'), cardId, alg),
    kL: M.deriveCardKey(master('load'), cardId, alg),
    kU: M.deriveCardKey(master('update'), cardId, alg),
  };
}

// ---------------------------------------------------------------------------------------------
// Host side of the purse APDUs (over any CardChannel)

export class PurseHost {
  constructor(readonly ch: CardChannel) {}

  tx(cla: number, ins: number, p1: number, p2: number, data?: Uint8Array, le?: number): Promise<ResponseApdu> {
    return this.ch.transmit(command(cla, ins, p1, p2, data, le));
  }
  select(): Promise<ResponseApdu> {
    return this.tx(0x00, 0xa4, 0x04, 0x00, AID, 256);
  }
  async readPurseData(): Promise<A.PurseData> {
    const r = await this.tx(0x80, A.IepIns.READ_PURSE_DATA, 0, 0, undefined, 256);
    if (r.sw !== 0x9000) throw new Error(`READ PURSE DATA: SW ${r.sw.toString(16)}`);
    return A.decodePurseData(r.data);
  }
  async initPurchase(p1: number = A.PurseP1.MONEY): Promise<{ sw: number; startup?: A.StartupData; raw: Buffer }> {
    const r = await this.tx(0x80, A.IepIns.INITIALIZE_FOR_PURCHASE, p1, 0, undefined, 256);
    return r.sw === 0x9000 ? { sw: r.sw, startup: A.decodeStartupData(r.data), raw: r.data } : { sw: r.sw, raw: r.data };
  }
  async debit(p1: number, cmd: A.DebitCommand | Buffer): Promise<{ sw: number; res?: A.DebitResponse }> {
    const data = Buffer.isBuffer(cmd) ? cmd : A.encodeDebitCommand(cmd);
    const r = await this.tx(0x80, A.IepIns.DEBIT, p1, 0, data, 256);
    return r.sw === 0x9000 ? { sw: r.sw, res: A.decodeDebitResponse(r.data) } : { sw: r.sw };
  }
  async initLoad(p1: number, p2: number, cmd: A.InitLoadCommand | Buffer): Promise<{ sw: number; res?: A.InitLoadResponse }> {
    const data = Buffer.isBuffer(cmd) ? cmd : A.encodeInitLoadCommand(cmd);
    const r = await this.tx(0x80, A.IepIns.INITIALIZE_FOR_LOAD, p1, p2, data, 256);
    return r.sw === 0x9000 ? { sw: r.sw, res: A.decodeInitLoadResponse(r.data) } : { sw: r.sw };
  }
  async credit(p1: number, s2: Buffer): Promise<{ sw: number; res?: A.CreditResponse }> {
    const r = await this.tx(0x80, A.IepIns.CREDIT_FOR_LOAD, p1, 0, s2, 256);
    return r.sw === 0x9000 ? { sw: r.sw, res: A.decodeCreditResponse(r.data) } : { sw: r.sw };
  }
  async getChallenge(): Promise<Buffer> {
    const r = await this.tx(0x00, A.IepIns.GET_CHALLENGE, 0, 0, undefined, 8);
    if (r.sw !== 0x9000) throw new Error(`GET CHALLENGE: SW ${r.sw.toString(16)}`);
    return r.data;
  }
  async update(cmd: A.UpdateCommand | Buffer): Promise<number> {
    const data = Buffer.isBuffer(cmd) ? cmd : A.encodeUpdateCommand(cmd);
    return (await this.tx(0x80, A.IepIns.UPDATE_PARAMETERS, 0, 0, data)).sw;
  }
  async verify(pin?: string | Buffer): Promise<number> {
    const data = pin === undefined ? undefined : typeof pin === 'string' ? A.encodePinBlock(pin) : pin;
    return (await this.tx(0x00, A.IepIns.VERIFY, 0, A.PIN_REFERENCE, data)).sw;
  }
}

// ---------------------------------------------------------------------------------------------
// A test card

export interface TestCard {
  card: SimulatedCard;
  ch: EmulatorChannel;
  host: PurseHost;
  applet: PurseApplet;
  cardId: string;
  alg: number;
  kP: Buffer;
  kL: Buffer;
  kU: Buffer;
}

export interface CardSetup {
  balance?: number;
  card?: SimulatedCardOptions;
  /** Raw state before the test (persistent writes straight into the applet's store). */
  state?: Partial<RawState>;
}

export interface RawState {
  counter: number;
  balance: number;
  pointsBalance: number;
  maxBalance: number;
  expiry: number;
  status: number;
  pinTriesLeft: number;
}

/** Set persistent fields directly (raw card access, for test setup only). */
export function setRawState(applet: PurseApplet, s: Partial<RawState>): void {
  if (s.counter !== undefined) applet.counter.set(s.counter);
  if (s.balance !== undefined) applet.balance.set(s.balance);
  if (s.pointsBalance !== undefined) applet.pointsBalance.set(s.pointsBalance);
  if (s.maxBalance !== undefined) applet.maxBalance.set(s.maxBalance);
  if (s.expiry !== undefined) applet.expiry.set(s.expiry);
  if (s.status !== undefined) applet.status.set(s.status);
  if (s.pinTriesLeft !== undefined) applet.pinTriesLeft.set(s.pinTriesLeft);
}

/** Wrap an existing card: channel + host, purse selected. */
export async function attach(card: SimulatedCard): Promise<TestCard> {
  const applet = card.getApplet(AID) as PurseApplet;
  const ch = new EmulatorChannel(card);
  const host = new PurseHost(ch);
  const r = await host.select();
  if (r.sw !== 0x9000) throw new Error(`SELECT purse: SW ${r.sw.toString(16)}`);
  return { card, ch, host, applet, cardId: applet.cardId, alg: applet.alg, ...issuerKeys(applet.cardId, applet.alg) };
}

export async function newCard(profile: PurseProfile = PROFILES.des, setup: CardSetup = {}): Promise<TestCard> {
  const { card } = issuePurseCard(profile, KEYS, {
    ...(setup.balance !== undefined ? { balance: setup.balance } : {}),
    card: { serial: Buffer.alloc(8, 0x42), ...setup.card },
  });
  const tc = await attach(card);
  if (setup.state) setRawState(tc.applet, setup.state);
  return tc;
}

/** The applet's whole persistent state (for "nothing changed" checks). */
export function snapshot(tc: { applet: PurseApplet }): string {
  return JSON.stringify(tc.applet.store.exportState());
}

/** Make the card's next random bytes these (to reproduce the vectors' CRND / RND): raw card access. */
export function forceRandom(card: SimulatedCard, ...values: Buffer[]): void {
  const queue = [...values];
  (card as unknown as { randomFill(t: Uint8Array): void }).randomFill = (t: Uint8Array) => {
    const next = queue.shift();
    if (!next || next.length !== t.length) throw new Error('forceRandom: no value of the right length queued');
    t.set(next);
  };
}

export function imageOf(tc: TestCard): CardImage {
  return cardToImage(tc.card);
}
export async function fromImage(image: CardImage): Promise<TestCard> {
  return attach(cardFromImage(image));
}

// ---------------------------------------------------------------------------------------------
// PSAM role (purchase S2, expected S3)

export interface PurchaseSpec {
  txType?: number;
  amount: number;
  currency?: number;
  exponent?: number;
  date?: string;
  time?: string;
  psamTxn?: number;
  location?: Buffer;
}

/** The PSAM's DEBIT for the card's start-up data, and the S2 fields it signed. */
export function psamDebit(tc: TestCard, startup: A.StartupData, spec: PurchaseSpec): { cmd: A.DebitCommand; s2Fields: M.PurchaseS2Fields } {
  const s2Fields: M.PurchaseS2Fields = {
    txType: spec.txType ?? M.TxType.PURCHASE,
    alg: startup.alg,
    keyVersion: startup.keyVersion,
    cardId: startup.cardId,
    counter: startup.counter,
    psamId: PSAM_ID,
    psamTxn: spec.psamTxn ?? 1001,
    amount: spec.amount,
    currency: spec.currency ?? startup.currency,
    exponent: spec.exponent ?? startup.exponent,
    date: spec.date ?? TODAY,
    time: spec.time ?? NOW,
    location: spec.location ?? LOC,
  };
  const s2 = M.purchaseS2(tc.kP, s2Fields);
  const { txType: _t, alg: _a, keyVersion: _k, cardId: _c, counter: _n, ...rest } = s2Fields;
  return { cmd: { ...rest, s2 }, s2Fields };
}

/** INITIALIZE FOR PURCHASE + DEBIT through the channel; checks S3 as the PSAM would when it is 9000. */
export async function purchase(tc: TestCard, spec: PurchaseSpec): Promise<{ sw: number; res?: A.DebitResponse; s3Valid?: boolean; s2Fields?: M.PurchaseS2Fields }> {
  const txType = spec.txType ?? M.TxType.PURCHASE;
  const init = await tc.host.initPurchase(txType === M.TxType.POINTS_DEBIT ? A.PurseP1.POINTS : A.PurseP1.MONEY);
  if (init.sw !== 0x9000) return { sw: init.sw };
  const defaults = txType === M.TxType.AUTHENTICATION ? { currency: M.AUTH_CURRENCY, exponent: 0 } : {};
  const { cmd, s2Fields } = psamDebit(tc, init.startup!, { ...defaults, ...spec });
  const r = await tc.host.debit(txType, cmd);
  if (!r.res) return { sw: r.sw, s2Fields };
  const s3Valid = M.verifyPurchaseS3(tc.kP, M.expectedPurchaseS3Fields(s2Fields, init.startup!.authMode), r.res.s3);
  return { sw: r.sw, res: r.res, s3Valid, s2Fields };
}

// ---------------------------------------------------------------------------------------------
// Issuer role (load S1 check, S2, S3 check)

export interface LoadSpec {
  amount: number;
  currency?: number;
  exponent?: number;
  date?: string;
  time?: string;
  loadTxnId?: Buffer;
}

let ltxidCounter = 0;
export function freshLtxid(): Buffer {
  const b = Buffer.alloc(8);
  b.write('LT', 0, 'ascii');
  b.writeUIntBE(++ltxidCounter, 2, 6);
  return b;
}

export function initLoadCommand(tc: TestCard, spec: LoadSpec, points = false): A.InitLoadCommand {
  const p = tc.applet.params;
  return {
    amount: spec.amount,
    currency: spec.currency ?? (points ? p.points!.programme : p.currency),
    exponent: spec.exponent ?? (points ? 0 : p.exponent),
    date: spec.date ?? '20260116',
    time: spec.time ?? '091500',
    loadTxnId: spec.loadTxnId ?? freshLtxid(),
  };
}

/** The S1 fields the issuer rebuilds from the Load Request (the command it sent + the card's response). */
export function s1Fields(cmd: A.InitLoadCommand, res: A.InitLoadResponse, loadType: number): M.LoadS1Fields {
  return {
    loadType,
    alg: res.alg,
    keyVersion: res.keyVersion,
    cardId: res.cardId,
    counter: res.counter,
    amount: cmd.amount,
    currency: res.currency,
    exponent: res.exponent,
    balance: res.balance,
    maxBalance: res.maxBalance,
    expiry: res.expiry,
    date: cmd.date,
    time: cmd.time,
    loadTxnId: cmd.loadTxnId,
    cardChallenge: res.cardChallenge,
    lastLoadTxnId: res.lastLoadTxnId,
    lastLoadCounter: res.lastLoadCounter,
    lastLoadAmount: res.lastLoadAmount,
  };
}

export interface LoadOutcome {
  initSw: number;
  cmd: A.InitLoadCommand;
  init?: A.InitLoadResponse;
  s1Valid?: boolean;
  s2?: Buffer;
  s2Fields?: M.LoadS2Fields;
  creditSw?: number;
  res?: A.CreditResponse;
  s3Valid?: boolean;
}

/** Issuer: S2 for a verified S1 (throws if S1 does not verify: the issuer never signs then). */
export function issuerS2(tc: TestCard, fields: M.LoadS1Fields, s1: Buffer): { s2: Buffer; s2Fields: M.LoadS2Fields } {
  if (!M.verifyLoadS1(tc.kL, fields, s1)) throw new Error('issuer: S1 does not verify');
  const s2Fields = M.loadS2FieldsFromS1(fields);
  return { s2: M.loadS2(tc.kL, s2Fields), s2Fields };
}

/** INITIALIZE FOR LOAD, issuer S1 check + S2, CREDIT FOR LOAD, issuer S3 check. */
export async function load(tc: TestCard, spec: LoadSpec, points = false, s2Override?: (s2: Buffer) => Buffer): Promise<LoadOutcome> {
  const p1 = points ? A.PurseP1.POINTS : A.PurseP1.MONEY;
  const cmd = initLoadCommand(tc, spec, points);
  const i = await tc.host.initLoad(p1, A.LoadP2.LOAD, cmd);
  if (!i.res) return { initSw: i.sw, cmd };
  const fields = s1Fields(cmd, i.res, points ? M.LoadType.POINTS_LOAD : M.LoadType.LOAD);
  const s1Valid = M.verifyLoadS1(tc.kL, fields, i.res.s1);
  const { s2, s2Fields } = issuerS2(tc, fields, i.res.s1);
  const sent = s2Override ? s2Override(s2) : s2;
  const c = await tc.host.credit(p1, sent);
  const out: LoadOutcome = { initSw: i.sw, cmd, init: i.res, s1Valid, s2, s2Fields, creditSw: c.sw };
  if (c.res) {
    out.res = c.res;
    out.s3Valid = M.verifyLoadS3(tc.kL, M.loadS3FieldsFor(s2Fields, c.res.result, c.res.newCounter, c.res.newBalance), c.res.s3);
  }
  return out;
}

/** Zero-value enquiry (failed-load recovery): fresh LTXID, the original currency/date/time; S1 verified by the issuer. */
export async function enquiry(
  tc: TestCard,
  original: A.InitLoadCommand,
  points = false,
): Promise<{ sw: number; res?: A.InitLoadResponse; s1Valid?: boolean; cmd: A.InitLoadCommand }> {
  const cmd: A.InitLoadCommand = { ...original, amount: 0, loadTxnId: freshLtxid() };
  const i = await tc.host.initLoad(points ? A.PurseP1.POINTS : A.PurseP1.MONEY, A.LoadP2.ENQUIRY, cmd);
  if (!i.res) return { sw: i.sw, cmd };
  const s1Valid = M.verifyLoadS1(tc.kL, s1Fields(cmd, i.res, points ? M.LoadType.POINTS_ENQUIRY : M.LoadType.ENQUIRY), i.res.s1);
  return { sw: i.sw, res: i.res, s1Valid, cmd };
}

// ---------------------------------------------------------------------------------------------
// Issuer role: UPDATE PARAMETERS

export interface UpdateSpec {
  flags: number;
  maxBalance?: number;
  expiry?: string;
  currency?: number;
  exponent?: number;
}

export async function updateCommand(tc: TestCard, spec: UpdateSpec, challenge?: Buffer): Promise<A.UpdateCommand> {
  const pd = await tc.host.readPurseData(); // before GET CHALLENGE: any other command ends the challenge
  const rnd = challenge ?? (await tc.host.getChallenge());
  const fields: M.UpdateParametersFields = {
    alg: pd.alg,
    keyVersion: pd.updateKeyVersion,
    cardId: pd.cardId,
    counter: pd.counter,
    challenge: rnd,
    flags: spec.flags,
    maxBalance: spec.maxBalance ?? 0,
    expiry: spec.expiry ?? '20300101',
    currency: spec.currency ?? 978,
    exponent: spec.exponent ?? 2,
  };
  const mac = M.updateParametersMac(tc.kU, fields);
  return { flags: fields.flags, maxBalance: fields.maxBalance, expiry: fields.expiry, currency: fields.currency, exponent: fields.exponent, mac };
}

export async function update(tc: TestCard, spec: UpdateSpec): Promise<number> {
  return tc.host.update(await updateCommand(tc, spec));
}

// ---------------------------------------------------------------------------------------------
// Small utilities

/** A deterministic PRNG (mulberry32) for reproducible fuzzing. */
export function prng(seed: number): { next(): number; int(n: number): number; bytes(n: number): Buffer; pick<T>(xs: readonly T[]): T } {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number): number => Math.floor(next() * n);
  return {
    next,
    int,
    bytes: (n: number) => {
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = int(256);
      return b;
    },
    pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]!,
  };
}

export const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex').toUpperCase();
