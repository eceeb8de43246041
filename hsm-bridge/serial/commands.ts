// The host-command table: every command the serial backend sends and the simulator answers, with its field
// layout (request and response), its origin (a faithful payShield subset, or purselab's own lower-case codes)
// and whether the client may resend it automatically. docs/serial-hsm-protocol.md documents the same table.

import type { CipherMode, KeyInfo, KeyRef, KeySpec, KeyUsage, MacAlgorithm, SymmetricKeyType } from '../hsm.ts';
import { FieldError, FieldReader, FieldWriter } from './fields.ts';
import { responseCodeFor } from './message.ts';

export type CommandOrigin = 'payShield' | 'purselab' | 'simulator';

export interface CommandSpec<Req, Res> {
  readonly code: string;
  readonly response: string;
  readonly name: string;
  readonly origin: CommandOrigin;
  /**
   * Safe to resend automatically after a lost or unreadable answer: the command changes nothing in the HSM
   * (diagnostics, check values, MAC/cipher/signature computations, verifications, random bytes).
   * Generate and import are never resent: a lost answer leaves their outcome unknown.
   */
  readonly idempotent: boolean;
  /** Verification style: the answer has no fields, error 00 means "verified" and 01 "does not verify". */
  readonly verifies?: boolean;
  /** Slow in the HSM (RSA key generation): the client allows at least 30 s whatever its timeout. */
  readonly slow?: boolean;
  encodeRequest(req: Req): string;
  decodeRequest(r: FieldReader): Req;
  encodeResponse(res: Res): string;
  decodeResponse(r: FieldReader): Res;
}

export function defineCommand<Req, Res>(s: Omit<CommandSpec<Req, Res>, 'response'>): CommandSpec<Req, Res> {
  return { ...s, response: responseCodeFor(s.code) };
}

// ---- small codes -------------------------------------------------------------------------------------------

const KEY_TYPES: Record<string, SymmetricKeyType | 'RSA-2048'> = { T2: 'DES3-2KEY', A1: 'AES-128', R2: 'RSA-2048' };
const USAGE_LETTERS: Record<KeyUsage, string> = { mac: 'M', encrypt: 'E', derive: 'D', wrap: 'W' };
const MAC_ALGS: Record<string, MacAlgorithm> = { '1': 'ISO9797-1-ALG1', '3': 'ISO9797-1-ALG3', C: 'AES-CMAC' };
const CIPHER_MODES: Record<string, CipherMode> = { C: 'CBC' };

function codeOf<T extends string>(table: Record<string, T>, value: T, what: string): string {
  const hit = Object.entries(table).find(([, v]) => v === value);
  if (!hit) throw new FieldError(`${what} '${value}' has no wire code`);
  return hit[0];
}
function valueOf<T>(table: Record<string, T>, code: string, what: string): T {
  const v = table[code];
  if (v === undefined) throw new FieldError(`unknown ${what} code '${code}'`);
  return v;
}

function writeUsage(w: FieldWriter, usage: readonly KeyUsage[]): void {
  const letters = usage.map((u) => USAGE_LETTERS[u] ?? '?').join('');
  if (letters.includes('?')) throw new FieldError(`unknown key usage in ${usage.join(',')}`);
  w.num(letters.length, 1, 'usage count').raw(letters);
}
function readUsage(r: FieldReader): KeyUsage[] {
  const n = r.num(1, 'usage count');
  const letters = r.fixed(n, 'usage');
  return [...letters].map((l) => {
    const u = (Object.keys(USAGE_LETTERS) as KeyUsage[]).find((k) => USAGE_LETTERS[k] === l);
    if (!u) throw new FieldError(`unknown key usage letter '${l}'`);
    return u;
  });
}

function writeKeyInfo(w: FieldWriter, k: KeyInfo): void {
  w.keyRef(k).raw(codeOf(KEY_TYPES, k.type, 'key type'));
  writeUsage(w, k.usage);
  w.text2(k.kcv, 'kcv');
}
function readKeyInfo(r: FieldReader): KeyInfo {
  const ref = r.keyRef();
  const type = valueOf(KEY_TYPES, r.fixed(2, 'key type'), 'key type');
  const usage = readUsage(r);
  return { label: ref.label, version: ref.version, type, usage, kcv: r.text2('kcv') };
}

