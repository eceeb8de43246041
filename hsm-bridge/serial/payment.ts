// Native payment operations on the host-command line (codes q?): verify load S1, generate S2, verify S3, the
// zero-value enquiry check, any purse MAC, and sealed virtual-card records — each ONE command, executed inside
// the HSM with the card key derived there (seed 003: the issuer HSM verifies S1, produces S2, verifies S3).
//
// A purse MAC command carries the MAC input exactly as the layout of src/crypto/purse-mac.ts encodes it
// (`bytes`): the HSM decodes the layout, which names the algorithm, key version and card id, picks the master
// key by its own naming (hsm-bridge/payment.ts DEFAULT_PAYMENT_KEYS) and runs the same operation as
// `paymentOps()` of its backend. So the serial backend gives exactly the software backend's answers.

import { decodeLayout, type Layout } from '../../src/crypto/index.ts';
import {
  LOAD_S1_LAYOUT,
  LOAD_S2_LAYOUT,
  LOAD_S3_LAYOUT,
  loadS1Input,
  loadS2Input,
  loadS3Input,
  PURCHASE_S2_LAYOUT,
  PURCHASE_S3_LAYOUT,
  purchaseS2Input,
  purchaseS3Input,
  type LoadS1Fields,
  type LoadS2Fields,
  type LoadS3Fields,
} from '../../src/crypto/purse-mac.ts';
import { PurselabError } from '../../src/errors.ts';
import { HsmBadInputError } from '../errors.ts';
import type { Hsm } from '../hsm.ts';
import { paymentOps, type EnquiryCheck, type PaymentOps, type PurseMacFields, type PurseMacKind } from '../payment.ts';
import type { HostCommandClient } from './client.ts';
import { defineCommand, registerCommand, type AnyCommand } from './commands.ts';
import { FieldError, FieldReader, FieldWriter } from './fields.ts';

const KINDS: Record<PurseMacKind, { layout: Layout; input: (f: never) => Buffer }> = {
  loadS1: { layout: LOAD_S1_LAYOUT, input: loadS1Input as (f: never) => Buffer },
  loadS2: { layout: LOAD_S2_LAYOUT, input: loadS2Input as (f: never) => Buffer },
  loadS3: { layout: LOAD_S3_LAYOUT, input: loadS3Input as (f: never) => Buffer },
  purchaseS2: { layout: PURCHASE_S2_LAYOUT, input: purchaseS2Input as (f: never) => Buffer },
  purchaseS3: { layout: PURCHASE_S3_LAYOUT, input: purchaseS3Input as (f: never) => Buffer },
};

const text = (f: (w: FieldWriter) => unknown): string => {
  const w = new FieldWriter();
  f(w);
  return w.toString();
};

interface MacInput {
  readonly input: Buffer;
}
interface KindInput extends MacInput {
  readonly kind: PurseMacKind;
}

function readKind(r: FieldReader): PurseMacKind {
  const kind = r.text2('purse MAC kind');
  if (!(kind in KINDS)) throw new FieldError(`unknown purse MAC kind '${kind}' (known: ${Object.keys(KINDS).join(', ')})`);
  return kind as PurseMacKind;
}

const bytesOut = {
  encodeResponse: (b: Buffer): string => text((w) => w.bytes(b)),
  decodeResponse: (r: FieldReader): Buffer => {
    const b = r.bytes();
    r.end();
    return b;
  },
};
const verdict = {
  verifies: true,
  encodeResponse: (): string => '',
  decodeResponse: (r: FieldReader): boolean => {
    r.end();
    return true;
  },
};

/** qa: verify a load S1 (LTYPE 01/02). `bytes` S1 input (LOAD_S1_LAYOUT), `bytes` S1. Answer 00 / 01. */
export const qa = defineCommand<MacInput & { readonly mac: Buffer }, boolean>({
  code: 'qa',
  name: 'verify load S1',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (q) => text((w) => w.bytes(q.input, 'S1 input').bytes(q.mac, 'S1')),
  decodeRequest: (r) => {
    const input = r.bytes('S1 input');
    const mac = r.bytes('S1');
    r.end('qa');
    return { input, mac };
  },
  ...verdict,
});

/** qc: generate the load S2. `bytes` S2 input (LOAD_S2_LAYOUT). Answer `bytes` S2 (8). */
export const qc = defineCommand<MacInput, Buffer>({
  code: 'qc',
  name: 'generate load S2',
  origin: 'purselab',
  // A MAC over fields that include the card's challenge: the same S2 every time, and nothing changes in the HSM.
  idempotent: true,
  encodeRequest: (q) => text((w) => w.bytes(q.input, 'S2 input')),
  decodeRequest: (r) => {
    const input = r.bytes('S2 input');
    r.end('qc');
    return { input };
  },
  ...bytesOut,
});

