// A bounded map that forgets its least recently used entry first: the caches of derived keys and cipher
// contexts use it (a Map keeps insertion order, so the oldest entry is the first key).

export class LruCache<K, V> {
  private readonly map = new Map<K, V>();
  constructor(private readonly capacity: number) {}

  /** The value, now the most recently used; undefined when absent. */
  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  /** Store as the most recently used, forgetting the least recently used one beyond capacity. */
  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.capacity) this.map.delete(this.map.keys().next().value!);
  }

  /** Forget `key` (true if it was there). */
  delete(key: K): boolean {
    return this.map.delete(key);
  }

  /** The values, least recently used first. */
  values(): IterableIterator<V> {
    return this.map.values();
  }

  get size(): number {
    return this.map.size;
  }
}
