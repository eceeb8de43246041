// The bank server's rules through fastify inject (no network): scrypt logins, schema refusals (unknown fields,
// bad types change nothing), the load screen's maximum, holds against available funds, and the load server's
// refusal of a ticket the bank did not MAC or a Load Request that is not the ticket's load.

import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBankApp } from '../../../src/server/bank/app.ts';
import { BankService, hashPassword } from '../../../src/server/bank/service.ts';
import { SqliteBankStore } from '../../../src/server/bank/store.ts';
import { createLoadApp } from '../../../src/server/load/app.ts';
import { LoadService } from '../../../src/server/load/service.ts';
import { SqliteLoadStore } from '../../../src/server/load/store.ts';
import { macOf } from '../../../src/protocol/envelope.ts';
import { LoadLabel, loadRequestBody, type LoadPage } from '../../../src/protocol/load-messages.ts';
import { initializeForLoad } from '../../../src/terminal/purse.ts';
import { BANK_CONFIG, LOAD_CONFIG } from '../load-server/harness.ts';
import { CARD_PROFILES, newCard, useDemoIssuer } from '../psam/helpers.ts';

const issuer = useDemoIssuer();
let dir: string;
let bank: FastifyInstance;
let load: FastifyInstance;
let bankStore: SqliteBankStore;
let loadStore: SqliteLoadStore;
const CARD = { balance: 1000, maxBalance: 50_000, currency: 978, exponent: 2, card: '999001******0025' };

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'purselab-bank-'));
  bankStore = new SqliteBankStore(join(dir, 'bank.db'));
  const service = new BankService({ store: bankStore, config: BANK_CONFIG, loadServer: 'http://127.0.0.1:9' });
  await service.seed();
  bank = createBankApp({ service, sweepIntervalSeconds: 0, logLevel: false });
  loadStore = new SqliteLoadStore(join(dir, 'load.db'));
  load = createLoadApp({ service: new LoadService({ store: loadStore, issuer, config: LOAD_CONFIG }), logLevel: false });
});
afterEach(async () => {
  await bank.close();
  await load.close();
  await bankStore.close();
  await loadStore.close();
  rmSync(dir, { recursive: true, force: true });
});

async function login(user = 'alice', password = 'alice-demo-pw'): Promise<string> {
  const r = await bank.inject({ method: 'POST', url: '/v1/login', payload: { user, password } });
  expect(r.statusCode, r.body).toBe(200);
  return `Bearer ${r.json<{ token: string }>().token}`;
}

describe('bank server', () => {
  it('stores scrypt hashes, never passwords; a wrong password or unknown user is the same 401', async () => {
    const row = bankStore.db.prepare(`SELECT salt, hash FROM bank_users WHERE user = 'alice'`).get() as { salt: string; hash: string };
    expect(row.hash).toBe((await hashPassword('alice-demo-pw', Buffer.from(row.salt, 'hex'))).hash);
    expect(JSON.stringify(bankStore.db.prepare('SELECT * FROM bank_users').all())).not.toContain('alice-demo-pw');
    for (const payload of [{ user: 'alice', password: 'wrong-password' }, { user: 'mallory', password: 'alice-demo-pw' }]) {
      const r = await bank.inject({ method: 'POST', url: '/v1/login', payload });
      expect(r.statusCode).toBe(401);
      expect(r.json()).toEqual({ error: { code: 'LOGIN_FAILED', message: 'user or password is wrong' } });
    }
  });

  it('refuses unknown fields, bad types and missing login, changing nothing', async () => {
    const auth = await login();
    expect((await bank.inject({ method: 'POST', url: '/v1/loads', payload: { amount: 100, card: CARD } })).statusCode).toBe(401);
    expect((await bank.inject({ method: 'POST', url: '/v1/loads', headers: { authorization: auth }, payload: { amount: 100, card: CARD, extra: 1 } })).statusCode).toBe(400);
    expect((await bank.inject({ method: 'POST', url: '/v1/loads', headers: { authorization: auth }, payload: { amount: 1.5, card: CARD } })).statusCode).toBe(400);
    expect((await bank.inject({ method: 'POST', url: '/v1/loads', headers: { authorization: auth }, payload: { amount: 100, card: { ...CARD, card: '9990010000000025' } } })).statusCode).toBe(400);
    expect((await bankStore.totals('issuer-float')).holds).toEqual({ held: 0, captured: 0, released: 0 });
  });

  it('the load screen: max load = maximum - balance, capped by the funds; holds count against the funds', async () => {
    const auth = await login('bob', 'bob-demo-pw');
    const q = await bank.inject({ method: 'POST', url: '/v1/loads/quote', headers: { authorization: auth }, payload: { card: CARD } });
    expect(q.json()).toMatchObject({ account: '****2051', available: 1500, maxLoad: 1500, currentBalance: 1000 });
    const first = await bank.inject({ method: 'POST', url: '/v1/loads', headers: { authorization: auth }, payload: { amount: 1000, card: CARD } });
    expect(first.statusCode).toBe(200);
    const second = await bank.inject({ method: 'POST', url: '/v1/loads', headers: { authorization: auth }, payload: { amount: 600, card: CARD } });
    expect(second.json()).toMatchObject({ error: { code: 'INSUFFICIENT_FUNDS' } });
    const over = await bank.inject({ method: 'POST', url: '/v1/loads', headers: { authorization: await login() }, payload: { amount: 49_001, card: CARD } });
    expect(over.json()).toMatchObject({ error: { code: 'ABOVE_MAX_LOAD' } });
    const cur = await bank.inject({ method: 'POST', url: '/v1/loads/quote', headers: { authorization: auth }, payload: { card: { ...CARD, currency: 840 } } });
    expect(cur.json()).toMatchObject({ error: { code: 'CURRENCY_MISMATCH' } });
  });
});

