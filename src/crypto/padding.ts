// ISO/IEC 9797-1 padding methods 1 and 2 (method 2 = ISO/IEC 7816-4 padding: 80 then 00s).

import { CryptoError } from './errors.ts';

function checkBlockSize(blockSize: number): void {
  if (blockSize !== 8 && blockSize !== 16) {
    throw new CryptoError('CRYPTO_DATA_LENGTH', `block size must be 8 or 16, got ${blockSize}`);
  }
}

/**
 * Padding method 1: append 00 bytes up to a block multiple. Data already a whole number of blocks
 * gets nothing; empty data becomes one block of zeros (ISO/IEC 9797-1:2011, 6.1.2).
 */
export function padMethod1(data: Uint8Array, blockSize: 8 | 16): Buffer {
  checkBlockSize(blockSize);
  const rem = data.length % blockSize;
  const len = data.length === 0 ? blockSize : rem === 0 ? data.length : data.length + blockSize - rem;
  const out = Buffer.alloc(len);
  out.set(data, 0);
  return out;
}

/** Padding method 2: append 80, then 00 bytes up to a block multiple. Always adds 1..blockSize bytes. */
export function padMethod2(data: Uint8Array, blockSize: 8 | 16): Buffer {
  checkBlockSize(blockSize);
  const len = (Math.floor(data.length / blockSize) + 1) * blockSize;
  const out = Buffer.alloc(len);
  out.set(data, 0);
  out[data.length] = 0x80;
  return out;
}

/** Remove padding method 2; throws CRYPTO_PADDING if the last block does not end in 80 00..00. */
export function unpadMethod2(data: Uint8Array, blockSize: 8 | 16): Buffer {
  checkBlockSize(blockSize);
  if (data.length === 0 || data.length % blockSize !== 0) {
    throw new CryptoError('CRYPTO_PADDING', `padded data must be a non-zero multiple of ${blockSize} bytes, got ${data.length}`);
  }
  let i = data.length - 1;
  const stop = data.length - blockSize;
  while (i >= stop && data[i] === 0x00) i--;
  if (i < stop || data[i] !== 0x80) {
    throw new CryptoError('CRYPTO_PADDING', 'padding method 2 not found: the last block does not end in 80 00..00');
  }
  return Buffer.from(data.subarray(0, i));
}
