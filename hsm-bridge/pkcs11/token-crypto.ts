// The cryptography the PKCS#11 backend asks of a token, on key material it already holds (a stored key, or
// a card key derived inside the token): CBC encryption and decryption, the MACs (AES-CMAC from CKM_AES_CMAC;
// the ISO 9797-1 DES MACs composed by src/crypto over the token's CBC or ECB calls, since SoftHSM2 has no
// CKM_DES3_MAC), 2-key 3DES from the single-DES halves of a derived card key, and check values. Each data
// call goes to pkcs11js's *Async overload or stays synchronous as the operation's context says
// (pkcs11-hsm.ts decides; docs/hsm-bridge.md, "Concurrency").

import { cbcFromEcb, macFromPrimitives, type CbcPrimitive } from '../../src/crypto/index.ts';
import { ZERO8, ZERO16 } from '../../src/crypto/zero-blocks.ts';
import { HsmDeviceError, HsmMechanismUnsupportedError } from '../errors.ts';
import type { KeyRef, MacAlgorithm } from '../hsm.ts';
import type { Handle, PKCS11, Pkcs11Js } from './binding.ts';
import type { Material } from './derived-keys.ts';
import { andThen } from './maybe-async.ts';

/** One operation's context: its name for errors, how its calls run, what a failure needs to be told. */
export interface OpContext {
  readonly op: string;
  /** Single-shot token calls of this operation go through pkcs11js's *Async overloads (set by the backend's run()). */
  async?: boolean;
  /** The mechanism of the call in progress (named in an error). */
  mechanism?: number;
  ref?: KeyRef;
  unwrap?: boolean;
}

type Mech = { mechanism: number; parameter?: Buffer };

/**
 * With calls 'auto', encrypt/decrypt/CMAC calls over less data than this stay synchronous even under
 * concurrency: on SoftHSM2 such a call takes the token about 8 us, while handing it to libuv's pool costs the
 * main thread more than that (measured: 4 callers of a warm AES-CMAC verify made 3x fewer operations per
 * second on the *Async overloads than one synchronous caller). Derivation, key generation, unwrap and RSA go
 * to the pool at any size.
 */
export const AUTO_ASYNC_MIN_BYTES = 4096;

export class TokenCrypto {
  /** Mechanism objects made once (pkcs11js reads them on every call). */
  private cmacMech: Mech | undefined;
  private desEcbMech: Mech | undefined;

  constructor(
    private readonly lib: PKCS11,
    private readonly P: Pkcs11Js,
    /** For error messages: the token's label. */
    private readonly tokenLabel: string,
    private readonly calls: 'auto' | 'sync' | 'async',
    /** Throws HsmMechanismUnsupportedError when the token lacks the mechanism (or the flag for it). */
    private readonly requireMechanism: (mech: number, flag: number | undefined, purpose: string) => void,
  ) {}

  encSync(s: Handle, ctx: OpContext, mech: Mech, key: Handle, data: Buffer): Buffer {
    ctx.mechanism = mech.mechanism;
    this.lib.C_EncryptInit(s, mech, key);
    return this.lib.C_Encrypt(s, data, Buffer.allocUnsafe(data.length)); // a view of that fresh buffer: no copy needed
  }

  decSync(s: Handle, ctx: OpContext, mech: Mech, key: Handle, data: Buffer): Buffer {
    ctx.mechanism = mech.mechanism;
    this.lib.C_DecryptInit(s, mech, key);
    return this.lib.C_Decrypt(s, data, Buffer.allocUnsafe(data.length));
  }

  /** CBC encryption of whole blocks under the material (3DES from single-DES halves: block by block). */
  encryptCbc(s: Handle, ctx: OpContext, m: Material, iv: Buffer, data: Buffer): Buffer | Promise<Buffer> {
    if (m.kind === 'des-halves') return cbcFromEcb(8, (b) => this.ede(s, ctx, m, b)).encryptCbc(data, iv);
    return this.crypt(s, ctx, 'encrypt', { mechanism: this.cbcMechanism(m), parameter: iv }, m.key, data);
  }

  /** CBC decryption of whole blocks under the material. */
  decryptCbc(s: Handle, ctx: OpContext, m: Material, iv: Buffer, data: Buffer): Buffer | Promise<Buffer> {
    if (m.kind !== 'des-halves') return this.crypt(s, ctx, 'decrypt', { mechanism: this.cbcMechanism(m), parameter: iv }, m.key, data);
    // 3DES decryption of every block, D_K1(E_K2(D_K1(c))), as three ECB passes over all blocks; then CBC's XOR.
    const ecb = this.desEcb();
    const x = this.decSync(s, ctx, ecb, m.k1, this.encSync(s, ctx, ecb, m.k2, this.decSync(s, ctx, ecb, m.k1, data)));
    for (let i = 0; i < x.length; i++) x[i]! ^= i < 8 ? iv[i]! : data[i - 8]!;
    return x;
  }

