// The stored-value purse applet (the IEP of seed 003), exactly as specified in docs/purse-applet.md:
// READ PURSE DATA, INITIALIZE FOR PURCHASE + DEBIT (purchase, zero-amount authentication, points debit),
// INITIALIZE FOR LOAD (load, points load, zero-value enquiry) + CREDIT FOR LOAD, GET CHALLENGE + UPDATE
// PARAMETERS, and the cardholder PIN (VERIFY). AIDs, INS codes, status words, records and MAC inputs come
// from src/crypto/purse-apdu.ts and src/crypto/purse-mac.ts (the single definitions); nothing byte-level is
// defined here.
//
// Persistent state changes only inside one card transaction (balance and counter together); every error
// path throws before the first persistent write, so "nothing changes on any error" holds by construction.

import { Applet, type ApduContext } from '../../os/applet.ts';
import { IsoException } from '../../os/iso.ts';
import { CryptoError } from '../../../src/crypto/errors.ts';
import { macEquals } from '../../../src/crypto/mac.ts';
import {
  CLA_ISO,
  CLA_PROPRIETARY,
  IEP_AID,
  IepIns,
  LoadP2,
  PIN_BLOCK_LENGTH,
  PIN_REFERENCE,
  PurseP1,
  PurseStatus,
  Sw,
  decodeDebitCommand,
  decodeInitLoadCommand,
  decodePinBlock,
  decodeUpdateCommand,
  encodeCreditResponse,
  encodeDebitResponse,
  encodeInitLoadResponse,
  encodePinBlock,
  encodePurseData,
  encodeStartupData,
  pinWrongSw,
  type InitLoadCommand,
} from '../../../src/crypto/purse-apdu.ts';
import {
  AUTH_CURRENCY,
  AuthMode,
  LoadResult,
  LoadType,
  PurchaseResult,
  TxType,
  UPDATE_FLAGS_MASK,
  UpdateFlags,
  loadS1,
  loadS3,
  loadS3FieldsFor,
  purchaseS3,
  verifyLoadS2,
  verifyPurchaseS2,
  verifyUpdateParametersMac,
  type LoadS2Fields,
} from '../../../src/crypto/purse-mac.ts';
import { decodePurseInstallParams, type PurseInstallParams } from './install-params.ts';

export { IEP_AID };

/** Applet version in the FCI (proprietary template A5, tag 80). */
export const PURSE_APPLET_VERSION = 1;

const U32_MAX = 0xffffffff;
const INIT_LOAD_LENGTH = 22;
const CHALLENGE_LENGTH = 8;

/** The pending session (transient, cleared at reset and SELECT). */
const Session = { NONE: 0, PURCHASE: 1, LOAD: 2, CHALLENGE: 3 } as const;

interface PendingSession {
  readonly kind: number;
  readonly p1: number;
  readonly p2: number;
  /** LOAD: the INITIALIZE FOR LOAD command data. */
  readonly data: Buffer;
  /** LOAD: CRND; CHALLENGE: RND. */
  readonly random: Buffer;
}
const NO_SESSION: PendingSession = { kind: Session.NONE, p1: 0, p2: 0, data: Buffer.alloc(0), random: Buffer.alloc(0) };

const dateNumber = (yyyymmdd: string): number => Number(yyyymmdd);
const dateString = (n: number): string => n.toString().padStart(8, '0');

/** Decode a record; a field that does not decode is 6A80 (other errors are bugs and propagate). */
function decodeOr6A80<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CryptoError) throw new IsoException(Sw.WRONG_DATA);
    throw e;
  }
}

export class PurseApplet extends Applet {
  static override typeName = 'purse';

  // ---- personalisation (immutable; from the install parameters, never in the persistent store)
  readonly params: PurseInstallParams;
  readonly cardId: string;
  readonly alg: number;
  private readonly purchaseKey: Buffer;
  private readonly loadKey: Buffer;
  private readonly updateKey: Buffer;
  private readonly pinBlock: Buffer | undefined;

