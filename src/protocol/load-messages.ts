// The messages of an Internet load (seed 003 FIGS. 17-18, steps 871-899, and the negative-result handling)
// between the bank server, the client (or OPAL, which runs the same client code) and the issuer's load server:
// the contract all three programs are written against. Bytes travel as hex strings; amounts are integers in
// minor units; dates YYYYMMDD and times HHMMSS as the card takes them.
//
// Keys (src/protocol/keys.ts): the bank shares a key with the load server (the load side's key 402); each load
// uses derived = deriveTransactionKey(bankKey, bankId, txnId). The bank MACs the load authorisation under it
// (the load server then knows amount, currency and time stamp are the bank's), hands the client a fresh
// session key and the session key wrapped under the derived key; client and load server MAC the Load Request
// and the Credit IEP under the session key. The Load Result is sealed for the bank under the derived key, so
// neither the client nor anyone else can forge or redirect it.
//
// Flow:
//   client --POST bank /v1/login, /v1/loads/quote--> bank            card balance, currency, maximum -> max load
//   client --POST bank /v1/loads--> bank                              hold placed -> LoadPage (the applet params)
//   client: INITIALIZE FOR LOAD (LTXID = txnId) -> S1
//   client --POST load /v1/loads (LoadRequestMessage)--> load server  S1 verified in the HSM -> CreditIep (S2)
//   client: CREDIT FOR LOAD(S2) -> result, S3
//   client --POST load /v1/loads/:txnId/response (CardLoadResponse)--> load server   S3 verified -> Load Result
//   negative result / lost answer: INITIALIZE FOR LOAD P2=01 with the enquiry challenge -> new S1
//   client --POST load /v1/loads/:txnId/recovery (ZeroValueLoadRequest)--> load server  -> Load Result
//   client --POST bank statusUrl (LoadStatusRequest)--> bank          capture on 'loaded', release on 'not-loaded'
//   bank   --POST load /v1/bank/loads/:txnId/status--> load server    (sweep/cancel) final result, or abort if no S2 yet

import type { LoadS1Fields } from '../crypto/purse-mac.ts';
import type { Envelope } from './envelope.ts';

/** MAC / envelope labels: one per message type, so nothing is accepted as another type. */
export const LoadLabel = {
  LOAD_AUTHORISATION: 'purselab/load-authorisation',
  LOAD_REQUEST: 'purselab/load-request',
  CREDIT_IEP: 'purselab/credit-iep',
  LOAD_RESULT: 'purselab/load-result',
  LOAD_STATUS_QUERY: 'purselab/load-status-query',
} as const;

/** What the bank authorises for one load (MACed as a whole in the LoadTicket). */
export interface LoadAuthorisation {
  readonly bankId: string;
  /** 16 hex digits: the card's LTXID, unique per load, chosen unpredictably by the bank. */
  readonly txnId: string;
  /** Minor units; equal to the hold on the account. */
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  /** The bank server time stamp: DATE and TIME of the card's load request. */
  readonly date: string;
  readonly time: string;
  /** Where the client posts the Load Result. */
  readonly statusUrl: string;
  /** ISO 8601; the load server refuses the ticket after it. */
  readonly expiresAt: string;
}

/** The authorisation with the bank's MAC: macOf(derived, LOAD_AUTHORISATION, authorisation). */
export interface LoadTicket {
  readonly authorisation: LoadAuthorisation;
  readonly mac: string;
}

/** The card facts the bank asks for (step 872): it computes the maximum load from them. */
export interface CardFacts {
  readonly balance: number;
  readonly maxBalance: number;
  readonly currency: number;
  readonly exponent: number;
  /** Masked card number, for the bank's screen and logs. */
  readonly card: string;
}

/** POST {bank}/v1/loads/quote: the load screen (step 873). */
export interface LoadQuote {
  /** Masked funding account number and its expiry (MM/YY). */
  readonly account: string;
  readonly accountExpiry: string;
  readonly available: number;
  readonly currentBalance: number;
  /** maxBalance - balance, and never more than the funds available. */
  readonly maxLoad: number;
  readonly currency: number;
  readonly exponent: number;
}

