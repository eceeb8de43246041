// The load server's configuration file (purselab serve load --config FILE): the banks it serves (bank id and
// the key each shares with the load server) and the issuer link key the payment server seals re-credit claims
// with. The HSM is not in the file: --hsm SPEC or PURSELAB_HSM (hsm-bridge/config.ts). Keys are parsed here
// and never shown in any message. Format: docs/bank-and-load-server.md.

import { PurselabError } from '../../errors.ts';
import { fieldChecker, isObj } from '../../config-fields.ts';
import { readJsonFile } from '../../json-file.ts';
import { parseSharedKey } from '../../protocol/keys.ts';

export class LoadConfigError extends PurselabError {
  constructor(file: string, message: string) {
    super('LOAD_CONFIG', `${file}: ${message}`);
  }
}

export interface LoadServerConfig {
  readonly issuerId: string;
  /** bank id -> the key it shares with this load server. */
  readonly banks: ReadonlyMap<string, Buffer>;
  /** Key shared with the payment server for re-credit claims (absent: /v1/recredit is off). */
  readonly issuerLinkKey: Buffer | undefined;
  /** Only money loads in these currencies (empty: any the card holds). */
  readonly currencies: readonly number[];
}

const ID = /^[A-Za-z0-9._-]{1,32}$/;

export function parseLoadConfig(raw: unknown, file: string): LoadServerConfig {
  const { fail, known } = fieldChecker((field, msg) => {
    throw new LoadConfigError(file, `${field}: ${msg}`);
  });
  if (!isObj(raw)) return fail('(top)', 'must be a JSON object');
  const allowed = ['$comment', 'issuerId', 'banks', 'issuerLinkKey', 'currencies'];
  known(raw, allowed, '');
  const issuerId = raw.issuerId ?? 'issuer';
  if (typeof issuerId !== 'string' || !ID.test(issuerId)) fail('issuerId', `must match ${ID}`);
  if (!Array.isArray(raw.banks) || raw.banks.length === 0) fail('banks', 'must be a non-empty array of { bankId, sharedKey }');
  const banks = new Map<string, Buffer>();
  (raw.banks as unknown[]).forEach((b, i) => {
    const p = `banks[${i}]`;
    if (!isObj(b)) return fail(p, 'must be an object');
    for (const k of Object.keys(b)) if (!['bankId', 'sharedKey'].includes(k)) fail(`${p}.${k}`, 'unknown field (known: bankId, sharedKey)');
    if (typeof b.bankId !== 'string' || !ID.test(b.bankId)) fail(`${p}.bankId`, `must match ${ID}`);
    if (banks.has(b.bankId as string)) fail(`${p}.bankId`, `'${String(b.bankId)}' appears twice`);
    if (typeof b.sharedKey !== 'string') fail(`${p}.sharedKey`, 'must be 32 hex digits');
    banks.set(b.bankId as string, parseSharedKey(b.sharedKey as string, `${file}: ${p}.sharedKey`));
  });
  let issuerLinkKey: Buffer | undefined;
  if (raw.issuerLinkKey !== undefined) {
    if (typeof raw.issuerLinkKey !== 'string') fail('issuerLinkKey', 'must be 32 hex digits');
    issuerLinkKey = parseSharedKey(raw.issuerLinkKey as string, `${file}: issuerLinkKey`);
  }
  const currencies = raw.currencies ?? [];
  if (!Array.isArray(currencies) || currencies.some((c) => !Number.isInteger(c) || c < 1 || c > 9998)) fail('currencies', 'must be an array of ISO 4217 numeric codes');
  return { issuerId: issuerId as string, banks, issuerLinkKey, currencies: currencies as number[] };
}

export function loadLoadConfig(file: string): LoadServerConfig {
  const raw = readJsonFile(file, (why) => {
    throw new LoadConfigError(file, why);
  });
  return parseLoadConfig(raw, file);
}