  // ---- persistent purse state (initial values from the install parameters)
  readonly balance;
  readonly counter;
  readonly maxBalance;
  readonly currency;
  readonly exponent;
  /** Expiry as the number YYYYMMDD. */
  readonly expiry;
  readonly status;
  readonly pointsBalance;
  /** PIN tries left (0 = blocked); unused without a PIN. */
  readonly pinTriesLeft;
  readonly lastLoadTxnId;
  readonly lastLoadCounter;
  readonly lastLoadAmount;

  // ---- transient session state (CLEAR_ON_DESELECT: cleared at reset and when another SELECT happens)
  private readonly sessionKind = this.transientNumber('deselect');
  private readonly sessionP1 = this.transientNumber('deselect');
  private readonly sessionP2 = this.transientNumber('deselect');
  /** LOAD: the INITIALIZE FOR LOAD command data. */
  private readonly sessionData = this.transientBytes(INIT_LOAD_LENGTH, 'deselect');
  /** LOAD: CRND; CHALLENGE: RND. */
  private readonly sessionRandom = this.transientBytes(CHALLENGE_LENGTH, 'deselect');
  private readonly pinVerified = this.transientNumber('deselect');

  constructor(params: Buffer = Buffer.alloc(0)) {
    super();
    const p = decodePurseInstallParams(params);
    this.params = p;
    this.cardId = p.cardId;
    this.alg = p.alg;
    this.purchaseKey = Buffer.from(p.keys.purchase.key);
    this.loadKey = Buffer.from(p.keys.load.key);
    this.updateKey = Buffer.from(p.keys.update.key);
    this.pinBlock = p.pin ? encodePinBlock(p.pin.pin) : undefined;
    const s = this.store;
    this.balance = s.number('bal', p.balance);
    this.counter = s.number('ctr', 0);
    this.maxBalance = s.number('maxbal', p.maxBalance);
    this.currency = s.number('cur', p.currency);
    this.exponent = s.number('exp', p.exponent);
    this.expiry = s.number('expiry', dateNumber(p.expiry));
    this.status = s.number('status', PurseStatus.ACTIVE);
    this.pointsBalance = s.number('ptbal', p.points?.balance ?? 0);
    this.pinTriesLeft = s.number('pintries', p.pin?.tryLimit ?? 0);
    this.lastLoadTxnId = s.bytes('lastltxid', 8);
    this.lastLoadCounter = s.number('lastlctr', 0);
    this.lastLoadAmount = s.number('lastlamt', 0);
  }

  // ---------------------------------------------------------------------------------------------
  // Derived views

  get hasPoints(): boolean {
    return this.params.points !== undefined;
  }
  get hasPin(): boolean {
    return this.pinBlock !== undefined;
  }
  /** AUTHMODE: 01 PIN required, 02 PIN verified in this session, 04 points purse present. */
  get authMode(): number {
    let m = 0;
    if (this.params.pin?.required) m |= AuthMode.PIN_REQUIRED;
    if (this.hasPin && this.pinVerified.value === 1) m |= AuthMode.PIN_VERIFIED;
    if (this.hasPoints) m |= AuthMode.POINTS_PURSE;
    return m;
  }
  private get blocked(): boolean {
    return this.status.get() !== PurseStatus.ACTIVE;
  }
  private get expiryString(): string {
    return dateString(this.expiry.get());
  }

  // ---------------------------------------------------------------------------------------------
  // Hooks

  override select(): boolean {
    this.endSession();
    this.pinVerified.value = 0;
    return true;
  }

  override fci(): Uint8Array {
    const aid = this.system.aid;
    // 6F L [84 L AID] [A5 03 [80 01 version]]
    return Buffer.concat([Buffer.from([0x6f, aid.length + 7, 0x84, aid.length]), aid, Buffer.from([0xa5, 0x03, 0x80, 0x01, PURSE_APPLET_VERSION])]);
  }

  // ---------------------------------------------------------------------------------------------
  // Dispatch

