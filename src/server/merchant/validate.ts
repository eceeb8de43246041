// The merchant's "validate routine" (seed 003 step 638 / 824, routine 366 of FIG. 8): decide from what the
// client relays whether this order was paid. Everything the client brings is either sealed by the payment
// server under this order's derived key (so a result for another order, or one the client made up, does not
// open) or is checked against something so sealed:
//
//   standard, early-release  Debit Result M (Label.DEBIT_RESULT_M): approved, and txnId/merchantId/kind/amount/
//                            currency/exponent equal to THIS order
//   trusted-agent (FIG. 7)   the payment server's authorisation (Label.DEBIT_AUTHORISATION) for this order, and
//                            sha256(card's S3) equal to its s3Sha256
//   merchant-compare (FIG. 8) the expected S3 (Label.EXPECTED_S3) for this order equal to the card's S3; the
//                            merchant then makes its own result
//
// A Debit Result M that comes along with the other variants is checked too, and a declined one wins. Only an
// authentic declined result marks the order declined; anything that proves nothing changes nothing.

import { createHash, timingSafeEqual } from 'node:crypto';
import { open } from '../../protocol/envelope.ts';
import type { DebitAuthorisation, DebitResultPayload, ExpectedS3ForMerchant, MerchantStatusRequest } from '../../protocol/payment-messages.ts';
import { Label } from '../../protocol/payment-messages.ts';
import { PurselabError } from '../../errors.ts';
import { badRequest, forbidden } from '../app.ts';
import type { MerchantConfig } from './config.ts';
import { transactionKey } from './orders.ts';
import type { StoredOrder } from './store.ts';

export type Verdict =
  | { readonly outcome: 'release'; readonly paymentId: string; readonly verifiedBy: string; readonly card: string }
  | { readonly outcome: 'declined'; readonly paymentId: string; readonly reason: string };

type Sealed = Parameters<typeof open>[2];

function opened<T>(key: Buffer, label: string, env: Sealed, what: string): T {
  try {
    const v = open(key, label, env);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new PurselabError('SHAPE', 'not an object');
    return v as T;
  } catch {
    // Forged, altered, or sealed for another order (another derived key): the same answer for all of them.
    throw forbidden('RESULT_NOT_AUTHENTIC', `the ${what} is not authentic for this order (forged, altered, or made for another order)`);
  }
}

/** The fields every sealed statement must repeat from this order. */
function checkSameOrder(config: MerchantConfig, order: StoredOrder, paymentId: string, got: Partial<Record<'merchantId' | 'txnId' | 'paymentId' | 'kind' | 'amount' | 'currency' | 'exponent', unknown>>, what: string): void {
  const want: Record<string, unknown> = { merchantId: config.merchantId, txnId: order.txnId, paymentId, amount: order.amount, currency: order.currency, exponent: order.exponent };
  if ('kind' in got) want.kind = order.kind;
  for (const [k, v] of Object.entries(want)) {
    if (got[k as keyof typeof got] !== v) throw forbidden('RESULT_MISMATCH', `the ${what} does not match this order (${k} differs)`);
  }
}

const hexBytes = (h: string | undefined, what: string): Buffer => {
  if (!h || !/^(?:[0-9a-fA-F]{2})+$/.test(h)) throw badRequest('PROOF_MISSING', `${what} is missing`);
  return Buffer.from(h, 'hex');
};

/** The card's S3 as relayed; when the DEBIT response data comes too, its S3 (last 8 bytes) must be the same. */
function cardS3(req: MerchantStatusRequest): Buffer {
  const s3 = hexBytes(req.s3, 'the card\'s S3');
  if (req.debitResponse !== undefined) {
    const dr = hexBytes(req.debitResponse, 'the DEBIT response');
    if (dr.length < 8 || !dr.subarray(dr.length - 8).equals(s3)) throw badRequest('BAD_PROOF', 'the S3 does not match the DEBIT response it came with');
  }
  return s3;
}