/** The client applet parameters of step 875 (seed 003: load value, currency, load server, txn id, bank id, session key). */
export interface LoadPage {
  readonly ticket: LoadTicket;
  /** Base URL of the load server ("port and IP address"). */
  readonly loadServer: string;
  /** The session key for the client (hex, 16 bytes) and the same key wrapped under the derived key, for the load server. */
  readonly sessionKey: string;
  readonly eSessionKey: string;
  readonly account: string;
  readonly accountExpiry: string;
}

/**
 * The Load Request of seed 003 (L605): S1, card number, expiry, amount, algorithm, counter, balance, bank time
 * stamp - plus every other field the card's S1 covers, so the issuer HSM can verify it.
 */
export interface LoadRequestBody {
  readonly loadType: number;
  readonly alg: number;
  readonly keyVersion: number;
  readonly cardId: string;
  readonly counter: number;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly balance: number;
  readonly maxBalance: number;
  readonly expiry: string;
  readonly date: string;
  readonly time: string;
  readonly loadTxnId: string;
  readonly cardChallenge: string;
  readonly lastLoadTxnId: string;
  readonly lastLoadCounter: number;
  readonly lastLoadAmount: number;
  readonly s1: string;
}

/** POST {loadServer}/v1/loads. mac = macOf(sessionKey, LOAD_REQUEST, request). */
export interface LoadRequestMessage {
  readonly ticket: LoadTicket;
  readonly eSessionKey: string;
  readonly request: LoadRequestBody;
  readonly mac: string;
}

/** The Credit IEP (Load command, step 880): S2 for CREDIT FOR LOAD, and the challenge of a later zero-value enquiry. */
export interface CreditIep {
  readonly txnId: string;
  readonly s2: string;
  /** 16 hex digits: the LTXID of the zero-value Load Request if the load has to be recovered. */
  readonly enquiryTxnId: string;
}

/** Response of /v1/loads: mac = macOf(sessionKey, CREDIT_IEP, creditIep). */
export interface CreditIepMessage {
  readonly creditIep: CreditIep;
  readonly mac: string;
}

/** POST {loadServer}/v1/loads/:txnId/response: the card's Load Response (step 883). */
export interface CardLoadResponse {
  readonly result: number;
  readonly newCounter: number;
  readonly newBalance: number;
  readonly s3: string;
}

/**
 * POST {loadServer}/v1/loads/:txnId/recovery: the negative-result handling (L629-634). `original` repeats the
 * elements of the original request that the load server compares (counter, card, currency, exponent, date,
 * time); `zeroValue` is the card's answer to the zero-value INITIALIZE FOR LOAD (its new S1 over the card's
 * actual state); `result` and `s3` are the original negative Load Response when there was one (absent when
 * the answer to CREDIT FOR LOAD was lost).
 */
export interface ZeroValueLoadRequest {
  readonly original: {
    readonly cardId: string;
    readonly counter: number;
    readonly currency: number;
    readonly exponent: number;
    readonly date: string;
    readonly time: string;
  };
  readonly zeroValue: LoadRequestBody;
  readonly response?: CardLoadResponse;
}

export type LoadStatus = 'loaded' | 'not-loaded';

/** How the load server knows: S3 of a credit, S1 refused, the zero-value S1 (either way), or the bank aborted before S2. */
export type LoadBasis = 's3-verified' | 's1-refused' | 'zero-value-failed' | 'zero-value-credited' | 's3-rewritten' | 'aborted' | 'ticket-refused';

/** The Load Result (step 886/890), sealed for the bank: seal(derived, LOAD_RESULT, LoadResultPayload). */
export interface LoadResultPayload {
  readonly bankId: string;
  readonly txnId: string;
  readonly status: LoadStatus;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  /** Masked card number ('' when the load never reached a card). */
  readonly card: string;
  /** The card's counter after the load (0 when unknown). */
  readonly cardCounter: number;
  /** The card's result code (00 credited ...), or -1 when there was none. */
  readonly resultCode: number;
  readonly basis: LoadBasis;
  readonly completedAt: string;
}

/** What the load server answers once a load is final. */
export interface LoadOutcomeMessage {
  readonly txnId: string;
  readonly status: LoadStatus;
  readonly basis: LoadBasis;
  /** The sealed Load Result, to relay to the bank's status URL. */
  readonly loadResult: Envelope;
}

