// The software backend's key store: one file, all keys encrypted together under AES-256-GCM with a key (KEK)
// derived by scrypt from a master passphrase. The header (format, KDF parameters, salt) is the GCM's
// additional data, so it cannot be altered without the file failing to open.
//
// Writes are atomic (temporary file, fsync, rename, fsync of the directory) and serialised across processes
// by a lock file; every change re-reads the file under the lock first, so two processes adding keys to the
// same store do not lose each other's keys.

import { createCipheriv, createDecipheriv, randomBytes, scrypt as scryptCb, type BinaryLike, type ScryptOptions } from 'node:crypto';
import { constants as fsc, promises as fs } from 'node:fs';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HsmStoreError } from '../errors.ts';
import type { KeyUsage, SymmetricKeyType } from '../hsm.ts';

export const KEYSTORE_FORMAT = 'purselab-hsm-keystore';
export const KEYSTORE_VERSION = 1;

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
}

/** 2^15 / 8 / 1: about 0.1 s and 32 MiB per open on this machine's class of CPU. */
export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 15, r: 8, p: 1 };

/** One key as the store holds it (in memory only once the store is open). */
export interface StoredKey {
  readonly label: string;
  readonly version: number;
  readonly type: SymmetricKeyType | 'RSA-2048';
  readonly usage: readonly KeyUsage[];
  readonly kcv: string;
  readonly createdAt: string;
  /** Symmetric key value (16 bytes). */
  readonly value?: Buffer;
  /** RSA private key, PKCS#8 DER. */
  readonly privateKeyDer?: Buffer;
  /** RSA public key, SubjectPublicKeyInfo DER. */
  readonly publicKeyDer?: Buffer;
}

interface Header {
  format: string;
  version: number;
  kdf: { name: 'scrypt'; N: number; r: number; p: number; salt: string };
  cipher: 'aes-256-gcm';
}

interface FileBody extends Header {
  nonce: string;
  ciphertext: string;
  tag: string;
}

interface PlainKey {
  label: string;
  version: number;
  type: StoredKey['type'];
  usage: KeyUsage[];
  kcv: string;
  createdAt: string;
  value?: string;
  privateKey?: string;
  publicKey?: string;
}

