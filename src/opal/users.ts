// OPAL users (the patent's user verification module 262): who may use which virtual card. The user id is a
// secret, so the table is indexed by an HSM-keyed CMAC of it (never the id itself); the password and the
// one-time password are scrypt hashes; the profile (user id, funding account and expiry, billing address,
// e-mail) is sealed by the HSM under the card's record keys. Logins count failures and lock the account for a
// while after too many; sessions are random tokens of which only the SHA-256 is stored.

import { createHash, randomBytes } from 'node:crypto';
import type { Statement } from 'better-sqlite3';
import type { Hsm } from '../../hsm-bridge/hsm.ts';
import { DEFAULT_PAYMENT_KEYS, type PaymentOps } from '../../hsm-bridge/payment.ts';
import type { SqliteDatabase } from '../store/sqlite.ts';
import { OpalError } from './errors.ts';
import { checkPasswordPolicy, dummyHash, hashPassword, verifyPassword, type ScryptParams } from './passwords.ts';

/** What is sealed per user (never in clear in the database). CVV2 is not kept at all. */
export interface UserProfile {
  readonly userId: string;
  readonly fundingAccount: string;
  /** YYYY-MM */
  readonly fundingExpiry: string;
  readonly billingAddress: string;
  readonly email: string;
}

export interface UserRow {
  readonly userRef: string;
  readonly bin: string;
  readonly cardId: string;
  readonly mustChange: boolean;
}

export interface LoginResult extends UserRow {
  readonly token: string;
  readonly expiresAt: number;
}

export interface UserStoreOptions {
  readonly db: SqliteDatabase;
  readonly hsm: Hsm;
  readonly ops: PaymentOps;
  readonly scrypt: ScryptParams;
  readonly lockout: { readonly maxFailures: number; readonly lockSeconds: number };
  readonly sessionSeconds: number;
  /** Clock (tests). */
  readonly now?: () => number;
}

/** The index key: derived inside the HSM from the record MAC master by this reserved id (BIN 000000 is refused). */
const INDEX_KEY_ID = Buffer.alloc(8, 0);
const INDEX_TAG = Buffer.from('OPAL-USER-ID:', 'ascii');

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

interface DbUser {
  user_ref: string;
  bin: string;
  card_id: string;
  password_hash: string;
  otp_hash: string | null;
  must_change: number;
  failed_logins: number;
  locked_until: number;
  profile: Buffer;
}

export class UserStore {
  private readonly o: UserStoreOptions;
  private readonly now: () => number;
  private readonly q: Record<'get' | 'insert' | 'fail' | 'lock' | 'ok' | 'setPassword' | 'session' | 'findSession' | 'dropSession' | 'dropSessions', Statement<unknown[]>>;

  constructor(options: UserStoreOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    const db = options.db;
    this.q = {
      get: db.prepare('SELECT * FROM opal_users WHERE user_ref = ?'),
      insert: db.prepare('INSERT INTO opal_users (user_ref, bin, card_id, password_hash, otp_hash, must_change, profile, created_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)'),
      fail: db.prepare('UPDATE opal_users SET failed_logins = failed_logins + 1 WHERE user_ref = ?'),
      lock: db.prepare('UPDATE opal_users SET failed_logins = 0, locked_until = ? WHERE user_ref = ?'),
      ok: db.prepare('UPDATE opal_users SET failed_logins = 0 WHERE user_ref = ?'),
      setPassword: db.prepare('UPDATE opal_users SET password_hash = ?, otp_hash = NULL, must_change = 0 WHERE user_ref = ?'),
      session: db.prepare('INSERT INTO opal_sessions (token_hash, user_ref, expires_at) VALUES (?, ?, ?)'),
      // Only what a session needs: not the password hashes, nor the sealed profile (a blob copied out per request).
      findSession: db.prepare('SELECT s.expires_at, u.user_ref, u.bin, u.card_id, u.must_change FROM opal_sessions s JOIN opal_users u ON u.user_ref = s.user_ref WHERE s.token_hash = ?'),
      dropSession: db.prepare('DELETE FROM opal_sessions WHERE token_hash = ?'),
      dropSessions: db.prepare('DELETE FROM opal_sessions WHERE user_ref = ?'),
    };
  }

  /** The table key of a user id: AES-CMAC under an HSM-held key, hex (the same id always gives the same key). */
  async userRef(userId: string): Promise<string> {
    const data = Buffer.concat([INDEX_TAG, Buffer.from(userId.normalize('NFC').toLowerCase(), 'utf8')]);
    const mac = await this.o.hsm.macGenerate({ master: DEFAULT_PAYMENT_KEYS.recordMac, cardId: INDEX_KEY_ID }, 'AES-CMAC', data);
    return mac.toString('hex');
  }

  async exists(userId: string): Promise<boolean> {
    return this.q.get.get(await this.userRef(userId)) !== undefined;
  }