const text = (f: (w: FieldWriter) => unknown): string => {
  const w = new FieldWriter();
  f(w);
  return w.toString();
};
const empty = {
  encode: (): string => '',
  decode: (r: FieldReader): void => r.end(),
};

// ---- payShield commands (faithful subset) ---------------------------------------------------------------------

export interface DiagnosticsResult {
  /** 16H: the LMK check value. */
  readonly lmkCheck: string;
  /** 9A: the firmware number. */
  readonly firmware: string;
}

/** NC Perform Diagnostics -> ND: error code, LMK check value 16H, firmware number 9A. */
export const NC = defineCommand<void, DiagnosticsResult>({
  code: 'NC',
  name: 'perform diagnostics',
  origin: 'payShield',
  idempotent: true,
  encodeRequest: empty.encode,
  // payShield accepts optional trailing fields (LMK identifier); we accept and ignore anything after NC.
  decodeRequest: () => undefined,
  encodeResponse: (res) => text((w) => w.fixed(res.lmkCheck, 16, 'LMK check value').fixed(res.firmware, 9, 'firmware number')),
  decodeResponse: (r) => {
    const lmkCheck = r.fixed(16, 'LMK check value');
    const firmware = r.fixed(9, 'firmware number');
    return { lmkCheck, firmware };
  },
});

export interface GenerateKeyA0Request {
  /** '0' = generate (the only mode we implement; '1' would also export under a ZMK/TMK). */
  readonly mode: string;
  /** 3H payShield key type, e.g. '000' ZMK, '001' ZPK, '002' TPK/PVK, '003' TAK, '008' ZAK, '00A' ZEK. */
  readonly keyType: string;
  /** Key scheme (LMK): 'U' = double-length 3DES, variant LMK (the only scheme we implement). */
  readonly keyScheme: string;
}
export interface GenerateKeyA0Result {
  /** The key under the LMK: scheme + 32H, e.g. 'U' + 32 hex digits (33A). */
  readonly keyUnderLmk: string;
  /** 6H key check value. */
  readonly kcv: string;
}

/** A0 Generate a Key -> A1: key under LMK, KCV 6H (mode 0, scheme U only). */
export const A0 = defineCommand<GenerateKeyA0Request, GenerateKeyA0Result>({
  code: 'A0',
  name: 'generate a key',
  origin: 'payShield',
  idempotent: false,
  encodeRequest: (req) => text((w) => w.fixed(req.mode, 1, 'mode').fixed(req.keyType, 3, 'key type').fixed(req.keyScheme, 1, 'key scheme')),
  decodeRequest: (r) => {
    const mode = r.fixed(1, 'mode');
    const keyType = r.fixed(3, 'key type');
    const keyScheme = r.fixed(1, 'key scheme');
    r.end('A0');
    return { mode, keyType, keyScheme };
  },
  encodeResponse: (res) => text((w) => w.fixed(res.keyUnderLmk, 33, 'key under LMK').fixed(res.kcv, 6, 'KCV')),
  decodeResponse: (r) => {
    const keyUnderLmk = r.fixed(33, 'key under LMK');
    const kcv = r.fixed(6, 'KCV');
    return { keyUnderLmk, kcv };
  },
});

export interface KcvBuRequest {
  /** 2N key type code, or 'FF' to take the 3H key type after the first ';'. */
  readonly keyTypeCode: string;
  /** 1N: '0' single, '1' double, '2' triple length. */
  readonly keyLengthFlag: string;
  /** The key under the LMK, e.g. 'U' + 32H. */
  readonly key: string;
  /** 3H key type, present when keyTypeCode is 'FF'. */
  readonly keyType?: string;
  /** 1N: '0' = 16H check value (the default), '1' = 6H. */
  readonly kcvType?: string;
}

