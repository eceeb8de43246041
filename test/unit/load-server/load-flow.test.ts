// Internet loads end to end in one process: bank and load server on loopback HTTP, the issuer on the software
// HSM, the card on the emulator (EmulatorChannel). Every scenario ends with the conservation check
// (conservation.ts): customer accounts + card balances + issuer float constant (issuer float = float account -
// the load server's settled value), money and value each constant, and no hold left 'held'.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IepIns } from '../../../src/crypto/purse-apdu.ts';
import { internetLoad, LoadUnfinishedError, resumeInternetLoad, type InternetLoadOptions } from '../../../src/client/load-client.ts';
import { interceptHttp, RemoteError, requestJson } from '../../../src/server/http-client.ts';
import { readPurse } from '../../../src/terminal/purse.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import { TamperChannel, useDemoIssuer } from '../psam/helpers.ts';
import { ALICE, startWorld, type LoadWorld } from './harness.ts';
import { expectConserved as checkConserved } from './conservation.ts';
import type { CardChannel } from '../../../src/transport/channel.ts';

const issuer = useDemoIssuer();
const FAST = { attempts: 2, delayMs: 5 };

let w: LoadWorld;
let start: Awaited<ReturnType<LoadWorld['totals']>>;

beforeEach(async () => {
  w = await startWorld(issuer);
  start = await w.totals();
});
afterEach(async () => {
  await w.close();
});

const opts = (amount: string | number, extra: Partial<InternetLoadOptions> = {}): InternetLoadOptions => ({ bankUrl: w.bankUrl, ...ALICE, amount, retry: FAST, ...extra });

/** Customer accounts + cards + issuer float constant, and money and value; `loaded` = account -> card; no hold left open. */
async function expectConserved(loaded: number): Promise<void> {
  checkConserved(start, await w.totals(), loaded);
}

/** Cut the link for requests whose URL matches: 'before' never sends them, 'after' sends them and loses the answer. */
function cutLink(match: RegExp | ((url: string) => boolean), when: 'before' | 'after', times = 1): () => void {
  let left = times;
  return interceptHttp(async (url, _options, send) => {
    if (left > 0 && (typeof match === 'function' ? match(url) : match.test(url))) {
      left--;
      if (when === 'after') await send();
      throw new RemoteError(0, 'REMOTE_UNREACHABLE', `${url}: link cut by the test`, url);
    }
    return send();
  });
}