  process(apdu: ApduContext): Uint8Array | void {
    // Every command ends the pending session; the follow-up command consumes it here, whatever its outcome.
    const session = this.takeSession();

    const { cla, ins } = apdu;
    if (cla !== CLA_PROPRIETARY && cla !== CLA_ISO) throw new IsoException(Sw.CLA_NOT_SUPPORTED);
    switch (ins) {
      case IepIns.READ_PURSE_DATA:
        apdu.requireCla(CLA_PROPRIETARY);
        return this.readPurseData(apdu);
      case IepIns.INITIALIZE_FOR_PURCHASE:
        apdu.requireCla(CLA_PROPRIETARY);
        return this.initializeForPurchase(apdu);
      case IepIns.DEBIT:
        apdu.requireCla(CLA_PROPRIETARY);
        return this.debit(apdu, session);
      case IepIns.INITIALIZE_FOR_LOAD:
        apdu.requireCla(CLA_PROPRIETARY);
        return this.initializeForLoad(apdu);
      case IepIns.CREDIT_FOR_LOAD:
        apdu.requireCla(CLA_PROPRIETARY);
        return this.creditForLoad(apdu, session);
      case IepIns.UPDATE_PARAMETERS:
        apdu.requireCla(CLA_PROPRIETARY);
        return this.updateParameters(apdu, session);
      case IepIns.GET_CHALLENGE:
        apdu.requireCla(CLA_ISO);
        return this.getChallenge(apdu);
      case IepIns.VERIFY:
        apdu.requireCla(CLA_ISO);
        return this.verify(apdu);
      default:
        throw new IsoException(Sw.INS_NOT_SUPPORTED);
    }
  }

  /** The pending session (a copy), which ends now. */
  private takeSession(): PendingSession {
    const kind = this.sessionKind.value;
    const session: PendingSession =
      kind === Session.NONE
        ? NO_SESSION
        : { kind, p1: this.sessionP1.value, p2: this.sessionP2.value, data: Buffer.from(this.sessionData), random: Buffer.from(this.sessionRandom) };
    this.endSession();
    return session;
  }

  private endSession(): void {
    this.sessionKind.value = Session.NONE;
    this.sessionP1.value = 0;
    this.sessionP2.value = 0;
    this.sessionData.fill(0);
    this.sessionRandom.fill(0);
  }

  // ---------------------------------------------------------------------------------------------
  // READ PURSE DATA: 80 5C 00 00 00

  private readPurseData(apdu: ApduContext): Uint8Array {
    apdu.requireP1P2(0, 0);
    apdu.requireLc(0);
    return encodePurseData({
      cardId: this.cardId,
      alg: this.alg,
      status: this.status.get(),
      authMode: this.authMode,
      expiry: this.expiryString,
      currency: this.currency.get(),
      exponent: this.exponent.get(),
      balance: this.balance.get(),
      maxBalance: this.maxBalance.get(),
      counter: this.counter.get(),
      purchaseKeyVersion: this.params.keys.purchase.version,
      loadKeyVersion: this.params.keys.load.version,
      updateKeyVersion: this.params.keys.update.version,
      pointsProgramme: this.params.points?.programme ?? 0,
      pointsBalance: this.pointsBalance.get(),
      pointsMax: this.params.points?.max ?? 0,
      pinTriesLeft: this.hasPin ? this.pinTriesLeft.get() : 0xff,
      lastLoadTxnId: this.lastLoadTxnId.get(),
      lastLoadCounter: this.lastLoadCounter.get(),
      lastLoadAmount: this.lastLoadAmount.get(),
    });
  }

  // ---------------------------------------------------------------------------------------------
  // INITIALIZE FOR PURCHASE: 80 50 P1 00 00

