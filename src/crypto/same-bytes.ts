// Byte-for-byte equality of two short arrays in plain JavaScript: for the per-call cache checks on hot paths
// (a key's cached cipher contexts, the last derived card key's id), where Buffer.equals' native call costs more
// than comparing 8 or 16 bytes. Not for secrets compared against an attacker's guess: use timingSafeEqual.

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
