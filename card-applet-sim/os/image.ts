// Card images: a card's configuration, applets (type name + AID + install parameters) and persistent state in
// one versioned file with a SHA-256 integrity check. Saving is atomic (temp file + fsync + rename + dir fsync).

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { PurselabError } from '../../src/errors.ts';
import { toHex } from '../../src/apdu/hex.ts';
import type { CardProtocolName } from './applet.ts';
import { SimulatedCard } from './card.ts';
import type { AppletTypeRegistry } from './registry.ts';
import type { StoredState } from './store.ts';

export const CARD_IMAGE_MAGIC = 'PURSELAB-CARD-IMAGE';
export const CARD_IMAGE_VERSION = 1;

export class CardImageError extends PurselabError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('BAD_CARD_IMAGE', message, options);
  }
}

/** The decoded content of a card image (version 1). Byte strings are upper-case hex. */
export interface CardImage {
  readonly version: 1;
  readonly card: {
    readonly protocol: CardProtocolName;
    readonly atr: string;
    readonly extendedLength: boolean;
    readonly serial: string;
    readonly defaultApplet: string | null;
  };
  /** Persistent write points the card had done when saved (informational; restored into the counter). */
  readonly persistentWrites: number;
  readonly applets: readonly { readonly aid: string; readonly type: string; readonly params: string; readonly state: StoredState }[];
}

/** Snapshot a card (committed persistent state only: there is never an open transaction between commands). */
export function cardToImage(card: SimulatedCard): CardImage {
  if (card.memory.inTransaction) throw new CardImageError('cannot take a card image while a transaction is open');
  return {
    version: 1,
    card: {
      protocol: card.protocol,
      atr: toHex(card.atr),
      extendedLength: card.extendedLength,
      serial: toHex(card.serial),
      defaultApplet: card.defaultApplet ? toHex(card.defaultApplet) : null,
    },
    persistentWrites: card.persistentWrites,
    applets: card.applets.map((a) => {
      if (!a.typeName) {
        throw new CardImageError(
          `applet ${a.aidHex} (class ${a.applet.constructor.name}) has no registered type name, so a card image could not restore it: give the class a static typeName and register it in appletTypes`,
        );
      }
      return { aid: a.aidHex, type: a.typeName, params: toHex(a.params), state: a.applet.store.exportState() };
    }),
  };
}

/** Rebuild a card from an image: applets are made by their registered factories, then their state is loaded. */
export function cardFromImage(image: CardImage, options: { registry?: AppletTypeRegistry; source?: string; poweredOff?: boolean; randomSeed?: Uint8Array | string } = {}): SimulatedCard {
  const src = options.source ?? 'card image';
  let card: SimulatedCard;
  try {
    card = new SimulatedCard({
      protocol: image.card.protocol,
      atr: Buffer.from(image.card.atr, 'hex'),
      extendedLength: image.card.extendedLength,
      serial: Buffer.from(image.card.serial, 'hex'),
      ...(options.registry ? { registry: options.registry } : {}),
      ...(options.randomSeed !== undefined ? { randomSeed: options.randomSeed } : {}),
      poweredOff: options.poweredOff === true,
    });
  } catch (e) {
    throw new CardImageError(`${src}: card configuration is invalid: ${(e as Error).message}`, { cause: e });
  }
  for (const a of image.applets) {
    let applet;
    try {
      applet = card.restoreApplet(a.aid, a.type, Buffer.from(a.params, 'hex'));
    } catch (e) {
      throw new CardImageError(`${src}: cannot restore applet ${a.aid}: ${(e as Error).message}`, { cause: e });
    }
    const problems = applet.store.importState(a.state);
    if (problems.length) throw new CardImageError(`${src}: applet ${a.aid} (${a.type}): ${problems.join('; ')}`);
  }
  if (image.card.defaultApplet) card.setDefaultApplet(image.card.defaultApplet);
  card.memory.restoreWriteCount(image.persistentWrites);
  if (!options.poweredOff) card.powerOn();
  return card;
}

/** File bytes: one header line "PURSELAB-CARD-IMAGE 1 <bytes> <sha256>\n", then the JSON body. */
export function encodeCardImage(image: CardImage): Buffer {
  const body = Buffer.from(`${JSON.stringify(image, null, 1)}\n`, 'utf8');
  const digest = createHash('sha256').update(body).digest('hex');
  return Buffer.concat([Buffer.from(`${CARD_IMAGE_MAGIC} ${CARD_IMAGE_VERSION} ${body.length} ${digest}\n`, 'ascii'), body]);
}

/** Check and decode image bytes; every problem is a CardImageError with a one-line message naming `source`. */
export function decodeCardImage(bytes: Buffer, source = 'card image'): CardImage {
  const nl = bytes.indexOf(0x0a);
  const headerText = bytes.subarray(0, nl < 0 ? Math.min(bytes.length, 200) : nl).toString('latin1');
  if (!headerText.startsWith(CARD_IMAGE_MAGIC)) {
    if (bytes.length > 0 && nl < 0 && CARD_IMAGE_MAGIC.startsWith(headerText)) throw new CardImageError(`${source} is truncated: it ends inside its header line`);
    throw new CardImageError(bytes.length === 0 ? `${source} is empty (0 bytes): not a card image` : `${source} is not a purselab card image (it does not start with ${CARD_IMAGE_MAGIC})`);
  }
  const m = /^PURSELAB-CARD-IMAGE (\d+) (\d+) ([0-9a-f]{64})$/.exec(headerText);
  if (nl < 0 || !m) {
    const v = /^PURSELAB-CARD-IMAGE (\d+)\b/.exec(headerText)?.[1];
    if (v !== undefined && Number(v) !== CARD_IMAGE_VERSION) throw new CardImageError(`${source}: card image version ${v} is not supported (this build reads version ${CARD_IMAGE_VERSION})`);
    throw new CardImageError(`${source} is truncated or corrupt: its header line is incomplete`);
  }
  const version = Number(m[1]);
  if (version !== CARD_IMAGE_VERSION) throw new CardImageError(`${source}: card image version ${version} is not supported (this build reads version ${CARD_IMAGE_VERSION})`);
  const length = Number(m[2]);
  const body = bytes.subarray(nl + 1);
  if (body.length < length) throw new CardImageError(`${source} is truncated: ${body.length} of ${length} body bytes present`);
  if (body.length > length) throw new CardImageError(`${source} is corrupt: ${body.length - length} unexpected byte(s) after the body`);
  if (createHash('sha256').update(body).digest('hex') !== m[3]) throw new CardImageError(`${source} is corrupt: SHA-256 checksum mismatch`);
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new CardImageError(`${source} is corrupt: body is not JSON (${(e as Error).message})`);
  }
  return validateImage(json, source);
}

