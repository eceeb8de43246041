// The issuer side of src/terminal/load.ts (LoadIssuer) as a remote load server over HTTP, for one load: the
// client code of seed 003 (module 224) runs runLoad / the zero-value request unchanged against it.
//   verifyS1        -> POST /v1/loads (Load Request, MACed under the session key) -> Credit IEP (S2 kept here)
//                      (a re-credit: the same commands under /v1/recredit/:paymentId, without a bank's ticket)
//   generateS2      -> the S2 of that Credit IEP
//   verifyS3        -> POST /v1/loads/:txnId/response -> the sealed Load Result on a verified credit
//   verifyEnquiryS1 -> POST /v1/loads/:txnId/recovery (zero-value Load Request, with the original S3 if any)
// Network failures are retried (every call is idempotent at the load server); the sealed Load Result is kept
// for the bank's status URL.

import { type LoadS1Fields, type LoadS3Fields } from '../crypto/purse-mac.ts';
import { PurselabError } from '../errors.ts';
import { macOf, verifyMacOf } from '../protocol/envelope.ts';
import {
  LoadLabel,
  loadRequestBody,
  type CardLoadResponse,
  type CreditIep,
  type CreditIepMessage,
  type LoadOutcomeMessage,
  type LoadPage,
  type RecreditTicket,
  type ZeroValueLoadRequest,
} from '../protocol/load-messages.ts';
import { RemoteError, requestJson, type JsonRequestOptions } from '../server/http-client.ts';
import type { LoadIssuer } from '../terminal/load.ts';

export interface RetryPolicy {
  /** Attempts per call (1 = no retry). Default 5. */
  readonly attempts: number;
  /** Wait before the first retry; doubles each time. Default 200 ms. */
  readonly delayMs: number;
  readonly timeoutMs?: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, delayMs: 200 };

/** A failure worth retrying: no answer, or the server is restarting. */
const transient = (e: unknown) => e instanceof RemoteError && (e.status === 0 || e.status === 502 || e.status === 503 || e.status === 504);

/** requestJson with retries on transient failures. */
export async function requestWithRetry<T>(url: string, options: JsonRequestOptions, retry: RetryPolicy = DEFAULT_RETRY): Promise<T> {
  let wait = retry.delayMs;
  for (let i = 1; ; i++) {
    try {
      return await requestJson<T>(url, { ...options, ...(retry.timeoutMs ? { timeoutMs: retry.timeoutMs } : {}) });
    } catch (e) {
      if (!transient(e) || i >= retry.attempts) throw e;
      await new Promise((r) => setTimeout(r, wait));
      wait *= 2;
    }
  }
}

/** What the original load looked like, for the zero-value request (from verifyS1, or from the load server when resuming). */
export type OriginalLoad = ZeroValueLoadRequest['original'];

/** Where the load commands go: a bank's load (/v1/loads, session MACs) or a re-credit (/v1/recredit/:paymentId). */
type Route =
  | { readonly kind: 'load'; readonly page: Pick<LoadPage, 'sessionKey' | 'eSessionKey' | 'ticket'> }
  | { readonly kind: 'recredit'; readonly paymentId: string };

export class RemoteLoadIssuer implements LoadIssuer {
  readonly txnId: string;
  private readonly base: string;
  private readonly route: Route;
  private s2: Buffer | undefined;
  /** The LTXID of the zero-value enquiry, from the Credit IEP. */
  enquiryTxnId: string | undefined;
  original: OriginalLoad | undefined;
  /** The card's last Load Response (sent again with the zero-value request when negative). */
  response: CardLoadResponse | undefined;
  /** The final outcome once the load server has one (the sealed Load Result for a bank's load). */
  outcome: (Pick<LoadOutcomeMessage, 'status' | 'basis'> & { loadResult?: LoadOutcomeMessage['loadResult'] }) | undefined;
  /** The load server's refusal code of the last call, if it refused (S1_INVALID, S3_INVALID, RECOVERY_REQUIRED ...). */
  refusal: string | undefined;

  constructor(page: Pick<LoadPage, 'loadServer' | 'sessionKey' | 'eSessionKey' | 'ticket'>, retry?: RetryPolicy);
  constructor(page: { loadServer: string; recredit: RecreditTicket }, retry?: RetryPolicy);
  constructor(
    page: Pick<LoadPage, 'loadServer' | 'sessionKey' | 'eSessionKey' | 'ticket'> | { loadServer: string; recredit: RecreditTicket },
    private readonly retry: RetryPolicy = DEFAULT_RETRY,
  ) {
    this.base = page.loadServer.replace(/\/+$/, '');
    if ('recredit' in page) {
      this.route = { kind: 'recredit', paymentId: page.recredit.paymentId };
      this.txnId = page.recredit.recreditId;
    } else {
      this.route = { kind: 'load', page };
      this.txnId = page.ticket.authorisation.txnId;
    }
  }

