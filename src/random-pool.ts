// Random bytes for identifiers and IVs, taken from a pool refilled 4 KB at a time with randomFillSync
// (node:crypto's CSPRNG), as node itself does for randomUUID: one randomBytes() call costs a few
// microseconds whatever its size, and a purchase needs several small ones (ids, IVs). Every byte is handed
// out once. Keys are not taken from here (src/protocol/keys.ts newSessionKey uses randomBytes).

import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/** `n` fresh random bytes (1..256), in a Buffer of their own. */
export function pooledRandomBytes(n: number): Buffer {
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new RangeError(`pooledRandomBytes: 1..256 bytes, got ${n}`);
  if (offset + n > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.allocUnsafe(n);
  pool.copy(out, 0, offset, offset + n);
  pool.fill(0, offset, offset + n); // what was handed out does not stay behind in the pool
  offset += n;
  return out;
}

/** `n` random bytes as lower-case hex (identifiers). */
export function randomHex(n: number): string {
  return pooledRandomBytes(n).toString('hex');
}
