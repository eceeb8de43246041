// The one HSM interface every backend implements (software, PKCS#11, serial host-command).
// Keys are named by label and version; key material never crosses this interface in clear.

export type SymmetricKeyType = 'DES3-2KEY' | 'AES-128';
export type KeyUsage = 'mac' | 'encrypt' | 'derive' | 'wrap';

export interface KeyRef {
  readonly label: string;
  readonly version: number;
}

/** A key the HSM can use: a stored key, or a card key derived inside the HSM from a master key and a card id. */
export type KeySpec = KeyRef | { readonly master: KeyRef; readonly cardId: Buffer };

export interface KeyInfo {
  readonly label: string;
  readonly version: number;
  readonly type: SymmetricKeyType | 'RSA-2048';
  readonly usage: readonly KeyUsage[];
  /** Key check value: first 3 bytes of encrypting zeros (3DES) / CMAC of zeros (AES), hex. */
  readonly kcv: string;
}

/** ISO 9797-1 padding method 2 with MAC algorithm 1 or 3 (2-key 3DES), or AES-CMAC (NIST SP 800-38B). */
export type MacAlgorithm = 'ISO9797-1-ALG1' | 'ISO9797-1-ALG3' | 'AES-CMAC';
export type CipherMode = 'CBC';

export interface HsmHealth {
  readonly ok: boolean;
  readonly backend: HsmBackendName;
  /** Free-form detail: token label, firmware, line state... never key material. */
  readonly detail: string;
}

export type HsmBackendName = 'software' | 'pkcs11' | 'serial';

/** Payment operations (S1/S2/S3, failed-load S1, sealed virtual-card records): see hsm-bridge/payment.ts. */
export type { PaymentOps } from './payment.ts';
import type { PaymentOps } from './payment.ts';

export interface Hsm {
  readonly backend: HsmBackendName;
  /**
   * Native payment operations, for a backend whose device has commands for them (a host-command HSM).
   * Absent: `paymentOps(hsm)` (hsm-bridge/payment.ts) composes them from the calls below.
   */
  readonly payment?: PaymentOps;
  open(): Promise<void>;
  close(): Promise<void>;
  health(): Promise<HsmHealth>;
  listKeys(): Promise<KeyInfo[]>;
  generateKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[]): Promise<KeyInfo>;
  /**
   * Import a key that arrives encrypted under a key-encryption key already in the HSM (never in clear).
   * The blob's format follows from the KEK's type (hsm-bridge/wrap.ts): AES-128 KEK -> RFC 3394 AES key wrap;
   * RSA-2048 KEK -> RSAES-OAEP (SHA-1); DES3-2KEY KEK -> 3DES-ECB. The KEK needs usage 'wrap'.
   */
  importKey(ref: KeyRef, type: SymmetricKeyType, usage: readonly KeyUsage[], wrapped: Buffer, kek: KeyRef): Promise<KeyInfo>;
  keyCheckValue(key: KeySpec): Promise<Buffer>;
  /** The whole MAC: 8 bytes for ISO9797-1-ALG1/ALG3, 16 for AES-CMAC (callers truncate to what their layout carries). */
  macGenerate(key: KeySpec, algorithm: MacAlgorithm, data: Buffer): Promise<Buffer>;
  /** `mac` may be truncated (4 bytes up to the whole MAC): its leftmost bytes are compared, in constant time. */
  macVerify(key: KeySpec, algorithm: MacAlgorithm, data: Buffer, mac: Buffer): Promise<boolean>;
  /** CBC without padding: `iv` is one block, `data` a non-empty whole number of blocks. */
  encrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer>;
  decrypt(key: KeySpec, mode: CipherMode, iv: Buffer, data: Buffer): Promise<Buffer>;
  randomBytes(length: number): Promise<Buffer>;
  /**
   * RSA key pair inside the HSM; returns the public key as SubjectPublicKeyInfo DER. For an RSA key, usage 'mac'
   * allows sign/verify and 'wrap' allows importKey under it (transport key). Without `usage`: both.
   */
  generateRsaKeyPair(ref: KeyRef, bits: 2048, usage?: readonly KeyUsage[]): Promise<{ publicKeyDer: Buffer }>;
  /** RSASSA-PKCS1-v1_5 with SHA-256 (PKCS#11 CKM_SHA256_RSA_PKCS): deterministic, so identical on every backend. */
  sign(key: KeyRef, data: Buffer): Promise<Buffer>;
  verify(key: KeyRef, data: Buffer, signature: Buffer): Promise<boolean>;
}
