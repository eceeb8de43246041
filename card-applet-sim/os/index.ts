// The card OS public API: what applets, the vpcd connector and tests import.

export { Applet, ApduContext, type CardServices, type CardProtocolName, type ClearEvent, type TransientNumber } from './applet.ts';
export { SimulatedCard, defaultAtr, type SimulatedCardOptions, type CardEvent, type CardEventType, type InstalledApplet } from './card.ts';
export { CardMemory } from './memory.ts';
export { PersistentStore, PersistentNumber, PersistentFlag, PersistentBytes, MAX_PERSISTENT_BYTES, type StoredState, type StoredValue } from './store.ts';
export { AppletTypeRegistry, appletTypes, type AppletFactory, type AppletClass } from './registry.ts';
export { SW, IsoException, TransactionException, TransactionReason, CardOsError, PowerLostSignal, isValidStatusWord } from './iso.ts';
export {
  CardImageError,
  CARD_IMAGE_MAGIC,
  CARD_IMAGE_VERSION,
  cardToImage,
  cardFromImage,
  encodeCardImage,
  decodeCardImage,
  saveCardImage,
  loadCardImage,
  writeFileAtomic,
  type CardImage,
  type SaveImageOptions,
} from './image.ts';
