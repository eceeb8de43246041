// Errors raised by src/crypto: one class, a stable code per failure kind, messages that name the field.

import { PurselabError } from '../errors.ts';

export type CryptoErrorCode =
  | 'CRYPTO_KEY_LENGTH' // a key of the wrong size for the algorithm
  | 'CRYPTO_DATA_LENGTH' // data that is not a whole number of blocks where that is required
  | 'CRYPTO_PADDING' // padding method 2 missing or malformed on removal
  | 'CRYPTO_MAC_LENGTH' // a MAC length outside what the algorithm can give
  | 'CRYPTO_ALGORITHM' // an unknown MAC algorithm name or key type
  | 'CRYPTO_UNKNOWN_SUITE' // an algorithm identifier byte that names no suite
  | 'CRYPTO_CARD_ID' // a card identifier that is not 16 decimal digits
  | 'CRYPTO_FIELD'; // a typed field that does not fit its byte layout

export class CryptoError extends PurselabError {
  declare readonly code: CryptoErrorCode;
  constructor(code: CryptoErrorCode, message: string) {
    super(code, message);
  }
}