describe('a load', () => {
  it('20.00: S1 verified, S2, card credited, S3 verified, Load Result captured at the bank into the float', async () => {
    const lines: string[] = [];
    const r = await internetLoad(w.card.ch, opts('20.00', { progress: (l) => lines.push(l) }));
    expect(r).toMatchObject({ status: 'loaded', basis: 's3-verified', amount: 2000, balanceBefore: 1000, balance: 3000 });
    expect(r.hold?.state).toBe('captured');
    await expectConserved(2000);
    expect(await w.loadStore.settlements()).toEqual([expect.objectContaining({ txnId: r.txnId, bankId: 'demo-bank', amount: 2000 })]);
    expect(lines.join('\n')).not.toContain(w.card.cardId);
    expect(lines.join('\n')).toContain('999001******0025');
    const events = (await w.loadStore.logOf(r.txnId!)).map((e) => e.event);
    expect(events).toEqual(['load-request', 's2-issued', 'load-response', 'load-result']);
  });

  it('the literal invariant: customers + card + issuer float constant; a credit missing from the settlement log breaks it', async () => {
    const r = await internetLoad(w.card.ch, opts('5.00'));
    expect(r.status).toBe('loaded');
    const t = await w.totals();
    expect(t.total).toBe(start.total);
    expect(t.issuerFloat).toBe(start.issuerFloat);
    expect(t.issued - start.issued).toBe(500);
    // The naive sum (float account instead of the issuer's net float) counts the load twice.
    expect(t.customers + t.card + t.float).toBe(start.customers + start.card + start.float + 500);
    w.loadStore.db.prepare('DELETE FROM load_settlements WHERE txn_id = ?').run(r.txnId);
    expect((await w.totals()).total).toBe(start.total + 500);
  });

  it('cancel at the load screen: no hold, nothing moves', async () => {
    const r = await internetLoad(w.card.ch, opts('20.00', { confirm: async (offer) => (expect(offer.quote.maxLoad).toBe(49_000), false) }));
    expect(r.status).toBe('cancelled');
    await expectConserved(0);
    expect((await w.totals()).holds).toEqual({ held: 0, captured: 0, released: 0 });
  });

  it('above the maximum balance: the bank refuses the load, no hold', async () => {
    await expect(internetLoad(w.card.ch, opts('490.01'))).rejects.toMatchObject({ code: 'ABOVE_MAX_LOAD', status: 422 });
    await expectConserved(0);
    expect((await w.totals()).holds).toEqual({ held: 0, captured: 0, released: 0 });
  });

  it('a client that under-reports the balance: the card refuses INITIALIZE FOR LOAD, the hold is released', async () => {
    const t = new TamperChannel(w.card.ch);
    t.onResponse = (c, r) => (c.ins === IepIns.READ_PURSE_DATA && r.sw === 0x9000 ? { sw: r.sw, data: Buffer.from(r.data).fill(0, 18, 22) } : r);
    const r = await internetLoad(t, opts('495.00'));
    expect(r).toMatchObject({ status: 'not-loaded', basis: 'CARD_REFUSED' });
    expect(r.hold?.state).toBe('released');
    await expectConserved(0);
  });

  it('bad S1 (altered on the way): refused by the issuer HSM, hold released, card unchanged', async () => {
    const t = new TamperChannel(w.card.ch);
    t.onResponse = (c, r) => {
      if (c.ins !== IepIns.INITIALIZE_FOR_LOAD || r.sw !== 0x9000) return r;
      const data = Buffer.from(r.data);
      data[60] = data[60]! ^ 0x01;
      return { sw: r.sw, data };
    };
    const r = await internetLoad(t, opts('20.00'));
    expect(r).toMatchObject({ status: 'not-loaded', basis: 'S1_INVALID' });
    expect(r.hold).toMatchObject({ state: 'released', reason: 'not loaded (s1-refused)' });
    await expectConserved(0);
  });

  it('forged S2: the card answers "S2 invalid"; the zero-value request proves the failure; no capture', async () => {
    const t = new TamperChannel(w.card.ch);
    // The first byte changed, always (overwriting it with a constant left it unchanged once in 256 runs).
    t.onCommand = (c) => {
      if (c.ins !== IepIns.CREDIT_FOR_LOAD) return c;
      const data = Buffer.from(c.data);
      data[0] = data[0]! ^ 0x5a;
      return { ...c, data };
    };
    const r = await internetLoad(t, opts('20.00'));
    expect(r).toMatchObject({ status: 'not-loaded', basis: 'zero-value-failed', balance: 1000 });
    expect(r.hold?.state).toBe('released');
    await expectConserved(0);
    expect(await w.loadStore.settlements()).toEqual([]);
  });

  it('a client that reports a credited load as failed: the zero-value S1 does not verify as "failed", the result is rewritten to success', async () => {
    const t = new TamperChannel(w.card.ch);
    t.onResponse = (c, r) => (c.ins === IepIns.CREDIT_FOR_LOAD && r.sw === 0x9000 ? { sw: r.sw, data: Buffer.from(r.data).fill(0x02, 0, 1) } : r);
    const r = await internetLoad(t, opts('20.00'));
    expect(r).toMatchObject({ status: 'loaded', basis: 's3-rewritten', balance: 3000 });
    expect(r.hold?.state).toBe('captured');
    await expectConserved(2000);
  });
});

