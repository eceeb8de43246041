// The merchant server's configuration file (purselab serve merchant --config FILE): who the merchant is to its
// payment server (merchant id, shared key 402, variant, FIG. 9 layer), where that payment server is, and what
// the shop sells (catalogue of goods and the FIG. 16 benefits). Format: docs/merchant-and-client.md.
// The shared key is parsed here and never shown in any message.

import { dirname, resolve } from 'node:path';
import { PurselabError } from '../../errors.ts';
import { fieldChecker, isObj } from '../../config-fields.ts';
import { readJsonFile } from '../../json-file.ts';
import { parseSharedKey } from '../../protocol/keys.ts';
import { PAYMENT_VARIANTS, type PaymentVariant } from '../../protocol/payment-messages.ts';

export class MerchantConfigError extends PurselabError {
  constructor(file: string, message: string) {
    super('MERCHANT_CONFIG', `${file}: ${message}`);
  }
}

export interface CatalogueItem {
  readonly sku: string;
  readonly name: string;
  /** Minor units of the shop currency. */
  readonly price: number;
  /** What the buyer gets once paid (a download token, a receipt line). */
  readonly goods: string;
}

/** A FIG. 16 benefit: claimed with a zero-amount authentication, no payment. */
export interface Benefit {
  readonly id: string;
  readonly name: string;
  readonly goods: string;
}

export interface MerchantConfig {
  readonly merchantId: string;
  readonly name: string;
  readonly sharedKey: Buffer;
  readonly variant: PaymentVariant;
  /** FIG. 9 encryption layer: TSK and ETSK on the payment page. */
  readonly encrypted: boolean;
  /** Base URL of the payment server (the page's "port and IP address"). */
  readonly paymentServer: string;
  /** The merchant's own base URL for the status URL; default: from the request's Host header. */
  readonly publicUrl: string | undefined;
  /** Base URL of an OPAL server: the payment page then also offers "Pay with OPAL virtual card" (dual mode). */
  readonly opalServer: string | undefined;
  readonly currency: number;
  readonly exponent: number;
  readonly orderTtlSeconds: number;
  readonly catalogue: readonly CatalogueItem[];
  readonly benefits: readonly Benefit[];
}

/** An http(s) base URL without trailing slashes; MerchantConfigError naming `where` and `field` otherwise. */
export function parseBaseUrl(v: string, where: string, field: string): string {
  try {
    const u = new URL(v);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new MerchantConfigError(where, `${field}: must be an http(s) URL, got '${v}'`);
  }
  return v.replace(/\/+$/, '');
}

const ID = /^[A-Za-z0-9._-]{1,32}$/;

