// Message keys, envelopes and canonical JSON: what the parties rely on to tell a genuine message from a
// forged, altered or misdirected one.

import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/protocol/canonical.ts';
import { MessageAuthError, macOf, open, seal, verifyMacOf } from '../../../src/protocol/envelope.ts';
import { deriveTransactionKey, newSessionKey, parseSharedKey, subKey, unwrapSessionKey, wrapSessionKey } from '../../../src/protocol/keys.ts';

const SHARED = Buffer.from('0123456789ABCDEFFEDCBA9876543210', 'hex');

describe('canonical JSON', () => {
  it('sorts keys at every level and drops undefined', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 'x' }], c: undefined } })).toBe('{"a":{"d":[2,{"y":"x","z":1}]},"b":1}');
  });
  it('refuses floats and non-JSON values', () => {
    expect(() => canonicalJson({ amount: 4.2 })).toThrow(/safe integers/);
    expect(() => canonicalJson({ f: () => 1 })).toThrow(/function/);
  });
  it('names where the value that cannot be MACed is', () => {
    expect(() => canonicalJson({ z: 1, a: [1, { b: 2, c: 1.5 }] })).toThrow(/^\$\.a\[1\]\.c: only safe integers/);
    expect(() => canonicalJson([0, [1, undefined]])).toThrow(/^\$\[1\]\[1\]: a undefined cannot be MACed/);
    expect(() => canonicalJson(2 ** 53)).toThrow(/^\$: only safe integers/);
  });
});

describe('transaction keys', () => {
  it('differ per party and per transaction and are deterministic', () => {
    const k = deriveTransactionKey(SHARED, 'M001', 'T1');
    expect(k).toHaveLength(16);
    expect(deriveTransactionKey(SHARED, 'M001', 'T1').equals(k)).toBe(true);
    expect(deriveTransactionKey(SHARED, 'M001', 'T2').equals(k)).toBe(false);
    expect(deriveTransactionKey(SHARED, 'M002', 'T1').equals(k)).toBe(false);
    // the separator keeps ('M0', '01T1') apart from ('M001', 'T1')
    expect(deriveTransactionKey(SHARED, 'M0', '01T1').equals(k)).toBe(false);
  });
  it('match the vectors computed with openssl (docs/payment-messages.md)', () => {
    // printf 'purselab-txn-key-v2\0M001\0T1' | openssl dgst -sha256 -mac HMAC -macopt hexkey:SHARED  (first 16 bytes)
    const derived = deriveTransactionKey(SHARED, 'M001', 'T1');
    expect(derived.toString('hex')).toBe('e30337e72499f15fdcec8153e13fe555');
    // printf 'purselab-subkey-v2\0MAC' | openssl dgst -sha256 -mac HMAC -macopt hexkey:DERIVED  (first 16 bytes)
    expect(subKey(derived, 'MAC').toString('hex')).toBe('dcc59145cd02a267d721e7ac1bfd78c0');
    // printf 'purselab/order\0{"amount":420,"currency":978,"txnId":"T1"}' | openssl dgst -sha256 -mac HMAC -macopt hexkey:MACKEY  (first 8)
    expect(macOf(derived, 'purselab/order', { txnId: 'T1', amount: 420, currency: 978 })).toBe('6c81ca4bb841cabf');
    // echo 00112233445566778899AABBCCDDEEFF | xxd -r -p | openssl enc -aes-128-ecb -nopad -K DERIVED
    expect(wrapSessionKey(derived, Buffer.from('00112233445566778899AABBCCDDEEFF', 'hex')).toString('hex')).toBe('f3c8d7ab410d9694b657e5c39533574b');
  });
  it('wraps and unwraps the session key (ETSK)', () => {
    const derived = deriveTransactionKey(SHARED, 'M001', 'T1');
    const tsk = newSessionKey();
    const etsk = wrapSessionKey(derived, tsk);
    expect(etsk.equals(tsk)).toBe(false);
    expect(unwrapSessionKey(derived, etsk).equals(tsk)).toBe(true);
    expect(unwrapSessionKey(deriveTransactionKey(SHARED, 'M001', 'T2'), etsk).equals(tsk)).toBe(false);
  });
  it('gives different sub-keys per label', () => {
    expect(subKey(SHARED, 'ENC').equals(subKey(SHARED, 'MAC'))).toBe(false);
  });
  it('hands out cached sub-keys as copies: a caller overwriting its buffer changes nothing for the next', () => {
    const first = subKey(SHARED, 'MAC');
    const value = Buffer.from(first);
    first.fill(0);
    expect(subKey(SHARED, 'MAC').equals(value)).toBe(true);
  });
  it('refuses malformed keys without echoing them', () => {
    expect(() => deriveTransactionKey(Buffer.alloc(8), 'M', 'T')).toThrow(/16-byte/);
    expect(() => parseSharedKey('00112233', 'merchants[0].sharedKey')).toThrow(/merchants\[0\]\.sharedKey: a shared key must be 32 hex digits/);
    try {
      parseSharedKey('zz112233445566778899aabbccddeeff', 'cfg');
    } catch (e) {
      expect((e as Error).message).not.toContain('zz1122');
    }
  });
});