describe('the Load Result at the bank', () => {
  async function loadedResult() {
    const r = await internetLoad(w.card.ch, opts('5.00'));
    const env = await requestJson<{ loadResult: { iv: string; ct: string; mac: string } }>(`${w.loadUrl}/v1/loads/${r.txnId}/result`);
    return { r, env: env.loadResult };
  }

  it('replayed: refused, nothing captured twice', async () => {
    const { r, env } = await loadedResult();
    await expect(requestJson(`${w.bankUrl}/v1/loads/${r.txnId}/result`, { body: { loadResult: env } })).rejects.toMatchObject({ status: 409, code: 'LOAD_RESULT_REPLAYED' });
    await expectConserved(500);
  });

  it('forged, or another hold\'s result: refused (MAC under the key derived for THIS hold), the hold stays held', async () => {
    const { env } = await loadedResult();
    const bank = await requestJson<{ token: string }>(`${w.bankUrl}/v1/login`, { body: ALICE });
    const auth = { authorization: `Bearer ${bank.token}` };
    const purse = await readPurse(w.card.ch);
    const card = { balance: purse.balance, maxBalance: purse.maxBalance, currency: 978, exponent: 2, card: '999001******0025' };
    const page = await requestJson<{ ticket: { authorisation: { txnId: string } } }>(`${w.bankUrl}/v1/loads`, { body: { amount: 500, card }, headers: auth });
    const txn = page.ticket.authorisation.txnId;
    await expect(requestJson(`${w.bankUrl}/v1/loads/${txn}/result`, { body: { loadResult: env } })).rejects.toMatchObject({ status: 403, code: 'LOAD_RESULT_NOT_AUTHENTIC' });
    const forged = { ...env, ct: env.ct.slice(0, -2) + (env.ct.endsWith('00') ? '01' : '00') };
    await expect(requestJson(`${w.bankUrl}/v1/loads/${txn}/result`, { body: { loadResult: forged } })).rejects.toMatchObject({ status: 403 });
    expect((await requestJson<{ state: string }>(`${w.bankUrl}/v1/loads/${txn}`)).state).toBe('held');
    // The cardholder cancels: no S2 was ever issued, so the load server aborts it and the hold is released.
    const c = await requestJson<{ state: string }>(`${w.bankUrl}/v1/loads/${txn}/cancel`, { method: 'POST', body: {}, headers: auth });
    expect(c.state).toBe('released');
    await expect(requestJson(`${w.loadUrl}/v1/loads/${txn}/result`)).resolves.toMatchObject({ status: 'not-loaded', basis: 'aborted' });
    await expectConserved(500);
  });
});

