// A stand-in payment server for the client and merchant unit tests, written against the contract
// (src/protocol/payment-messages.ts) with one in-process PSAM: /v1/draw, /v1/debit-response, /v1/confirm,
// /v1/abort. It is not the payment server (src/server/payment): no pool, no store, no recovery. It can also
// misbehave on purpose (`tamper`) to test that the client never lets the card be debited another amount.

import { createHash } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { decodeDebitResponse, decodeStartupData } from '../../../src/crypto/purse-apdu.ts';
import { AUTH_CURRENCY, TxType } from '../../../src/crypto/purse-mac.ts';
import { open, seal, verifyMacOf } from '../../../src/protocol/envelope.ts';
import { deriveTransactionKey, unwrapSessionKey } from '../../../src/protocol/keys.ts';
import { Label, type DebitIep, type DebitResultPayload, type DrawBody, type DrawRequest, type Order, type PaymentVariant } from '../../../src/protocol/payment-messages.ts';
import { createServerApp, forbidden, HttpError, listen, notFound } from '../../../src/server/app.ts';
import { maskCardId } from '../../../src/terminal/amount.ts';
import { CardStatusError } from '../../../src/terminal/errors.ts';
import { dateTimeOf, locationBytes } from '../../../src/terminal/purchase.ts';
import { psamInitializePurchase, psamVerifyS3, selectPsam } from '../../../src/terminal/psam.ts';
import type { CardChannel } from '../../../src/transport/channel.ts';

export interface StubMerchant {
  readonly id: string;
  readonly sharedKey: Buffer;
  readonly variant: PaymentVariant;
  readonly encrypted: boolean;
}

interface Payment {
  id: string;
  merchant: StubMerchant;
  order: Order;
  derived: Buffer;
  tsk: Buffer | undefined;
  cardId: string;
  counter: number;
  psamId: string;
  psamTxn: number;
  state: 'drawn' | 'approved' | 'declined' | 'aborted';
  result?: unknown;
}

export interface StubPaymentServer {
  readonly url: string;
  readonly payments: Map<string, Payment>;
  readonly calls: string[];
  /** Make the next draws ask the PSAM for another amount than the order's (a compromised server / MITM). */
  tamper: { amountDelta: number };
  close(): Promise<void>;
}

const KIND_TX = { purchase: TxType.PURCHASE, authentication: TxType.AUTHENTICATION, points: TxType.POINTS_DEBIT } as const;

