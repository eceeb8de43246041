// Reading the merchant's payment page (seed 003 step 606 / 808): the PaymentPage JSON, fetched with
// Accept: application/json, or taken from the HTML page's <script id="purselab-payment-page"> element. The
// shape is checked here; whether the order is genuine is the payment server's check (the order MAC).

import { PurselabError } from '../errors.ts';
import type { Order, PaymentPage } from '../protocol/payment-messages.ts';
import { httpRequest, RemoteError } from '../server/http-client.ts';
import { isObj, type Obj } from '../config-fields.ts';

export class PageError extends PurselabError {
  constructor(message: string) {
    super('BAD_PAYMENT_PAGE', message);
  }
}

const SCRIPT_RE = /<script[^>]*id="purselab-payment-page"[^>]*>([^<]*)<\/script>/i;

const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isUrl = (v: unknown): v is string => {
  if (typeof v !== 'string') return false;
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
};

/** Check that a value has the PaymentPage shape; PageError naming the first bad field. */
export function checkPaymentPage(v: unknown): PaymentPage {
  const bad = (what: string): never => {
    throw new PageError(`the payment page is not usable: ${what}`);
  };
  if (!isObj(v) || !isObj(v.ticket) || !isObj(v.ticket.order)) return bad('no order ticket');
  const o = v.ticket.order as Obj;
  if (typeof o.merchantId !== 'string' || !o.merchantId) bad('order.merchantId');
  if (typeof o.txnId !== 'string' || !o.txnId) bad('order.txnId');
  if (o.kind !== 'purchase' && o.kind !== 'authentication' && o.kind !== 'points') bad('order.kind');
  if (!isInt(o.amount, 0, 0xffffffff)) bad('order.amount');
  if (!isInt(o.currency, 0, 9999)) bad('order.currency');
  if (!isInt(o.exponent, 0, 9)) bad('order.exponent');
  if (typeof o.issuedAt !== 'string' || typeof o.expiresAt !== 'string') bad('order.issuedAt / expiresAt');
  if (typeof v.ticket.mac !== 'string' || !/^[0-9a-fA-F]{16}$/.test(v.ticket.mac)) bad('ticket.mac');
  if (!isUrl(v.paymentServer)) bad('paymentServer (an http(s) URL)');
  if (!isUrl(v.statusUrl)) bad('statusUrl (an http(s) URL)');
  if ((v.tsk === undefined) !== (v.etsk === undefined)) bad('tsk and etsk come together');
  if (v.tsk !== undefined && (typeof v.tsk !== 'string' || !/^[0-9a-fA-F]{32}$/.test(v.tsk))) bad('tsk (32 hex digits)');
  if (v.etsk !== undefined && (typeof v.etsk !== 'string' || !/^[0-9a-fA-F]{32}$/.test(v.etsk))) bad('etsk (32 hex digits)');
  return v as unknown as PaymentPage;
}

/** The PaymentPage from a JSON or HTML body. */
export function parsePaymentPage(body: string, contentType: string): PaymentPage {
  if (/json/i.test(contentType)) {
    try {
      return checkPaymentPage(JSON.parse(body));
    } catch (e) {
      if (e instanceof PageError) throw e;
      throw new PageError('the payment page is not valid JSON');
    }
  }
  const m = SCRIPT_RE.exec(body);
  if (!m) throw new PageError('the page carries no payment parameters (no purselab-payment-page element)');
  try {
    return checkPaymentPage(JSON.parse(m[1]!));
  } catch (e) {
    if (e instanceof PageError) throw e;
    throw new PageError('the payment parameters in the page are not valid JSON');
  }
}

/** Fetch the payment page at `url` (or check a page already in hand). */
export async function loadPaymentPage(urlOrPage: string | PaymentPage, timeoutMs = 15_000): Promise<PaymentPage> {
  if (typeof urlOrPage !== 'string') return checkPaymentPage(urlOrPage);
  if (!isUrl(urlOrPage)) throw new PageError(`'${urlOrPage}' is not an http(s) URL`);
  const res = await httpRequest(urlOrPage, { method: 'GET', headers: { accept: 'application/json, text/html;q=0.5' }, timeoutMs });
  const body = res.text;
  if (res.status < 200 || res.status > 299) {
    let msg = `GET ${urlOrPage}: HTTP ${res.status}`;
    try {
      const err = (JSON.parse(body) as { error?: { code?: string; message?: string } }).error;
      if (err?.message) msg = `${msg}: ${err.message}`;
    } catch {
      // not JSON: the status says enough
    }
    throw new RemoteError(res.status, res.status === 404 ? 'NO_SUCH_ORDER' : `HTTP_${res.status}`, msg, urlOrPage);
  }
  return parsePaymentPage(body, res.contentType);
}

/** The order of a page, for display. */
export const orderOfPage = (p: PaymentPage): Order => p.ticket.order;