/** POST {statusUrl} (bank): the sealed Load Result relayed by the client. */
export interface LoadStatusRequest {
  readonly loadResult: Envelope;
}

export type HoldState = 'held' | 'captured' | 'released';

/** The bank's answer to a Load Result, and GET {bank}/v1/loads/:txnId. */
export interface HoldStatus {
  readonly txnId: string;
  readonly state: HoldState;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly loadServer: string;
  readonly reason?: string;
}

/**
 * POST {loadServer}/v1/bank/loads/:txnId/status, from the bank (cancel, timeout sweep):
 * mac = macOf(derived, LOAD_STATUS_QUERY, { bankId, txnId, amount, currency, exponent }). A load the load server
 * has not yet authorised with an S2 is aborted by this query (no S2 is ever issued for it afterwards).
 */
export interface BankStatusQuery {
  readonly bankId: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly mac: string;
}

/** The MACed part of a BankStatusQuery. */
export const statusQueryPayload = (txnId: string, q: Omit<BankStatusQuery, 'mac'>) => ({ bankId: q.bankId, txnId, amount: q.amount, currency: q.currency, exponent: q.exponent });

/** The load server's answer: a final sealed result, or 'pending' (S2 issued, outcome not yet known: keep the hold). */
export type BankStatusAnswer = { readonly state: 'final'; readonly loadResult: Envelope } | { readonly state: 'pending' };

/** GET {loadServer}/v1/loads/:txnId: what a client needs to resume (recover) an unfinished load. Never the full card number. */
export interface LoadProgress {
  readonly txnId: string;
  readonly state: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly date: string;
  readonly time: string;
  readonly counter: number;
  readonly card: string;
  readonly enquiryTxnId?: string;
  readonly statusUrl: string;
}

// ---------------------------------------------------------------------------------------------
// Load Request <-> the S1 fields of src/crypto/purse-mac.ts (one conversion, used by client and server)

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex').toUpperCase();

/** The Load Request body for an S1 and the fields it covers (what INITIALIZE FOR LOAD gave the client). */
export function loadRequestBody(f: LoadS1Fields, s1: Uint8Array): LoadRequestBody {
  return {
    loadType: f.loadType,
    alg: f.alg,
    keyVersion: f.keyVersion,
    cardId: f.cardId,
    counter: f.counter,
    amount: f.amount,
    currency: f.currency,
    exponent: f.exponent,
    balance: f.balance,
    maxBalance: f.maxBalance,
    expiry: f.expiry,
    date: f.date,
    time: f.time,
    loadTxnId: hex(f.loadTxnId),
    cardChallenge: hex(f.cardChallenge),
    lastLoadTxnId: hex(f.lastLoadTxnId),
    lastLoadCounter: f.lastLoadCounter,
    lastLoadAmount: f.lastLoadAmount,
    s1: hex(s1),
  };
}

/** The S1 fields of a Load Request body (the HSM verifies body.s1 over them). */
export function s1FieldsOfBody(b: LoadRequestBody): LoadS1Fields {
  return {
    loadType: b.loadType,
    alg: b.alg,
    keyVersion: b.keyVersion,
    cardId: b.cardId,
    counter: b.counter,
    amount: b.amount,
    currency: b.currency,
    exponent: b.exponent,
    balance: b.balance,
    maxBalance: b.maxBalance,
    expiry: b.expiry,
    date: b.date,
    time: b.time,
    loadTxnId: Buffer.from(b.loadTxnId, 'hex'),
    cardChallenge: Buffer.from(b.cardChallenge, 'hex'),
    lastLoadTxnId: Buffer.from(b.lastLoadTxnId, 'hex'),
    lastLoadCounter: b.lastLoadCounter,
    lastLoadAmount: b.lastLoadAmount,
  };
}

// ---------------------------------------------------------------------------------------------
// JSON schemas (fastify routes: additionalProperties false everywhere)

const HEX16 = { type: 'string', pattern: '^[0-9a-fA-F]{16}$' } as const;
const U32 = { type: 'integer', minimum: 0, maximum: 0xffffffff } as const;
const U8 = { type: 'integer', minimum: 0, maximum: 255 } as const;
const DATE = { type: 'string', pattern: '^[0-9]{8}$' } as const;
const TIME = { type: 'string', pattern: '^[0-9]{6}$' } as const;
const CUR = { type: 'integer', minimum: 0, maximum: 9999 } as const;
const EXP = { type: 'integer', minimum: 0, maximum: 9 } as const;
const CARD_ID = { type: 'string', pattern: '^[0-9]{16}$' } as const;

