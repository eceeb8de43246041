// The bounded least-recently-used map behind the key and cipher-context caches.

import { describe, expect, it } from 'vitest';
import { LruCache } from '../../../src/lru.ts';

describe('LruCache', () => {
  it('forgets the least recently used entry beyond its capacity; get and set refresh', () => {
    const c = new LruCache<string, number>(2);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.get('a')).toBe(1); // a is now newer than b
    c.set('c', 3);
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBe(1);
    c.set('c', 30); // overwrite refreshes c
    c.set('d', 4);
    expect(c.get('a')).toBeUndefined();
    expect([c.get('c'), c.get('d'), c.size]).toEqual([30, 4, 2]);
  });

  it('delete forgets one entry and says whether it was there', () => {
    const c = new LruCache<string, number>(2);
    c.set('a', 1);
    c.set('b', 2);
    expect(c.delete('a')).toBe(true);
    expect(c.delete('a')).toBe(false);
    expect([c.get('a'), c.get('b'), c.size]).toEqual([undefined, 2, 1]);
    c.set('c', 3); // room for it without forgetting b
    expect([c.get('b'), c.get('c')]).toEqual([2, 3]);
  });
});