/** BU Generate a Key Check Value -> BV: KCV 16H or 6H. */
export const BU = defineCommand<KcvBuRequest, { readonly kcv: string }>({
  code: 'BU',
  name: 'generate a key check value',
  origin: 'payShield',
  idempotent: true,
  encodeRequest: (req) =>
    text((w) => {
      w.fixed(req.keyTypeCode, 2, 'key type code').fixed(req.keyLengthFlag, 1, 'key length flag').raw(req.key, 'key');
      if (req.keyTypeCode === 'FF') w.raw(';').fixed(req.keyType ?? '', 3, 'key type');
      if (req.kcvType !== undefined) w.raw(';00').fixed(req.kcvType, 1, 'KCV type');
    }),
  decodeRequest: (r) => {
    const keyTypeCode = r.fixed(2, 'key type code');
    const keyLengthFlag = r.fixed(1, 'key length flag');
    const rest = r.fixed(r.remaining, 'key').split(';');
    const key = rest.shift() ?? '';
    let keyType: string | undefined;
    if (keyTypeCode === 'FF') {
      keyType = rest.shift();
      if (keyType === undefined || keyType.length !== 3) throw new FieldError('key type code FF needs ;<3H key type>');
    }
    let kcvType: string | undefined;
    const tail = rest.shift();
    if (tail !== undefined) {
      if (!/^[0-9]{2}[01]$/.test(tail)) throw new FieldError(`bad KCV type field '${tail}'`);
      kcvType = tail[2];
    }
    if (rest.length) throw new FieldError('unexpected fields after BU KCV type');
    return { keyTypeCode, keyLengthFlag, key, ...(keyType !== undefined ? { keyType } : {}), ...(kcvType !== undefined ? { kcvType } : {}) };
  },
  encodeResponse: (res) => text((w) => w.raw(res.kcv)),
  decodeResponse: (r) => {
    const kcv = r.fixed(r.remaining, 'KCV');
    if (kcv.length !== 6 && kcv.length !== 16) throw new FieldError(`KCV must be 6H or 16H, got ${kcv.length} characters`);
    return { kcv };
  },
});

// ---- purselab commands (lower-case codes: never a payShield command) -------------------------------------------

export const pa = defineCommand<void, KeyInfo[]>({
  code: 'pa',
  name: 'list keys',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: empty.encode,
  decodeRequest: empty.decode,
  encodeResponse: (keys) =>
    text((w) => {
      w.num(keys.length, 4, 'key count');
      for (const k of keys) writeKeyInfo(w, k);
    }),
  decodeResponse: (r) => {
    const n = r.num(4, 'key count');
    const keys: KeyInfo[] = [];
    for (let i = 0; i < n; i++) keys.push(readKeyInfo(r));
    r.end('pb');
    return keys;
  },
});

export interface GenerateKeyRequest {
  readonly ref: KeyRef;
  readonly type: SymmetricKeyType;
  readonly usage: readonly KeyUsage[];
}
const symType = (code: string): SymmetricKeyType => {
  const t = valueOf(KEY_TYPES, code, 'key type');
  if (t === 'RSA-2048') throw new FieldError('RSA keys are generated with ps');
  return t;
};

export const pc = defineCommand<GenerateKeyRequest, KeyInfo>({
  code: 'pc',
  name: 'generate key (labelled)',
  origin: 'purselab',
  idempotent: false,
  encodeRequest: (req) =>
    text((w) => {
      w.keyRef(req.ref).raw(codeOf(KEY_TYPES, req.type, 'key type'));
      writeUsage(w, req.usage);
    }),
  decodeRequest: (r) => {
    const ref = r.keyRef();
    const type = symType(r.fixed(2, 'key type'));
    const usage = readUsage(r);
    r.end('pc');
    return { ref, type, usage };
  },
  encodeResponse: (k) => text((w) => writeKeyInfo(w, k)),
  decodeResponse: (r) => {
    const k = readKeyInfo(r);
    r.end('pd');
    return k;
  },
});

export interface ImportKeyRequest extends GenerateKeyRequest {
  readonly kek: KeyRef;
  readonly wrapped: Buffer;
}

export const pe = defineCommand<ImportKeyRequest, KeyInfo>({
  code: 'pe',
  name: 'import key under KEK',
  origin: 'purselab',
  idempotent: false,
  encodeRequest: (req) =>
    text((w) => {
      w.keyRef(req.ref).raw(codeOf(KEY_TYPES, req.type, 'key type'));
      writeUsage(w, req.usage);
      w.keyRef(req.kek, 'kek').bytes(req.wrapped, 'wrapped key');
    }),
  decodeRequest: (r) => {
    const ref = r.keyRef();
    const type = symType(r.fixed(2, 'key type'));
    const usage = readUsage(r);
    const kek = r.keyRef('kek');
    const wrapped = r.bytes('wrapped key');
    r.end('pe');
    return { ref, type, usage, kek, wrapped };
  },
  encodeResponse: (k) => text((w) => writeKeyInfo(w, k)),
  decodeResponse: (r) => {
    const k = readKeyInfo(r);
    r.end('pf');
    return k;
  },
});