describe('links cut', () => {
  it('after the card credited, before the bank saw the result: resume relays it; debited once, credited once', async () => {
    const restore = cutLink(/\/v1\/loads\/[0-9A-F]{16}\/result$/, 'before', 2);
    let txnId: string;
    try {
      await internetLoad(w.card.ch, opts('20.00'));
      throw new Error('expected the load to be cut off');
    } catch (e) {
      expect(e).toBeInstanceOf(LoadUnfinishedError);
      txnId = (e as LoadUnfinishedError).txnId;
    } finally {
      restore();
    }
    expect((await w.totals()).card).toBe(3000);
    expect((await w.totals()).holds.held).toBe(1);
    const r = await resumeInternetLoad(w.card.ch, { bankUrl: w.bankUrl, ...ALICE, txnId, retry: FAST });
    expect(r).toMatchObject({ status: 'loaded', basis: 's3-verified' });
    const again = await resumeInternetLoad(w.card.ch, { bankUrl: w.bankUrl, ...ALICE, txnId, retry: FAST });
    expect(again.hold?.state).toBe('captured');
    await expectConserved(2000);
  });

  it('after the card credited, the load server\'s answer lost: the bank\'s timeout sweep fetches the result and captures', async () => {
    const restore = cutLink(/\/response$/, 'after', 2);
    await expect(internetLoad(w.card.ch, opts('20.00'))).rejects.toBeInstanceOf(LoadUnfinishedError);
    restore();
    expect((await w.totals()).card).toBe(3000);
    expect(await w.bank.sweep()).toBe(0); // not expired yet
    w.bankStore.db.prepare(`UPDATE bank_holds SET expires_at = '2000-01-01T00:00:00.000Z'`).run();
    expect(await w.bank.sweep()).toBe(1);
    await expectConserved(2000);
  });

  it('the answer to CREDIT FOR LOAD lost between card and client: the zero-value request finds the credit', async () => {
    const t = new TamperChannel(w.card.ch);
    t.onResponse = (c, r) => (c.ins === IepIns.CREDIT_FOR_LOAD ? undefined : r);
    const r = await internetLoad(t, opts('20.00'));
    expect(r).toMatchObject({ status: 'loaded', basis: 'zero-value-credited' });
    await expectConserved(2000);
  });

  it('before the card credited (the Credit IEP lost): the zero-value request proves the failure, no debit', async () => {
    const restore = cutLink((u) => u === `${w.loadUrl}/v1/loads`, 'after', 2);
    let txnId = '';
    await internetLoad(w.card.ch, opts('20.00')).catch((e: LoadUnfinishedError) => (txnId = e.txnId));
    restore();
    expect(txnId).toMatch(/^[0-9A-F]{16}$/);
    const r = await resumeInternetLoad(w.card.ch, { bankUrl: w.bankUrl, ...ALICE, txnId, retry: FAST });
    expect(r).toMatchObject({ status: 'not-loaded', basis: 'zero-value-failed' });
    await expectConserved(0);
  });

  it('before the load server heard of the load: resume cancels, the bank releases', async () => {
    const restore = cutLink((u) => u === `${w.loadUrl}/v1/loads`, 'before', 2);
    let txnId = '';
    await internetLoad(w.card.ch, opts('20.00')).catch((e: LoadUnfinishedError) => (txnId = e.txnId));
    restore();
    const r = await resumeInternetLoad(w.card.ch, { bankUrl: w.bankUrl, ...ALICE, txnId, retry: FAST });
    expect(r).toMatchObject({ status: 'not-loaded', basis: 'cancelled' });
    await expectConserved(0);
    // And the aborted load can never get an S2 afterwards.
    await expect(requestJson(`${w.loadUrl}/v1/loads/${txnId}`)).resolves.toMatchObject({ state: 'final' });
  });
});

describe('power cut in the card during CREDIT FOR LOAD, at every persistent write', () => {
  it('each cut ends loaded-and-captured or not-loaded-and-released, never one without the other', async () => {
    const outcomes = new Set<string>();
    let loaded = 0;
    for (let k = 1; k < 50; k++) {
      const t = new TamperChannel(w.card.ch);
      let armed = false;
      t.onCommand = (c) => {
        if (c.ins === IepIns.CREDIT_FOR_LOAD && !armed) {
          armed = true;
          w.card.card.armPowerLoss(k);
        }
        return c;
      };
      const before = w.card.card.powerLossCount;
      const r = await internetLoad(t, opts('1.00'));
      const torn = w.card.card.powerLossCount > before;
      w.card.card.disarmPowerLoss();
      outcomes.add(`${torn ? 'torn' : 'untorn'}/${r.status}/${r.basis}`);
      if (r.status === 'loaded') loaded += 100;
      expect(r.hold?.state).toBe(r.status === 'loaded' ? 'captured' : 'released');
      await expectConserved(loaded);
      if (!torn) break;
    }
    expect([...outcomes].some((o) => o.startsWith('torn/not-loaded'))).toBe(true);
    expect([...outcomes].some((o) => o.startsWith('untorn/loaded'))).toBe(true);
  });
});

