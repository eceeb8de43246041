// Registration (FIG. 10 step 502): check the form, verify the CVV2's form and forget it, give the user a
// unique 16-digit OPAL card id (the issuer's 6-digit BIN + a random unused 10-digit purse number), issue a
// virtual purse card for it with the issuer's profile and key set (the existing issuing code), and store card
// and user in one transaction; then e-mail the one-time password for the first login.

import { randomInt } from 'node:crypto';
import { issuePurseCard } from '../../card-applet-sim/applets/purse/issuing.ts';
import { maskCardId } from '../terminal/amount.ts';
import type { VirtualCardStore } from './card-store.ts';
import type { OpalIssuer } from './config.ts';
import { OpalError } from './errors.ts';
import type { Mailer } from './mail.ts';
import { checkPasswordPolicy, oneTimePassword } from './passwords.ts';
import type { UserProfile, UserStore } from './users.ts';

export interface RegistrationForm {
  readonly userId: string;
  readonly fundingAccount: string;
  /** "MM/YY" or "YYYY-MM" */
  readonly fundingExpiry: string;
  readonly cvv2: string;
  readonly billingAddress: string;
  readonly email: string;
  readonly password: string;
  /** Which issuer (BIN) the virtual card belongs to; default the server's first. */
  readonly bin?: string;
}

export interface Registered {
  readonly cardId: string;
  readonly bin: string;
}

const fail = (message: string): never => {
  throw new OpalError('OPAL_REGISTRATION', message);
};

/** Luhn check digit test (ISO/IEC 7812-1). */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

/** "MM/YY" or "YYYY-MM" -> "YYYY-MM", refusing a month already past at `now`. */
export function parseExpiry(text: string, now: Date): string {
  let m = /^(\d{2})\/(\d{2})$/.exec(text);
  let year: number;
  let month: number;
  if (m) {
    month = Number(m[1]);
    year = 2000 + Number(m[2]);
  } else {
    m = /^(\d{4})-(\d{2})$/.exec(text);
    if (!m) return fail('the funding account expiry must be MM/YY or YYYY-MM');
    year = Number(m[1]);
    month = Number(m[2]);
  }
  if (month < 1 || month > 12) fail('the funding account expiry month must be 01..12');
  if (year * 12 + month < now.getUTCFullYear() * 12 + now.getUTCMonth() + 1) fail('the funding account has expired');
  return `${year}-${String(month).padStart(2, '0')}`;
}

/** Check every field; returns the profile to seal (no CVV2: it is checked here and never stored). */
export function checkRegistration(form: RegistrationForm, now: Date): UserProfile {
  if (!/^[A-Za-z0-9._@-]{4,64}$/.test(form.userId)) fail('the user id must be 4..64 characters: letters, digits, . _ @ -');
  const account = form.fundingAccount.replace(/[ -]/g, '');
  if (!/^[0-9]{12,19}$/.test(account) || !luhnValid(account)) fail('the funding account number is not a valid card or account number (12..19 digits, Luhn check)');
  const fundingExpiry = parseExpiry(form.fundingExpiry, now);
  if (!/^[0-9]{3,4}$/.test(form.cvv2)) fail('the CVV2 must be the 3 (or 4) digits on the signature panel');
  const billingAddress = form.billingAddress.trim();
  if (billingAddress.length < 5 || billingAddress.length > 200) fail('the billing address must be 5..200 characters');
  if (!/^[^\s@]{1,64}@[^\s@]{1,190}\.[A-Za-z]{2,24}$/.test(form.email)) fail('the e-mail address is not valid');
  checkPasswordPolicy(form.password, form.userId);
  return { userId: form.userId, fundingAccount: account, fundingExpiry, billingAddress, email: form.email };
}

export interface RegistrationDeps {
  readonly issuers: readonly OpalIssuer[];
  readonly cards: VirtualCardStore;
  readonly users: UserStore;
  readonly mailer: Mailer;
  readonly now?: () => Date;
}

export async function register(deps: RegistrationDeps, form: RegistrationForm): Promise<Registered> {
  const profile = checkRegistration(form, deps.now?.() ?? new Date());
  const issuer = form.bin === undefined ? deps.issuers[0]! : deps.issuers.find((i) => i.bin === form.bin);
  if (!issuer) throw new OpalError('OPAL_BIN_UNKNOWN', `this server issues no virtual cards for BIN ${form.bin}`);
  if (await deps.users.exists(form.userId)) throw new OpalError('OPAL_USER_EXISTS', 'this user id is already registered');

  let cardId = '';
  for (let attempt = 0; ; attempt++) {
    if (attempt >= 20) throw new OpalError('OPAL_REGISTRATION', `BIN ${issuer.bin}: no free purse number found`);
    cardId = issuer.bin + String(randomInt(1, 10_000_000_000)).padStart(10, '0');
    if (!deps.cards.has(cardId)) break;
  }
  const issued = issuePurseCard(issuer.profile, issuer.keys, { purseNumber: cardId.slice(6), balance: issuer.initialBalance });
  const otp = oneTimePassword();
  const insertCard = await deps.cards.prepareCreate(cardId, issued.card);
  const insertUser = await deps.users.prepareInsert(profile, cardId, form.password, otp);
  deps.cards.db.transaction(() => {
    insertCard();
    insertUser();
  })();
  await deps.mailer.send({
    to: profile.email,
    subject: 'Your OPAL virtual card: one-time password',
    text: [
      `Your virtual card ${maskCardId(cardId)} is ready (${issuer.name}).`,
      `Log in with your user id and this one-time password: ${otp}`,
      'You will be asked to change it at once, confirming the password you chose at registration.',
    ].join('\n'),
  });
  return { cardId, bin: issuer.bin };
}
