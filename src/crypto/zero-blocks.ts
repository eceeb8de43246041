// All-zero blocks for IVs, check values and padding sources: shared, and never written to (every user passes
// them as input only; node:crypto and pkcs11js do not modify their inputs).

/** 8 zero bytes: a DES block. */
export const ZERO8: Buffer = Buffer.alloc(8);
/** 16 zero bytes: an AES block. */
export const ZERO16: Buffer = Buffer.alloc(16);