function resultM(config: MerchantConfig, order: StoredOrder, req: MerchantStatusRequest, key: Buffer): Verdict {
  const r = opened<DebitResultPayload>(key, Label.DEBIT_RESULT_M, req.resultM!, 'Debit Result M');
  checkSameOrder(config, order, req.paymentId, r, 'Debit Result M');
  const type = order.kind === 'authentication' ? 'authentication-result' : 'debit-result';
  if (r.type !== type) throw forbidden('RESULT_MISMATCH', `the Debit Result M is a ${String(r.type)}, this order needs a ${type}`);
  if (r.status === 'approved') return { outcome: 'release', paymentId: req.paymentId, verifiedBy: String(r.verifiedBy ?? 'psam'), card: String(r.card ?? '') };
  if (r.status === 'declined') return { outcome: 'declined', paymentId: req.paymentId, reason: typeof r.reason === 'string' ? r.reason : 'DECLINED' };
  throw forbidden('RESULT_MISMATCH', 'the Debit Result M has no status');
}

/** Judge what the client relayed for `order` under the merchant's variant; throws HttpError when it proves nothing. */
export function judgeStatus(config: MerchantConfig, order: StoredOrder, req: MerchantStatusRequest): Verdict {
  const key = transactionKey(config, order.txnId);
  // A sealed result from the payment server, when there is one, is checked first: a declined one ends it.
  const fromServer = req.resultM ? resultM(config, order, req, key) : undefined;
  if (fromServer?.outcome === 'declined') return fromServer;

  switch (config.variant) {
    case 'standard':
    case 'early-release':
      if (!fromServer) throw badRequest('PROOF_MISSING', `the ${config.variant} variant needs the Debit Result M`);
      return fromServer;
    case 'trusted-agent': {
      if (!req.authorisation) throw badRequest('PROOF_MISSING', 'the trusted-agent variant needs the payment server\'s authorisation and the card\'s S3');
      const a = opened<DebitAuthorisation>(key, Label.DEBIT_AUTHORISATION, req.authorisation, 'debit authorisation');
      checkSameOrder(config, order, req.paymentId, a, 'debit authorisation');
      const s3 = cardS3(req);
      const digest = createHash('sha256').update(s3).digest();
      const want = typeof a.s3Sha256 === 'string' && /^[0-9a-fA-F]{64}$/.test(a.s3Sha256) ? Buffer.from(a.s3Sha256, 'hex') : Buffer.alloc(32);
      if (!timingSafeEqual(digest, want)) throw forbidden('S3_MISMATCH', 'the card\'s S3 is not the one the payment server authorised: the debit is not proven');
      return { outcome: 'release', paymentId: req.paymentId, verifiedBy: 'merchant (authorised S3 hash)', card: String(a.card ?? '') };
    }
    case 'merchant-compare': {
      if (!req.expectedS3ForMerchant) throw badRequest('PROOF_MISSING', 'the merchant-compare variant needs the sealed expected S3 and the card\'s S3');
      const e = opened<ExpectedS3ForMerchant>(key, Label.EXPECTED_S3, req.expectedS3ForMerchant, 'expected S3');
      checkSameOrder(config, order, req.paymentId, e, 'expected S3');
      const s3 = cardS3(req);
      const expected = typeof e.expectedS3 === 'string' && /^[0-9a-fA-F]{16}$/.test(e.expectedS3) ? Buffer.from(e.expectedS3, 'hex') : Buffer.alloc(8);
      // Routine 366: the card's S3 against the PSAM's expected S3; the merchant makes its own Debit Result.
      if (s3.length !== expected.length || !timingSafeEqual(s3, expected)) throw forbidden('S3_MISMATCH', 'the card\'s S3 is not the expected S3: the debit is not proven');
      return { outcome: 'release', paymentId: req.paymentId, verifiedBy: 'merchant (expected S3)', card: fromServer?.outcome === 'release' ? fromServer.card : '' };
    }
  }
}