describe('envelopes', () => {
  const key = deriveTransactionKey(SHARED, 'M001', 'T1');
  const payload = { txnId: 'T1', amount: 420, currency: 978, nested: { ok: true } };

  it('round-trip, and hide the payload', () => {
    const env = seal(key, 'purselab/x', payload);
    expect(env.ct).not.toContain(Buffer.from('T1').toString('hex'));
    expect(open(key, 'purselab/x', env)).toEqual(payload);
  });
  it('refuse any altered byte, another label and another key', () => {
    const env = seal(key, 'purselab/x', payload);
    for (const field of ['iv', 'ct', 'mac'] as const) {
      const bytes = Buffer.from(env[field], 'hex');
      for (let i = 0; i < bytes.length; i += 3) {
        const b = Buffer.from(bytes);
        b[i]! ^= 0x01;
        expect(() => open(key, 'purselab/x', { ...env, [field]: b.toString('hex') })).toThrow(MessageAuthError);
      }
    }
    expect(() => open(key, 'purselab/y', env)).toThrow(/not authentic \(MAC mismatch\)/);
    expect(() => open(deriveTransactionKey(SHARED, 'M001', 'T2'), 'purselab/x', env)).toThrow(MessageAuthError);
    expect(() => open(key, 'purselab/x', { iv: 'zz', ct: '', mac: '' })).toThrow(/malformed/);
    // hex fields must be whole pairs of hex digits, all of them
    for (const field of ['iv', 'ct', 'mac'] as const) {
      for (const bad of [`${env[field]}0`, `${env[field].slice(0, -2)}zz`, `g${env[field].slice(1)}`, '', 42]) {
        expect(() => open(key, 'purselab/x', { ...env, [field]: bad } as never)).toThrow(/malformed/);
      }
    }
    expect(() => open(key, 'purselab/x', null as never)).toThrow(/malformed/);
  });
  it('MACs over canonical JSON: key order does not matter, any value change does', () => {
    const mac = macOf(key, 'purselab/order', payload);
    expect(verifyMacOf(key, 'purselab/order', { nested: { ok: true }, currency: 978, amount: 420, txnId: 'T1' }, mac)).toBe(true);
    expect(verifyMacOf(key, 'purselab/order', { ...payload, amount: 421 }, mac)).toBe(false);
    expect(verifyMacOf(key, 'purselab/other', payload, mac)).toBe(false);
    expect(verifyMacOf(key, 'purselab/order', { ...payload, amount: 4.2 }, mac)).toBe(false);
    expect(verifyMacOf(key, 'purselab/order', payload, 'nothex')).toBe(false);
  });
});