export async function startStubPaymentServer(merchants: StubMerchant[], psam: CardChannel): Promise<StubPaymentServer> {
  const app: FastifyInstance = createServerApp({ name: 'stub-payment', logLevel: false });
  const payments = new Map<string, Payment>();
  const txns = new Set<string>();
  const calls: string[] = [];
  const stub = { tamper: { amountDelta: 0 } };
  let next = 1;

  const result = (p: Payment, status: 'approved' | 'declined', reason?: string) => {
    const payload: DebitResultPayload = {
      type: p.order.kind === 'authentication' ? 'authentication-result' : 'debit-result',
      paymentId: p.id,
      merchantId: p.merchant.id,
      txnId: p.order.txnId,
      status,
      ...(reason ? { reason } : {}),
      kind: p.order.kind,
      amount: p.order.amount,
      currency: p.order.currency,
      exponent: p.order.exponent,
      card: maskCardId(p.cardId),
      cardCounter: p.counter + 1,
      psamId: p.psamId,
      psamTxn: p.psamTxn,
      verifiedBy: 'psam',
      completedAt: new Date().toISOString(),
    };
    p.state = status;
    const resultM = seal(p.derived, Label.DEBIT_RESULT_M, payload);
    p.result = p.tsk ? { paymentId: p.id, status, resultCSealed: seal(p.tsk, Label.DEBIT_RESULT_C, payload), resultM } : { paymentId: p.id, status, resultC: payload, resultM };
    return p.result;
  };

  const verify = async (p: Payment, debitResponseHex: string) => {
    if (p.result) return p.result;
    const dr = decodeDebitResponse(Buffer.from(debitResponseHex, 'hex'));
    try {
      await psamVerifyS3(psam, { psamTxn: p.psamTxn, newCounter: dr.newCounter, cvr: dr.cvr, s3: dr.s3 });
      return result(p, 'approved');
    } catch (e) {
      if (e instanceof CardStatusError) return result(p, 'declined', 'S3_INVALID');
      throw e;
    }
  };

  const payment = (id: string): Payment => {
    const p = payments.get(id);
    if (!p) throw notFound('NO_SUCH_PAYMENT', `no payment ${id}`);
    return p;
  };

  app.post<{ Body: DrawRequest }>('/v1/draw', async (req) => {
    calls.push('draw');
    const d = req.body;
    const m = merchants.find((x) => x.id === d.merchantId);
    if (!m) throw forbidden('UNKNOWN_MERCHANT', `unknown merchant ${d.merchantId}`);
    const derived = deriveTransactionKey(m.sharedKey, m.id, d.txnId);
    let tsk: Buffer | undefined;
    let body: DrawBody;
    if (d.sealed) {
      tsk = unwrapSessionKey(derived, Buffer.from(d.etsk!, 'hex'));
      body = open(tsk, Label.DRAW_REQUEST, d.sealed) as DrawBody;
    } else body = d.draw!;
    const order = body.ticket.order;
    if (!verifyMacOf(derived, Label.ORDER, order, body.ticket.mac) || order.txnId !== d.txnId) throw forbidden('ORDER_MAC_INVALID', 'the order MAC does not verify');
    if (txns.has(d.txnId)) throw new HttpError(409, 'DRAW_REPLAYED', `transaction ${d.txnId} was drawn already`);
    txns.add(d.txnId);
    const { date, time } = dateTimeOf(new Date());
    const amount = order.amount + stub.tamper.amountDelta;
    const startup = Buffer.from(body.card.startup, 'hex');
    await selectPsam(psam);
    let r;
    try {
      r = await psamInitializePurchase(psam, startup, { txType: KIND_TX[order.kind], amount, currency: order.kind === 'authentication' ? AUTH_CURRENCY : order.currency, exponent: order.kind === 'purchase' ? order.exponent : 0, date, time, location: locationBytes('STUB0001') }, m.variant !== 'standard');
    } catch (e) {
      if (e instanceof CardStatusError) throw new HttpError(422, e.sw === 0x9401 ? 'INSUFFICIENT_FUNDS' : e.sw === 0x9402 ? 'CARD_EXPIRED' : 'PSAM_REFUSED', e.message);
      throw e;
    }
    const id = `P${String(next++).padStart(6, '0')}`;
    const p: Payment = { id, merchant: m, order, derived, tsk, cardId: decodeStartupData(startup).cardId, counter: decodeStartupData(startup).counter, psamId: r.debit.psamId, psamTxn: r.debit.psamTxn, state: 'drawn' };
    payments.set(id, p);
    const common = { paymentId: id, merchantId: m.id, txnId: order.txnId, amount: order.amount, currency: order.currency, exponent: order.exponent };
    const debit: DebitIep = {
      paymentId: id,
      variant: m.variant,
      txType: KIND_TX[order.kind],
      debitData: r.debitData.toString('hex'),
      ...(m.variant === 'trusted-agent'
        ? {
            expectedS3: r.expectedS3!.toString('hex'),
            authorisation: seal(derived, Label.DEBIT_AUTHORISATION, { ...common, type: order.kind === 'authentication' ? 'authentication-result' : 'debit-result', kind: order.kind, card: maskCardId(p.cardId), psamId: p.psamId, psamTxn: p.psamTxn, completedAt: new Date().toISOString(), s3Sha256: createHash('sha256').update(r.expectedS3!).digest('hex') }),
          }
        : {}),
      ...(m.variant === 'merchant-compare' ? { expectedS3ForMerchant: seal(derived, Label.EXPECTED_S3, { ...common, expectedS3: r.expectedS3!.toString('hex') }) } : {}),
    };
    return tsk ? { paymentId: id, sealed: seal(tsk, Label.DEBIT_IEP, debit) } : { paymentId: id, debit };
  });

  app.post<{ Body: { paymentId: string; response?: { debitResponse?: string; sw: string }; sealed?: never } }>('/v1/debit-response', async (req) => {
    calls.push('debit-response');
    const p = payment(req.body.paymentId);
    const outcome = (req.body.sealed && p.tsk ? open(p.tsk, Label.DEBIT_RESPONSE, req.body.sealed) : req.body.response) as { debitResponse?: string; sw: string };
    if (outcome.sw !== '9000' || !outcome.debitResponse) return result(p, 'declined', 'CARD_REFUSED');
    return verify(p, outcome.debitResponse);
  });

  app.post<{ Body: { paymentId: string; debitResponse: string } }>('/v1/confirm', async (req) => {
    calls.push('confirm');
    return verify(payment(req.body.paymentId), req.body.debitResponse);
  });

  app.post<{ Body: { paymentId: string; reason?: string } }>('/v1/abort', async (req) => {
    calls.push(`abort:${req.body.reason ?? ''}`);
    const p = payment(req.body.paymentId);
    p.state = 'aborted';
    return { paymentId: p.id, state: 'failed', reason: req.body.reason ?? 'aborted' };
  });

  const url = await listen(app, '127.0.0.1', 0);
  return Object.assign(stub, { url, payments, calls, close: () => app.close() });
}
