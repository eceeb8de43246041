// The messages of an Internet purchase (seed 003 FIGS. 5-9 and 16) between the merchant server, the client
// terminal (or OPAL, which runs the same client code), and the payment server: the contract all three
// programs are written against. Bytes travel as hex strings; amounts are integers in minor units.
//
// Keys (src/protocol/keys.ts): every merchant shares a key with its payment server (key 402); each
// transaction uses derived = deriveTransactionKey(key402, merchantId, txnId). With the encryption layer of
// FIG. 9 the merchant also makes a TSK for the client and the payment server and puts TSK and ETSK on its
// payment page. Envelopes and MACs: src/protocol/envelope.ts, with the labels below.
//
// Flow (variant per merchant, in the payment server's configuration):
//   merchant --PaymentPage--> client          the order, MACed by the merchant under the derived key
//   client   --DrawRequest--> payment server  order ticket + the card's ATR and start-up data
//   payment  --DrawResponse--> client         the DEBIT command data with S2 (PSAM), per variant extras
//   client   --DEBIT--> card, --DebitResponseRequest--> payment server (not for 'trusted-agent')
//   payment  --DebitResultResponse--> client  Debit Result C (for the client), Debit Result M (sealed, merchant)
//   client   --MerchantStatusRequest--> merchant status URL; the merchant releases the goods only on a valid result

import type { Envelope } from './envelope.ts';

/** FIG. 5 standard, FIG. 6 early release, FIG. 7 fewer round trips (trusted agent compares), FIG. 8 merchant compares. */
export type PaymentVariant = 'standard' | 'early-release' | 'trusted-agent' | 'merchant-compare';
export const PAYMENT_VARIANTS: readonly PaymentVariant[] = ['standard', 'early-release', 'trusted-agent', 'merchant-compare'];

/** 'authentication' is FIG. 16: amount 0, no payment record; 'points' debits the loyalty purse. */
export type OrderKind = 'purchase' | 'authentication' | 'points';

/** MAC / envelope labels: one per message type, so nothing is accepted as another type. */
export const Label = {
  ORDER: 'purselab/order',
  DRAW_REQUEST: 'purselab/draw-request',
  DEBIT_IEP: 'purselab/debit-iep',
  DEBIT_RESPONSE: 'purselab/debit-response',
  DEBIT_RESULT_C: 'purselab/debit-result-c',
  DEBIT_RESULT_M: 'purselab/debit-result-m',
  EXPECTED_S3: 'purselab/expected-s3',
  DEBIT_AUTHORISATION: 'purselab/debit-authorisation',
  RECREDIT_CLAIM: 'purselab/recredit-claim',
} as const;

/** What the merchant sells in one transaction. MACed as a whole (OrderTicket). */
export interface Order {
  readonly merchantId: string;
  /** Unique per merchant; the payment server refuses a second draw request with the same one. */
  readonly txnId: string;
  readonly kind: OrderKind;
  /** Minor units (points for 'points'); 0 for 'authentication'. */
  readonly amount: number;
  /** ISO 4217 numeric (or the points programme); the AUTH currency for 'authentication'. */
  readonly currency: number;
  readonly exponent: number;
  /** ISO 8601; the payment server refuses an order past expiresAt. */
  readonly issuedAt: string;
  readonly expiresAt: string;
  /** Shown to the cardholder (catalogue lines, shop name). Not used in any decision. */
  readonly description?: string;
}

/** The order with the merchant's MAC (macOf(derived, Label.ORDER, order)): the amount the card is debited. */
export interface OrderTicket {
  readonly order: Order;
  readonly mac: string;
}

/** The patent's HTML page parameters (step 606 / 808), served by the merchant as JSON beside the HTML. */
export interface PaymentPage {
  readonly ticket: OrderTicket;
  /** Base URL of the payment server (its "port and IP address"). */
  readonly paymentServer: string;
  /** Where the client posts the result (MerchantStatusRequest). */
  readonly statusUrl: string;
  /** FIG. 9 only: the session key for the client (hex, 16 bytes) and ETSK for the payment server. */
  readonly tsk?: string;
  readonly etsk?: string;
}

/** The card's answers the client collected (step 608): ATR and INITIALIZE FOR PURCHASE start-up data. */
export interface DrawBody {
  readonly ticket: OrderTicket;
  readonly card: { readonly atr: string; readonly startup: string };
  /** Client terminal id, for the logs. */
  readonly terminalId?: string;
}

/** POST {paymentServer}/v1/draw. Exactly one of draw / sealed (sealed = seal(TSK, DRAW_REQUEST, DrawBody)). */
export interface DrawRequest {
  readonly merchantId: string;
  readonly txnId: string;
  readonly draw?: DrawBody;
  readonly sealed?: Envelope;
  readonly etsk?: string;
}

/** Debit IEP (step 692): what the client sends to the card, and the variant's extras. */
export interface DebitIep {
  readonly paymentId: string;
  readonly variant: PaymentVariant;
  /** P2 of DEBIT (TxType) and the DEBIT command data (PSAM id, PSAM txn, amount, currency, exponent, date, time, location, S2). */
  readonly txType: number;
  readonly debitData: string;
  /** 'trusted-agent': the expected S3 the client compares with the card's S3. */
  readonly expectedS3?: string;
  /** 'trusted-agent': seal(derived, DEBIT_AUTHORISATION, DebitAuthorisation) for the merchant. */
  readonly authorisation?: Envelope;
  /** 'merchant-compare': seal(derived, EXPECTED_S3, ExpectedS3ForMerchant), opaque to the client. */
  readonly expectedS3ForMerchant?: Envelope;
}

