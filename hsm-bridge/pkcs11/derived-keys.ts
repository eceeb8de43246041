// The PKCS#11 backend's cache of card keys derived inside the token (pkcs11-hsm.ts): the session objects of a
// derived key are kept for reuse (a load's S1, S2 and S3 use the same card key) for a while, least recently
// used out, and destroyed once no operation uses them. The token calls that derive them stay in pkcs11-hsm.ts;
// this keeps the entries, their use counts and the rule that decides whether new derivations are kept.
//
// The cache keeps new card keys only while they are reused: over each window of DERIVED_WINDOW lookups at
// least 1 in DERIVED_HIT_SHARE must hit (a hit saves a derivation, ~130 us on SoftHSM2; keeping costs every
// cold derivation ~10%, an older object destroyed instead of the new one, measured). While not keeping, the
// ids of derived keys are remembered (ghosts, as many as the cache holds, same TTL): a lookup that would have
// hit one counts as a hit, and the next window keeps again.

import { bcdToCardId } from '../../src/crypto/index.ts';
import { refKey, type ResolvedSpec } from '../common.ts';
import type { Handle } from './binding.ts';
import { sameBytes } from '../../src/crypto/same-bytes.ts';

const DERIVED_WINDOW = 256;
const DERIVED_HIT_SHARE = 20;

/** The token objects behind one key: a stored DES2/DES3 key, a derived card key held as two single-DES halves, or an AES key. */
export type Material =
  | { readonly kind: 'des2'; readonly key: Handle }
  | { readonly kind: 'des-halves'; readonly k1: Handle; readonly k2: Handle }
  | { readonly kind: 'aes'; readonly key: Handle };

export interface DerivedEntry {
  readonly material: Material;
  readonly objects: Handle[];
  /** The session that created the objects (session objects die with it). */
  readonly session: string;
  readonly expires: number;
  users: number;
  doomed: boolean;
}

export type DerivedSpec = ResolvedSpec & { kind: 'derived' };

export class DerivedKeyCache {
  private readonly entries = new Map<string, DerivedEntry>();
  /** The id last put at the end of the entries' LRU order (when it is still there, it is the newest). */
  private mostRecent: string | undefined;
  /** Admission (see countLookup): lookups and hits in this window, and the ids derived but not kept. */
  private lookups = 0;
  private hits = 0;
  private keeping = true;
  private readonly ghosts = new Map<string, number>();
  /** The card key whose id idOf() made last. */
  private last: { label: string; version: number; cardId: Buffer; id: string } | undefined;
  /** Session handles as hex (an entry notes which session made its objects). */
  private readonly sessionIds = new WeakMap<Handle, string>();

  constructor(
    /** At most this many entries (0: none kept). */
    readonly max: number,
    /** How long an entry lives, ms. */
    readonly ttlMs: number,
    /** Destroy token objects (errors ignored: they may be gone already). */
    private readonly destroy: (s: Handle, objects: Handle[]) => void,
  ) {}

  /** Derived card keys held now. */
  get size(): number {
    return this.entries.size;
  }

  /** Whether new derived card keys are being kept (see countLookup). */
  get keepingNew(): boolean {
    return this.max > 0 && this.keeping;
  }

  sessionId(s: Handle): string {
    let id = this.sessionIds.get(s);
    if (id === undefined) this.sessionIds.set(s, (id = s.toString('hex')));
    return id;
  }

  private idOf(spec: DerivedSpec): string {
    // The same card key as last time (a load's S1, S2 and S3): the id string made then, whose hash the Map
    // has already computed, instead of a new one.
    const last = this.last;
    if (last && last.label === spec.master.label && last.version === spec.master.version && sameBytes(last.cardId, spec.cardId)) return last.id;
    const id = `${refKey(spec.master)}\u0000${bcdToCardId(spec.cardId)}`;
    this.last = { label: spec.master.label, version: spec.master.version, cardId: Buffer.from(spec.cardId), id };
    return id;
  }

  /** A live cached derivation of this card key (taken into use: give it back with release()), or undefined. */
  lookup(spec: DerivedSpec): DerivedEntry | undefined {
    if (this.max === 0) return undefined;
    const id = this.idOf(spec);
    const hit = this.entries.get(id);
    if (!hit || hit.expires <= Date.now()) {
      // not keeping: would it have been a hit?
      const ghost = this.keeping ? undefined : this.ghosts.get(id);
      this.countLookup(ghost !== undefined && ghost > Date.now());
      return undefined;
    }
    this.countLookup(true);
    if (this.mostRecent !== id) {
      this.entries.delete(id); // re-insert: most recently used last
      this.entries.set(id, hit);
      this.mostRecent = id;
    }
    hit.users++;
    return hit;
  }

  /** The entry of a card key just derived on session s (taken into use), kept when the cache is keeping. */
  keep(s: Handle, spec: DerivedSpec, now: number, objects: Handle[], material: Material): DerivedEntry {
    const id = this.idOf(spec);
    const keep = this.max > 0 && this.keeping;
    const entry: DerivedEntry = { material, objects, session: this.sessionId(s), expires: now + this.ttlMs, users: 1, doomed: !keep };
    if (!keep && this.max > 0) {
      this.ghosts.delete(id);
      this.ghosts.set(id, now + this.ttlMs);
      if (this.ghosts.size > this.max) this.ghosts.delete(this.ghosts.keys().next().value!);
    }
    if (keep) {
      const old = this.entries.get(id);
      if (old) this.evict(s, id, old);
      this.entries.set(id, entry);
      this.mostRecent = id;
      for (const [k, e] of this.entries) {
        if (this.entries.size <= this.max && e.expires > now) break;
        this.evict(s, k, e);
      }
    }
    return entry;
  }

  /** An operation is done with the entry: its objects go when it was evicted (or never kept) and nobody uses it. */
  release(s: Handle, e: DerivedEntry): void {
    e.users--;
    if (e.doomed && e.users === 0) this.destroy(s, e.objects);
  }

  /** A session is closing: the derived keys it created go with it. */
  forgetSession(s: Handle): void {
    const id = this.sessionId(s);
    for (const [k, e] of this.entries) {
      if (e.session === id) {
        this.entries.delete(k);
        e.doomed = true;
      }
    }
  }

  /** The token dropped every object (logout, invalid handles): forget the entries without touching the token. */
  drop(): void {
    this.entries.clear();
  }

  /** Closing: destroy every entry's objects on session s. */
  destroyAll(s: Handle): void {
    for (const e of this.entries.values()) this.destroy(s, e.objects);
  }

  /** Closed: no entries, no ghosts. */
  reset(): void {
    this.entries.clear();
    this.ghosts.clear();
  }

  /**
   * Count a lookup; at the end of each window decide whether new derivations are kept: only when at least 1
   * in DERIVED_HIT_SHARE lookups hit (or, while not keeping, would have hit a ghost).
   */
  private countLookup(hit: boolean): void {
    if (hit) this.hits++;
    if (++this.lookups < DERIVED_WINDOW) return;
    const keep = this.hits * DERIVED_HIT_SHARE >= this.lookups;
    if (keep && !this.keeping) this.ghosts.clear();
    this.keeping = keep;
    this.lookups = 0;
    this.hits = 0;
  }

  private evict(s: Handle, id: string, e: DerivedEntry): void {
    this.entries.delete(id);
    e.doomed = true;
    if (e.users === 0) this.destroy(s, e.objects);
  }
}