describe('load server: the ticket and the Load Request', () => {
  async function pageAndRequest() {
    const auth = await login();
    const page = (await bank.inject({ method: 'POST', url: '/v1/loads', headers: { authorization: auth }, payload: { amount: 2000, card: CARD } })).json<LoadPage>();
    const a = page.ticket.authorisation;
    const c = newCard(CARD_PROFILES.aes, 1000);
    const init = await initializeForLoad(c.ch, { amount: 2000, currency: 978, exponent: 2, date: a.date, time: a.time, loadTxnId: Buffer.from(a.txnId, 'hex') });
    const key = Buffer.from(page.sessionKey, 'hex');
    const post = (ticket: LoadPage['ticket'], request: ReturnType<typeof loadRequestBody>) =>
      load.inject({ method: 'POST', url: '/v1/loads', payload: { ticket, eSessionKey: page.eSessionKey, request, mac: macOf(key, LoadLabel.LOAD_REQUEST, request) } });
    return { page, init, post, request: loadRequestBody(init.s1Fields, init.s1) };
  }

  it('a ticket whose amount was raised on the way is not the bank\'s', async () => {
    const { page, post, request } = await pageAndRequest();
    const r = await post({ ...page.ticket, authorisation: { ...page.ticket.authorisation, amount: 2001 } }, { ...request, amount: 2001 });
    expect(r.statusCode).toBe(403);
    expect(r.json()).toMatchObject({ error: { code: 'TICKET_NOT_AUTHENTIC' } });
    expect(loadStore.db.prepare('SELECT COUNT(*) AS n FROM load_loads').get()).toEqual({ n: 0 });
  });

  it('a Load Request for another amount than the ticket\'s is refused before the HSM sees it', async () => {
    const { page, post, request } = await pageAndRequest();
    const r = await post(page.ticket, { ...request, amount: 2500 });
    expect(r.json()).toMatchObject({ error: { code: 'LOAD_REQUEST_MISMATCH' } });
    expect(loadStore.db.prepare('SELECT COUNT(*) AS n FROM load_loads').get()).toEqual({ n: 0 });
  });

  it('the same Load Request twice gets the same S2 (a lost answer), a Load Request without the session MAC is refused', async () => {
    const { page, post, request } = await pageAndRequest();
    const a = await post(page.ticket, request);
    const b = await post(page.ticket, request);
    expect(a.statusCode, a.body).toBe(200);
    expect(b.json()).toEqual(a.json());
    const r = await load.inject({ method: 'POST', url: '/v1/loads', payload: { ticket: page.ticket, eSessionKey: page.eSessionKey, request, mac: '0000000000000000' } });
    expect(r.json()).toMatchObject({ error: { code: 'REQUEST_NOT_AUTHENTIC' } });
  });
});
