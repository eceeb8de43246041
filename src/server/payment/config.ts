// The payment server's configuration file (JSON, docs/payment-server.md): the merchants it serves (id, shared
// key 402, variant of FIGS. 5-8, FIG. 9 encryption), the PSAM pool (PC/SC reader names or emu:IMAGE paths), the
// key shared with the issuer's load server for re-credit claims, the acquirer key set for batch checks, and the
// timeouts. Keys are read here and never printed; errors name the field, never the value.

import { dirname, isAbsolute, resolve } from 'node:path';
import { isObj, type Obj } from '../../config-fields.ts';
import { readJsonFile } from '../../json-file.ts';
import { PurselabError } from '../../errors.ts';
import { PAYMENT_VARIANTS, type PaymentVariant } from '../../protocol/payment-messages.ts';
import { parseSharedKey } from '../../protocol/keys.ts';

export class PaymentConfigError extends PurselabError {
  constructor(message: string) {
    super('BAD_PAYMENT_CONFIG', message);
  }
}

export interface MerchantConfig {
  readonly id: string;
  readonly name: string;
  /** Key 402 (16 bytes). */
  readonly sharedKey: Buffer;
  readonly variant: PaymentVariant;
  /** FIG. 9: the draw request comes sealed under the TSK, with ETSK. */
  readonly encrypted: boolean;
}

export interface PsamConfig {
  /** PC/SC reader name (or unique part), `pcsc:NAME`, or `emu:PATH` (in-process emulated PSAM image). */
  readonly reader: string;
}

export interface PaymentTimeouts {
  /** How long a draw request waits for a free PSAM before 503 (ms). */
  readonly acquireMs: number;
  /** A PSAM held longer than this by one transaction is taken back; the transaction fails (ms). */
  readonly holdMs: number;
  /** Per-APDU timeout of the PSAM channels (ms). */
  readonly psamApduMs: number;
  /** How often a PSAM out of service is probed to bring it back (ms). */
  readonly probeMs: number;
  /** Accepted clock skew for an order's issuedAt (ms). */
  readonly clockSkewMs: number;
}

export interface PaymentServerConfig {
  readonly source: string;
  readonly merchants: ReadonlyMap<string, MerchantConfig>;
  readonly psams: readonly PsamConfig[];
  /** Key shared with the issuer's load server: seals RecreditClaims. Absent: no re-credit claims. */
  readonly issuerLinkKey: Buffer | undefined;
  /** Acquirer key set (batch and admin masters): verify batch MACs and acknowledge (purge) exported batches. */
  readonly acquirerKeys: string | undefined;
  /** Where collection files go (default: beside the database). */
  readonly batchDir: string | undefined;
  /** Database path (overridden by --db). */
  readonly db: string | undefined;
  /** LOC of INITIALIZE PURCHASE: up to 8 ASCII characters. */
  readonly location: string;
  /** Admin routes need `authorization: Bearer TOKEN` when set. */
  readonly adminToken: string | undefined;
  readonly timeouts: PaymentTimeouts;
}

export const DEFAULT_TIMEOUTS: PaymentTimeouts = { acquireMs: 2_000, holdMs: 30_000, psamApduMs: 10_000, probeMs: 1_000, clockSkewMs: 300_000 };


/** A key given as hex, or by the name of an environment variable holding the hex. */
function keyField(o: Obj, field: string, where: string, env: NodeJS.ProcessEnv, required: boolean): Buffer | undefined {
  const fail = (m: string): never => {
    throw new PaymentConfigError(`${where}: ${m}`);
  };
  const direct = o[field];
  const viaEnv = o[`${field}Env`];
  if (direct !== undefined && viaEnv !== undefined) fail(`give ${field} or ${field}Env, not both`);
  if (viaEnv !== undefined) {
    if (typeof viaEnv !== 'string' || !viaEnv) fail(`${field}Env must name an environment variable`);
    const v = env[viaEnv as string];
    if (!v) fail(`${field}Env: the environment variable ${String(viaEnv)} is not set`);
    try {
      return parseSharedKey(v!, `${where}.${field}Env (${String(viaEnv)})`);
    } catch (e) {
      return fail((e as Error).message);
    }
  }
  if (direct === undefined) {
    if (required) fail(`${field} (32 hex digits) or ${field}Env is required`);
    return undefined;
  }
  if (typeof direct !== 'string') fail(`${field} must be a string of 32 hex digits`);
  try {
    return parseSharedKey(direct as string, `${where}.${field}`);
  } catch (e) {
    return fail((e as Error).message);
  }
}

const KNOWN_TOP = ['$comment', 'merchants', 'psams', 'issuerLinkKey', 'issuerLinkKeyEnv', 'acquirerKeys', 'batchDir', 'db', 'location', 'adminToken', 'adminTokenEnv', 'timeouts'];
const KNOWN_MERCHANT = ['$comment', 'id', 'name', 'sharedKey', 'sharedKeyEnv', 'variant', 'encrypted'];

