// The OPAL service: what the routes call. It joins the user directory, the virtual card store (through the
// pseudo reader), the history tables and the client libraries that run unchanged inside OPAL: payAtMerchant
// (src/client/pay.ts: purchase, authentication and points redemption, with the amount overwrite check) and
// internetLoad (src/client/load-client.ts: load from the bank with the failed-load handling). A re-credit of a
// card debited by a payment that then failed is a signed credit run by OPAL's own HSM as the issuer, and goes
// to its own table (never counted as a load).

import { randomBytes } from 'node:crypto';
import type { Hsm } from '../../hsm-bridge/hsm.ts';
import type { PaymentOps } from '../../hsm-bridge/payment.ts';
import { ClientPaymentError, payAtMerchant, type PayResult } from '../client/pay.ts';
import { loadPaymentPage } from '../client/page.ts';
import { internetLoad, type InternetLoadResult } from '../client/load-client.ts';
import { PurselabError } from '../errors.ts';
import { maskCardId, showAmount } from '../terminal/amount.ts';
import { issuerFromPaymentOps, runLoad } from '../terminal/load.ts';
import { dateTimeOf } from '../terminal/purchase.ts';
import { readPurse } from '../terminal/purse.ts';
import type { VirtualCardStore } from './card-store.ts';
import type { OpalConfig } from './config.ts';
import { OpalError } from './errors.ts';
import { HistoryStore, type HistoryEntry, type HistoryTable } from './history.ts';
import type { Mailer } from './mail.ts';
import { withPseudoReader } from './pseudo-reader.ts';
import { register, type RegistrationForm, type Registered } from './registration.ts';
import type { UserRow, UserStore } from './users.ts';

export interface BalanceView {
  readonly card: string;
  readonly balance: number;
  readonly currency: number;
  readonly exponent: number;
  readonly shown: string;
  readonly maxBalance: number;
  readonly maxLoad: number;
  readonly expiry: string;
  readonly counter: number;
}

export interface PurchaseQuote {
  readonly merchantId: string;
  readonly txnId: string;
  readonly kind: string;
  readonly amount: number;
  readonly currency: number;
  readonly exponent: number;
  readonly shown: string;
  readonly description: string;
  readonly balance: BalanceView;
}

export interface OpalServiceDeps {
  readonly config: OpalConfig;
  readonly hsm: Hsm;
  readonly ops: PaymentOps;
  readonly cards: VirtualCardStore;
  readonly users: UserStore;
  readonly history: HistoryStore;
  readonly mailer: Mailer;
  readonly log?: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

export class OpalService {
  constructor(readonly d: OpalServiceDeps) {}

  register(form: RegistrationForm): Promise<Registered> {
    return register({ issuers: this.d.config.issuers, cards: this.d.cards, users: this.d.users, mailer: this.d.mailer }, form);
  }

  /** Balance etc. read from the card by the applet (READ PURSE DATA through the pseudo reader). */
  async balance(user: UserRow): Promise<BalanceView> {
    const p = await withPseudoReader(this.d.cards, user.cardId, (r) => readPurse(r), { bin: user.bin });
    return {
      card: maskCardId(p.cardId),
      balance: p.balance,
      currency: p.currency,
      exponent: p.exponent,
      shown: showAmount(p.balance, p.currency, p.exponent),
      maxBalance: p.maxBalance,
      maxLoad: Math.max(0, p.maxBalance - p.balance),
      expiry: p.expiry,
      counter: p.counter,
    };
  }

  history(user: UserRow, limit = 50): Promise<Record<HistoryTable, HistoryEntry[]>> {
    return this.d.history.recent(user.cardId, user.bin, limit);
  }

  /** What the merchant's page asks for, and the card's balance (step 510: the user sees both before accepting). */
  async purchaseQuote(user: UserRow, pageUrl: string): Promise<PurchaseQuote> {
    const page = await loadPaymentPage(pageUrl);
    const o = page.ticket.order;
    const shown = o.kind === 'authentication' ? 'authentication (nothing is debited)' : showAmount(o.amount, o.currency, o.exponent, o.kind === 'points');
    return { merchantId: o.merchantId, txnId: o.txnId, kind: o.kind, amount: o.amount, currency: o.currency, exponent: o.exponent, shown, description: o.description ?? '', balance: await this.balance(user) };
  }

