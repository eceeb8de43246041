// The PKCS#11 backend's derived-key cache on its own (hsm-bridge/pkcs11/derived-keys.ts): LRU bound, objects
// destroyed only when no operation uses them, TTL, a closed session's keys forgotten. (Through a real token
// and the keep/stop-keeping rule: test/unit/hsm/pkcs11.test.ts.)

import { describe, expect, it } from 'vitest';
import { DerivedKeyCache, type DerivedSpec } from '../../../hsm-bridge/pkcs11/derived-keys.ts';

const SESSION_A = Buffer.from('0000000000000001', 'hex');
const SESSION_B = Buffer.from('0000000000000002', 'hex');
const spec = (n: number): DerivedSpec => ({ kind: 'derived', master: { label: 'issuer-purchase-aes', version: 1 }, cardId: Buffer.from(`60123456789000${String(n).padStart(2, '0')}`, 'hex') });
const handle = (n: number) => Buffer.from([0, 0, 0, n]);

function cacheOf(max: number, ttlMs = 60_000) {
  const destroyed: number[] = [];
  const cache = new DerivedKeyCache(max, ttlMs, (_s, objects) => destroyed.push(...objects.map((o) => o[3]!)));
  const derive = (n: number, s = SESSION_A, now = Date.now()) => cache.keep(s, spec(n), now, [handle(n)], { kind: 'aes', key: handle(n) });
  return { cache, destroyed, derive };
}

describe('DerivedKeyCache', () => {
  it('keeps at most max card keys, the least recently used out, and destroys what it drops once unused', () => {
    const { cache, destroyed, derive } = cacheOf(2);
    for (const n of [1, 2]) cache.release(SESSION_A, derive(n));
    const hit = cache.lookup(spec(1))!; // card 1 is now the most recently used
    expect(hit.material).toEqual({ kind: 'aes', key: handle(1) });
    cache.release(SESSION_A, hit);
    cache.release(SESSION_A, derive(3)); // evicts card 2, not card 1
    expect(cache.size).toBe(2);
    expect(destroyed).toEqual([2]);
    expect(cache.lookup(spec(2))).toBeUndefined();
    expect(cache.lookup(spec(1))).toBeDefined();
  });

  it('a key evicted while an operation uses it is destroyed when that operation gives it back, not before', () => {
    const { cache, destroyed, derive } = cacheOf(1);
    const inUse = derive(1);
    cache.release(SESSION_A, derive(2)); // evicts card 1, still in use
    expect(destroyed).toEqual([]);
    cache.release(SESSION_A, inUse);
    expect(destroyed).toEqual([1]);
  });

  it('an expired key is a miss', () => {
    const { cache, derive } = cacheOf(4, 1000);
    cache.release(SESSION_A, derive(1, SESSION_A, Date.now() - 2000));
    expect(cache.lookup(spec(1))).toBeUndefined();
  });

  it('forgets the keys of a session that closes, and nobody else', () => {
    const { cache, derive } = cacheOf(4);
    cache.release(SESSION_A, derive(1, SESSION_A));
    cache.release(SESSION_B, derive(2, SESSION_B));
    cache.forgetSession(SESSION_A);
    expect(cache.lookup(spec(1))).toBeUndefined();
    expect(cache.lookup(spec(2))).toBeDefined();
  });

  it('with max 0 keeps nothing: every derivation is destroyed after its operation', () => {
    const { cache, destroyed, derive } = cacheOf(0);
    const e = derive(1);
    expect(cache.size).toBe(0);
    cache.release(SESSION_A, e);
    expect(destroyed).toEqual([1]);
    expect(cache.keepingNew).toBe(false);
  });
});