/** Check a parsed configuration object; `file` names it in messages (relative paths resolve against `baseDir`). */
export function parseMerchantConfig(raw: unknown, file: string, baseDir: string, env: NodeJS.ProcessEnv = process.env): MerchantConfig {
  const { fail, known, int, str } = fieldChecker((field, msg) => {
    throw new MerchantConfigError(file, `${field}: ${msg}`);
  });
  if (!isObj(raw)) return fail('(top)', 'must be a JSON object');
  const allowed = ['$comment', 'merchantId', 'name', 'sharedKey', 'sharedKeyEnv', 'variant', 'encrypted', 'paymentServer', 'publicUrl', 'opalServer', 'currency', 'exponent', 'orderTtlSeconds', 'catalogue', 'benefits'];
  known(raw, allowed, '');
  const url = (f: string): string => parseBaseUrl(str(raw, f), file, f);

  const merchantId = str(raw, 'merchantId', '', ID);
  // Key 402, as hex or by the name of an environment variable holding the hex (as the payment server's config).
  if ((raw.sharedKey === undefined) === (raw.sharedKeyEnv === undefined)) fail('sharedKey', 'give sharedKey (32 hex digits) or sharedKeyEnv (an environment variable), one of them');
  let keyHex = raw.sharedKey;
  if (raw.sharedKeyEnv !== undefined) {
    if (typeof raw.sharedKeyEnv !== 'string' || !raw.sharedKeyEnv) fail('sharedKeyEnv', 'must name an environment variable');
    keyHex = env[raw.sharedKeyEnv as string];
    if (!keyHex) fail('sharedKeyEnv', `the environment variable ${String(raw.sharedKeyEnv)} is not set`);
  }
  if (typeof keyHex !== 'string') fail('sharedKey', 'must be 32 hex digits');
  const keyField = raw.sharedKeyEnv !== undefined ? 'sharedKeyEnv' : 'sharedKey';
  let sharedKey: Buffer;
  try {
    sharedKey = parseSharedKey(keyHex as string, keyField);
  } catch (e) {
    return fail(keyField, (e as Error).message.replace(/^[^:]*: /, ''));
  }
  const variant = (raw.variant ?? 'standard') as PaymentVariant;
  if (!PAYMENT_VARIANTS.includes(variant)) fail('variant', `must be one of ${PAYMENT_VARIANTS.join(', ')}`);
  if (raw.encrypted !== undefined && typeof raw.encrypted !== 'boolean') fail('encrypted', 'must be true or false');

  let catRaw = raw.catalogue;
  if (typeof catRaw === 'string') {
    const path = resolve(baseDir, catRaw);
    catRaw = readJsonFile(path, (why) => fail('catalogue', `${path}: ${why}`));
  }
  if (!Array.isArray(catRaw) || catRaw.length === 0) fail('catalogue', 'must be a non-empty array of items (or the path of a JSON file holding one)');
  const skus = new Set<string>();
  const catalogue = (catRaw as unknown[]).map((it, i): CatalogueItem => {
    const p = `catalogue[${i}].`;
    if (!isObj(it)) return fail(p.slice(0, -1), 'must be an object');
    for (const k of Object.keys(it)) if (!['sku', 'name', 'price', 'goods'].includes(k)) fail(p + k, 'unknown field (known: sku, name, price, goods)');
    const sku = str(it, 'sku', p, ID);
    if (skus.has(sku)) fail(p + 'sku', `'${sku}' appears twice`);
    skus.add(sku);
    return { sku, name: str(it, 'name', p), price: int(it, 'price', p, 1, 0xffffffff), goods: str(it, 'goods', p) };
  });
  const benRaw = raw.benefits ?? [];
  if (!Array.isArray(benRaw)) fail('benefits', 'must be an array');
  const benefits = (benRaw as unknown[]).map((it, i): Benefit => {
    const p = `benefits[${i}].`;
    if (!isObj(it)) return fail(p.slice(0, -1), 'must be an object');
    for (const k of Object.keys(it)) if (!['id', 'name', 'goods'].includes(k)) fail(p + k, 'unknown field (known: id, name, goods)');
    return { id: str(it, 'id', p, ID), name: str(it, 'name', p), goods: str(it, 'goods', p) };
  });
  return {
    merchantId,
    name: typeof raw.name === 'string' && raw.name ? raw.name : merchantId,
    sharedKey,
    variant,
    encrypted: raw.encrypted === true,
    paymentServer: url('paymentServer'),
    publicUrl: raw.publicUrl === undefined ? undefined : url('publicUrl'),
    opalServer: raw.opalServer === undefined ? undefined : url('opalServer'),
    currency: int(raw, 'currency', '', 1, 9998),
    exponent: int(raw, 'exponent', '', 0, 9, 2),
    orderTtlSeconds: int(raw, 'orderTtlSeconds', '', 10, 7 * 86400, 900),
    catalogue,
    benefits,
  };
}

export function loadMerchantConfig(file: string, env: NodeJS.ProcessEnv = process.env): MerchantConfig {
  const raw = readJsonFile(file, (why) => {
    throw new MerchantConfigError(file, why);
  });
  return parseMerchantConfig(raw, file, dirname(resolve(file)), env);
}