  /**
   * Pay the merchant's order on `pageUrl` with the virtual card: the client library over the pseudo reader. The
   * cardholder confirmed `amount` (minor units) for transaction `txnId`; the payment goes ahead only if the page
   * still asks exactly that, and the library refuses any Debit IEP whose amount is not the merchant's.
   */
  async purchase(user: UserRow, q: { pageUrl: string; amount: number; txnId?: string }): Promise<PayResult & { historyId: number }> {
    const id = await this.d.history.start('purchase', user.cardId, 'purchase', { pageUrl: q.pageUrl, confirmedAmount: q.amount, ...(q.txnId ? { txnId: q.txnId } : {}) });
    try {
      const r = await withPseudoReader(
        this.d.cards,
        user.cardId,
        (reader) =>
          payAtMerchant(q.pageUrl, reader, {
            confirm: (offer) => offer.amount === q.amount && (q.txnId === undefined || offer.txnId === q.txnId),
            terminalId: 'OPAL',
          }),
        { bin: user.bin },
      );
      await this.d.history.finish('purchase', id, user.cardId, r.status, { ...r, pageUrl: q.pageUrl });
      this.d.log?.info({ historyId: id, status: r.status, merchantId: r.merchantId, txnId: r.txnId }, 'OPAL purchase finished');
      return { ...r, historyId: id };
    } catch (e) {
      const err = e as PurselabError;
      const cardDebited = e instanceof ClientPaymentError ? e.cardDebited : 'unknown';
      await this.d.history.finish('purchase', id, user.cardId, 'failed', {
        pageUrl: q.pageUrl,
        confirmedAmount: q.amount,
        code: err.code ?? 'ERROR',
        message: err.message,
        cardDebited,
        ...(e instanceof ClientPaymentError && e.paymentId ? { paymentId: e.paymentId } : {}),
      });
      this.d.log?.warn({ historyId: id, code: err.code, cardDebited }, 'OPAL purchase failed');
      throw e;
    }
  }

  /** Load from the bank (the load client library over the pseudo reader); bank credentials pass through, never stored. */
  async load(user: UserRow, q: { bankUrl: string; bankUser: string; bankPassword: string; amount: string }): Promise<InternetLoadResult & { historyId: number }> {
    const id = await this.d.history.start('load', user.cardId, 'load', { bankUrl: q.bankUrl, amount: q.amount });
    try {
      const r = await withPseudoReader(this.d.cards, user.cardId, (reader) => internetLoad(reader, { bankUrl: q.bankUrl, user: q.bankUser, password: q.bankPassword, amount: q.amount }), { bin: user.bin });
      await this.d.history.finish('load', id, user.cardId, r.status, { ...r, bankUrl: q.bankUrl });
      return { ...r, historyId: id };
    } catch (e) {
      const err = e as PurselabError;
      await this.d.history.finish('load', id, user.cardId, 'failed', { bankUrl: q.bankUrl, amount: q.amount, code: err.code ?? 'ERROR', message: err.message, ...((e as { txnId?: string }).txnId ? { txnId: (e as { txnId?: string }).txnId } : {}) });
      throw e;
    }
  }

  /**
   * Re-credit a card debited by a purchase that then failed (patent L311): only a purchase recorded as failed with
   * the card debited ('yes' or 'unknown', confirmed by the operator), once, for exactly the debited amount. The
   * credit is a signed CREDIT FOR LOAD with OPAL's HSM as the issuer; it is logged in the re-credit table.
   */
  async recredit(q: { cardId: string; purchaseId: number; reason: string }): Promise<{ recreditId: number; amount: number; newBalance: number }> {
    const p = await this.d.history.get('purchase', q.purchaseId, q.cardId);
    const detail = p.detail as { cardDebited?: string; confirmedAmount?: number; amount?: number };
    if (p.status !== 'failed' || (detail.cardDebited !== 'yes' && detail.cardDebited !== 'unknown')) {
      throw new OpalError('OPAL_REGISTRATION', `purchase ${q.purchaseId} is '${p.status}'${detail.cardDebited ? ` (card debited: ${detail.cardDebited})` : ''}: only a failed purchase that debited the card can be re-credited`);
    }
    const prior = this.d.history.recreditOf(q.purchaseId);
    if (prior) throw new OpalError('OPAL_REGISTRATION', `purchase ${q.purchaseId} was already re-credited (re-credit ${prior.id}, ${prior.status})`);
    const amount = detail.confirmedAmount ?? 0;
    if (!(amount > 0)) throw new OpalError('OPAL_REGISTRATION', `purchase ${q.purchaseId} has no amount to re-credit`);
    const id = await this.d.history.start('recredit', q.cardId, 'recredit', { purchaseId: q.purchaseId, amount, reason: q.reason }, q.purchaseId);
    try {
      const issuer = issuerFromPaymentOps(this.d.ops);
      const r = await withPseudoReader(this.d.cards, q.cardId, async (reader) => {
        const purse = await readPurse(reader);
        return runLoad(reader, issuer, { amount, currency: purse.currency, exponent: purse.exponent, ...dateTimeOf(new Date()), loadTxnId: randomBytes(8) });
      });
      if (!r.credited) throw new OpalError('OPAL_REGISTRATION', `the card refused the re-credit (${r.resultText})`);
      await this.d.history.finish('recredit', id, q.cardId, 'credited', { purchaseId: q.purchaseId, amount, reason: q.reason, newBalance: r.newBalance, newCounter: r.newCounter });
      return { recreditId: id, amount, newBalance: r.newBalance };
    } catch (e) {
      await this.d.history.finish('recredit', id, q.cardId, 'failed', { purchaseId: q.purchaseId, amount, reason: q.reason, code: (e as PurselabError).code ?? 'ERROR', message: (e as Error).message });
      throw e;
    }
  }
}
