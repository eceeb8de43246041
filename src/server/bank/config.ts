// The bank server's configuration file (purselab serve bank --config FILE): the bank id and the key it shares
// with the issuer's load server, where that load server is, hold timing, and the seeded demo accounts with
// their cardholder logins (demo passwords, hashed with scrypt when seeded; never logged). Format:
// docs/bank-and-load-server.md. The shared key is parsed here and never shown in any message.

import { PurselabError } from '../../errors.ts';
import { fieldChecker, isObj } from '../../config-fields.ts';
import { readJsonFile } from '../../json-file.ts';
import { parseSharedKey } from '../../protocol/keys.ts';

export class BankConfigError extends PurselabError {
  constructor(file: string, message: string) {
    super('BANK_CONFIG', `${file}: ${message}`);
  }
}

export interface BankAccountConfig {
  readonly accountId: string;
  readonly number: string;
  readonly holder: string;
  /** MM/YY */
  readonly expiry: string;
  readonly balance: number;
  readonly user: string;
  readonly password: string;
}

export interface BankConfig {
  readonly bankId: string;
  readonly name: string;
  readonly loadServerKey: Buffer;
  readonly loadServer: string;
  /** The bank's own base URL for the status URL; default: from the request's Host header. */
  readonly publicUrl: string | undefined;
  readonly currency: number;
  readonly exponent: number;
  readonly holdTtlSeconds: number;
  readonly sweepIntervalSeconds: number;
  readonly sessionTtlSeconds: number;
  readonly floatAccount: { readonly accountId: string; readonly number: string; readonly balance: number };
  readonly accounts: readonly BankAccountConfig[];
}

const ID = /^[A-Za-z0-9._-]{1,32}$/;

export function parseBankConfig(raw: unknown, file: string): BankConfig {
  const { fail, known, int, str } = fieldChecker((field, msg) => {
    throw new BankConfigError(file, `${field}: ${msg}`);
  });
  if (!isObj(raw)) return fail('(top)', 'must be a JSON object');
  const allowed = ['$comment', 'bankId', 'name', 'loadServerKey', 'loadServer', 'publicUrl', 'currency', 'exponent', 'holdTtlSeconds', 'sweepIntervalSeconds', 'sessionTtlSeconds', 'floatAccount', 'accounts'];
  known(raw, allowed, '');
  const url = (f: string): string => {
    const v = str(raw, f);
    try {
      const u = new URL(v);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      fail(f, `must be an http(s) URL, got '${v}'`);
    }
    return v.replace(/\/+$/, '');
  };
  if (typeof raw.loadServerKey !== 'string') fail('loadServerKey', 'must be 32 hex digits');
  const floatRaw = raw.floatAccount ?? { accountId: 'issuer-float', number: 'FLOAT-0001', balance: 0 };
  if (!isObj(floatRaw)) return fail('floatAccount', 'must be an object { accountId, number, balance }');
  if (!Array.isArray(raw.accounts) || raw.accounts.length === 0) fail('accounts', 'must be a non-empty array');
  const ids = new Set<string>();
  const users = new Set<string>();
  const accounts = (raw.accounts as unknown[]).map((a, i): BankAccountConfig => {
    const p = `accounts[${i}].`;
    if (!isObj(a)) return fail(p.slice(0, -1), 'must be an object');
    const known = ['accountId', 'number', 'holder', 'expiry', 'balance', 'user', 'password'];
    for (const k of Object.keys(a)) if (!known.includes(k)) fail(p + k, `unknown field (known: ${known.join(', ')})`);
    const accountId = str(a, 'accountId', p, ID);
    if (ids.has(accountId)) fail(p + 'accountId', `'${accountId}' appears twice`);
    ids.add(accountId);
    const user = str(a, 'user', p, ID);
    if (users.has(user)) fail(p + 'user', `'${user}' appears twice`);
    users.add(user);
    const password = str(a, 'password', p);
    if (password.length < 8) fail(p + 'password', 'must be at least 8 characters');
    return { accountId, number: str(a, 'number', p, /^[0-9A-Z-]{8,34}$/), holder: str(a, 'holder', p), expiry: str(a, 'expiry', p, /^(0[1-9]|1[0-2])\/[0-9]{2}$/), balance: int(a, 'balance', p, 0, 2 ** 40), user, password };
  });
  const floatAccount = { accountId: str(floatRaw, 'accountId', 'floatAccount.', ID), number: str(floatRaw, 'number', 'floatAccount.'), balance: int(floatRaw, 'balance', 'floatAccount.', 0, 2 ** 40, 0) };
  if (ids.has(floatAccount.accountId)) fail('floatAccount.accountId', 'must differ from every customer account');
  return {
    bankId: str(raw, 'bankId', '', ID),
    name: typeof raw.name === 'string' && raw.name ? raw.name : str(raw, 'bankId'),
    loadServerKey: parseSharedKey(raw.loadServerKey as string, `${file}: loadServerKey`),
    loadServer: url('loadServer'),
    publicUrl: raw.publicUrl === undefined ? undefined : url('publicUrl'),
    currency: int(raw, 'currency', '', 1, 9998),
    exponent: int(raw, 'exponent', '', 0, 9, 2),
    holdTtlSeconds: int(raw, 'holdTtlSeconds', '', 1, 7 * 86400, 900),
    sweepIntervalSeconds: int(raw, 'sweepIntervalSeconds', '', 1, 86400, 30),
    sessionTtlSeconds: int(raw, 'sessionTtlSeconds', '', 30, 86400, 1800),
    floatAccount,
    accounts,
  };
}

export function loadBankConfig(file: string): BankConfig {
  const raw = readJsonFile(file, (why) => {
    throw new BankConfigError(file, why);
  });
  return parseBankConfig(raw, file);
}