  private initializeForPurchase(apdu: ApduContext): Uint8Array {
    apdu.check((apdu.p1 === PurseP1.MONEY || apdu.p1 === PurseP1.POINTS) && apdu.p2 === 0, Sw.WRONG_P1P2);
    apdu.check(apdu.p1 !== PurseP1.POINTS || this.hasPoints, Sw.NOT_FOUND);
    apdu.requireLc(0);
    const points = apdu.p1 === PurseP1.POINTS;
    this.sessionKind.value = Session.PURCHASE;
    this.sessionP1.value = apdu.p1;
    return encodeStartupData({
      alg: this.alg,
      keyVersion: this.params.keys.purchase.version,
      cardId: this.cardId,
      expiry: this.expiryString,
      balance: points ? this.pointsBalance.get() : this.balance.get(),
      currency: points ? this.params.points!.programme : this.currency.get(),
      exponent: points ? 0 : this.exponent.get(),
      authMode: this.authMode,
      counter: this.counter.get(),
      status: this.status.get(),
    });
  }

  // ---------------------------------------------------------------------------------------------
  // DEBIT: 80 54 P1 00 2A <data> 00

  private debit(apdu: ApduContext, session: PendingSession): Uint8Array {
    const txType = apdu.p1;
    apdu.check((txType === TxType.PURCHASE || txType === TxType.AUTHENTICATION || txType === TxType.POINTS_DEBIT) && apdu.p2 === 0, Sw.WRONG_P1P2);
    const points = txType === TxType.POINTS_DEBIT;
    // 1. a PURCHASE session of the right purse (already consumed)
    apdu.check(session.kind === Session.PURCHASE && session.p1 === (points ? PurseP1.POINTS : PurseP1.MONEY), Sw.CONDITIONS_NOT_SATISFIED);
    // 2. length and encodings
    apdu.requireLc(42);
    const cmd = decodeOr6A80(() => decodeDebitCommand(apdu.data));
    // 3. S2 over the card's own ALG, KVER_P, CID and CTR
    const counter = this.counter.get();
    const keyVersion = this.params.keys.purchase.version;
    const s2Fields = {
      txType,
      alg: this.alg,
      keyVersion,
      cardId: this.cardId,
      counter,
      psamId: cmd.psamId,
      psamTxn: cmd.psamTxn,
      amount: cmd.amount,
      currency: cmd.currency,
      exponent: cmd.exponent,
      date: cmd.date,
      time: cmd.time,
      location: cmd.location,
    };
    apdu.check(verifyPurchaseS2(this.purchaseKey, s2Fields, cmd.s2), Sw.SECURITY_NOT_SATISFIED);
    // 4. blocked
    apdu.check(!this.blocked, Sw.PURSE_BLOCKED);
    // 5. amount rules
    const amountOk =
      txType === TxType.AUTHENTICATION ? cmd.amount === 0 && cmd.currency === AUTH_CURRENCY && cmd.exponent === 0 : cmd.amount >= 1;
    apdu.check(amountOk, Sw.AMOUNT_INVALID);
    // 6. currency
    if (txType === TxType.PURCHASE) apdu.check(cmd.currency === this.currency.get() && cmd.exponent === this.exponent.get(), Sw.CURRENCY_MISMATCH);
    if (points) apdu.check(cmd.currency === this.params.points!.programme && cmd.exponent === 0, Sw.CURRENCY_MISMATCH);
    // 7. expiry, by the authenticated DATE
    apdu.check(dateNumber(cmd.date) <= this.expiry.get(), Sw.CARD_EXPIRED);
    // 8. PIN
    const authMode = this.authMode;
    apdu.check((authMode & AuthMode.PIN_REQUIRED) === 0 || (authMode & AuthMode.PIN_VERIFIED) !== 0, Sw.PIN_REQUIRED);
    // 9. value
    const purse = points ? this.pointsBalance : this.balance;
    const before = purse.get();
    apdu.check(cmd.amount <= before, Sw.INSUFFICIENT_VALUE);
    // 10. counter
    apdu.check(counter < U32_MAX, Sw.COUNTER_EXHAUSTED);
    // 11. commit: value and counter in one transaction
    const newCounter = counter + 1;
    const newBalance = before - cmd.amount;
    this.system.atomically(() => {
      if (txType !== TxType.AUTHENTICATION) purse.set(newBalance);
      this.counter.set(newCounter);
    });
    // 12. S3
    const s3 = purchaseS3(this.purchaseKey, {
      txType,
      alg: this.alg,
      keyVersion,
      cardId: this.cardId,
      newCounter,
      psamId: cmd.psamId,
      psamTxn: cmd.psamTxn,
      amount: cmd.amount,
      currency: cmd.currency,
      exponent: cmd.exponent,
      result: PurchaseResult.DEBITED,
      cvr: authMode,
    });
    return encodeDebitResponse({ newCounter, newBalance, cvr: authMode, s3 });
  }

