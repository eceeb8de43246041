// The HSM conformance suite: the same tests, with the same inputs and the same expected outputs, for every
// backend. Expected values come from src/crypto on the clear test keys, so "passes on two backends" means
// "gives identical results on both". Errors are compared by code.
//
//   runConformance('software', async () => SoftwareHsm.inMemory(), { storedKeyAlg3: true, des3KekImport: true });
//
// The factory must return a fresh, EMPTY backend (not opened); the suite opens it, loads its key set through
// the interface only (an RSA transport key made inside the HSM, a KEK imported under it with RSA-OAEP, the
// working keys imported under the KEK with AES key wrap) and closes it at the end.

import { constants, createPublicKey, verify as rsaVerify } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Hsm, KeyRef, KeySpec, KeyUsage, MacAlgorithm, SymmetricKeyType } from '../../../hsm-bridge/hsm.ts';
import { readFileSync } from 'node:fs';
import { paymentOps, type PurseMacKind } from '../../../hsm-bridge/payment.ts';
import { aesKeyWrap, des3EcbWrap, rsaOaepWrap } from '../../../hsm-bridge/wrap.ts';
import { cbcEncrypt, computeMac, diversifyCardKey, keyCheckValue, padMethod2 } from '../../../src/crypto/index.ts';
import type { LoadS1Fields, LoadS3Fields } from '../../../src/crypto/purse-mac.ts';

export interface ConformanceCapabilities {
  /** ISO9797-1-ALG3 on a stored (not derived) 2-key 3DES key. A PKCS#11 token without CKM_EXTRACT_KEY_FROM_KEY cannot. */
  readonly storedKeyAlg3: boolean;
  /** importKey under a DES3-2KEY KEK (3DES-ECB unwrap). SoftHSM2 cannot (no CKM_DES3_ECB unwrap). */
  readonly des3KekImport: boolean;
}

export interface ConformanceOptions {
  /** Skip the whole suite, with this reason shown in the test name. */
  readonly skip?: string;
}

/** The clear values of the conformance key set (test data only). */
export const CONFORMANCE_KEYS = {
  kek: Buffer.from('000102030405060708090A0B0C0D0E0F', 'hex'),
  desKek: Buffer.from('0123456789ABCDEF0123456789ABCDEF', 'hex').map((b, i) => b ^ (i * 17)) as Buffer,
  desMaster: Buffer.from('0123456789ABCDEFFEDCBA9876543210', 'hex'),
  aesMaster: Buffer.from('2B7E151628AED2A6ABF7158809CF4F3C', 'hex'),
  desMac: Buffer.from('404142434445464748494A4B4C4D4E4F', 'hex'),
  aesKey: Buffer.from('9F5A1E2D3C4B5A69788796A5B4C3D2E1', 'hex'),
  desEncOnly: Buffer.from('1111111111111111222222222222222E', 'hex'),
  aesMacOnly: Buffer.from('F0E1D2C3B4A5968778695A4B3C2D1E0F', 'hex'),
} as const;

export const REFS = {
  transport: { label: 'conf-transport', version: 1 },
  kek: { label: 'conf-kek', version: 1 },
  desKek: { label: 'conf-des-kek', version: 1 },
  desMaster: { label: 'conf-des-mk', version: 1 },
  aesMaster: { label: 'conf-aes-mk', version: 1 },
  desMac: { label: 'conf-des-mac', version: 2 },
  aesKey: { label: 'conf-aes-key', version: 1 },
  desEncOnly: { label: 'conf-des-enc', version: 1 },
  aesMacOnly: { label: 'conf-aes-mac', version: 1 },
  signer: { label: 'conf-signer', version: 1 },
} satisfies Record<string, KeyRef>;

const CARD_A = Buffer.from('6012345678901234', 'hex');
const CARD_B = Buffer.from('6012345678900000', 'hex');
const DATA_LENGTHS = [0, 1, 7, 8, 9, 15, 16, 17, 33, 100];
const data = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff));

/** Resolve with the error code a promise rejects with (fails the test if it resolves). */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return (e as { code?: string }).code ?? `uncoded: ${(e as Error).message}`;
  }
  throw new Error('expected the call to fail, it succeeded');
}

