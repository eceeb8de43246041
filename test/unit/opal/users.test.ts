// Registration rules, the one-time password and the forced change, lockout, sessions, BIN partitioning, and
// what an attacker who reads the database file finds (no balance, key, password, funding account or CVV2).
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { register, checkRegistration, luhnValid, type RegistrationForm } from '../../../src/opal/registration.ts';
import { UserStore } from '../../../src/opal/users.ts';
import { MemoryMailer } from '../../../src/opal/mail.ts';
import { hashPassword, verifyPassword, DEFAULT_SCRYPT } from '../../../src/opal/passwords.ts';
import { loadOpalConfig } from '../../../src/opal/config.ts';
import { withPseudoReader } from '../../../src/opal/pseudo-reader.ts';
import { readPurse } from '../../../src/terminal/index.ts';
import { KEYS, repoPath } from '../psam/helpers.ts';
import { newStore, openOpalDb, useOpalHsm, useTempDir } from './helpers.ts';

const hsm = useOpalHsm();
const tmp = useTempDir();
const config = loadOpalConfig(repoPath('fixtures/opal/opal-two-bins.json'));
const NOW = new Date('2026-01-15T12:00:00Z');

const form = (over: Partial<RegistrationForm> = {}): RegistrationForm => ({
  userId: 'alice.example',
  fundingAccount: '4111 1111 1111 1111',
  fundingExpiry: '09/28',
  cvv2: '737',
  billingAddress: '1 Test Street, 75001 Paris',
  email: 'alice@example.org',
  password: 'Registration-pass 42',
  ...over,
});

let n = 0;
function setup(clock = { t: NOW.getTime() }) {
  const db = openOpalDb(join(tmp(), `users-${n++}.db`));
  const cards = newStore(db, hsm().ops);
  const users = new UserStore({ db, hsm: hsm().hsm, ops: hsm().ops, scrypt: { N: 1024, r: 8, p: 1 }, lockout: config.lockout, sessionSeconds: 600, now: () => clock.t });
  const mailer = new MemoryMailer();
  const deps = { issuers: config.issuers, cards, users, mailer, now: () => new Date(clock.t) };
  const otpOf = (i = mailer.sent.length - 1) => /one-time password: (\S+)/.exec(mailer.sent[i]!.text)![1]!;
  return { db, cards, users, mailer, deps, clock, otpOf };
}

describe('registration rules', () => {
  it('accepts a complete form and refuses each bad field with OPAL_REGISTRATION / OPAL_PASSWORD_POLICY', () => {
    expect(checkRegistration(form(), NOW)).toEqual({ userId: 'alice.example', fundingAccount: '4111111111111111', fundingExpiry: '2028-09', billingAddress: '1 Test Street, 75001 Paris', email: 'alice@example.org' });
    expect(luhnValid('4111111111111111')).toBe(true);
    for (const [bad, code] of [
      [{ userId: 'ab' }, 'OPAL_REGISTRATION'],
      [{ userId: 'has space' }, 'OPAL_REGISTRATION'],
      [{ fundingAccount: '4111111111111112' }, 'OPAL_REGISTRATION'],
      [{ fundingAccount: '12345' }, 'OPAL_REGISTRATION'],
      [{ fundingExpiry: '12/25' }, 'OPAL_REGISTRATION'],
      [{ fundingExpiry: '13/28' }, 'OPAL_REGISTRATION'],
      [{ cvv2: '12' }, 'OPAL_REGISTRATION'],
      [{ cvv2: '12a' }, 'OPAL_REGISTRATION'],
      [{ email: 'not-an-address' }, 'OPAL_REGISTRATION'],
      [{ billingAddress: ' x ' }, 'OPAL_REGISTRATION'],
      [{ password: 'short1' }, 'OPAL_PASSWORD_POLICY'],
      [{ password: 'onlyletterslong' }, 'OPAL_PASSWORD_POLICY'],
      [{ password: 'xxalice.example99' }, 'OPAL_PASSWORD_POLICY'],
    ] as const) {
      expect(() => checkRegistration(form(bad), NOW), JSON.stringify(bad)).toThrow(expect.objectContaining({ code }));
    }
  });

  it('issues a unique 16-digit card id (BIN + 10 digits) per user, in the chosen BIN; a taken user id is refused', async () => {
    const s = setup();
    const a = await register(s.deps, form());
    const b = await register(s.deps, form({ userId: 'bob.example', bin: '999002' }));
    expect(a.cardId).toMatch(/^999001\d{10}$/);
    expect(b.cardId).toMatch(/^999002\d{10}$/);
    expect(a.cardId).not.toBe(b.cardId);
    await expect(register(s.deps, form())).rejects.toMatchObject({ code: 'OPAL_USER_EXISTS' });
    await expect(register(s.deps, form({ userId: 'ALICE.example' }))).rejects.toMatchObject({ code: 'OPAL_USER_EXISTS' });
    await expect(register(s.deps, form({ userId: 'carol.example', bin: '123456' }))).rejects.toMatchObject({ code: 'OPAL_BIN_UNKNOWN' });
    // The card is real: the issuer's profile, pre-loaded balance of the BIN.
    expect(await withPseudoReader(s.cards, a.cardId, (r) => readPurse(r))).toMatchObject({ cardId: a.cardId, balance: 5000, maxBalance: 50_000 });
    expect(await withPseudoReader(s.cards, b.cardId, (r) => readPurse(r))).toMatchObject({ cardId: b.cardId, balance: 0, maxBalance: 20_000 });
    // Partitioned: BIN 999002's session cannot reach a 999001 card.
    await expect(s.cards.connect(a.cardId, { bin: '999002' })).rejects.toMatchObject({ code: 'OPAL_CARD_NOT_FOUND' });
    // Nothing half-done: a refused registration left no card behind.
    expect((s.db.prepare('SELECT COUNT(*) AS n FROM opal_cards').get() as { n: number }).n).toBe(2);
  });
});