  // ---------------------------------------------------------------------------------------------
  // INITIALIZE FOR LOAD: 80 40 P1 P2 16 <data> 00

  private initializeForLoad(apdu: ApduContext): Uint8Array {
    const { p1, p2 } = apdu;
    apdu.check((p1 === PurseP1.MONEY || p1 === PurseP1.POINTS) && (p2 === LoadP2.LOAD || p2 === LoadP2.ENQUIRY), Sw.WRONG_P1P2);
    apdu.check(p1 !== PurseP1.POINTS || this.hasPoints, Sw.NOT_FOUND);
    const points = p1 === PurseP1.POINTS;
    const enquiry = p2 === LoadP2.ENQUIRY;
    // 1. length and encodings
    apdu.requireLc(INIT_LOAD_LENGTH);
    const cmd = decodeOr6A80(() => decodeInitLoadCommand(apdu.data));
    // 2. blocked (a load only; an enquiry is answered)
    apdu.check(enquiry || !this.blocked, Sw.PURSE_BLOCKED);
    // 3. currency
    const currency = points ? this.params.points!.programme : this.currency.get();
    const exponent = points ? 0 : this.exponent.get();
    apdu.check(cmd.currency === currency && cmd.exponent === exponent, Sw.CURRENCY_MISMATCH);
    // 4. amount
    apdu.check(enquiry ? cmd.amount === 0 : cmd.amount !== 0, Sw.AMOUNT_INVALID);
    // 5. a load only: expiry, maximum balance, counter
    const balance = points ? this.pointsBalance.get() : this.balance.get();
    const maxBalance = points ? this.params.points!.max : this.maxBalance.get();
    const counter = this.counter.get();
    if (!enquiry) {
      apdu.check(dateNumber(cmd.date) <= this.expiry.get(), Sw.CARD_EXPIRED);
      apdu.check(balance + cmd.amount <= maxBalance, Sw.MAX_BALANCE_EXCEEDED);
      apdu.check(counter < U32_MAX, Sw.COUNTER_EXHAUSTED);
    }
    // 6. fresh CRND; the new LOAD session replaces any earlier one
    const cardChallenge = this.system.random(CHALLENGE_LENGTH);
    this.sessionKind.value = Session.LOAD;
    this.sessionP1.value = p1;
    this.sessionP2.value = p2;
    this.sessionData.set(apdu.data);
    this.sessionRandom.set(cardChallenge);
    // 7. S1; nothing persistent changes
    const lastLoadTxnId = this.lastLoadTxnId.get();
    const lastLoadCounter = this.lastLoadCounter.get();
    const lastLoadAmount = this.lastLoadAmount.get();
    const keyVersion = this.params.keys.load.version;
    const expiry = this.expiryString;
    const s1 = loadS1(this.loadKey, {
      loadType: (points ? LoadType.POINTS_LOAD : LoadType.LOAD) | (enquiry ? 0x80 : 0),
      alg: this.alg,
      keyVersion,
      cardId: this.cardId,
      counter,
      amount: cmd.amount,
      currency,
      exponent,
      balance,
      maxBalance,
      expiry,
      date: cmd.date,
      time: cmd.time,
      loadTxnId: cmd.loadTxnId,
      cardChallenge,
      lastLoadTxnId,
      lastLoadCounter,
      lastLoadAmount,
    });
    return encodeInitLoadResponse({
      cardId: this.cardId,
      alg: this.alg,
      keyVersion,
      counter,
      balance,
      maxBalance,
      currency,
      exponent,
      expiry,
      cardChallenge,
      lastLoadTxnId,
      lastLoadCounter,
      lastLoadAmount,
      s1,
    });
  }

