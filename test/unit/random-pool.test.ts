// The pooled random bytes used for identifiers and IVs: right sizes, never the same bytes twice, refills
// across the pool's end, and nothing handed out stays readable in the pool.

import { describe, expect, it } from 'vitest';
import { pooledRandomBytes, randomHex } from '../../src/random-pool.ts';

describe('pooled random bytes', () => {
  it('hands out fresh bytes of the asked length, across many pool refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const n = 1 + (i % 37) + 8; // 9..45 bytes: odd sizes cross the 4 KB pool's end at varying offsets
      const b = pooledRandomBytes(n);
      expect(b).toHaveLength(n);
      seen.add(b.toString('hex'));
    }
    expect(seen.size).toBe(3000);
  });
  it('gives hex identifiers of twice the length', () => {
    const a = randomHex(8);
    expect(a).toMatch(/^[0-9a-f]{16}$/);
    expect(randomHex(8)).not.toBe(a);
  });
  it('returns a Buffer of its own, not a view the pool can overwrite', () => {
    const a = pooledRandomBytes(16);
    const copy = Buffer.from(a);
    for (let i = 0; i < 600; i++) pooledRandomBytes(16); // more than a whole pool
    expect(a.equals(copy)).toBe(true);
  });
  it('refuses sizes outside 1..256', () => {
    for (const n of [0, -1, 257, 1.5, Number.NaN]) expect(() => pooledRandomBytes(n)).toThrow(RangeError);
  });
  it('bytes are spread over all values (no stuck bits)', () => {
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 400; i++) for (const x of pooledRandomBytes(64)) counts[x]!++;
    // 25,600 bytes: every value expected ~100 times; a stuck or missing bit would leave half the values at 0
    expect(Math.min(...counts)).toBeGreaterThan(40);
  });
});