describe('login', () => {
  it('first login only with the e-mailed one-time password, then a forced change; then the new password', async () => {
    const s = setup();
    await register(s.deps, form());
    expect(s.mailer.sent).toHaveLength(1);
    expect(s.mailer.sent[0]!.to).toBe('alice@example.org');
    const otp = s.otpOf();
    await expect(s.users.login('alice.example', 'Registration-pass 42')).rejects.toMatchObject({ code: 'OPAL_LOGIN_FAILED' });
    const first = await s.users.login('alice.example', otp);
    expect(first.mustChange).toBe(true);
    await expect(s.users.changePassword(first.token, 'wrong current 1', 'Brand-new pass 7')).rejects.toMatchObject({ code: 'OPAL_LOGIN_FAILED' });
    await expect(s.users.changePassword(first.token, 'Registration-pass 42', 'weak')).rejects.toMatchObject({ code: 'OPAL_PASSWORD_POLICY' });
    await s.users.changePassword(first.token, 'Registration-pass 42', 'Brand-new pass 7');
    expect(s.users.session(first.token).mustChange).toBe(false);
    await expect(s.users.login('alice.example', otp)).rejects.toMatchObject({ code: 'OPAL_LOGIN_FAILED' });
    const again = await s.users.login('alice.example', 'Brand-new pass 7');
    expect(again).toMatchObject({ mustChange: false, bin: '999001' });
    expect((await s.users.profile(again)).fundingAccount).toBe('4111111111111111');
    s.users.logout(again.token);
    expect(() => s.users.session(again.token)).toThrow(expect.objectContaining({ code: 'OPAL_SESSION_INVALID' }));
  });

  it('locks the account after maxFailures wrong passwords, refuses even the right one while locked, unlocks later', async () => {
    const s = setup();
    await register(s.deps, form());
    const otp = s.otpOf();
    const max = config.lockout.maxFailures;
    for (let i = 1; i < max; i++) await expect(s.users.login('alice.example', `wrong-${i}-password`)).rejects.toMatchObject({ code: 'OPAL_LOGIN_FAILED' });
    await expect(s.users.login('alice.example', 'wrong-last-password')).rejects.toMatchObject({ code: 'OPAL_LOCKED' });
    await expect(s.users.login('alice.example', otp)).rejects.toMatchObject({ code: 'OPAL_LOCKED' });
    s.clock.t += config.lockout.lockSeconds * 1000 + 1;
    expect((await s.users.login('alice.example', otp)).mustChange).toBe(true);
    // A success resets the count: max-1 failures again do not lock.
    for (let i = 1; i < max; i++) await expect(s.users.login('alice.example', `wrong-${i}-again`)).rejects.toMatchObject({ code: 'OPAL_LOGIN_FAILED' });
    expect((await s.users.login('alice.example', otp)).mustChange).toBe(true);
  });

  it('an unknown user id fails exactly like a wrong password; sessions expire', async () => {
    const s = setup();
    await register(s.deps, form());
    await expect(s.users.login('nobody.here', 'Whatever pass 1')).rejects.toMatchObject({ code: 'OPAL_LOGIN_FAILED', message: 'wrong user id or password' });
    const l = await s.users.login('alice.example', s.otpOf());
    s.clock.t += 601_000;
    expect(() => s.users.session(l.token)).toThrow(expect.objectContaining({ code: 'OPAL_SESSION_INVALID' }));
  });

  it('passwords are scrypt hashes with the memory-hard default parameters', async () => {
    const h = await hashPassword('Some password 1');
    expect(h).toMatch(new RegExp(`^scrypt\\$${DEFAULT_SCRYPT.N}\\$8\\$1\\$`));
    expect(DEFAULT_SCRYPT.N * DEFAULT_SCRYPT.r * 128).toBeGreaterThanOrEqual(32 * 1024 * 1024);
    expect(await verifyPassword('Some password 1', h)).toBe(true);
    expect(await verifyPassword('Some password 2', h)).toBe(false);
  });
});