/** Load the conformance key set through the interface only. */
export async function loadConformanceKeys(hsm: Hsm, caps: ConformanceCapabilities): Promise<void> {
  const k = CONFORMANCE_KEYS;
  const { publicKeyDer } = await hsm.generateRsaKeyPair(REFS.transport, 2048, ['wrap']);
  await hsm.importKey(REFS.kek, 'AES-128', ['wrap'], rsaOaepWrap(publicKeyDer, k.kek), REFS.transport);
  const imp = (ref: KeyRef, type: SymmetricKeyType, usage: KeyUsage[], value: Buffer) =>
    hsm.importKey(ref, type, usage, aesKeyWrap(k.kek, value), REFS.kek);
  await imp(REFS.desMaster, 'DES3-2KEY', ['derive'], k.desMaster);
  await imp(REFS.aesMaster, 'AES-128', ['derive'], k.aesMaster);
  await imp(REFS.desMac, 'DES3-2KEY', ['mac', 'encrypt'], k.desMac);
  await imp(REFS.aesKey, 'AES-128', ['mac', 'encrypt'], k.aesKey);
  await imp(REFS.desEncOnly, 'DES3-2KEY', ['encrypt'], k.desEncOnly);
  await imp(REFS.aesMacOnly, 'AES-128', ['mac'], k.aesMacOnly);
  await imp(REFS.desKek, 'DES3-2KEY', ['wrap'], k.desKek);
}

const kcvHex = (type: SymmetricKeyType, key: Buffer): string => keyCheckValue(type, key).toString('hex').toUpperCase();