  // ---------------------------------------------------------------------------------------------
  // CREDIT FOR LOAD: 80 42 P1 00 08 <S2> 00

  private creditForLoad(apdu: ApduContext, session: PendingSession): Uint8Array {
    const p1 = apdu.p1;
    apdu.check((p1 === PurseP1.MONEY || p1 === PurseP1.POINTS) && apdu.p2 === 0, Sw.WRONG_P1P2);
    // 1. a LOAD session (not an enquiry) for this purse, consumed now
    apdu.check(session.kind === Session.LOAD && session.p1 === p1 && session.p2 === LoadP2.LOAD, Sw.CONDITIONS_NOT_SATISFIED);
    // 2. length
    apdu.requireLc(8);
    const s2 = apdu.data;
    const points = p1 === PurseP1.POINTS;
    // The session's INITIALIZE FOR LOAD fields (validated when they were taken).
    const cmd: InitLoadCommand = decodeInitLoadCommand(session.data);
    const s2Fields: LoadS2Fields = {
      loadType: points ? LoadType.POINTS_LOAD : LoadType.LOAD,
      alg: this.alg,
      keyVersion: this.params.keys.load.version,
      cardId: this.cardId,
      counter: this.counter.get(),
      amount: cmd.amount,
      currency: cmd.currency,
      exponent: cmd.exponent,
      date: cmd.date,
      time: cmd.time,
      loadTxnId: cmd.loadTxnId,
      cardChallenge: session.random,
    };
    // 3. the result code: the first that applies
    const purse = points ? this.pointsBalance : this.balance;
    const maxBalance = points ? this.params.points!.max : this.maxBalance.get();
    const counter = this.counter.get();
    const before = purse.get();
    let result: number = LoadResult.CREDITED;
    if (!verifyLoadS2(this.loadKey, s2Fields, s2)) result = LoadResult.S2_INVALID;
    else if (this.blocked) result = LoadResult.PURSE_BLOCKED;
    else if (dateNumber(cmd.date) > this.expiry.get()) result = LoadResult.CARD_EXPIRED;
    else if (before + cmd.amount > maxBalance) result = LoadResult.MAX_BALANCE_EXCEEDED;
    // 4. credit: value, counter and last-load record in one transaction
    let newCounter = counter;
    let newBalance = before;
    if (result === LoadResult.CREDITED) {
      // INITIALIZE FOR LOAD refused an exhausted counter and nothing can move it within the session.
      apdu.check(counter < U32_MAX, Sw.COUNTER_EXHAUSTED);
      newCounter = counter + 1;
      newBalance = before + cmd.amount;
      this.system.atomically(() => {
        purse.set(newBalance);
        this.counter.set(newCounter);
        this.lastLoadTxnId.set(cmd.loadTxnId);
        this.lastLoadCounter.set(newCounter);
        this.lastLoadAmount.set(cmd.amount);
      });
    }
    // 5. S3 over the outcome, for every result code
    const s3 = loadS3(this.loadKey, loadS3FieldsFor(s2Fields, result, newCounter, newBalance));
    return encodeCreditResponse({ result, newCounter, newBalance, s3 });
  }

  // ---------------------------------------------------------------------------------------------
  // GET CHALLENGE: 00 84 00 00 08

  private getChallenge(apdu: ApduContext): Uint8Array {
    apdu.requireP1P2(0, 0);
    apdu.check(apdu.lc === 0 && apdu.le === CHALLENGE_LENGTH, Sw.WRONG_LENGTH);
    const rnd = this.system.random(CHALLENGE_LENGTH);
    this.sessionKind.value = Session.CHALLENGE;
    this.sessionRandom.set(rnd);
    return rnd;
  }

  // ---------------------------------------------------------------------------------------------
  // UPDATE PARAMETERS: 80 58 00 00 14 <data>

