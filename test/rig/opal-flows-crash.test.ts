// `purselab serve opal` SIGKILLed in the middle of a purchase and of a load (PURSELAB_OPAL_CRASH_AT), then
// restarted: the virtual card, the payment server, the merchant, the bank and the load server agree, no value is
// lost or created, and the recovery path is the documented one. The payment + merchant servers (emulated PSAMs,
// short hold timeout) and the bank + load servers run in this process; OPAL is a child process on a software HSM
// key store made by `purselab hsm init`.
//   debit-before-save   the card ran DEBIT but its record was never stored: not debited; the payment never completes
//   debit-after-save    debited and stored, the payment server never got the response: it goes debit-unknown, its
//                       recovery report's re-credit claim credits the card back through OPAL, once
//   purchase-done       paid everywhere, OPAL's history row was not finished: marked interrupted, nothing owed
//   credit-after-save   credited and stored, the bank never got the result: POST /v1/load/resume captures the hold
//   credit-before-save  never credited: resume settles it as not loaded and the hold is released
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRecoveryReport, issueRecreditClaim } from '../../src/server/payment/recovery.ts';
import { startOpalWorld, type OpalWorld, WORLD_ISSUER_LINK_KEY } from '../../src/opal/world.ts';
import { ALICE, startWorld as startLoadWorld, type LoadWorld } from '../unit/load-server/harness.ts';
import { useOpalHsm } from '../unit/opal/helpers.ts';
import { useDemoIssuer } from '../unit/psam/helpers.ts';
import { killAll, purselab, runCli, type Proc } from './rig.ts';

const dir = mkdtempSync(join(tmpdir(), 'purselab-opal-flows-crash-'));
const ADMIN = 'opal-crash-admin-token';
const env = { PURSELAB_HSM_MASTER: 'opal-flows-crash-master', PURSELAB_TEST_OPAL_ADMIN: ADMIN, PURSELAB_TEST_LINK_KEY: WORLD_ISSUER_LINK_KEY };
const fixtures = resolve('fixtures');
const config = join(dir, 'opal.json');
writeFileSync(
  config,
  JSON.stringify({
    issuers: [{ bin: '999001', profile: join(fixtures, 'profiles/demo-aes.json'), keys: join(fixtures, 'keys/demo-issuer.json'), initialBalance: 5000 }],
    scrypt: { N: 1024, r: 8, p: 1 },
    mailDir: join(dir, 'mail'),
    adminTokenEnv: 'PURSELAB_TEST_OPAL_ADMIN',
    issuerLinkKeyEnv: 'PURSELAB_TEST_LINK_KEY',
  }),
);
const hsm = useOpalHsm(); // the in-process world's own OPAL (unused here)
const issuer = useDemoIssuer();

let world: OpalWorld;
let loads: LoadWorld;
let opal: { p: Proc; url: string } | undefined;
let token = '';

async function startOpal(crashAt?: string): Promise<{ p: Proc; url: string }> {
  const p = purselab(['serve', 'opal', '--config', config, '--hsm', `software:${join(dir, 'hsm.store')}`, '--port', '0', '--db', join(dir, 'opal.db'), '--log-level', 'silent'], { env: { ...env, ...(crashAt ? { PURSELAB_OPAL_CRASH_AT: crashAt } : {}) } });
  await p.waitForOutput(/listening on http:\/\/\S+/, 30_000);
  return { p, url: /listening on (http:\/\/\S+)/.exec(p.stdout)![1]! };
}
async function call(method: 'GET' | 'POST', path: string, body?: object, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const r = await fetch(`${opal!.url}${path}`, { method, headers: { ...(body ? { 'content-type': 'application/json' } : {}), authorization: `Bearer ${token}`, ...headers }, ...(body ? { body: JSON.stringify(body) } : {}) });
  return { status: r.status, body: await r.json() };
}
/** Run `flow` on an OPAL that dies at `point`; restart it (no crash) and log in again. */
async function crashDuring(point: string, flow: () => Promise<unknown>): Promise<void> {
  opal = await startOpal(point);
  await login();
  await expect(flow()).rejects.toThrow(); // the connection dies with the process
  expect((await opal.p.exited).signal).toBe('SIGKILL');
  opal = await startOpal();
  await login();
}
async function login(): Promise<void> {
  const l = await call('POST', '/v1/login', { userId: 'erin.crash', password: 'After-change 2027' });
  expect(l.status).toBe(200);
  token = l.body.token;
}
const balance = async () => (await call('GET', '/v1/balance')).body as { balance: number; counter: number };
const lastRow = async (table: 'purchase' | 'load' | 'recredit') => (await call('GET', '/v1/history')).body[table][0];
const orderReleased = async (payUrl: string) => ((await (await fetch(payUrl.replace(/\/orders\/([^/]+)\/pay$/, '/api/orders/$1'))).json()) as { released: boolean }).released;
const ledgerSum = async () => (await world.payment.store.ledger()).reduce((s, e) => s + e.amount, 0);

