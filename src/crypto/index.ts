// src/crypto public surface. Applets, the HSM bridge and the servers import from here.

export { CryptoError, type CryptoErrorCode } from './errors.ts';
export { padMethod1, padMethod2, unpadMethod2 } from './padding.ts';
export { CbcEngine, cbcFromEcb, engineFor, type CbcPrimitive, type CipherFamily, type EngineRole } from './engine.ts';
export {
  MAC_ALGORITHMS,
  cbcMacAlg1,
  cmac,
  cmacSubkeys,
  computeMac,
  isMacAlgorithm,
  macEquals,
  macFromPrimitives,
  prepareMacKey,
  primitivesForKey,
  retailMacAlg3,
  verifyMac,
  type MacAlgorithm,
  type MacKey,
  type MacPadding,
  type MacPrimitives,
} from './mac.ts';
export {
  aesCbcDecrypt,
  aesCbcEncrypt,
  aesEcbEncrypt,
  blockSizeOfKeyType,
  cbcDecrypt,
  cbcEncrypt,
  ecbEncrypt,
  isKeyType,
  tdesCbcDecrypt,
  tdesCbcEncrypt,
  tdesEcbEncrypt,
  type KeyType,
  type Padding,
} from './cipher.ts';
export { KCV_LENGTH, aesEcbCheckValue, keyCheckValue } from './kcv.ts';
export {
  adjustDesParity,
  diversificationBlocks,
  diversificationData,
  diversifyCardKey,
  hasOddDesParity,
  singleDesK1DiversificationData,
} from './diversify.ts';
export {
  CARD_ID_BYTES,
  CARD_ID_DIGITS,
  bcdToCardId,
  cardIdToBcd,
  decodeCurrency,
  decodeDate,
  decodeTime,
  encodeCurrency,
  encodeDate,
  encodeTime,
  isCardId,
  isValidDate,
  isValidTime,
  makeCardId,
  packBcd,
  splitCardId,
  unpackBcd,
  type CardIdInput,
} from './bcd.ts';
export { ALG_3DES, ALG_AES, allSuites, isAlgorithmId, suiteFor, suiteMac, suiteVerify, type AlgorithmId, type CryptoSuite } from './suites.ts';
export { decodeLayout, encodeLayout, layout, layoutMarkdown, type FieldDef, type FieldKind, type FieldSpec, type Layout } from './layout.ts';
export * from './purse-mac.ts';
export * from './purse-apdu.ts';