  private updateParameters(apdu: ApduContext, session: PendingSession): void {
    apdu.requireP1P2(0, 0);
    // 1. directly after GET CHALLENGE; the challenge is consumed now
    apdu.check(session.kind === Session.CHALLENGE, Sw.CONDITIONS_NOT_SATISFIED);
    const challenge = session.random;
    // 2. length and encodings
    apdu.requireLc(20);
    const cmd = decodeOr6A80(() => decodeUpdateCommand(apdu.data));
    // 3. MAC under the update key
    const ok = verifyUpdateParametersMac(
      this.updateKey,
      {
        alg: this.alg,
        keyVersion: this.params.keys.update.version,
        cardId: this.cardId,
        counter: this.counter.get(),
        challenge,
        flags: cmd.flags,
        maxBalance: cmd.maxBalance,
        expiry: cmd.expiry,
        currency: cmd.currency,
        exponent: cmd.exponent,
      },
      cmd.mac,
    );
    apdu.check(ok, Sw.SECURITY_NOT_SATISFIED);
    // 4. values
    const f = cmd.flags;
    const balance = this.balance.get();
    apdu.check((f & ~UPDATE_FLAGS_MASK) === 0, Sw.WRONG_DATA);
    apdu.check((f & (UpdateFlags.BLOCK_PURSE | UpdateFlags.UNBLOCK_PURSE)) !== (UpdateFlags.BLOCK_PURSE | UpdateFlags.UNBLOCK_PURSE), Sw.WRONG_DATA);
    apdu.check((f & UpdateFlags.SET_MAX_BALANCE) === 0 || cmd.maxBalance >= balance, Sw.WRONG_DATA);
    // 5. currency change only with an empty purse
    apdu.check((f & UpdateFlags.SET_CURRENCY) === 0 || balance === 0, Sw.CONDITIONS_NOT_SATISFIED);
    // 6. apply, in one transaction
    this.system.atomically(() => {
      if (f & UpdateFlags.SET_MAX_BALANCE) this.maxBalance.set(cmd.maxBalance);
      if (f & UpdateFlags.SET_EXPIRY) this.expiry.set(dateNumber(cmd.expiry));
      if (f & UpdateFlags.SET_CURRENCY) {
        this.currency.set(cmd.currency);
        this.exponent.set(cmd.exponent);
      }
      if (f & UpdateFlags.RESET_PIN_TRY_COUNTER && this.params.pin) this.pinTriesLeft.set(this.params.pin.tryLimit);
      if (f & UpdateFlags.BLOCK_PURSE) this.status.set(PurseStatus.BLOCKED);
      if (f & UpdateFlags.UNBLOCK_PURSE) this.status.set(PurseStatus.ACTIVE);
    });
  }

  // ---------------------------------------------------------------------------------------------
  // VERIFY: 00 20 00 80 08 <PIN block>

  private verify(apdu: ApduContext): void {
    apdu.requireP1P2(0, PIN_REFERENCE);
    const pin = this.params.pin;
    // 1. no PIN on this card
    apdu.check(pin !== undefined && this.pinBlock !== undefined, Sw.NOT_FOUND);
    const tries = this.pinTriesLeft.get();
    // 2. case 1: the PIN status
    if (apdu.lc === 0 && apdu.le === undefined) {
      if (this.pinVerified.value === 1) return;
      apdu.check(tries > 0, Sw.PIN_BLOCKED);
      apdu.status(pinWrongSw(tries));
      return;
    }
    // 3. length and format
    apdu.requireLc(PIN_BLOCK_LENGTH);
    const candidate = decodeOr6A80(() => encodePinBlock(decodePinBlock(apdu.data)));
    // 4. blocked
    apdu.check(tries > 0, Sw.PIN_BLOCKED);
    // 5. decrement first (a power cut during the comparison costs a try), then compare
    this.pinVerified.value = 0;
    this.pinTriesLeft.set(tries - 1);
    if (macEquals(candidate, this.pinBlock)) {
      this.pinTriesLeft.set(pin.tryLimit);
      this.pinVerified.value = 1;
      return;
    }
    apdu.status(pinWrongSw(tries - 1));
  }
}