export const TXN_ID_SCHEMA = HEX16;

export const LOAD_REQUEST_BODY_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['loadType', 'alg', 'keyVersion', 'cardId', 'counter', 'amount', 'currency', 'exponent', 'balance', 'maxBalance', 'expiry', 'date', 'time', 'loadTxnId', 'cardChallenge', 'lastLoadTxnId', 'lastLoadCounter', 'lastLoadAmount', 's1'],
  properties: {
    loadType: U8,
    alg: U8,
    keyVersion: U8,
    cardId: CARD_ID,
    counter: U32,
    amount: U32,
    currency: CUR,
    exponent: EXP,
    balance: U32,
    maxBalance: U32,
    expiry: DATE,
    date: DATE,
    time: TIME,
    loadTxnId: HEX16,
    cardChallenge: HEX16,
    lastLoadTxnId: HEX16,
    lastLoadCounter: U32,
    lastLoadAmount: U32,
    s1: HEX16,
  },
} as const;

export const LOAD_TICKET_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['authorisation', 'mac'],
  properties: {
    mac: HEX16,
    authorisation: {
      type: 'object',
      additionalProperties: false,
      required: ['bankId', 'txnId', 'amount', 'currency', 'exponent', 'date', 'time', 'statusUrl', 'expiresAt'],
      properties: {
        bankId: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,32}$' },
        txnId: HEX16,
        amount: { type: 'integer', minimum: 1, maximum: 0xffffffff },
        currency: CUR,
        exponent: EXP,
        date: DATE,
        time: TIME,
        statusUrl: { type: 'string', minLength: 1, maxLength: 512 },
        expiresAt: { type: 'string', minLength: 1, maxLength: 40 },
      },
    },
  },
} as const;

export const CARD_LOAD_RESPONSE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['result', 'newCounter', 'newBalance', 's3'],
  properties: { result: U8, newCounter: U32, newBalance: U32, s3: HEX16 },
} as const;

export const ZERO_VALUE_REQUEST_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['original', 'zeroValue'],
  properties: {
    original: {
      type: 'object',
      additionalProperties: false,
      required: ['cardId', 'counter', 'currency', 'exponent', 'date', 'time'],
      properties: { cardId: CARD_ID, counter: U32, currency: CUR, exponent: EXP, date: DATE, time: TIME },
    },
    zeroValue: LOAD_REQUEST_BODY_SCHEMA,
    response: CARD_LOAD_RESPONSE_SCHEMA,
  },
} as const;

// ---------------------------------------------------------------------------------------------
// Re-credit of a failed purchase (seed 003 L311): the payment server's RecreditClaim (payment-messages.ts,
// sealed with issuerLinkKey) is executed with the normal load commands, once per paymentId, apart from loads.
//   POST {loadServer}/v1/recredit { claim }                 -> RecreditTicket (the LTXID and time stamp)
//   POST {loadServer}/v1/recredit/:paymentId/s1 { request } -> CreditIep (S2; no session MAC: no bank here)
//   POST {loadServer}/v1/recredit/:paymentId/response       -> RecreditOutcome
//   POST {loadServer}/v1/recredit/:paymentId/recovery       -> RecreditOutcome (zero-value request)

export interface RecreditTicket {
  readonly paymentId: string;
  /** 16 hex digits: the LTXID of the re-credit's INITIALIZE FOR LOAD. */
  readonly recreditId: string;
  readonly state: 'claimed' | 's2-issued' | 'credited';
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly date: string;
  readonly time: string;
  /** Masked card number the claim is for. */
  readonly card: string;
  /** With s2-issued: the enquiry challenge of the zero-value request and the card counter of the S1. */
  readonly enquiryTxnId?: string;
  readonly counter?: number;
}

export interface RecreditOutcome {
  readonly paymentId: string;
  readonly txnId: string;
  readonly status: LoadStatus;
  readonly basis: LoadBasis;
}