beforeAll(async () => {
  const init = await runCli(['hsm', 'init', '--software', join(dir, 'hsm.store')], { env, timeoutMs: 60_000 });
  expect(init.code, init.stderr).toBe(0);
  world = await startOpalWorld({ hsm: hsm().hsm, psams: 1, paymentTimeouts: { holdMs: 1500 } });
  loads = await startLoadWorld(issuer);
  opal = await startOpal();
  const form = { userId: 'erin.crash', fundingAccount: '4111111111111111', fundingExpiry: '09/39', cvv2: '123', billingAddress: '1 Crash Street', email: 'erin@example.org', password: 'Chosen-pass 2026' };
  expect((await call('POST', '/v1/register', form)).status).toBe(200);
  const { readdirSync, readFileSync } = await import('node:fs');
  const mail = readdirSync(join(dir, 'mail'))[0]!;
  const otp = /one-time password: (\S+)/.exec(JSON.parse(readFileSync(join(dir, 'mail', mail), 'utf8')).text)![1]!;
  token = (await call('POST', '/v1/login', { userId: 'erin.crash', password: otp })).body.token;
  expect((await call('POST', '/v1/password', { currentPassword: 'Chosen-pass 2026', newPassword: 'After-change 2027' })).status).toBe(200);
  await opal.p.stop('SIGTERM');
}, 120_000);
afterAll(async () => {
  await opal?.p.stop('SIGTERM').catch(() => undefined);
  await killAll();
  await world?.close();
  await loads?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('serve opal: SIGKILL in the middle of a purchase and of a load, restart', () => {
  it('debit-before-save: never debited, the payment never completes, the order is not released', async () => {
    const payUrl = await world.order('ebook');
    await crashDuring('debit-before-save', () => call('POST', '/v1/purchase', { pageUrl: payUrl, amount: 420 }));
    expect(await balance()).toMatchObject({ balance: 5000, counter: 0 });
    expect(await lastRow('purchase')).toMatchObject({ status: 'interrupted', detail: { interruptedBalance: 5000 } });
    expect(await orderReleased(payUrl)).toBe(false);
    expect(await ledgerSum()).toBe(0);
  }, 90_000);

  it('debit-after-save: debited, the payment server goes debit-unknown; its re-credit claim credits the card back once', async () => {
    const payUrl = await world.order('ebook');
    await crashDuring('debit-after-save', () => call('POST', '/v1/purchase', { pageUrl: payUrl, amount: 420 }));
    expect(await balance()).toMatchObject({ balance: 4580, counter: 1 });
    expect(await lastRow('purchase')).toMatchObject({ status: 'interrupted' });
    expect(await orderReleased(payUrl)).toBe(false);
    // The payment server's hold timeout makes it debit-unknown; its recovery report offers a re-credit claim.
    let entry;
    for (let i = 0; i < 50 && !entry; i++) {
      entry = (await buildRecoveryReport(world.payment.store)).entries.find((e) => e.recreditEligible);
      if (!entry) await new Promise((r) => setTimeout(r, 200));
    }
    expect(entry).toMatchObject({ state: 'debit-unknown', amount: 420 });
    const issued = await issueRecreditClaim(world.payment.store, Buffer.from(WORLD_ISSUER_LINK_KEY, 'hex'), entry!.paymentId);
    const admin = { 'x-opal-admin-token': ADMIN };
    expect((await call('POST', '/v1/admin/recredit-claim', { claim: issued.claim })).status).toBe(403);
    const forged = { ...issued.claim, mac: issued.claim.mac.replace(/^./, (c) => (c === '0' ? '1' : '0')) };
    expect((await call('POST', '/v1/admin/recredit-claim', { claim: forged }, admin)).body.error.code).toBe('OPAL_RECREDIT');
    const rc = await call('POST', '/v1/admin/recredit-claim', { claim: issued.claim }, admin);
    expect(rc.status, JSON.stringify(rc.body)).toBe(200);
    expect(rc.body).toMatchObject({ paymentId: entry!.paymentId, amount: 420, newBalance: 5000 });
    expect((await call('POST', '/v1/admin/recredit-claim', { claim: issued.claim }, admin)).status).toBe(409);
    expect((await balance()).balance).toBe(5000);
    expect((await call('GET', '/v1/history')).body.load).toHaveLength(0); // a re-credit is not a load
    expect(await ledgerSum()).toBe(0);
  }, 90_000);

  it('purchase-done: paid everywhere; the unfinished history row is marked interrupted, nothing is owed', async () => {
    const payUrl = await world.order('ebook');
    await crashDuring('purchase-done', () => call('POST', '/v1/purchase', { pageUrl: payUrl, amount: 420 }));
    expect((await balance()).balance).toBe(4580);
    expect(await orderReleased(payUrl)).toBe(true);
    expect(await ledgerSum()).toBe(420);
    expect((await call('GET', '/v1/admin/recovery', undefined, { 'x-opal-admin-token': ADMIN })).body.interrupted).toEqual([expect.objectContaining({ table: 'purchase' })]);
  }, 90_000);

  it('credit-after-save: credited, the bank never got the result; resume captures the hold, value counted once', async () => {
    const before = (await balance()).balance;
    await crashDuring('credit-after-save', () => call('POST', '/v1/load', { bankUrl: loads.bankUrl, bankUser: ALICE.user, bankPassword: ALICE.password, amount: '10.00' }));
    expect((await balance()).balance).toBe(before + 1000);
    const row = await lastRow('load');
    expect(row).toMatchObject({ status: 'interrupted', detail: { txnId: expect.stringMatching(/^[0-9A-F]+$/) } });
    const r = await call('POST', '/v1/load/resume', { loadId: row.id, bankUser: ALICE.user, bankPassword: ALICE.password });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body).toMatchObject({ status: 'loaded', hold: { state: 'captured' } });
    expect((await balance()).balance).toBe(before + 1000);
    expect((await call('POST', '/v1/load/resume', { loadId: row.id, bankUser: ALICE.user, bankPassword: ALICE.password })).status).toBe(409);
  }, 90_000);

  it('credit-before-save: never credited; resume settles it as not loaded and releases the hold', async () => {
    const before = (await balance()).balance;
    await crashDuring('credit-before-save', () => call('POST', '/v1/load', { bankUrl: loads.bankUrl, bankUser: ALICE.user, bankPassword: ALICE.password, amount: '10.00' }));
    expect((await balance()).balance).toBe(before);
    const row = await lastRow('load');
    expect(row.status).toBe('interrupted');
    const r = await call('POST', '/v1/load/resume', { loadId: row.id, bankUser: ALICE.user, bankPassword: ALICE.password });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    expect(r.body.status).toBe('not-loaded');
    expect(r.body.hold.state).not.toBe('captured');
    expect((await balance()).balance).toBe(before);
  }, 90_000);
});
