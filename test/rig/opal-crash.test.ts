// `purselab serve opal` as a real process: hsm init (software key store), start on port 0, register, first login,
// forced change, balance; SIGKILL after each step and in the middle of registrations; after every restart the
// database is consistent (every card has its user, every user its card), and what was committed is there.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { killAll, purselab, runCli, type Proc } from './rig.ts';

const dir = mkdtempSync(join(tmpdir(), 'purselab-opal-rig-'));
const env = { PURSELAB_HSM_MASTER: 'opal-rig-test-master', PURSELAB_LOG_LEVEL: 'silent' };
const fixtures = resolve('fixtures/opal');
const config = join(dir, 'opal.json');
writeFileSync(
  config,
  JSON.stringify({
    issuers: [{ bin: '999001', profile: join(fixtures, '../profiles/demo-aes.json'), keys: join(fixtures, '../keys/demo-issuer.json'), initialBalance: 1234 }],
    scrypt: { N: 16384, r: 8, p: 1 },
    mailDir: join(dir, 'mail'),
  }),
);
const db = join(dir, 'opal.db');

afterAll(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<{ p: Proc; url: string }> {
  const p = purselab(['serve', 'opal', '--config', config, '--hsm', `software:${join(dir, 'hsm.store')}`, '--port', '0', '--db', db, '--log-level', 'silent'], { env });
  await p.waitForOutput(/listening on http:\/\/\S+/, 30_000);
  return { p, url: /listening on (http:\/\/\S+)/.exec(p.stdout)![1]! };
}
async function post(url: string, body: object, token?: string): Promise<{ status: number; body: any }> {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: JSON.stringify(body) });
  return { status: r.status, body: await r.json() };
}
const form = (userId: string) => ({ userId, fundingAccount: '4111111111111111', fundingExpiry: '09/29', cvv2: '123', billingAddress: '1 Test Street', email: `${userId}@example.org`, password: 'Chosen-pass 2026' });
function consistent(): { cards: number; users: number } {
  const d = new Database(db, { readonly: true });
  const cards = (d.prepare('SELECT COUNT(*) AS n FROM opal_cards').get() as { n: number }).n;
  const users = (d.prepare('SELECT COUNT(*) AS n FROM opal_users').get() as { n: number }).n;
  const orphans = (d.prepare('SELECT COUNT(*) AS n FROM opal_cards c LEFT JOIN opal_users u ON u.card_id = c.card_id WHERE u.user_ref IS NULL').get() as { n: number }).n;
  d.close();
  expect(orphans).toBe(0);
  return { cards, users };
}
const lastOtp = (): string => {
  const files = readdirSync(join(dir, 'mail')).sort();
  return /one-time password: (\S+)/.exec(JSON.parse(readFileSync(join(dir, 'mail', files.at(-1)!), 'utf8')).text)![1]!;
};

describe('serve opal: SIGKILL at each step', () => {
  it('survives kills after registration, first login, password change, and in the middle of registrations', async () => {
    const init = await runCli(['hsm', 'init', '--software', join(dir, 'hsm.store')], { env, timeoutMs: 60_000 });
    expect(init.code, init.stderr).toBe(0);

    let s = await start();
    expect((await post(`${s.url}/v1/register`, form('crash.user'))).status).toBe(200);
    await s.p.stop('SIGKILL');
    expect(consistent()).toEqual({ cards: 1, users: 1 });

    s = await start();
    const first = await post(`${s.url}/v1/login`, { userId: 'crash.user', password: lastOtp() });
    expect(first.body.mustChangePassword).toBe(true);
    await s.p.stop('SIGKILL');

    s = await start();
    const again = await post(`${s.url}/v1/login`, { userId: 'crash.user', password: lastOtp() });
    expect((await post(`${s.url}/v1/password`, { currentPassword: 'Chosen-pass 2026', newPassword: 'After-crash 99' }, again.body.token)).status).toBe(200);
    await s.p.stop('SIGKILL');

    s = await start();
    const l = await post(`${s.url}/v1/login`, { userId: 'crash.user', password: 'After-crash 99' });
    expect(l.body.mustChangePassword).toBe(false);
    const bal = await fetch(`${s.url}/v1/balance`, { headers: { authorization: `Bearer ${l.body.token}` } });
    expect(await bal.json()).toMatchObject({ balance: 1234, counter: 0 });
    // Kill while registrations are in flight: each is all or nothing.
    const inflight = Array.from({ length: 4 }, (_, i) => post(`${s.url}/v1/register`, form(`inflight.${i}`)).catch(() => undefined));
    await new Promise((r) => setTimeout(r, 150));
    await s.p.stop('SIGKILL');
    await Promise.all(inflight);
    const after = consistent();
    expect(after.cards).toBe(after.users);

    s = await start();
    expect((await post(`${s.url}/v1/login`, { userId: 'crash.user', password: 'After-crash 99' })).status).toBe(200);
    expect((await s.p.stop('SIGTERM')).code).toBe(0);
  }, 180_000);
});