/** Validate a parsed configuration; relative paths are resolved against `baseDir`. */
export function parsePaymentConfig(json: unknown, source = 'config', baseDir = process.cwd(), env: NodeJS.ProcessEnv = process.env): PaymentServerConfig {
  const fail = (m: string): never => {
    throw new PaymentConfigError(`payment server config ${source}: ${m}`);
  };
  if (!isObj(json)) fail('must be a JSON object');
  const j = json as Obj;
  for (const k of Object.keys(j)) if (!KNOWN_TOP.includes(k)) fail(`unknown field '${k}'`);
  if (!Array.isArray(j.merchants) || j.merchants.length === 0) fail("'merchants' must be a non-empty array");
  const merchants = new Map<string, MerchantConfig>();
  (j.merchants as unknown[]).forEach((m, i) => {
    const where = `payment server config ${source}: merchants[${i}]`;
    if (!isObj(m)) fail(`merchants[${i}] must be an object`);
    const o = m as Obj;
    for (const k of Object.keys(o)) if (!KNOWN_MERCHANT.includes(k)) fail(`merchants[${i}]: unknown field '${k}'`);
    if (typeof o.id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(o.id)) fail(`merchants[${i}].id must be 1-64 characters of A-Z a-z 0-9 . _ -`);
    const id = o.id as string;
    if (merchants.has(id)) fail(`merchants[${i}]: merchant id '${id}' appears twice`);
    const variant = (o.variant ?? 'standard') as PaymentVariant;
    if (!PAYMENT_VARIANTS.includes(variant)) fail(`merchants[${i}].variant must be one of ${PAYMENT_VARIANTS.join(', ')}`);
    if (o.encrypted !== undefined && typeof o.encrypted !== 'boolean') fail(`merchants[${i}].encrypted must be true or false`);
    if (o.name !== undefined && typeof o.name !== 'string') fail(`merchants[${i}].name must be a string`);
    merchants.set(id, {
      id,
      name: (o.name as string | undefined) ?? id,
      sharedKey: keyField(o, 'sharedKey', where, env, true)!,
      variant,
      encrypted: o.encrypted === true,
    });
  });
  if (!Array.isArray(j.psams) || j.psams.length === 0) fail("'psams' must be a non-empty array of { reader }");
  const path = (p: string) => (p.startsWith('emu:') ? `emu:${isAbsolute(p.slice(4)) ? p.slice(4) : resolve(baseDir, p.slice(4))}` : p);
  const psams = (j.psams as unknown[]).map((p, i) => {
    if (!isObj(p) || typeof p.reader !== 'string' || !p.reader.trim()) fail(`psams[${i}] must be { "reader": "NAME or emu:PATH" }`);
    for (const k of Object.keys(p as Obj)) if (k !== 'reader' && k !== '$comment') fail(`psams[${i}]: unknown field '${k}'`);
    return { reader: path(((p as Obj).reader as string).trim()) };
  });
  const readers = new Set<string>();
  for (const p of psams) {
    if (readers.has(p.reader)) fail(`the PSAM reader '${p.reader}' appears twice`);
    readers.add(p.reader);
  }
  const timeouts: Record<string, number> = { ...DEFAULT_TIMEOUTS };
  if (j.timeouts !== undefined) {
    if (!isObj(j.timeouts)) fail("'timeouts' must be an object");
    for (const [k, v] of Object.entries(j.timeouts as Obj)) {
      if (!(k in DEFAULT_TIMEOUTS)) fail(`timeouts: unknown field '${k}' (known: ${Object.keys(DEFAULT_TIMEOUTS).join(', ')})`);
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > 3_600_000) fail(`timeouts.${k} must be an integer 1..3600000 (ms)`);
      timeouts[k] = v as number;
    }
  }
  const str = (k: string): string | undefined => {
    const v = j[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || !v) fail(`'${k}' must be a non-empty string`);
    return v as string;
  };
  const location = str('location') ?? 'PAYSRV01';
  if (!/^[\x20-\x7e]{1,8}$/.test(location)) fail("'location' must be 1-8 printable ASCII characters");
  const file = (k: string) => {
    const v = str(k);
    return v === undefined ? undefined : resolve(baseDir, v);
  };
  let adminToken = str('adminToken');
  const tokenEnv = str('adminTokenEnv');
  if (tokenEnv) {
    if (adminToken) fail("give 'adminToken' or 'adminTokenEnv', not both");
    adminToken = env[tokenEnv];
    if (!adminToken) fail(`adminTokenEnv: the environment variable ${tokenEnv} is not set`);
  }
  return {
    source,
    merchants,
    psams,
    issuerLinkKey: keyField(j, 'issuerLinkKey', `payment server config ${source}`, env, false),
    acquirerKeys: file('acquirerKeys'),
    batchDir: file('batchDir'),
    db: file('db'),
    location,
    adminToken,
    timeouts: timeouts as unknown as PaymentTimeouts,
  };
}

export function loadPaymentConfig(path: string, env: NodeJS.ProcessEnv = process.env): PaymentServerConfig {
  const json = readJsonFile(path, (reason) => {
    throw new PaymentConfigError(`payment server config ${path}: ${reason}`);
  });
  return parsePaymentConfig(json, path, dirname(resolve(path)), env);
}