  private get prefix(): string {
    return this.route.kind === 'load' ? `/v1/loads/${this.txnId}` : `/v1/recredit/${encodeURIComponent(this.route.paymentId)}`;
  }

  private post<T>(path: string, body: unknown): Promise<T> {
    return requestWithRetry<T>(`${this.base}${path}`, { body }, this.retry);
  }

  async verifyS1(fields: LoadS1Fields, s1: Buffer): Promise<boolean> {
    const request = loadRequestBody(fields, s1);
    let creditIep: CreditIep;
    try {
      if (this.route.kind === 'load') {
        const page = this.route.page;
        const key = Buffer.from(page.sessionKey, 'hex');
        const r = await this.post<CreditIepMessage>('/v1/loads', { ticket: page.ticket, eSessionKey: page.eSessionKey, request, mac: macOf(key, LoadLabel.LOAD_REQUEST, request) });
        if (!verifyMacOf(key, LoadLabel.CREDIT_IEP, r.creditIep, r.mac)) {
          throw new PurselabError('CREDIT_IEP_NOT_AUTHENTIC', `the Credit IEP for ${this.txnId} fails its session MAC: not from the load server`);
        }
        creditIep = r.creditIep;
      } else {
        creditIep = await this.post<CreditIep>(`${this.prefix}/s1`, { request });
      }
    } catch (e) {
      // A refusal before any S2 (S1 invalid, request edit, ticket, unresolved earlier load): nothing can be credited.
      if (e instanceof RemoteError && e.status >= 400 && e.status < 500 && e.code !== 'LOAD_IN_PROGRESS' && e.code !== 'RECREDIT_IN_PROGRESS') {
        this.refusal = e.code;
        return false;
      }
      throw e;
    }
    if (creditIep.txnId !== this.txnId) throw new PurselabError('CREDIT_IEP_NOT_AUTHENTIC', `the Credit IEP names ${creditIep.txnId}, not ${this.txnId}`);
    this.s2 = Buffer.from(creditIep.s2, 'hex');
    this.enquiryTxnId = creditIep.enquiryTxnId;
    this.original = { cardId: fields.cardId, counter: fields.counter, currency: fields.currency, exponent: fields.exponent, date: fields.date, time: fields.time };
    return true;
  }

  async generateS2(): Promise<Buffer> {
    if (!this.s2) throw new PurselabError('NO_S2', 'no Credit IEP yet: verifyS1 first');
    return Buffer.from(this.s2);
  }

  async verifyS3(fields: LoadS3Fields, s3: Buffer): Promise<boolean> {
    this.response = { result: fields.result, newCounter: fields.newCounter, newBalance: fields.newBalance, s3: s3.toString('hex').toUpperCase() };
    try {
      this.outcome = await this.post<LoadOutcomeMessage>(`${this.prefix}/response`, this.response);
      return this.outcome.status === 'loaded';
    } catch (e) {
      if (e instanceof RemoteError && (e.code === 'RECOVERY_REQUIRED' || e.code === 'S3_INVALID')) {
        this.refusal = e.code;
        return false;
      }
      throw e;
    }
  }

  /** The zero-value Load Request: `valid` when the load server reached a verdict, `credited` = loaded. */
  async verifyEnquiryS1(fields: LoadS1Fields, s1: Buffer): Promise<{ valid: boolean; credited?: boolean }> {
    if (!this.original) throw new PurselabError('NO_ORIGINAL', 'the zero-value request needs the original load');
    const body: ZeroValueLoadRequest = {
      original: this.original,
      zeroValue: loadRequestBody(fields, s1),
      ...(this.response ? { response: this.response } : {}),
    };
    try {
      this.outcome = await this.post<LoadOutcomeMessage>(`${this.prefix}/recovery`, body);
    } catch (e) {
      if (e instanceof RemoteError && e.code === 'RECOVERY_UNVERIFIED') {
        this.refusal = e.code;
        return { valid: false };
      }
      throw e;
    }
    return { valid: true, credited: this.outcome.status === 'loaded' };
  }
}