const HEX = /^(?:[0-9A-Fa-f]{2})*$/;

function validateImage(j: unknown, src: string): CardImage {
  const bad = (what: string): never => {
    throw new CardImageError(`${src}: invalid card image: ${what}`);
  };
  const obj = (v: unknown, what: string): Record<string, unknown> => (v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : bad(`${what} must be an object`));
  const hex = (v: unknown, what: string, min = 0, max = Infinity): string => {
    if (typeof v !== 'string' || !HEX.test(v) || v.length / 2 < min || v.length / 2 > max) bad(`${what} must be ${min}..${max === Infinity ? 'n' : max} bytes of hex`);
    return (v as string).toUpperCase();
  };
  const root = obj(j, 'the body');
  if (root.version !== 1) bad(`version must be 1, got ${JSON.stringify(root.version)}`);
  const c = obj(root.card, 'card');
  if (c.protocol !== 'T=0' && c.protocol !== 'T=1') bad(`card.protocol must be "T=0" or "T=1"`);
  if (typeof c.extendedLength !== 'boolean') bad('card.extendedLength must be a boolean');
  const defaultApplet = c.defaultApplet === null || c.defaultApplet === undefined ? null : hex(c.defaultApplet, 'card.defaultApplet', 5, 16);
  const writes = root.persistentWrites ?? 0;
  if (typeof writes !== 'number' || !Number.isSafeInteger(writes) || writes < 0) bad('persistentWrites must be a whole number');
  if (!Array.isArray(root.applets)) bad('applets must be a list');
  const seen = new Set<string>();
  const applets = (root.applets as unknown[]).map((a, i) => {
    const o = obj(a, `applets[${i}]`);
    const aid = hex(o.aid, `applets[${i}].aid`, 5, 16);
    if (seen.has(aid)) bad(`AID ${aid} appears twice`);
    seen.add(aid);
    if (typeof o.type !== 'string' || !o.type) bad(`applets[${i}].type must be a type name`);
    const state = obj(o.state, `applets[${i}].state`) as StoredState;
    return { aid, type: o.type as string, params: hex(o.params ?? '', `applets[${i}].params`), state };
  });
  if (defaultApplet !== null && !seen.has(defaultApplet)) bad(`card.defaultApplet ${defaultApplet} is not one of the applets`);
  return {
    version: 1,
    card: {
      protocol: c.protocol as CardProtocolName,
      atr: hex(c.atr, 'card.atr', 2, 33),
      extendedLength: c.extendedLength as boolean,
      serial: hex(c.serial, 'card.serial', 1, 16),
      defaultApplet,
    },
    persistentWrites: writes as number,
    applets,
  };
}

export interface SaveImageOptions {
  /**
   * Test hook: called after the temporary file is written and fsynced, before the rename. Throwing here (or
   * killing the process) leaves the previous image untouched.
   */
  beforeRename?: (tempPath: string) => void;
}

/** Write bytes to `path` atomically: temp file in the same directory, fsync, rename over, fsync the directory. */
export function writeFileAtomic(path: string, bytes: Buffer, options: SaveImageOptions = {}): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o600);
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    options.beforeRename?.(tmp);
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        /* already failing */
      }
    }
    try {
      unlinkSync(tmp);
    } catch {
      /* never created, or already renamed */
    }
    if (e instanceof PurselabError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw new CardImageError(`cannot write card image ${path}: ${err.code ?? ''} ${err.message}`.replace(/\s+/g, ' '), { cause: e });
  }
  try {
    const dfd = openSync(dirname(path), 'r');
    try {
      fsyncSync(dfd);
    } finally {
      closeSync(dfd);
    }
  } catch {
    /* directory fsync is not supported everywhere; the rename itself is atomic */
  }
}

/** Save a card image atomically: the file at `path` is always either the old image or the new one. */
export function saveCardImage(card: SimulatedCard, path: string, options: SaveImageOptions = {}): void {
  writeFileAtomic(path, encodeCardImage(cardToImage(card)), options);
}

/** Load a card image file; the card comes back powered on (unless poweredOff) with its committed state. */
export function loadCardImage(path: string, options: { registry?: AppletTypeRegistry; poweredOff?: boolean } = {}): SimulatedCard {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new CardImageError(`card image ${path} does not exist`, { cause: e });
    if (err.code === 'EISDIR') throw new CardImageError(`card image ${path} is a directory`, { cause: e });
    throw new CardImageError(`cannot read card image ${path}: ${err.code ?? err.message}`, { cause: e });
  }
  return cardFromImage(decodeCardImage(bytes, `card image ${path}`), { ...options, source: `card image ${path}` });
}