const bytesResponse = {
  encodeResponse: (b: Buffer): string => text((w) => w.bytes(b)),
  decodeResponse: (r: FieldReader): Buffer => {
    const b = r.bytes();
    r.end();
    return b;
  },
};

export const pg = defineCommand<KeySpec, Buffer>({
  code: 'pg',
  name: 'key check value',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (key) => text((w) => w.keySpec(key)),
  decodeRequest: (r) => {
    const k = r.keySpec();
    r.end('pg');
    return k;
  },
  ...bytesResponse,
});

export interface MacRequest {
  readonly key: KeySpec;
  readonly algorithm: MacAlgorithm;
  readonly data: Buffer;
}

export const pi = defineCommand<MacRequest, Buffer>({
  code: 'pi',
  name: 'MAC generate',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (req) => text((w) => w.keySpec(req.key).raw(codeOf(MAC_ALGS, req.algorithm, 'MAC algorithm')).bytes(req.data)),
  decodeRequest: (r) => {
    const key = r.keySpec();
    const algorithm = valueOf(MAC_ALGS, r.fixed(1, 'MAC algorithm'), 'MAC algorithm');
    const data = r.bytes();
    r.end('pi');
    return { key, algorithm, data };
  },
  ...bytesResponse,
});

export const pk = defineCommand<MacRequest & { readonly mac: Buffer }, boolean>({
  code: 'pk',
  name: 'MAC verify',
  origin: 'purselab',
  idempotent: true,
  verifies: true,
  encodeRequest: (req) => text((w) => w.keySpec(req.key).raw(codeOf(MAC_ALGS, req.algorithm, 'MAC algorithm')).bytes(req.data).bytes(req.mac, 'mac')),
  decodeRequest: (r) => {
    const key = r.keySpec();
    const algorithm = valueOf(MAC_ALGS, r.fixed(1, 'MAC algorithm'), 'MAC algorithm');
    const data = r.bytes();
    const mac = r.bytes('mac');
    r.end('pk');
    return { key, algorithm, data, mac };
  },
  encodeResponse: () => '',
  decodeResponse: (r) => {
    r.end('pl');
    return true;
  },
});

export interface CipherRequest {
  readonly key: KeySpec;
  readonly mode: CipherMode;
  readonly iv: Buffer;
  readonly data: Buffer;
}
function cipherSpec(code: string, name: string): CommandSpec<CipherRequest, Buffer> {
  return defineCommand<CipherRequest, Buffer>({
    code,
    name,
    origin: 'purselab',
    idempotent: true,
    encodeRequest: (req) => text((w) => w.keySpec(req.key).raw(codeOf(CIPHER_MODES, req.mode, 'cipher mode')).bytes(req.iv, 'iv').bytes(req.data)),
    decodeRequest: (r) => {
      const key = r.keySpec();
      const mode = valueOf(CIPHER_MODES, r.fixed(1, 'cipher mode'), 'cipher mode');
      const iv = r.bytes('iv');
      const data = r.bytes();
      r.end(code);
      return { key, mode, iv, data };
    },
    ...bytesResponse,
  });
}
export const pm = cipherSpec('pm', 'encrypt');
export const po = cipherSpec('po', 'decrypt');

export const pq = defineCommand<number, Buffer>({
  code: 'pq',
  name: 'random bytes',
  origin: 'purselab',
  // Not idempotent in result (each call gives new bytes) but free of side effects: a lost answer's bytes were
  // never used by anyone, so asking again is safe.
  idempotent: true,
  encodeRequest: (n) => text((w) => w.num(n, 4, 'length')),
  decodeRequest: (r) => {
    const n = r.num(4, 'length');
    r.end('pq');
    return n;
  },
  ...bytesResponse,
});

export const ps = defineCommand<{ readonly ref: KeyRef; readonly bits: number; readonly usage?: readonly KeyUsage[] }, Buffer>({
  code: 'ps',
  name: 'RSA key pair generate',
  origin: 'purselab',
  idempotent: false,
  slow: true,
  encodeRequest: (req) =>
    text((w) => {
      w.keyRef(req.ref).num(req.bits, 4, 'modulus bits');
      if (req.usage !== undefined && (!Array.isArray(req.usage) || req.usage.length === 0)) throw new FieldError('usage: expected a non-empty list');
      writeUsage(w, req.usage ?? []); // count 0: the HSM's default usage
    }),
  decodeRequest: (r) => {
    const ref = r.keyRef();
    const bits = r.num(4, 'modulus bits');
    const usage = readUsage(r);
    r.end('ps');
    return usage.length ? { ref, bits, usage } : { ref, bits };
  },
  ...bytesResponse,
});