function scrypt(pass: BinaryLike, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const opts: ScryptOptions = { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + (1 << 20) };
  return new Promise((resolve, reject) => scryptCb(pass, salt, 32, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

const aad = (h: Header): Buffer => Buffer.from(JSON.stringify({ format: h.format, version: h.version, kdf: h.kdf, cipher: h.cipher }));

function encodeKeys(keys: readonly StoredKey[]): Buffer {
  const plain: PlainKey[] = keys.map((k) => ({
    label: k.label,
    version: k.version,
    type: k.type,
    usage: [...k.usage],
    kcv: k.kcv,
    createdAt: k.createdAt,
    ...(k.value ? { value: k.value.toString('base64') } : {}),
    ...(k.privateKeyDer ? { privateKey: k.privateKeyDer.toString('base64') } : {}),
    ...(k.publicKeyDer ? { publicKey: k.publicKeyDer.toString('base64') } : {}),
  }));
  return Buffer.from(JSON.stringify({ keys: plain }));
}

function decodeKeys(plain: Buffer, path: string): StoredKey[] {
  let parsed: { keys?: PlainKey[] };
  try {
    parsed = JSON.parse(plain.toString('utf8')) as { keys?: PlainKey[] };
  } catch (e) {
    throw new HsmStoreError('HSM_STORE_CORRUPT', path, `key store ${path}: decrypted content is not JSON`, { cause: e });
  } finally {
    plain.fill(0);
  }
  if (!Array.isArray(parsed.keys)) throw new HsmStoreError('HSM_STORE_CORRUPT', path, `key store ${path}: no key list`);
  return parsed.keys.map((k) => ({
    label: k.label,
    version: k.version,
    type: k.type,
    usage: k.usage,
    kcv: k.kcv,
    createdAt: k.createdAt,
    ...(k.value ? { value: Buffer.from(k.value, 'base64') } : {}),
    ...(k.privateKey ? { privateKeyDer: Buffer.from(k.privateKey, 'base64') } : {}),
    ...(k.publicKey ? { publicKeyDer: Buffer.from(k.publicKey, 'base64') } : {}),
  }));
}

/** An open key-store file: the KEK stays in memory so later writes need no new scrypt run. */
export class KeyStoreFile {
  readonly path: string;
  private readonly header: Header;
  private readonly kek: Buffer;

  private constructor(path: string, header: Header, kek: Buffer) {
    this.path = path;
    this.header = header;
    this.kek = kek;
  }

  /** Create a new, empty store (HSM_STORE_CORRUPT-free: refuses to overwrite an existing file). */
  static async create(path: string, passphrase: string, params: ScryptParams = DEFAULT_SCRYPT): Promise<KeyStoreFile> {
    const salt = randomBytes(16);
    const header: Header = {
      format: KEYSTORE_FORMAT,
      version: KEYSTORE_VERSION,
      kdf: { name: 'scrypt', N: params.N, r: params.r, p: params.p, salt: salt.toString('base64') },
      cipher: 'aes-256-gcm',
    };
    const store = new KeyStoreFile(path, header, await scrypt(passphrase, salt, params));
    await store.withLock(async () => {
      if (await exists(path)) throw new HsmStoreError('HSM_STORE_CORRUPT', path, `key store ${path} already exists; refusing to overwrite it`);
      await store.write([]);
    });
    return store;
  }

  /** Open an existing store and return it with its keys. */
  static async open(path: string, passphrase: string): Promise<{ store: KeyStoreFile; keys: StoredKey[] }> {
    const body = await readBody(path);
    const kdf = body.kdf;
    const kek = await scrypt(passphrase, Buffer.from(kdf.salt, 'base64'), { N: kdf.N, r: kdf.r, p: kdf.p });
    const store = new KeyStoreFile(path, { format: body.format, version: body.version, kdf, cipher: body.cipher }, kek);
    return { store, keys: store.decrypt(body) };
  }

  /** Re-read the file (another process may have added keys). */
  async reload(): Promise<StoredKey[]> {
    return this.decrypt(await readBody(this.path));
  }

  /** Apply a change to the current content of the file, under the lock, and write the result. */
  async update(change: (keys: StoredKey[]) => StoredKey[]): Promise<StoredKey[]> {
    return this.withLock(async () => {
      const next = change(await this.reload());
      await this.write(next);
      return next;
    });
  }

  /** Forget the KEK (the object is unusable afterwards). */
  close(): void {
    this.kek.fill(0);
  }

  private decrypt(body: FileBody): StoredKey[] {
    let plain: Buffer;
    try {
      const d = createDecipheriv('aes-256-gcm', this.kek, Buffer.from(body.nonce, 'base64'));
      d.setAAD(aad(body));
      d.setAuthTag(Buffer.from(body.tag, 'base64'));
      plain = Buffer.concat([d.update(Buffer.from(body.ciphertext, 'base64')), d.final()]);
    } catch (e) {
      throw new HsmStoreError(
        'HSM_STORE_PASSPHRASE',
        this.path,
        `key store ${this.path} does not open with this master passphrase (or its content was altered)`,
        { cause: e },
      );
    }
    return decodeKeys(plain, this.path);
  }

  private async write(keys: readonly StoredKey[]): Promise<void> {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.kek, nonce);
    c.setAAD(aad(this.header));
    const plain = encodeKeys(keys);
    const ciphertext = Buffer.concat([c.update(plain), c.final()]);
    plain.fill(0);
    const body: FileBody = {
      ...this.header,
      nonce: nonce.toString('base64'),
      ciphertext: ciphertext.toString('base64'),
      tag: c.getAuthTag().toString('base64'),
    };
    await atomicWrite(this.path, JSON.stringify(body, null, 1) + '\n');
  }

  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const lock = `${this.path}.lock`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const h = await fs.open(lock, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o600);
        await h.writeFile(String(process.pid));
        await h.close();
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        if (await staleLock(lock)) {
          await fs.rm(lock, { force: true });
          continue;
        }
        if (Date.now() > deadline) {
          throw new HsmStoreError('HSM_STORE_LOCKED', this.path, `key store ${this.path} is locked by another process (${lock})`);
        }
        await sleep(20);
      }
    }
    try {
      return await fn();
    } finally {
      await fs.rm(lock, { force: true });
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await fs.access(path);
    return true;
  } catch {
    return false;
  }
}

/** A lock whose owner process is gone. */
async function staleLock(lock: string): Promise<boolean> {
  try {
    const pid = Number((await fs.readFile(lock, 'utf8')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now
    if (pid === process.pid) return false;
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

async function readBody(path: string): Promise<FileBody> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new HsmStoreError('HSM_STORE_MISSING', path, `key store ${path} does not exist (create it with: purselab hsm init --software ${path})`);
    }
    throw e;
  }
  let body: FileBody;
  try {
    body = JSON.parse(text) as FileBody;
  } catch (e) {
    throw new HsmStoreError('HSM_STORE_CORRUPT', path, `key store ${path} is not JSON`, { cause: e });
  }
  const kdf = body?.kdf;
  const valid =
    body?.format === KEYSTORE_FORMAT &&
    body.version === KEYSTORE_VERSION &&
    body.cipher === 'aes-256-gcm' &&
    kdf?.name === 'scrypt' &&
    [kdf.N, kdf.r, kdf.p].every((n) => Number.isInteger(n) && n > 0) &&
    kdf.N <= 1 << 20 &&
    [kdf.salt, body.nonce, body.ciphertext, body.tag].every((s) => typeof s === 'string');
  if (!valid) throw new HsmStoreError('HSM_STORE_CORRUPT', path, `${path} is not a purselab key store (format ${KEYSTORE_FORMAT} v${KEYSTORE_VERSION})`);
  return body;
}

async function atomicWrite(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const h = await fs.open(tmp, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o600);
  try {
    await h.writeFile(content);
    await h.sync();
  } finally {
    await h.close();
  }
  try {
    await fs.rename(tmp, path);
  } catch (e) {
    await fs.rm(tmp, { force: true });
    throw e;
  }
  const dir = await fs.open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