/** Response of /v1/draw. Exactly one of debit / sealed (sealed = seal(TSK, DEBIT_IEP, DebitIep)). */
export interface DrawResponse {
  readonly paymentId: string;
  readonly debit?: DebitIep;
  readonly sealed?: Envelope;
}

/** What the card said to DEBIT: its response data (NEWCTR NEWBAL CVR S3) with SW 9000, or only the refusing SW. */
export interface CardDebitOutcome {
  readonly paymentId: string;
  readonly sw: string;
  readonly debitResponse?: string;
}

/** POST {paymentServer}/v1/debit-response. Exactly one of response / sealed (seal(TSK, DEBIT_RESPONSE, CardDebitOutcome)). Idempotent. */
export interface DebitResponseRequest {
  readonly paymentId: string;
  readonly response?: CardDebitOutcome;
  readonly sealed?: Envelope;
}

/** The result of a payment, as the payment server (or, per variant, the merchant) states it. */
export interface DebitResultPayload {
  readonly type: 'debit-result' | 'authentication-result';
  readonly paymentId: string;
  readonly merchantId: string;
  readonly txnId: string;
  readonly status: 'approved' | 'declined';
  /** A code when declined: INSUFFICIENT_FUNDS, CARD_EXPIRED, S3_INVALID, CARD_REFUSED ... */
  readonly reason?: string;
  readonly kind: OrderKind;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  /** Masked (first 6, last 4). */
  readonly card: string;
  readonly cardCounter: number;
  readonly psamId: string;
  readonly psamTxn: number;
  /** Who proved the debit: the PSAM (VERIFY S3) or the payment server's comparison with the expected S3. */
  readonly verifiedBy: 'psam' | 'payment-server';
  readonly completedAt: string;
}

/** Response of /v1/debit-response. resultM = seal(derived, DEBIT_RESULT_M, DebitResultPayload), for the merchant. */
export interface DebitResultResponse {
  readonly paymentId: string;
  readonly status: 'approved' | 'declined';
  /** Debit Result C: plain, or resultCSealed = seal(TSK, DEBIT_RESULT_C, DebitResultPayload) with FIG. 9. */
  readonly resultC?: DebitResultPayload;
  readonly resultCSealed?: Envelope;
  readonly resultM: Envelope;
}

/** 'trusted-agent': the payment server's commitment to the expected S3; the merchant accepts the card's S3 if sha256(S3) matches. */
export interface DebitAuthorisation extends Omit<DebitResultPayload, 'verifiedBy' | 'status' | 'cardCounter'> {
  readonly s3Sha256: string;
}

/** 'merchant-compare': the expected S3 for the merchant's own comparison (FIG. 8 routine 366). */
export interface ExpectedS3ForMerchant {
  readonly paymentId: string;
  readonly merchantId: string;
  readonly txnId: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly expectedS3: string;
}

/** POST {statusUrl}: what the client relays to the merchant, per variant. */
export interface MerchantStatusRequest {
  readonly txnId: string;
  readonly paymentId: string;
  /** standard, early-release (and all variants with FIG. 9): the sealed Debit Result M. */
  readonly resultM?: Envelope;
  /** trusted-agent and merchant-compare: the card's S3 (hex) and its DEBIT response data. */
  readonly s3?: string;
  readonly debitResponse?: string;
  readonly authorisation?: Envelope;
  readonly expectedS3ForMerchant?: Envelope;
}

/** The merchant's answer: goods released (or not) for this order. */
export interface MerchantStatusResponse {
  readonly txnId: string;
  readonly released: boolean;
  readonly status: 'paid' | 'authenticated' | 'declined' | 'pending';
  /** The goods (a download token or receipt text) when released. */
  readonly goods?: string;
  readonly message: string;
}

/**
 * A card debited without a Debit Result reaching the merchant (payment server recovery report), to be credited
 * back by the issuer: seal(issuerLinkKey, RECREDIT_CLAIM, RecreditClaim), where issuerLinkKey is the key the
 * payment server shares with the issuer's load server. Executed once per paymentId, logged apart from loads.
 */
export interface RecreditClaim {
  readonly paymentId: string;
  readonly merchantId: string;
  readonly txnId: string;
  /** The full card id: the claim is only ever carried sealed. */
  readonly cardId: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly cardCounter: number;
  readonly psamId: string;
  readonly psamTxn: number;
  readonly reason: string;
  readonly issuedAt: string;
}

/**
 * POST {paymentServer}/v1/confirm: the card's DEBIT response, posted after the fact for 'trusted-agent' and
 * 'merchant-compare' (where the client or merchant compared S3 itself) so the payment server confirms the PSAM
 * record and books the payment. `s3`, when given, must equal the S3 inside `debitResponse`. Answer: a
 * DebitResultResponse (idempotent, like /v1/debit-response).
 */
export interface ConfirmRequest {
  readonly paymentId: string;
  readonly debitResponse: string;
  readonly s3?: string;
}

/** POST {paymentServer}/v1/abort: the cardholder cancelled, or the card refused before DEBIT; the payment fails. */
export interface AbortRequest {
  readonly paymentId: string;
  /** Short printable reason for the log (e.g. 'cancelled', 'card-refused 9402'). */
  readonly reason?: string;
}

export interface AbortResponse {
  readonly paymentId: string;
  readonly state: 'failed';
  readonly reason: string;
}