  /**
   * Prepare a new user's row (hashes and the sealed profile, computed now) and return its synchronous insert,
   * to run in the registration's transaction with the card's insert. OPAL_USER_EXISTS if the id is taken.
   */
  async prepareInsert(profile: UserProfile, cardId: string, password: string, oneTimePassword: string): Promise<() => void> {
    checkPasswordPolicy(password, profile.userId);
    const ref = await this.userRef(profile.userId);
    const [passwordHash, otpHash] = await Promise.all([hashPassword(password, this.o.scrypt), hashPassword(oneTimePassword, this.o.scrypt)]);
    const sealed = await this.o.ops.sealRecord(cardId, Buffer.from(JSON.stringify(profile), 'utf8'));
    return () => {
      try {
        this.q.insert.run(ref, cardId.slice(0, 6), cardId, passwordHash, otpHash, sealed, new Date(this.now()).toISOString());
      } catch (e) {
        if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new OpalError('OPAL_USER_EXISTS', 'this user id is already registered');
        throw e;
      }
    };
  }

  /**
   * Check a user id and password (the one-time password until it has been changed). Wrong id and wrong password
   * give the same error and cost the same time; a locked account is refused without checking the password.
   */
  async login(userId: string, password: string): Promise<LoginResult> {
    const ref = await this.userRef(userId);
    const row = this.q.get.get(ref) as DbUser | undefined;
    if (!row) {
      await verifyPassword(password, await dummyHash(this.o.scrypt));
      throw new OpalError('OPAL_LOGIN_FAILED', 'wrong user id or password');
    }
    if (row.locked_until > this.now()) throw this.lockedError(row.locked_until);
    const ok = await verifyPassword(password, row.otp_hash ?? row.password_hash);
    if (!ok) {
      const failures = row.failed_logins + 1;
      if (failures >= this.o.lockout.maxFailures) {
        const until = this.now() + this.o.lockout.lockSeconds * 1000;
        this.q.lock.run(until, ref);
        throw this.lockedError(until);
      }
      this.q.fail.run(ref);
      throw new OpalError('OPAL_LOGIN_FAILED', 'wrong user id or password');
    }
    this.q.ok.run(ref);
    const token = randomBytes(32).toString('base64url');
    const expiresAt = this.now() + this.o.sessionSeconds * 1000;
    this.q.session.run(sha256(token), ref, expiresAt);
    return { token, expiresAt, ...toUserRow(row) };
  }

  /** The user of a session token; OPAL_SESSION_INVALID when unknown or expired. */
  session(token: string): UserRow {
    const row = this.q.findSession.get(sha256(token)) as (SessionUser & { expires_at: number }) | undefined;
    if (!row || row.expires_at <= this.now()) {
      if (row) this.q.dropSession.run(sha256(token));
      throw new OpalError('OPAL_SESSION_INVALID', 'not logged in (or the session expired): log in again');
    }
    return toUserRow(row);
  }

  logout(token: string): void {
    this.q.dropSession.run(sha256(token));
  }

  /**
   * Change the password. `currentPassword` is the account password (for the first, forced change: the password
   * chosen at registration, while the session itself was opened with the e-mailed one-time password). Every
   * other session of the user ends; the caller's session stays.
   */
  async changePassword(token: string, currentPassword: string, newPassword: string): Promise<void> {
    const user = this.session(token);
    const row = this.q.get.get(user.userRef) as DbUser;
    const profile = await this.profile(user);
    if (!(await verifyPassword(currentPassword, row.password_hash))) {
      this.q.fail.run(user.userRef);
      throw new OpalError('OPAL_LOGIN_FAILED', 'the current password is wrong');
    }
    checkPasswordPolicy(newPassword, profile.userId);
    if (newPassword === currentPassword) throw new OpalError('OPAL_PASSWORD_POLICY', 'the new password must differ from the current one');
    const hash = await hashPassword(newPassword, this.o.scrypt);
    this.o.db.transaction(() => {
      this.q.setPassword.run(hash, user.userRef);
      this.q.dropSessions.run(user.userRef);
      this.q.session.run(sha256(token), user.userRef, this.now() + this.o.sessionSeconds * 1000);
    })();
  }

  /** The user's sealed profile, opened in the HSM. */
  async profile(user: UserRow): Promise<UserProfile> {
    const row = this.q.get.get(user.userRef) as DbUser;
    const plain = await this.o.ops.openRecord(user.cardId, row.profile);
    return JSON.parse(plain.toString('utf8')) as UserProfile;
  }

  private lockedError(until: number): OpalError {
    const minutes = Math.max(1, Math.ceil((until - this.now()) / 60_000));
    return new OpalError('OPAL_LOCKED', `too many failed logins: the account is locked for ${minutes} more minute(s)`);
  }
}

/** The columns of a user that a session carries. */
type SessionUser = Pick<DbUser, 'user_ref' | 'bin' | 'card_id' | 'must_change'>;

function toUserRow(row: SessionUser): UserRow {
  return { userRef: row.user_ref, bin: row.bin, cardId: row.card_id, mustChange: row.must_change === 1 };
}