describe('a database read by an attacker', () => {
  it('holds no balance, card key, password, one-time password, funding account, CVV2, e-mail or user id in clear', async () => {
    const s = setup();
    const balanceIssuer = config.issuers[0]!;
    const reg = await register(s.deps, form({ fundingAccount: '5555 5555 5555 4444', cvv2: '9317', email: 'very.secret.mailbox@example.org', userId: 'secret-user-id' }));
    const otp = s.otpOf();
    const first = await s.users.login('secret-user-id', otp);
    await s.users.changePassword(first.token, 'Registration-pass 42', 'Second-pass 8831');
    s.db.pragma('wal_checkpoint(TRUNCATE)');
    s.db.close();
    // The card's keys as the issuer derives them, and the balance digits.
    const { deriveCardKey } = await import('../../../src/crypto/purse-mac.ts');
    const master = (usage: string) => KEYS.masterKeys.find((m) => m.usage === usage && m.alg === 2 && m.version === 1)!.key;
    const keys = ['purchase', 'load', 'update'].map((u) => deriveCardKey(master(u), reg.cardId, 2));
    const dbFile = readdirSync(tmp()).filter((f) => f.startsWith(`users-${n - 1}.db`)).map((f) => readFileSync(join(tmp(), f)));
    expect(dbFile.length).toBeGreaterThan(0);
    const all = Buffer.concat(dbFile);
    const secrets = ['Registration-pass 42', 'Second-pass 8831', otp, '5555555555554444', 'very.secret.mailbox', 'secret-user-id', '"bal"', 'Paris'];
    for (const text of secrets) expect(all.includes(Buffer.from(text, 'utf8')), text).toBe(false);
    for (const k of keys) {
      expect(all.includes(k)).toBe(false);
      expect(all.includes(Buffer.from(k.toString('hex').toUpperCase()))).toBe(false);
    }
    expect(all.includes(Buffer.from('9317'))).toBe(false);
    // Every column, decoded: no integer equal to the balance, no text containing it.
    const db = openOpalDb(join(tmp(), `users-${n - 1}.db`));
    for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'opal_%'").all() as { name: string }[]) {
      for (const row of db.prepare(`SELECT * FROM ${name}`).all() as Record<string, unknown>[]) {
        for (const v of Object.values(row)) {
          if (typeof v === 'number') expect(v).not.toBe(balanceIssuer.initialBalance);
          if (typeof v === 'string') expect(v).not.toContain(String(balanceIssuer.initialBalance));
        }
      }
    }
    db.close();
    expect(existsSync(join(tmp(), `users-${n - 1}.db`))).toBe(true);
  });
});