describe('load server crashed at each step and restarted', () => {
  for (const point of ['received', 's1-verified', 's2-saved', 's3-verified', 'result-saved'] as const) {
    it(`crash at ${point}: resume ends with card credited exactly when the account was debited`, async () => {
      w.crashAt = point;
      let txnId = '';
      let status = '';
      try {
        status = (await internetLoad(w.card.ch, opts('20.00'))).status;
      } catch (e) {
        expect(e).toBeInstanceOf(LoadUnfinishedError);
        txnId = (e as LoadUnfinishedError).txnId;
      }
      expect(status).toBe('');
      await w.restartLoad();
      const r = await resumeInternetLoad(w.card.ch, { bankUrl: w.bankUrl, ...ALICE, txnId, retry: FAST });
      expect(['loaded', 'not-loaded']).toContain(r.status);
      await expectConserved(r.status === 'loaded' ? 2000 : 0);
      if (point === 's3-verified' || point === 'result-saved') expect(r.status).toBe('loaded');
    });
  }
});

describe('zero-value request rules', () => {
  it('a counter or field mismatch is rejected and changes nothing', async () => {
    const t = new TamperChannel(w.card.ch);
    t.onResponse = (c, r) => (c.ins === IepIns.CREDIT_FOR_LOAD ? undefined : r);
    const restore = cutLink(/\/recovery$/, 'before', 2);
    let txnId = '';
    await internetLoad(t, opts('20.00')).catch((e: LoadUnfinishedError) => (txnId = e.txnId));
    restore();
    const progress = await requestJson<{ enquiryTxnId: string; counter: number }>(`${w.loadUrl}/v1/loads/${txnId}`);
    const { requestZeroValueLoad } = await import('../../../src/terminal/purse.ts');
    const { loadRequestBody } = await import('../../../src/protocol/load-messages.ts');
    const p = await requestJson<{ date: string; time: string }>(`${w.loadUrl}/v1/loads/${txnId}`);
    const e = await requestZeroValueLoad(w.card.ch as CardChannel, { amount: 2000, currency: 978, exponent: 2, date: p.date, time: p.time, loadTxnId: Buffer.from(txnId, 'hex') }, Buffer.from(progress.enquiryTxnId, 'hex'));
    const original = { cardId: w.card.cardId, counter: progress.counter, currency: 978, exponent: 2, date: p.date, time: p.time };
    const post = (o: typeof original) => requestJson(`${w.loadUrl}/v1/loads/${txnId}/recovery`, { body: { original: o, zeroValue: loadRequestBody(e.s1Fields, e.s1) } });
    await expect(post({ ...original, counter: original.counter + 1 })).rejects.toMatchObject({ status: 409, code: 'RECOVERY_MISMATCH' });
    await expect(post({ ...original, time: '000000' })).rejects.toMatchObject({ status: 409, code: 'RECOVERY_MISMATCH' });
    expect((await requestJson<{ state: string }>(`${w.loadUrl}/v1/loads/${txnId}`)).state).toBe('s2-issued');
    await expect(post(original)).resolves.toMatchObject({ status: 'loaded', basis: 'zero-value-credited' });
    await resumeInternetLoad(new EmulatorChannel(w.card.card), { bankUrl: w.bankUrl, ...ALICE, txnId, retry: FAST });
    await expectConserved(2000);
  });

  it('a second load for a card with an unresolved one is refused until that one is recovered', async () => {
    const restore = cutLink((u) => u === `${w.loadUrl}/v1/loads`, 'after', 2);
    let first = '';
    await internetLoad(w.card.ch, opts('20.00')).catch((e: LoadUnfinishedError) => (first = e.txnId));
    restore();
    const r = await internetLoad(w.card.ch, opts('1.00'));
    expect(r).toMatchObject({ status: 'not-loaded', basis: 'UNRESOLVED_LOAD' });
    await resumeInternetLoad(w.card.ch, { bankUrl: w.bankUrl, ...ALICE, txnId: first, retry: FAST });
    await expectConserved(0);
    await expect(requestJson(`${w.loadUrl}/v1/loads/FFFFFFFFFFFFFFFF`)).rejects.toBeInstanceOf(RemoteError);
  });
});