export const pu = defineCommand<{ readonly key: KeyRef; readonly data: Buffer }, Buffer>({
  code: 'pu',
  name: 'RSA sign',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (req) => text((w) => w.keyRef(req.key).bytes(req.data)),
  decodeRequest: (r) => {
    const key = r.keyRef();
    const data = r.bytes();
    r.end('pu');
    return { key, data };
  },
  ...bytesResponse,
});

export const pw = defineCommand<{ readonly key: KeyRef; readonly data: Buffer; readonly signature: Buffer }, boolean>({
  code: 'pw',
  name: 'RSA verify',
  origin: 'purselab',
  idempotent: true,
  verifies: true,
  encodeRequest: (req) => text((w) => w.keyRef(req.key).bytes(req.data).bytes(req.signature, 'signature')),
  decodeRequest: (r) => {
    const key = r.keyRef();
    const data = r.bytes();
    const signature = r.bytes('signature');
    r.end('pw');
    return { key, data, signature };
  },
  encodeResponse: () => '',
  decodeResponse: (r) => {
    r.end('px');
    return true;
  },
});

// ---- simulator control (only when the simulator runs with --allow-faults; a real HSM answers 68) --------------

export type FaultKind = 'delay' | 'drop' | 'garble' | 'noise' | 'bad-lrc' | 'bad-header' | 'die-before' | 'die-after';
export const FAULT_KINDS: readonly FaultKind[] = ['delay', 'drop', 'garble', 'noise', 'bad-lrc', 'bad-header', 'die-before', 'die-after'];

export interface FaultPlan {
  readonly kind: FaultKind;
  /** How many of the following matching commands it applies to (1..99). */
  readonly count: number;
  /** For 'delay': milliseconds before the answer (0..99999). */
  readonly ms: number;
  /** Only commands with this code ('**' = any command). */
  readonly match: string;
}

export const xa = defineCommand<FaultPlan, void>({
  code: 'xa',
  name: 'simulator: arm a fault',
  origin: 'simulator',
  idempotent: false,
  encodeRequest: (f) => text((w) => w.text2(f.kind, 'fault kind').num(f.count, 2, 'count').num(f.ms, 5, 'ms').fixed(f.match, 2, 'match')),
  decodeRequest: (r) => {
    const kind = r.text2('fault kind') as FaultKind;
    if (!FAULT_KINDS.includes(kind)) throw new FieldError(`unknown fault kind '${kind}'`);
    const count = r.num(2, 'count');
    const ms = r.num(5, 'ms');
    const match = r.fixed(2, 'match');
    r.end('xa');
    return { kind, count, ms, match };
  },
  encodeResponse: () => '',
  decodeResponse: (r) => r.end('xb'),
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyCommand = CommandSpec<any, any>;

/** Every command, by request code. */
export const COMMANDS: ReadonlyMap<string, AnyCommand> = new Map<string, AnyCommand>(
  [NC, A0, BU, pa, pc, pe, pg, pi, pk, pm, po, pq, ps, pu, pw, xa].map((c) => [c.code, c] as const),
);

/** Extra commands registered by other layers (the payment-ops commands), same shape. */
export function registerCommand(c: AnyCommand): void {
  if (COMMANDS.has(c.code)) throw new Error(`command code ${c.code} already registered`);
  (COMMANDS as Map<string, AnyCommand>).set(c.code, c);
}

/** Error-response fields of purselab commands: the remote error code (text2) and message (text3), both optional. */
export function encodeErrorDetail(code: string, message: string): string {
  const clean = (s: string, max: number): string => s.replace(/[^\x20-\x7e]/g, '?').slice(0, max);
  return new FieldWriter().text2(clean(code, 99)).text3(clean(message, 999)).toString();
}
export function decodeErrorDetail(body: string): { code: string; message: string } | undefined {
  if (!body) return undefined;
  try {
    const r = new FieldReader(body);
    const code = r.text2();
    const message = r.text3();
    r.end();
    return { code, message };
  } catch {
    return undefined;
  }
}
