// The virtual card store (the patent's card database 270): one row per virtual card holding the purse applet's
// persistent state exactly as the card OS serialises it (cardToImage), sealed by the HSM (paymentOps
// sealRecord/openRecord: AES-CBC + CMAC under keys derived inside the HSM from 'opal-record-enc' /
// 'opal-record-mac' by the card id). Every use is: open the record in the HSM -> rebuild the card
// (cardFromImage: the SAME applet code as an emulated or physical card) -> run APDUs -> seal -> store.
//
// Concurrency: a session holds the card's in-process lock from connect() to release(), so commands on one card
// are serialised (the counter never skips or repeats); each save is `UPDATE ... WHERE version = ?`, so a
// second OPAL process on the same database that saved meanwhile makes this one's save fail (OPAL_CARD_CONFLICT)
// and its response is never returned. The version is also sealed inside the record: a row whose sealed version
// or card id disagrees with its columns, or that fails the HSM MAC, is OPAL_RECORD_TAMPERED and never used.
//
// Live cards: after a clean session (every write saved, no failed save) the live card stays in a bounded LRU
// beside the sealed bytes this process last wrote or opened for it. The next connect() reuses it (after a cold
// reset: transient state gone, as a card rebuilt from its image) only if the row still holds exactly those sealed
// bytes at that version; anything else (a tampered, moved or rolled-back row, another process's save) goes the
// full way through the HSM as above. Off by default (liveCards: 0: every connect opens the record in the HSM);
// liveCards: N (e.g. 1024) opts in.

import { cardFromImage, cardToImage, type CardImage } from '../../card-applet-sim/os/image.ts';
import type { SimulatedCard } from '../../card-applet-sim/os/card.ts';
import '../../card-applet-sim/applets/index.ts'; // registers the purse applet type for cardFromImage
import type { PaymentOps } from '../../hsm-bridge/payment.ts';
import { PurselabError } from '../errors.ts';
import type { Statement } from 'better-sqlite3';
import { GroupCommit } from '../store/group-commit.ts';
import type { SqliteDatabase } from '../store/sqlite.ts';
import { maskCardId } from '../terminal/amount.ts';
import { LruCache } from '../lru.ts';
import { OpalError } from './errors.ts';
import { KeyedMutex } from './keyed-mutex.ts';

/** What is sealed: format, the card id and version it belongs to, and the card image. */
interface RecordPlaintext {
  readonly f: 1;
  readonly cardId: string;
  readonly version: number;
  readonly image: CardImage;
}

export interface CardStoreOptions {
  readonly db: SqliteDatabase;
  readonly ops: PaymentOps;
  /** How long connect() waits for a card another session holds (default 10 s). */
  readonly lockTimeoutMs?: number;
  /** How many live cards to keep between sessions (default DEFAULT_LIVE_CARDS; 0: none, always open in the HSM). */
  readonly liveCards?: number;
  /** Shared with the other stores on this database, so a turn's writes go in one COMMIT (default: its own). */
  readonly commits?: GroupCommit;
  /** Test hook: called after the new record is sealed, before the row is written (a crash here loses nothing). */
  readonly beforeWrite?: (cardId: string, version: number) => void | Promise<void>;
}

export interface ConnectOptions {
  /** The BIN partition the caller acts for: a card of another BIN is OPAL_CARD_NOT_FOUND. */
  readonly bin?: string;
  /** Reproducible card randomness (tests comparing a virtual and an emulated card); never in production. */
  readonly randomSeed?: string;
}

/** Off by default: every session opens the record in the HSM, as the card-store contract says; opt in for speed. */
export const DEFAULT_LIVE_CARDS = 0;

/** A live card kept between sessions, valid while its row holds exactly `sealed` at `version`. */
interface LiveCard {
  readonly card: SimulatedCard;
  readonly version: number;
  readonly sealed: Buffer;
}

/** One open session on a virtual card: the live card, its stored version, and save/release. */
export class CardSession {
  private released = false;
  private failed: Error | undefined;
  private savedWrites: number;

  constructor(
    private readonly store: VirtualCardStore,
    readonly cardId: string,
    readonly card: SimulatedCard,
    private versionValue: number,
    /** The sealed bytes of the stored version (what this process last opened or wrote). */
    private sealedValue: Buffer,
    /** Unlock the card, handing back the live card when it is exactly the stored version (undefined if not). */
    private readonly onRelease: (live: LiveCard | undefined) => void,
  ) {
    this.savedWrites = card.persistentWrites;
  }

  /** The stored version (+1 on every save). */
  get version(): number {
    return this.versionValue;
  }
  get isOpen(): boolean {
    return !this.released && this.failed === undefined;
  }