  /** The whole MAC (8 bytes for the DES algorithms, 16 for AES-CMAC). */
  mac(s: Handle, ctx: OpContext, m: Material, alg: MacAlgorithm, data: Buffer): Buffer | Promise<Buffer> {
    const P = this.P;
    switch (alg) {
      case 'AES-CMAC': {
        if (m.kind !== 'aes') throw new HsmDeviceError('AES-CMAC on a DES key');
        const cmac = (this.cmacMech ??= { mechanism: P.CKM_AES_CMAC }); // one mechanism object for every call
        this.requireMechanism(cmac.mechanism, P.CKF_SIGN, 'AES-CMAC');
        ctx.mechanism = cmac.mechanism;
        const lib = this.lib;
        lib.C_SignInit(s, cmac, m.key);
        // pkcs11js passes empty data as a NULL pointer (CKR_ARGUMENTS_BAD): the CMAC of nothing is C_SignFinal alone.
        if (data.length === 0) return Buffer.from(lib.C_SignFinal(s, Buffer.alloc(16)));
        return this.offload(ctx, data) ? lib.C_SignAsync(s, data, Buffer.alloc(16)) : lib.C_Sign(s, data, Buffer.alloc(16));
      }
      case 'ISO9797-1-ALG1':
        if (m.kind === 'des2') this.requireMechanism(P.CKM_DES3_CBC, P.CKF_ENCRYPT, 'ISO 9797-1 MAC algorithm 1 (CBC-MAC)');
        return macFromPrimitives(alg, { full: this.fullPrimitive(s, ctx, m) }, data, 8);
      case 'ISO9797-1-ALG3': {
        if (m.kind !== 'des-halves') {
          throw new HsmMechanismUnsupportedError(
            'CKM_EXTRACT_KEY_FROM_KEY',
            `${ctx.op}: ISO 9797-1 MAC algorithm 3 needs single DES under the key's left half; a stored CKK_DES2 key cannot be split inside token '${this.tokenLabel}' without CKM_EXTRACT_KEY_FROM_KEY (use a derived card key, ALG1 or AES-CMAC)`,
          );
        }
        const k1 = this.cbcPrimitive(s, ctx, 8, P.CKM_DES_CBC, m.k1);
        return macFromPrimitives(alg, { full: this.fullPrimitive(s, ctx, m), k1 }, data, 8);
      }
    }
  }

  /** The check value of derived material: 3DES-ECB of a zero block, or the AES-CMAC of a zero block; 3 bytes. */
  materialKcv(s: Handle, ctx: OpContext, m: Material): Buffer | Promise<Buffer> {
    if (m.kind === 'des-halves') return this.ede(s, ctx, m, ZERO8).subarray(0, 3);
    if (m.kind === 'aes') return andThen(this.mac(s, ctx, m, 'AES-CMAC', ZERO16), (full) => full.subarray(0, 3));
    throw new HsmDeviceError('stored DES keys take their check value from TokenKeys.read');
  }

  private async crypt(s: Handle, ctx: OpContext, dir: 'encrypt' | 'decrypt', mech: Mech, key: Handle, data: Buffer): Promise<Buffer> {
    if (!this.offload(ctx, data)) return dir === 'encrypt' ? this.encSync(s, ctx, mech, key, data) : this.decSync(s, ctx, mech, key, data);
    ctx.mechanism = mech.mechanism;
    const lib = this.lib;
    if (dir === 'encrypt') {
      lib.C_EncryptInit(s, mech, key);
      return Buffer.from(await lib.C_EncryptAsync(s, data, Buffer.alloc(data.length)));
    }
    lib.C_DecryptInit(s, mech, key);
    return Buffer.from(await lib.C_DecryptAsync(s, data, Buffer.alloc(data.length)));
  }

  /** Whether a data call (symmetric encrypt/decrypt/CMAC) of this operation goes to the *Async overload. */
  private offload(ctx: OpContext, data: Buffer): boolean {
    return ctx.async === true && (this.calls === 'async' || data.length >= AUTO_ASYNC_MIN_BYTES);
  }

  private desEcb(): Mech {
    return (this.desEcbMech ??= { mechanism: this.P.CKM_DES_ECB });
  }

  /** 2-key 3DES encryption of one block from the single-DES halves: E_K1(D_K2(E_K1(x))). */
  private ede(s: Handle, ctx: OpContext, m: Material & { kind: 'des-halves' }, block: Buffer): Buffer {
    const ecb = this.desEcb();
    return this.encSync(s, ctx, ecb, m.k1, this.decSync(s, ctx, ecb, m.k2, this.encSync(s, ctx, ecb, m.k1, block)));
  }

  /** The key's CBC encryption as src/crypto's CbcPrimitive (what its MAC algorithms are written over). */
  private fullPrimitive(s: Handle, ctx: OpContext, m: Material): CbcPrimitive {
    if (m.kind === 'des-halves') return cbcFromEcb(8, (b) => this.ede(s, ctx, m, b));
    return this.cbcPrimitive(s, ctx, m.kind === 'aes' ? 16 : 8, this.cbcMechanism(m), m.key);
  }

  /** The token's CBC mechanism for material held as one key object (AES, or 2-key 3DES). */
  private cbcMechanism(m: Material & { kind: 'aes' | 'des2' }): number {
    return m.kind === 'aes' ? this.P.CKM_AES_CBC : this.P.CKM_DES3_CBC;
  }

  /** CBC encryption under one token key as a CbcPrimitive (a method, not an arrow property: no per-call defineProperty under tsx). */
  private cbcPrimitive(s: Handle, ctx: OpContext, blockSize: 8 | 16, mechanism: number, key: Handle): CbcPrimitive {
    const self = this;
    return {
      blockSize,
      encryptCbc(data: Buffer, iv: Buffer): Buffer {
        return self.encSync(s, ctx, { mechanism, parameter: iv }, key, data);
      },
    };
  }
}