/** qe: verify a load S3. `bytes` S3 input (LOAD_S3_LAYOUT), `bytes` S3. Answer 00 / 01. */
export const qe = defineCommand<MacInput & { readonly mac: Buffer }, boolean>({
  code: 'qe',
  name: 'verify load S3',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (q) => text((w) => w.bytes(q.input, 'S3 input').bytes(q.mac, 'S3')),
  decodeRequest: (r) => {
    const input = r.bytes('S3 input');
    const mac = r.bytes('S3');
    r.end('qe');
    return { input, mac };
  },
  ...verdict,
});

/**
 * qg: check a zero-value enquiry S1 (LTYPE 81/82). `bytes` S1 input, `bytes` S1, `bytes` pending LTXID (0 bytes:
 * none). Answer: `1N` valid (1/0), `bytes` last LTXID, `10N` last load counter, `10N` last load amount,
 * `1A` credited (Y / N / - when not known).
 */
export const qg = defineCommand<MacInput & { readonly mac: Buffer; readonly pending?: Buffer }, EnquiryCheck>({
  code: 'qg',
  name: 'check enquiry S1',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (q) => text((w) => w.bytes(q.input, 'S1 input').bytes(q.mac, 'S1').bytes(q.pending ?? Buffer.alloc(0), 'pending load id')),
  decodeRequest: (r) => {
    const input = r.bytes('S1 input');
    const mac = r.bytes('S1');
    const pending = r.bytes('pending load id');
    r.end('qg');
    return pending.length ? { input, mac, pending } : { input, mac };
  },
  encodeResponse: (c) =>
    text((w) =>
      w
        .num(c.valid ? 1 : 0, 1, 'valid')
        .bytes(c.lastLoadTxnId, 'last LTXID')
        .num(c.lastLoadCounter, 10, 'last load counter')
        .num(c.lastLoadAmount, 10, 'last load amount')
        .raw(c.credited === undefined ? '-' : c.credited ? 'Y' : 'N'),
    ),
  decodeResponse: (r) => {
    const valid = r.num(1, 'valid') === 1;
    const lastLoadTxnId = r.bytes('last LTXID');
    const lastLoadCounter = r.num(10, 'last load counter');
    const lastLoadAmount = r.num(10, 'last load amount');
    const c = r.fixed(1, 'credited');
    r.end('qh');
    if (!'YN-'.includes(c)) throw new FieldError(`credited must be Y, N or -, got '${c}'`);
    const out = { valid, lastLoadTxnId, lastLoadCounter, lastLoadAmount };
    return c === '-' ? out : { ...out, credited: c === 'Y' };
  },
});

/** qi: any purse MAC. `text2` kind (loadS1, loadS2, loadS3, purchaseS2, purchaseS3), `bytes` input. Answer `bytes` MAC (8). */
export const qi = defineCommand<KindInput, Buffer>({
  code: 'qi',
  name: 'purse MAC',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (q) => text((w) => w.text2(q.kind, 'kind').bytes(q.input, 'input')),
  decodeRequest: (r) => {
    const kind = readKind(r);
    const input = r.bytes('input');
    r.end('qi');
    return { kind, input };
  },
  ...bytesOut,
});

/** qk: verify any purse MAC. `text2` kind, `bytes` input, `bytes` MAC. Answer 00 / 01. */
export const qk = defineCommand<KindInput & { readonly mac: Buffer }, boolean>({
  code: 'qk',
  name: 'verify purse MAC',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (q) => text((w) => w.text2(q.kind, 'kind').bytes(q.input, 'input').bytes(q.mac, 'mac')),
  decodeRequest: (r) => {
    const kind = readKind(r);
    const input = r.bytes('input');
    const mac = r.bytes('mac');
    r.end('qk');
    return { kind, input, mac };
  },
  ...verdict,
});

/** qm: seal a virtual-card record. `text2` card id (16 digits), `bytes` record. Answer `bytes` sealed record. */
export const qm = defineCommand<{ readonly cardId: string; readonly data: Buffer }, Buffer>({
  code: 'qm',
  name: 'seal record',
  origin: 'purselab',
  // A fresh IV each time, like random bytes: a lost answer's record was never stored by anyone, so asking
  // again is safe.
  idempotent: true,
  encodeRequest: (q) => text((w) => w.text2(q.cardId, 'card id').bytes(q.data, 'record')),
  decodeRequest: (r) => {
    const cardId = r.text2('card id');
    const data = r.bytes('record');
    r.end('qm');
    return { cardId, data };
  },
  ...bytesOut,
});

/** qo: open a sealed record. `text2` card id, `bytes` sealed record. Answer `bytes` record; P4 if it fails its MAC. */
export const qo = defineCommand<{ readonly cardId: string; readonly data: Buffer }, Buffer>({
  code: 'qo',
  name: 'open record',
  origin: 'purselab',
  idempotent: true,
  encodeRequest: (q) => text((w) => w.text2(q.cardId, 'card id').bytes(q.data, 'sealed record')),
  decodeRequest: (r) => {
    const cardId = r.text2('card id');
    const data = r.bytes('sealed record');
    r.end('qo');
    return { cardId, data };
  },
  ...bytesOut,
});