  /** Throws when the session cannot be used (released, or a save failed: the live card is ahead of the store). */
  check(): void {
    if (this.released) throw new OpalError('OPAL_SESSION_CLOSED', `session on card ${maskCardId(this.cardId)} is closed`);
    if (this.failed) throw new OpalError('OPAL_SESSION_CLOSED', `session on card ${maskCardId(this.cardId)} ended after a failed save: ${this.failed.message}`);
  }

  /** Seal and store the card's state if an APDU wrote persistent memory since the last save; true if it saved. */
  async saveIfChanged(): Promise<boolean> {
    this.check();
    const writes = this.card.persistentWrites;
    if (writes === this.savedWrites) return false;
    try {
      const w = await this.store.writeSealed(this.cardId, this.card, this.versionValue);
      this.versionValue = w.version;
      this.sealedValue = w.sealed;
      this.savedWrites = writes;
      return true;
    } catch (e) {
      this.failed = e as Error;
      throw e;
    }
  }

  /** Release the card's lock. Idempotent. Unsaved changes are dropped (like a card pulled from a reader). */
  release(): void {
    if (this.released) return;
    this.released = true;
    const clean = this.failed === undefined && this.card.persistentWrites === this.savedWrites;
    this.onRelease(clean ? { card: this.card, version: this.versionValue, sealed: this.sealedValue } : undefined);
  }
}

export class VirtualCardStore {
  readonly db: SqliteDatabase;
  private readonly ops: PaymentOps;
  private readonly locks = new KeyedMutex();
  private readonly lockTimeoutMs: number;
  private readonly beforeWrite: CardStoreOptions['beforeWrite'];
  /** Live cards between sessions; null marks one a session left unusable (forgotten). */
  private readonly live: LruCache<string, LiveCard | null> | undefined;
  private readonly commits: GroupCommit;
  private readonly stmt: {
    insert: Statement<unknown[]>;
    get: Statement<unknown[]>;
    update: Statement<unknown[]>;
  };

  constructor(options: CardStoreOptions) {
    this.db = options.db;
    this.ops = options.ops;
    this.lockTimeoutMs = options.lockTimeoutMs ?? 10_000;
    this.beforeWrite = options.beforeWrite;
    this.commits = options.commits ?? new GroupCommit(this.db, 'the virtual card store');
    const liveCards = options.liveCards ?? DEFAULT_LIVE_CARDS;
    this.live = liveCards > 0 ? new LruCache(liveCards) : undefined;
    this.stmt = {
      insert: this.db.prepare('INSERT INTO opal_cards (card_id, bin, version, sealed, created_at, updated_at) VALUES (?, ?, 1, ?, ?, ?)'),
      get: this.db.prepare('SELECT card_id, bin, version, sealed FROM opal_cards WHERE card_id = ?'),
      update: this.db.prepare('UPDATE opal_cards SET sealed = ?, version = ?, updated_at = ? WHERE card_id = ? AND version = ?'),
    };
  }

  /** Store a newly issued card (version 1). OPAL_CARD_EXISTS if the id is taken. */
  async create(cardId: string, card: SimulatedCard): Promise<void> {
    (await this.prepareCreate(cardId, card))();
  }

  /**
   * Seal a newly issued card now and return the synchronous insert, for a caller that writes it in one SQLite
   * transaction with rows of its own (registration: card + user). The insert throws OPAL_CARD_EXISTS.
   */
  async prepareCreate(cardId: string, card: SimulatedCard): Promise<() => void> {
    const sealed = await this.seal(cardId, 1, card);
    return () => {
      const now = new Date().toISOString();
      try {
        this.stmt.insert.run(cardId, cardId.slice(0, 6), sealed, now, now);
      } catch (e) {
        if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new OpalError('OPAL_CARD_EXISTS', `virtual card ${maskCardId(cardId)} already exists`);
        throw e;
      }
    };
  }

  /** Whether a card with this id is stored (in this BIN partition, if given). */
  has(cardId: string, bin?: string): boolean {
    const row = this.stmt.get.get(cardId) as { bin: string } | undefined;
    return row !== undefined && (bin === undefined || row.bin === bin);
  }