export function runConformance(name: string, factory: () => Promise<Hsm>, caps: ConformanceCapabilities, opts: ConformanceOptions = {}): void {
  const suite = opts.skip ? describe.skip : describe;
  suite(`HSM conformance: ${name}${opts.skip ? ` (skipped: ${opts.skip})` : ''}`, () => {
    let hsm: Hsm;
    const K = CONFORMANCE_KEYS;
    const derived = (master: KeyRef, cardId: Buffer): KeySpec => ({ master, cardId });
    const desCard = (card: Buffer): Buffer => diversifyCardKey(K.desMaster, card, 'DES3-2KEY');
    const aesCard = (card: Buffer): Buffer => diversifyCardKey(K.aesMaster, card, 'AES-128');

    beforeAll(async () => {
      hsm = await factory();
      await hsm.open();
      await loadConformanceKeys(hsm, caps);
    });
    afterAll(async () => {
      await hsm?.close();
    });

    it('reports health', async () => {
      const h = await hsm.health();
      expect(h.ok).toBe(true);
      expect(h.backend).toBe(hsm.backend);
      expect(typeof h.detail).toBe('string');
    });

    it('lists keys with labels, versions, types, usage and KCVs, and no key material', async () => {
      const keys = await hsm.listKeys();
      const byLabel = new Map(keys.map((k) => [`${k.label}/${k.version}`, k]));
      const expectKey = (ref: KeyRef, type: SymmetricKeyType, usage: KeyUsage[], value: Buffer) =>
        expect(byLabel.get(`${ref.label}/${ref.version}`)).toEqual({ ...ref, type, usage, kcv: kcvHex(type, value) });
      expectKey(REFS.kek, 'AES-128', ['wrap'], K.kek);
      expectKey(REFS.desMaster, 'DES3-2KEY', ['derive'], K.desMaster);
      expectKey(REFS.aesMaster, 'AES-128', ['derive'], K.aesMaster);
      expectKey(REFS.desMac, 'DES3-2KEY', ['mac', 'encrypt'], K.desMac);
      expectKey(REFS.aesKey, 'AES-128', ['mac', 'encrypt'], K.aesKey);
      expectKey(REFS.desEncOnly, 'DES3-2KEY', ['encrypt'], K.desEncOnly);
      expectKey(REFS.aesMacOnly, 'AES-128', ['mac'], K.aesMacOnly);
      expectKey(REFS.desKek, 'DES3-2KEY', ['wrap'], K.desKek);
      const t = byLabel.get('conf-transport/1');
      expect(t).toMatchObject({ type: 'RSA-2048', usage: ['wrap'] });
      expect(t!.kcv).toMatch(/^[0-9A-F]{6}$/);
      for (const k of keys) expect(Object.keys(k).sort()).toEqual(['kcv', 'label', 'type', 'usage', 'version']);
      const sorted = [...keys].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : a.version - b.version));
      expect(keys).toEqual(sorted);
    });

    it('gives key check values of stored and derived keys', async () => {
      expect((await hsm.keyCheckValue(REFS.desMaster)).toString('hex')).toBe(keyCheckValue('DES3-2KEY', K.desMaster).toString('hex'));
      expect((await hsm.keyCheckValue(REFS.aesKey)).toString('hex')).toBe(keyCheckValue('AES-128', K.aesKey).toString('hex'));
      for (const card of [CARD_A, CARD_B]) {
        expect((await hsm.keyCheckValue(derived(REFS.desMaster, card))).toString('hex')).toBe(keyCheckValue('DES3-2KEY', desCard(card)).toString('hex'));
        expect((await hsm.keyCheckValue(derived(REFS.aesMaster, card))).toString('hex')).toBe(keyCheckValue('AES-128', aesCard(card)).toString('hex'));
      }
    });

    describe('MACs', () => {
      const cases: { what: string; spec: () => KeySpec; alg: MacAlgorithm; key: () => Buffer; needs?: keyof ConformanceCapabilities }[] = [
        { what: 'stored 3DES, ALG1', spec: () => REFS.desMac, alg: 'ISO9797-1-ALG1', key: () => K.desMac },
        { what: 'stored 3DES, ALG3', spec: () => REFS.desMac, alg: 'ISO9797-1-ALG3', key: () => K.desMac, needs: 'storedKeyAlg3' },
        { what: 'derived 3DES card key, ALG1', spec: () => derived(REFS.desMaster, CARD_A), alg: 'ISO9797-1-ALG1', key: () => desCard(CARD_A) },
        { what: 'derived 3DES card key, ALG3', spec: () => derived(REFS.desMaster, CARD_A), alg: 'ISO9797-1-ALG3', key: () => desCard(CARD_A) },
        { what: 'stored AES, CMAC', spec: () => REFS.aesKey, alg: 'AES-CMAC', key: () => K.aesKey },
        { what: 'derived AES card key, CMAC', spec: () => derived(REFS.aesMaster, CARD_B), alg: 'AES-CMAC', key: () => aesCard(CARD_B) },
      ];
      for (const c of cases) {
        it(`${c.what}: generate and verify over ${DATA_LENGTHS.join('/')} bytes`, async () => {
          if (c.needs && !caps[c.needs]) {
            expect(await codeOf(hsm.macGenerate(c.spec(), c.alg, data(8)))).toBe('HSM_MECHANISM_UNSUPPORTED');
            return;
          }
          const full = c.alg === 'AES-CMAC' ? 16 : 8;
          for (const n of DATA_LENGTHS) {
            const d = data(n);
            const expected = computeMac(c.alg, c.key(), d, full);
            const mac = await hsm.macGenerate(c.spec(), c.alg, d);
            expect(mac.toString('hex'), `${n} bytes`).toBe(expected.toString('hex'));
            expect(await hsm.macVerify(c.spec(), c.alg, d, expected)).toBe(true);
            expect(await hsm.macVerify(c.spec(), c.alg, d, expected.subarray(0, 4))).toBe(true);
            const bad = Buffer.from(expected);
            bad[bad.length - 1]! ^= 1;
            expect(await hsm.macVerify(c.spec(), c.alg, d, bad)).toBe(false);
          }
        });
      }

      it('a MAC made with one card key does not verify under another card key', async () => {
        const d = data(24);
        const mac = await hsm.macGenerate(derived(REFS.desMaster, CARD_A), 'ISO9797-1-ALG3', d);
        expect(await hsm.macVerify(derived(REFS.desMaster, CARD_A), 'ISO9797-1-ALG3', d, mac)).toBe(true);
        expect(await hsm.macVerify(derived(REFS.desMaster, CARD_B), 'ISO9797-1-ALG3', d, mac)).toBe(false);
      });

      it('rejects MACs to verify of the wrong length', async () => {
        expect(await codeOf(hsm.macVerify(REFS.desMac, 'ISO9797-1-ALG1', data(8), Buffer.alloc(3)))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.macVerify(REFS.desMac, 'ISO9797-1-ALG1', data(8), Buffer.alloc(9)))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.macVerify(REFS.aesKey, 'AES-CMAC', data(8), Buffer.alloc(17)))).toBe('HSM_BAD_INPUT');
      });

      it('rejects an algorithm that does not fit the key type', async () => {
        expect(await codeOf(hsm.macGenerate(REFS.aesKey, 'ISO9797-1-ALG1', data(8)))).toBe('HSM_KEY_TYPE');
        expect(await codeOf(hsm.macGenerate(REFS.desMac, 'AES-CMAC', data(8)))).toBe('HSM_KEY_TYPE');
        expect(await codeOf(hsm.macGenerate(derived(REFS.aesMaster, CARD_A), 'ISO9797-1-ALG3', data(8)))).toBe('HSM_KEY_TYPE');
        expect(await codeOf(hsm.macGenerate(REFS.desMac, 'HMAC' as MacAlgorithm, data(8)))).toBe('HSM_BAD_INPUT');
      });

      it('enforces key usage', async () => {
        expect(await codeOf(hsm.macGenerate(REFS.desEncOnly, 'ISO9797-1-ALG1', data(8)))).toBe('HSM_KEY_USAGE');
        expect(await codeOf(hsm.macVerify(REFS.desMaster, 'ISO9797-1-ALG1', data(8), Buffer.alloc(8)))).toBe('HSM_KEY_USAGE');
        expect(await codeOf(hsm.macGenerate(derived(REFS.desMac, CARD_A), 'ISO9797-1-ALG3', data(8)))).toBe('HSM_KEY_USAGE');
        expect(await codeOf(hsm.keyCheckValue(derived(REFS.kek, CARD_A)))).toBe('HSM_KEY_USAGE');
      });
    });

    describe('encrypt / decrypt (CBC, no padding)', () => {
      const cases: { what: string; spec: () => KeySpec; type: SymmetricKeyType; key: () => Buffer }[] = [
        { what: 'stored 3DES', spec: () => REFS.desMac, type: 'DES3-2KEY', key: () => K.desMac },
        { what: 'stored 3DES, encrypt-only usage', spec: () => REFS.desEncOnly, type: 'DES3-2KEY', key: () => K.desEncOnly },
        { what: 'stored AES', spec: () => REFS.aesKey, type: 'AES-128', key: () => K.aesKey },
        { what: 'derived 3DES card key', spec: () => derived(REFS.desMaster, CARD_B), type: 'DES3-2KEY', key: () => desCard(CARD_B) },
        { what: 'derived AES card key', spec: () => derived(REFS.aesMaster, CARD_A), type: 'AES-128', key: () => aesCard(CARD_A) },
      ];
      for (const c of cases) {
        it(`${c.what}: same ciphertext as the reference, and back`, async () => {
          const bs = c.type === 'AES-128' ? 16 : 8;
          const iv = data(bs);
          for (const blocks of [1, 2, 5]) {
            const pt = padMethod2(data(blocks * bs - 1), bs);
            const ct = await hsm.encrypt(c.spec(), 'CBC', iv, pt);
            expect(ct.toString('hex')).toBe(cbcEncrypt(c.type, c.key(), iv, pt).toString('hex'));
            expect((await hsm.decrypt(c.spec(), 'CBC', iv, ct)).toString('hex')).toBe(pt.toString('hex'));
          }
        });
      }

      it('rejects bad IVs, partial blocks and unknown modes', async () => {
        expect(await codeOf(hsm.encrypt(REFS.desMac, 'CBC', Buffer.alloc(16), Buffer.alloc(8)))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.encrypt(REFS.aesKey, 'CBC', Buffer.alloc(16), Buffer.alloc(15)))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.decrypt(REFS.aesKey, 'CBC', Buffer.alloc(16), Buffer.alloc(0)))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.encrypt(REFS.aesKey, 'ECB' as 'CBC', Buffer.alloc(16), Buffer.alloc(16)))).toBe('HSM_BAD_INPUT');
      });

      it('enforces key usage', async () => {
        expect(await codeOf(hsm.encrypt(REFS.aesMacOnly, 'CBC', Buffer.alloc(16), Buffer.alloc(16)))).toBe('HSM_KEY_USAGE');
        expect(await codeOf(hsm.decrypt(REFS.desMaster, 'CBC', Buffer.alloc(8), Buffer.alloc(8)))).toBe('HSM_KEY_USAGE');
      });
    });

    describe('key generation and import', () => {
      it('generates keys whose KCV the HSM reports consistently', async () => {
        for (const [ref, type] of [
          [{ label: 'conf-gen-des', version: 1 }, 'DES3-2KEY'],
          [{ label: 'conf-gen-aes', version: 7 }, 'AES-128'],
        ] as const) {
          const info = await hsm.generateKey(ref, type, ['encrypt', 'mac']);
          expect(info).toMatchObject({ ...ref, type, usage: ['mac', 'encrypt'] });
          expect(info.kcv).toMatch(/^[0-9A-F]{6}$/);
          expect((await hsm.keyCheckValue(ref)).toString('hex').toUpperCase()).toBe(info.kcv);
          expect((await hsm.listKeys()).find((k) => k.label === ref.label)).toEqual(info);
          const bs = type === 'AES-128' ? 16 : 8;
          const ct = await hsm.encrypt(ref, 'CBC', Buffer.alloc(bs), Buffer.alloc(bs * 2, 5));
          expect(await hsm.decrypt(ref, 'CBC', Buffer.alloc(bs), ct)).toEqual(Buffer.alloc(bs * 2, 5));
        }
      });

      it('refuses a label and version that is taken, and allows a new version', async () => {
        expect(await codeOf(hsm.generateKey(REFS.desMac, 'DES3-2KEY', ['mac']))).toBe('HSM_KEY_EXISTS');
        expect(await codeOf(hsm.importKey(REFS.aesKey, 'AES-128', ['mac'], aesKeyWrap(K.kek, K.aesKey), REFS.kek))).toBe('HSM_KEY_EXISTS');
        const v3 = await hsm.importKey({ ...REFS.desMac, version: 3 }, 'DES3-2KEY', ['mac'], aesKeyWrap(K.kek, K.desEncOnly), REFS.kek);
        expect(v3.kcv).toBe(kcvHex('DES3-2KEY', K.desEncOnly));
        const d = data(20);
        expect(await hsm.macGenerate({ ...REFS.desMac, version: 3 }, 'ISO9797-1-ALG1', d)).toEqual(computeMac('ISO9797-1-ALG1', K.desEncOnly, d, 8));
        expect(await hsm.macGenerate(REFS.desMac, 'ISO9797-1-ALG1', d)).toEqual(computeMac('ISO9797-1-ALG1', K.desMac, d, 8));
      });

      it('fails an import whose blob does not unwrap', async () => {
        const blob = aesKeyWrap(K.kek, K.aesKey);
        blob[3]! ^= 0x40;
        expect(await codeOf(hsm.importKey({ label: 'conf-bad-import', version: 1 }, 'AES-128', ['mac'], blob, REFS.kek))).toBe('HSM_UNWRAP_FAILED');
        expect((await hsm.listKeys()).some((k) => k.label === 'conf-bad-import')).toBe(false);
      });

      it('imports only under a KEK that exists and has wrap usage', async () => {
        const blob = aesKeyWrap(K.kek, K.aesKey);
        expect(await codeOf(hsm.importKey({ label: 'conf-x', version: 1 }, 'AES-128', ['mac'], blob, { label: 'conf-no-such-kek', version: 1 }))).toBe('HSM_KEY_NOT_FOUND');
        expect(await codeOf(hsm.importKey({ label: 'conf-x', version: 1 }, 'AES-128', ['mac'], blob, REFS.aesKey))).toBe('HSM_KEY_USAGE');
      });

      it('imports under a 3DES KEK (3DES-ECB) where the device can', async () => {
        const ref = { label: 'conf-from-des-kek', version: 1 };
        if (!caps.des3KekImport) {
          expect(await codeOf(hsm.importKey(ref, 'AES-128', ['mac'], des3EcbWrap(K.desKek, K.aesKey), REFS.desKek))).toBe('HSM_MECHANISM_UNSUPPORTED');
          return;
        }
        const info = await hsm.importKey(ref, 'AES-128', ['mac'], des3EcbWrap(K.desKek, K.aesKey), REFS.desKek);
        expect(info.kcv).toBe(kcvHex('AES-128', K.aesKey));
      });

      it('validates labels, versions, types and usage', async () => {
        expect(await codeOf(hsm.generateKey({ label: 'bad label', version: 1 }, 'AES-128', ['mac']))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.generateKey({ label: 'x'.repeat(65), version: 1 }, 'AES-128', ['mac']))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.generateKey({ label: 'ok', version: -1 }, 'AES-128', ['mac']))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.generateKey({ label: 'ok', version: 65536 }, 'AES-128', ['mac']))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.generateKey({ label: 'ok', version: 1 }, 'AES-256' as SymmetricKeyType, ['mac']))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.generateKey({ label: 'ok', version: 1 }, 'AES-128', []))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.generateKey({ label: 'ok', version: 1 }, 'AES-128', ['sign' as KeyUsage]))).toBe('HSM_BAD_INPUT');
      });
    });

    describe('key references', () => {
      it('reports missing keys and masters', async () => {
        expect(await codeOf(hsm.macGenerate({ label: 'conf-missing', version: 1 }, 'AES-CMAC', data(4)))).toBe('HSM_KEY_NOT_FOUND');
        expect(await codeOf(hsm.macGenerate({ ...REFS.aesKey, version: 2 }, 'AES-CMAC', data(4)))).toBe('HSM_KEY_NOT_FOUND');
        expect(await codeOf(hsm.keyCheckValue(derived({ label: 'conf-missing', version: 1 }, CARD_A)))).toBe('HSM_KEY_NOT_FOUND');
        expect(await codeOf(hsm.sign({ label: 'conf-missing', version: 1 }, data(4)))).toBe('HSM_KEY_NOT_FOUND');
      });

      it('validates card ids', async () => {
        expect(await codeOf(hsm.keyCheckValue(derived(REFS.desMaster, Buffer.from('60123456789012', 'hex'))))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.keyCheckValue(derived(REFS.desMaster, Buffer.from('601234567890123A', 'hex'))))).toBe('HSM_BAD_INPUT');
      });
    });

    it('gives random bytes of the asked length, and refuses silly lengths', async () => {
      const a = await hsm.randomBytes(32);
      const b = await hsm.randomBytes(32);
      expect(a.length).toBe(32);
      expect(a.equals(b)).toBe(false);
      expect((await hsm.randomBytes(1)).length).toBe(1);
      expect(await codeOf(hsm.randomBytes(0))).toBe('HSM_BAD_INPUT');
      expect(await codeOf(hsm.randomBytes(4097))).toBe('HSM_BAD_INPUT');
    });

    describe('RSA', () => {
      let publicKeyDer: Buffer;
      beforeAll(async () => {
        ({ publicKeyDer } = await hsm.generateRsaKeyPair(REFS.signer, 2048, ['mac']));
      });

      it('signs with RSASSA-PKCS1-v1_5 / SHA-256, verifiable outside the HSM', async () => {
        const d = data(50);
        const sig = await hsm.sign(REFS.signer, d);
        expect(sig.length).toBe(256);
        const pub = createPublicKey({ key: publicKeyDer, format: 'der', type: 'spki' });
        expect(rsaVerify('sha256', d, { key: pub, padding: constants.RSA_PKCS1_PADDING }, sig)).toBe(true);
        expect(await hsm.sign(REFS.signer, d)).toEqual(sig); // deterministic
        expect(await hsm.verify(REFS.signer, d, sig)).toBe(true);
        expect(await hsm.verify(REFS.signer, data(51), sig)).toBe(false);
        expect(await hsm.verify(REFS.signer, d, sig.subarray(1))).toBe(false);
      });

      it('lists the key pair once, with a KCV from its public key', async () => {
        const listed = (await hsm.listKeys()).filter((k) => k.label === REFS.signer.label);
        expect(listed).toHaveLength(1);
        expect(listed[0]).toMatchObject({ ...REFS.signer, type: 'RSA-2048', usage: ['mac'] });
      });

      it('enforces type and usage', async () => {
        expect(await codeOf(hsm.sign(REFS.aesKey, data(4)))).toBe('HSM_KEY_TYPE');
        expect(await codeOf(hsm.sign(REFS.transport, data(4)))).toBe('HSM_KEY_USAGE');
        expect(await codeOf(hsm.importKey({ label: 'conf-y', version: 1 }, 'AES-128', ['mac'], rsaOaepWrap(publicKeyDer, K.aesKey), REFS.signer))).toBe('HSM_KEY_USAGE');
        expect(await codeOf(hsm.generateRsaKeyPair({ label: 'conf-rsa-1024', version: 1 }, 1024 as 2048))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(hsm.macGenerate(REFS.signer, 'AES-CMAC', data(4)))).toBe('HSM_KEY_TYPE');
      });
    });

    it('gives the same answers to many concurrent callers', async () => {
      const jobs = Array.from({ length: 24 }, (_, i) => {
        const card = i % 2 ? CARD_A : CARD_B;
        const d = data(10 + i);
        const spec = derived(REFS.desMaster, card);
        return hsm.macGenerate(spec, 'ISO9797-1-ALG3', d).then((m) => m.equals(computeMac('ISO9797-1-ALG3', desCard(card), d, 8)));
      });
      expect(await Promise.all(jobs)).toEqual(jobs.map(() => true));
    });

    describe('payment operations', () => {
      const pay = () => paymentOps(hsm);
      const vectors = PURSE_VECTORS.filter((v) => v.layout in PURSE_KINDS);
      beforeAll(async () => {
        for (const m of DEMO_KEYS.masterKeys.filter((k) => k.usage === 'load' || k.usage === 'purchase')) {
          await hsm.importKey({ label: m.label, version: m.version }, m.keyType, ['derive'], aesKeyWrap(K.kek, Buffer.from(m.key, 'hex')), REFS.kek);
        }
        await hsm.generateKey({ label: 'opal-record-enc', version: 1 }, 'AES-128', ['derive']);
        await hsm.generateKey({ label: 'opal-record-mac', version: 1 }, 'AES-128', ['derive']);
      });

      it(`gives the published purse MACs (${vectors.length} vectors of fixtures/vectors/purse-iep.json), and verifies them`, async () => {
        for (const v of vectors) {
          const kind = v.layout as PurseMacKind;
          const f = fieldsOf(v.fields);
          expect((await pay().purseMac(kind, f)).toString('hex').toUpperCase(), v.name).toBe(v.mac);
          expect(await pay().purseMacVerify(kind, f, Buffer.from(v.mac, 'hex')), v.name).toBe(true);
          const bad = Buffer.from(v.mac, 'hex');
          bad[0]! ^= 0x80;
          expect(await pay().purseMacVerify(kind, f, bad), v.name).toBe(false);
          expect(await pay().purseMacVerify(kind, f, Buffer.from(v.mac.slice(0, 8), 'hex')), `${v.name}, 4 bytes`).toBe(false);
        }
      });

      it('verifies load S1, generates S2, verifies S3 (issuer side)', async () => {
        for (const alg of [1, 2]) {
          const byName = (n: string) => vectors.find((v) => v.name === `${n} (${alg === 1 ? '3DES' : 'AES'})`)!;
          const s1 = byName('load S1');
          const s2 = byName('load S2');
          const s3 = byName('load S3, credited');
          expect(await pay().verifyS1(fieldsOf<LoadS1Fields>(s1.fields), Buffer.from(s1.mac, 'hex'))).toBe(true);
          const changed = { ...fieldsOf<LoadS1Fields>(s1.fields), amount: (s1.fields.amount as number) + 1 };
          expect(await pay().verifyS1(changed, Buffer.from(s1.mac, 'hex'))).toBe(false);
          expect((await pay().generateS2(fieldsOf(s2.fields))).toString('hex').toUpperCase()).toBe(s2.mac);
          expect(await pay().verifyS3(fieldsOf(s3.fields), Buffer.from(s3.mac, 'hex'))).toBe(true);
          expect(await pay().verifyS3({ ...fieldsOf<LoadS3Fields>(s3.fields), result: 1 }, Buffer.from(s3.mac, 'hex'))).toBe(false);
        }
      });

      it('checks zero-value enquiry S1s (failed-load recovery)', async () => {
        for (const sfx of ['3DES', 'AES']) {
          const notHappened = vectors.find((v) => v.name === `zero-value enquiry S1, load did not happen (${sfx})`)!;
          const happened = vectors.find((v) => v.name === `zero-value enquiry S1, load did happen (${sfx})`)!;
          const pending = Buffer.from(happened.fields.lastLoadTxnId as string, 'hex');
          const a = await pay().verifyEnquiryS1(fieldsOf<LoadS1Fields>(happened.fields), Buffer.from(happened.mac, 'hex'), pending);
          expect(a).toMatchObject({ valid: true, credited: true, lastLoadCounter: happened.fields.lastLoadCounter });
          const b = await pay().verifyEnquiryS1(fieldsOf<LoadS1Fields>(notHappened.fields), Buffer.from(notHappened.mac, 'hex'), pending);
          expect(b).toMatchObject({ valid: true, credited: false });
          const bad = Buffer.from(happened.mac, 'hex');
          bad[7]! ^= 1;
          const c = await pay().verifyEnquiryS1(fieldsOf<LoadS1Fields>(happened.fields), bad, pending);
          expect(c.valid).toBe(false);
          expect(c.credited).toBeUndefined();
          const load = vectors.find((v) => v.name === `load S1 (${sfx})`)!;
          expect(await codeOf(pay().verifyEnquiryS1(fieldsOf<LoadS1Fields>(load.fields), Buffer.from(load.mac, 'hex')))).toBe('HSM_BAD_INPUT');
          expect(await codeOf(pay().verifyS1(fieldsOf<LoadS1Fields>(happened.fields), Buffer.from(happened.mac, 'hex')))).toBe('HSM_BAD_INPUT');
        }
      });

      it('rejects malformed fields and unknown key versions with typed errors', async () => {
        const s1 = vectors.find((v) => v.name === 'load S1 (3DES)')!;
        const f = fieldsOf<LoadS1Fields>(s1.fields);
        expect(await codeOf(pay().verifyS1({ ...f, cardId: '12345' }, Buffer.from(s1.mac, 'hex')))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(pay().verifyS1({ ...f, alg: 9 }, Buffer.from(s1.mac, 'hex')))).toBe('HSM_BAD_INPUT');
        expect(await codeOf(pay().verifyS1({ ...f, keyVersion: 2 }, Buffer.from(s1.mac, 'hex')))).toBe('HSM_KEY_NOT_FOUND');
      });

      it('seals and opens virtual-card records, and refuses altered or foreign ones', async () => {
        const rec = Buffer.from('{"balance":1234,"counter":42,"currency":978}');
        const sealed = await pay().sealRecord('9990010000000017', rec);
        expect(sealed.length).toBe(2 + 16 + 48 + 16);
        expect(await pay().openRecord('9990010000000017', sealed)).toEqual(rec);
        expect(await pay().sealRecord('9990010000000017', rec)).not.toEqual(sealed); // fresh IV
        expect(await pay().openRecord('9990010000000017', await pay().sealRecord('9990010000000017', Buffer.alloc(0)))).toEqual(Buffer.alloc(0));
        for (const at of [1, 5, 30, sealed.length - 1]) {
          const t = Buffer.from(sealed);
          t[at]! ^= 0x01;
          expect(await codeOf(pay().openRecord('9990010000000017', t)), `byte ${at}`).toBe('HSM_RECORD_INTEGRITY');
        }
        expect(await codeOf(pay().openRecord('9990010000000025', sealed))).toBe('HSM_RECORD_INTEGRITY');
        expect(await codeOf(pay().openRecord('9990010000000017', sealed.subarray(0, 40)))).toBe('HSM_RECORD_INTEGRITY');
      });
    });
  });
}

// --- payment fixtures ------------------------------------------------------------------------------------

interface PurseVector {
  name: string;
  layout: string;
  fields: Record<string, unknown>;
  mac: string;
}

const fixture = (path: string): unknown => JSON.parse(readFileSync(new URL(`../../../fixtures/${path}`, import.meta.url), 'utf8'));
const PURSE_VECTORS = (fixture('vectors/purse-iep.json') as { vectors: PurseVector[] }).vectors;
const DEMO_KEYS = fixture('keys/demo-issuer.json') as { masterKeys: { label: string; version: number; usage: string; keyType: SymmetricKeyType; key: string }[] };
const PURSE_KINDS: Record<string, true> = { loadS1: true, loadS2: true, loadS3: true, purchaseS2: true, purchaseS3: true };
const BYTE_FIELDS = new Set(['location', 'loadTxnId', 'cardChallenge', 'lastLoadTxnId', 'challenge']);

/** Vector fields as the typed fields of purse-mac.ts (opaque byte fields are hex in the JSON). */
function fieldsOf<T = never>(f: Record<string, unknown>): T {
  return Object.fromEntries(Object.entries(f).map(([k, v]) => [k, BYTE_FIELDS.has(k) ? Buffer.from(v as string, 'hex') : v])) as T;
}
