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
import { internetLoad, resumeInternetLoad, type InternetLoadResult } from '../client/load-client.ts';
import { open as openEnvelope, type Envelope } from '../protocol/envelope.ts';
import { Label, type RecreditClaim } from '../protocol/payment-messages.ts';
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
import type { CrashHook } from './crash.ts';
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
  /** Test-only fault injection (src/opal/crash.ts). */
  readonly crash?: CrashHook | undefined;
  /** The key shared with the payment server that seals its RecreditClaims (absent: claims refused). */
  readonly issuerLinkKey?: Buffer | undefined;
}

/** What recovery after a restart found: history rows whose flow a crash cut, now 'interrupted'. */
export interface RecoveryFinding {
  readonly table: HistoryTable;
  readonly id: number;
  readonly card: string;
  readonly counter: number;
  readonly action: string;
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
    this.d.crash?.('purchase-started');
    try {
      const r = await withPseudoReader(
        this.d.cards,
        user.cardId,
        (reader) =>
          payAtMerchant(q.pageUrl, reader, {
            confirm: (offer) => offer.amount === q.amount && (q.txnId === undefined || offer.txnId === q.txnId),
            terminalId: 'OPAL',
          }),
        { bin: user.bin, crash: this.d.crash },
      );
      this.d.crash?.('purchase-done');
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
    const started = { bankUrl: q.bankUrl, amount: q.amount };
    const id = await this.d.history.start('load', user.cardId, 'load', started);
    this.d.crash?.('load-started');
    // The bank's transaction id is recorded as soon as the hold is placed, so a cut load can be resumed.
    const notes: Promise<void>[] = [];
    const progress = (line: string) => {
      const m = /^hold placed: load ([0-9A-F]+)/.exec(line);
      if (m) notes.push(this.d.history.note('load', id, user.cardId, 'started', { ...started, txnId: m[1] }));
    };
    try {
      const r = await withPseudoReader(
        this.d.cards,
        user.cardId,
        (reader) => internetLoad(reader, { bankUrl: q.bankUrl, user: q.bankUser, password: q.bankPassword, amount: q.amount, progress }),
        { bin: user.bin, crash: this.d.crash, beforeCommand: () => Promise.all(notes).then(() => undefined) },
      );
      await Promise.all(notes);
      this.d.crash?.('load-done');
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

  /**
   * After a restart: every history row still 'started' was cut by a crash. It becomes 'interrupted', with the
   * card's counter now (read by the applet) and what happens next: a purchase is settled by the payment server
   * (its recovery report; a card debited without an approved result is re-credited from its RecreditClaim,
   * POST /v1/admin/recredit-claim); a load is finished by the cardholder with POST /v1/load/resume (the bank and
   * load server keep the hold until then). Nothing here moves value.
   */
  async recoverInterrupted(): Promise<RecoveryFinding[]> {
    const out: RecoveryFinding[] = [];
    for (const table of ['purchase', 'load', 'recredit'] as const) {
      for (const row of await this.d.history.unfinished(table)) {
        const purse = await withPseudoReader(this.d.cards, row.cardId, (r) => readPurse(r));
        const action =
          table === 'purchase'
            ? "the payment server settles it: if its recovery report shows the card debited without an approved result, its re-credit claim credits the card back (POST /v1/admin/recredit-claim)"
            : table === 'load'
              ? `the cardholder finishes it with POST /v1/load/resume${row.detail.txnId ? ` (bank transaction ${String(row.detail.txnId)})` : ' (no bank hold was placed: nothing to resume)'}`
              : 'the re-credit may have been cut before or after the card was credited: compare the counter and balance with the claim before re-issuing';
        await this.d.history.finish(table, row.id, row.cardId, 'interrupted', { ...row.detail, interruptedCounter: purse.counter, interruptedBalance: purse.balance, action });
        this.d.log?.warn({ table, historyId: row.id, card: maskCardId(row.cardId), counter: purse.counter }, 'OPAL: flow cut by a crash marked interrupted');
        out.push({ table, id: row.id, card: maskCardId(row.cardId), counter: purse.counter, action });
      }
    }
    return out;
  }

  /** Finish an interrupted (or failed-unfinished) load of this user's card with the load client's resume. */
  async resumeLoad(user: UserRow, q: { loadId: number; bankUser: string; bankPassword: string }): Promise<InternetLoadResult & { historyId: number }> {
    const row = await this.d.history.get('load', q.loadId, user.cardId);
    const d = row.detail as { bankUrl?: string; txnId?: string };
    if (row.status !== 'interrupted' && row.status !== 'failed') throw new OpalError('OPAL_RESUME', `load ${q.loadId} is '${row.status}': only an interrupted or unfinished load can be resumed`);
    if (!d.txnId || !d.bankUrl) throw new OpalError('OPAL_RESUME', `load ${q.loadId} has no bank transaction: no hold was placed, nothing to resume`);
    const r = await withPseudoReader(this.d.cards, user.cardId, (reader) => resumeInternetLoad(reader, { bankUrl: d.bankUrl!, user: q.bankUser, password: q.bankPassword, txnId: d.txnId! }), { bin: user.bin });
    await this.d.history.finish('load', q.loadId, user.cardId, r.status, { ...row.detail, ...r, resumed: true });
    return { ...r, historyId: q.loadId };
  }

  /**
   * Re-credit driven by the payment server's recovery (patent L311): its RecreditClaim, sealed with the issuer
   * link key, names the card, the amount and the card's counter after the debit. OPAL credits it only if the
   * claim opens, the card is one of its own, the card's counter shows that debit happened (a card torn before
   * the debit was stored was never debited), and no re-credit was made for that payment id; logged as a
   * re-credit, never as a load.
   */
  async recreditFromClaim(claimEnvelope: Envelope): Promise<{ recreditId: number; paymentId: string; amount: number; newBalance: number }> {
    if (!this.d.issuerLinkKey) throw new OpalError('OPAL_RECREDIT', 'no issuer link key configured (issuerLinkKeyEnv): re-credit claims cannot be checked');
    let claim: RecreditClaim;
    try {
      claim = openEnvelope(this.d.issuerLinkKey, Label.RECREDIT_CLAIM, claimEnvelope) as RecreditClaim;
    } catch (e) {
      throw new OpalError('OPAL_RECREDIT', 'the re-credit claim does not verify under the issuer link key: refused', { cause: e });
    }
    if (!this.d.cards.has(claim.cardId)) throw new OpalError('OPAL_CARD_NOT_FOUND', `the claim is for card ${maskCardId(claim.cardId)}, not a virtual card of this server`);
    const db = this.d.cards.db;
    const prior = db.prepare('SELECT recredit_id FROM opal_recredit_claims WHERE payment_id = ?').get(claim.paymentId) as { recredit_id: number } | undefined;
    if (prior) throw new OpalError('OPAL_RECREDIT', `payment ${claim.paymentId} was already re-credited (re-credit ${prior.recredit_id})`);
    const detail = { paymentId: claim.paymentId, merchantId: claim.merchantId, txnId: claim.txnId, amount: claim.amount, claimCounter: claim.cardCounter, reason: claim.reason };
    const id = await this.d.history.start('recredit', claim.cardId, 'recredit', detail);
    try {
      // Reserve the payment id first (one re-credit per payment even if this process dies below).
      db.prepare('INSERT INTO opal_recredit_claims (payment_id, recredit_id) VALUES (?, ?)').run(claim.paymentId, id);
      const issuer = issuerFromPaymentOps(this.d.ops);
      const r = await withPseudoReader(this.d.cards, claim.cardId, async (reader) => {
        const purse = await readPurse(reader);
        if (purse.counter < claim.cardCounter) throw new OpalError('OPAL_RECREDIT', `the card's counter is ${purse.counter}, below the claim's ${claim.cardCounter}: the card was never debited by payment ${claim.paymentId}`);
        if (purse.currency !== claim.currency || purse.exponent !== claim.exponent) throw new OpalError('OPAL_RECREDIT', 'the claim is not in the card\'s currency');
        return runLoad(reader, issuer, { amount: claim.amount, currency: claim.currency, exponent: claim.exponent, ...dateTimeOf(new Date()), loadTxnId: randomBytes(8) });
      });
      if (!r.credited) throw new OpalError('OPAL_RECREDIT', `the card refused the re-credit (${r.resultText})`);
      await this.d.history.finish('recredit', id, claim.cardId, 'credited', { ...detail, newBalance: r.newBalance, newCounter: r.newCounter });
      this.d.log?.info({ recreditId: id, paymentId: claim.paymentId, card: maskCardId(claim.cardId), amount: claim.amount }, 'OPAL re-credit from a payment server claim');
      return { recreditId: id, paymentId: claim.paymentId, amount: claim.amount, newBalance: r.newBalance };
    } catch (e) {
      if (e instanceof OpalError && e.code === 'OPAL_RECREDIT') db.prepare('DELETE FROM opal_recredit_claims WHERE payment_id = ? AND recredit_id = ?').run(claim.paymentId, id);
      await this.d.history.finish('recredit', id, claim.cardId, 'failed', { ...detail, code: (e as PurselabError).code ?? 'ERROR', message: (e as Error).message });
      throw e;
    }
  }
}