  /**
   * Lock the card, open its record in the HSM and rebuild the live card (or reuse the live card kept from the last
   * clean session, if the row still holds exactly what it was sealed as); release() the session when done.
   */
  async connect(cardId: string, options: ConnectOptions = {}): Promise<CardSession> {
    const unlock = await this.locks.acquire(cardId, this.lockTimeoutMs, maskCardId(cardId));
    try {
      const row = this.row(cardId, options.bin);
      const kept = options.randomSeed === undefined ? this.live?.get(cardId) : undefined;
      let card: SimulatedCard;
      if (kept && kept.version === row.version && kept.sealed.equals(row.sealed)) {
        card = kept.card;
        card.powerOff(); // a cold reset: what a card rebuilt from its image starts with
        card.powerOn();
      } else {
        const { image } = await this.open(row);
        card = cardFromImage(image, { source: `virtual card ${maskCardId(cardId)}`, ...(options.randomSeed !== undefined ? { randomSeed: options.randomSeed } : {}) });
      }
      return new CardSession(this, cardId, card, row.version, row.sealed, (live) => {
        if (this.live && options.randomSeed === undefined) this.live.set(cardId, live ?? null);
        unlock();
      });
    } catch (e) {
      if (this.live?.get(cardId)) this.live.set(cardId, null);
      unlock();
      throw e;
    }
  }

  /** Run fn on a connected card and release it whatever happens. */
  async withCard<T>(cardId: string, fn: (session: CardSession) => Promise<T>, options: ConnectOptions = {}): Promise<T> {
    const session = await this.connect(cardId, options);
    try {
      return await fn(session);
    } finally {
      session.release();
    }
  }

  /** Decrypt and check a card's record (no lock: a snapshot for reading). */
  async load(cardId: string, bin?: string): Promise<{ image: CardImage; version: number }> {
    return this.open(this.row(cardId, bin));
  }

  private row(cardId: string, bin?: string): CardRow {
    const row = this.stmt.get.get(cardId) as CardRow | undefined;
    if (!row || (bin !== undefined && row.bin !== bin)) throw new OpalError('OPAL_CARD_NOT_FOUND', `no virtual card ${maskCardId(cardId)}${bin !== undefined ? ` for BIN ${bin}` : ''}`);
    return row;
  }

  /** Open a row's record in the HSM and check it belongs to this row. */
  private async open(row: CardRow): Promise<{ image: CardImage; version: number }> {
    const cardId = row.card_id;
    let plain: Buffer;
    try {
      plain = await this.ops.openRecord(cardId, row.sealed);
    } catch (e) {
      if (e instanceof PurselabError && (e.code === 'HSM_RECORD_INTEGRITY' || e.code === 'HSM_BAD_INPUT')) {
        throw new OpalError('OPAL_RECORD_TAMPERED', `the stored record of virtual card ${maskCardId(cardId)} fails its integrity check: refused`, { cause: e });
      }
      throw e;
    }
    let rec: RecordPlaintext;
    try {
      rec = JSON.parse(plain.toString('utf8')) as RecordPlaintext;
    } catch (e) {
      throw new OpalError('OPAL_RECORD_TAMPERED', `the record of virtual card ${maskCardId(cardId)} is not a record`, { cause: e });
    } finally {
      plain.fill(0);
    }
    if (rec?.f !== 1 || rec.cardId !== cardId || rec.version !== row.version || typeof rec.image !== 'object') {
      throw new OpalError('OPAL_RECORD_TAMPERED', `the record of virtual card ${maskCardId(cardId)} does not match its row (version ${row.version}): an old or moved record, refused`);
    }
    return { image: rec.image, version: row.version };
  }

  /** Seal the card's state as version+1 and store it if the row is still at `version`; returns the new version. */
  async write(cardId: string, card: SimulatedCard, version: number): Promise<number> {
    return (await this.writeSealed(cardId, card, version)).version;
  }

  /** write(), also returning the sealed bytes stored. */
  async writeSealed(cardId: string, card: SimulatedCard, version: number): Promise<{ version: number; sealed: Buffer }> {
    const next = version + 1;
    const sealed = await this.seal(cardId, next, card);
    await this.beforeWrite?.(cardId, next);
    const r = await this.commits.write(() => this.stmt.update.run(sealed, next, new Date().toISOString(), cardId, version));
    if (r.changes !== 1) {
      throw new OpalError('OPAL_CARD_CONFLICT', `virtual card ${maskCardId(cardId)} changed underneath this session (expected version ${version}): the command is not completed`);
    }
    return { version: next, sealed };
  }

  private async seal(cardId: string, version: number, card: SimulatedCard): Promise<Buffer> {
    const rec: RecordPlaintext = { f: 1, cardId, version, image: cardToImage(card) };
    const plain = Buffer.from(JSON.stringify(rec), 'utf8');
    try {
      return await this.ops.sealRecord(cardId, plain);
    } finally {
      plain.fill(0);
    }
  }
}

interface CardRow {
  readonly card_id: string;
  readonly bin: string;
  readonly version: number;
  readonly sealed: Buffer;
}