export const PAYMENT_COMMANDS: readonly AnyCommand[] = [qa, qc, qe, qg, qi, qk, qm, qo];
for (const c of PAYMENT_COMMANDS) registerCommand(c);

// ---- host side ------------------------------------------------------------------------------------------------

/** The MAC input of `kind` for `fields`, or HSM_BAD_INPUT (as paymentOps() of any backend says for bad fields). */
function macInput(kind: PurseMacKind, fields: unknown): Buffer {
  const k = KINDS[kind];
  if (!k) throw new HsmBadInputError(`unknown purse MAC '${String(kind)}' (known: ${Object.keys(KINDS).join(', ')})`);
  if (typeof fields !== 'object' || fields === null) throw new HsmBadInputError(`${kind}: fields are required`);
  try {
    return k.input(fields as never);
  } catch (e) {
    if (e instanceof PurselabError && e.code.startsWith('CRYPTO_')) throw new HsmBadInputError(`${kind}: ${e.message}`);
    if (e instanceof TypeError) throw new HsmBadInputError(`${kind}: ${e.message}`);
    throw e;
  }
}

/** `PaymentOps` over the line: one native command per operation. Set as `SerialHsm.payment`. */
export class SerialPaymentOps implements PaymentOps {
  constructor(private readonly client: HostCommandClient) {}

  async verifyS1(fields: LoadS1Fields, s1: Buffer): Promise<boolean> {
    return this.client.execute(qa, { input: macInput('loadS1', fields), mac: s1 });
  }

  async generateS2(fields: LoadS2Fields): Promise<Buffer> {
    return this.client.execute(qc, { input: macInput('loadS2', fields) });
  }

  async verifyS3(fields: LoadS3Fields, s3: Buffer): Promise<boolean> {
    return this.client.execute(qe, { input: macInput('loadS3', fields), mac: s3 });
  }

  async verifyEnquiryS1(fields: LoadS1Fields, s1: Buffer, pendingLoadTxnId?: Buffer): Promise<EnquiryCheck> {
    return this.client.execute(qg, { input: macInput('loadS1', fields), mac: s1, ...(pendingLoadTxnId !== undefined ? { pending: pendingLoadTxnId } : {}) });
  }

  async purseMac<K extends PurseMacKind>(kind: K, fields: PurseMacFields[K]): Promise<Buffer> {
    return this.client.execute(qi, { kind, input: macInput(kind, fields) });
  }

  async purseMacVerify<K extends PurseMacKind>(kind: K, fields: PurseMacFields[K], mac: Buffer): Promise<boolean> {
    return this.client.execute(qk, { kind, input: macInput(kind, fields), mac });
  }

  async sealRecord(cardId: string, record: Buffer): Promise<Buffer> {
    if (typeof cardId !== 'string') throw new HsmBadInputError('sealRecord: card id must be 16 digits');
    return this.client.execute(qm, { cardId, data: record });
  }

  async openRecord(cardId: string, sealed: Buffer): Promise<Buffer> {
    if (typeof cardId !== 'string') throw new HsmBadInputError('openRecord: card id must be 16 digits');
    return this.client.execute(qo, { cardId, data: sealed });
  }
}

// ---- HSM side (the simulator) ---------------------------------------------------------------------------------

function fieldsFrom<T>(kind: PurseMacKind, input: Buffer): T {
  try {
    return decodeLayout<T>(KINDS[kind].layout, input);
  } catch (e) {
    if (e instanceof PurselabError && e.code.startsWith('CRYPTO_')) throw new HsmBadInputError(`${kind} input: ${e.message}`);
    throw e;
  }
}

type Handler = (hsm: Hsm, req: any) => Promise<unknown>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** How the simulator executes each payment command: paymentOps() of its backend, on the decoded fields. */
export const PAYMENT_HANDLERS: Readonly<Record<string, Handler>> = {
  qa: (hsm, q) => paymentOps(hsm).verifyS1(fieldsFrom('loadS1', q.input), q.mac),
  qc: (hsm, q) => paymentOps(hsm).generateS2(fieldsFrom('loadS2', q.input)),
  qe: (hsm, q) => paymentOps(hsm).verifyS3(fieldsFrom('loadS3', q.input), q.mac),
  qg: (hsm, q) => paymentOps(hsm).verifyEnquiryS1(fieldsFrom('loadS1', q.input), q.mac, q.pending),
  qi: (hsm, q) => paymentOps(hsm).purseMac(q.kind, fieldsFrom(q.kind, q.input)),
  qk: (hsm, q) => paymentOps(hsm).purseMacVerify(q.kind, fieldsFrom(q.kind, q.input), q.mac),
  qm: (hsm, q) => paymentOps(hsm).sealRecord(q.cardId, q.data),
  qo: (hsm, q) => paymentOps(hsm).openRecord(q.cardId, q.data),
};
