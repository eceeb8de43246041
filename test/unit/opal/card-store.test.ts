// The virtual card store and the pseudo reader: the purse applet's state sealed by the HSM, run by the same
// applet code, saved after every command that writes it; tampered / moved / rolled-back records refused;
// concurrent purchases on one card serialised (counter 1..N, no skip, no repeat); a second OPAL process that
// wrote meanwhile makes the stale session's command fail without its response; a crash before the write loses
// the command cleanly; a live card kept between sessions is reused only while its row is exactly what was sealed.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { purchase, readPurse } from '../../../src/terminal/index.ts';
import { withPseudoReader, openPseudoReader } from '../../../src/opal/pseudo-reader.ts';
import { LOC, NOW, TODAY, newPsam } from '../psam/helpers.ts';
import { newStore, openOpalDb, storeNewCard, useOpalHsm, useTempDir } from './helpers.ts';

const at = { date: TODAY, time: NOW, location: LOC };
const hsm = useOpalHsm();
const tmp = useTempDir();
let dbN = 0;
const freshDb = () => openOpalDb(join(tmp(), `cards-${dbN++}.db`));

describe('virtual card store', () => {
  it('a purchase through the pseudo reader debits the sealed card, one save per writing command', async () => {
    const db = freshDb();
    const store = newStore(db, hsm().ops);
    const cardId = await storeNewCard(store, 10_000);
    const psam = await newPsam('aes');
    const r = await withPseudoReader(store, cardId, (reader) => purchase(reader, psam.ch, { amount: 420, ...at }));
    expect(r).toMatchObject({ cardId, amount: 420, counterBefore: 0, newCounter: 1, balanceBefore: 10_000, newBalance: 9580, psamConfirmed: true });
    const version = (db.prepare('SELECT version FROM opal_cards WHERE card_id = ?').get(cardId) as { version: number }).version;
    expect(version).toBeGreaterThan(1);
    // Reading changes nothing in the store.
    const purse = await withPseudoReader(store, cardId, (reader) => readPurse(reader));
    expect(purse).toMatchObject({ balance: 9580, counter: 1 });
    expect((db.prepare('SELECT version FROM opal_cards WHERE card_id = ?').get(cardId) as { version: number }).version).toBe(version);
    db.close();
  });

  it('a record altered in the database is refused and never used', async () => {
    const db = freshDb();
    const store = newStore(db, hsm().ops);
    const cardId = await storeNewCard(store, 10_000);
    const { sealed } = db.prepare('SELECT sealed FROM opal_cards WHERE card_id = ?').get(cardId) as { sealed: Buffer };
    for (const offset of [1, 20, sealed.length - 20, sealed.length - 1]) {
      const bad = Buffer.from(sealed);
      bad[offset]! ^= 0x01;
      db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(bad, cardId);
      await expect(store.connect(cardId)).rejects.toMatchObject({ code: 'OPAL_RECORD_TAMPERED' });
    }
    db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(sealed, cardId);
    expect(await withPseudoReader(store, cardId, (r) => readPurse(r))).toMatchObject({ balance: 10_000 });
    db.close();
  });

  it("another card's record copied over this one's, or an older record put back, is refused", async () => {
    const db = freshDb();
    const store = newStore(db, hsm().ops);
    const a = await storeNewCard(store, 10_000);
    const b = await storeNewCard(store, 40_000);
    const get = (id: string) => db.prepare('SELECT sealed, version FROM opal_cards WHERE card_id = ?').get(id) as { sealed: Buffer; version: number };
    const origA = get(a);
    // Moved: B's (richer) record under A's id.
    db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(get(b).sealed, a);
    await expect(store.connect(a)).rejects.toMatchObject({ code: 'OPAL_RECORD_TAMPERED' });
    db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(origA.sealed, a);
    // Rolled back: spend, then put the old (richer) sealed record back under the new version number.
    const psam = await newPsam('aes');
    await withPseudoReader(store, a, (reader) => purchase(reader, psam.ch, { amount: 1000, ...at }));
    expect(get(a).version).toBeGreaterThan(origA.version);
    db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(origA.sealed, a);
    await expect(store.connect(a)).rejects.toMatchObject({ code: 'OPAL_RECORD_TAMPERED' });
    db.close();
  });

  it('concurrent purchases on one card are serialised: counters 1..N, exact balance', async () => {
    const db = freshDb();
    const store = newStore(db, hsm().ops);
    const cardId = await storeNewCard(store, 10_000);
    const n = 8;
    const psams = await Promise.all(Array.from({ length: n }, () => newPsam('aes')));
    const results = await Promise.all(psams.map((p, i) => withPseudoReader(store, cardId, (reader) => purchase(reader, p.ch, { amount: 100 + i, ...at }))));
    const counters = results.map((r) => r.newCounter).sort((x, y) => x - y);
    expect(counters).toEqual(Array.from({ length: n }, (_, i) => i + 1));
    for (const r of results) expect(r.newCounter).toBe(r.counterBefore + 1);
    const spent = results.reduce((s, r) => s + r.amount, 0);
    expect(await withPseudoReader(store, cardId, (r) => readPurse(r))).toMatchObject({ balance: 10_000 - spent, counter: n });
  });

  it('a second OPAL process that saved meanwhile: the stale session fails without a response and is closed', async () => {
    const path = join(tmp(), `shared-${dbN++}.db`);
    const db1 = openOpalDb(path);
    const db2 = openOpalDb(path);
    const s1 = newStore(db1, hsm().ops);
    const s2 = newStore(db2, hsm().ops);
    const cardId = await storeNewCard(s1, 10_000);
    const stale = await openPseudoReader(s1, cardId); // process 1 holds its own lock only
    const psamB = await newPsam('aes');
    await withPseudoReader(s2, cardId, (reader) => purchase(reader, psamB.ch, { amount: 500, ...at }));
    const psamA = await newPsam('aes');
    await expect(purchase(stale, psamA.ch, { amount: 700, ...at })).rejects.toMatchObject({ cause: expect.objectContaining({ code: 'OPAL_CARD_CONFLICT' }) });
    await expect(readPurse(stale)).rejects.toMatchObject({ code: 'OPAL_SESSION_CLOSED' });
    await stale.close();
    expect(await withPseudoReader(s1, cardId, (r) => readPurse(r))).toMatchObject({ balance: 9500, counter: 1 });
    db1.close();
    db2.close();
  });

  it('a crash between sealing and writing loses the command: no response, the stored card is the one before', async () => {
    const db = freshDb();
    let crash = false;
    const store = newStore(db, hsm().ops, {
      beforeWrite: () => {
        if (crash) throw new Error('simulated crash before the row is written');
      },
    });
    const cardId = await storeNewCard(store, 10_000);
    const psam = await newPsam('aes');
    crash = true;
    await expect(withPseudoReader(store, cardId, (reader) => purchase(reader, psam.ch, { amount: 420, ...at }))).rejects.toThrow();
    crash = false;
    expect(await withPseudoReader(store, cardId, (r) => readPurse(r))).toMatchObject({ balance: 10_000, counter: 0 });
    db.close();
  });

  it('a card of another BIN partition is not found; a session waits for the lock, then times out as OPAL_CARD_BUSY', async () => {
    const db = freshDb();
    const store = newStore(db, hsm().ops, { lockTimeoutMs: 50 });
    const cardId = await storeNewCard(store, 10_000);
    await expect(store.connect(cardId, { bin: '123456' })).rejects.toMatchObject({ code: 'OPAL_CARD_NOT_FOUND' });
    const held = await store.connect(cardId, { bin: cardId.slice(0, 6) });
    await expect(store.connect(cardId)).rejects.toMatchObject({ code: 'OPAL_CARD_BUSY' });
    held.release();
    const again = await store.connect(cardId);
    again.release();
    db.close();
  });

  describe('live cards kept between sessions', () => {
    /** The HSM's openRecord, counted. */
    const counting = () => {
      const ops = hsm().ops;
      const counted = { opens: 0, ops: Object.create(ops) as typeof ops };
      counted.ops.openRecord = (id: string, sealed: Buffer) => (counted.opens++, ops.openRecord(id, sealed));
      return counted;
    };

    it('after a clean session the next one reuses the live card (no HSM open) with the stored state, reset', async () => {
      const db = freshDb();
      const c = counting();
      const store = newStore(db, c.ops, { liveCards: 1024 });
      const cardId = await storeNewCard(store, 10_000);
      const psam = await newPsam('aes');
      await withPseudoReader(store, cardId, (reader) => purchase(reader, psam.ch, { amount: 420, ...at }));
      expect(c.opens).toBe(1);
      const r = await withPseudoReader(store, cardId, (reader) => purchase(reader, psam.ch, { amount: 80, ...at }));
      expect(r).toMatchObject({ counterBefore: 1, newCounter: 2, balanceBefore: 9580, newBalance: 9500 });
      expect(await withPseudoReader(store, cardId, (reader) => readPurse(reader))).toMatchObject({ balance: 9500, counter: 2 });
      expect(c.opens).toBe(1);
      // What is stored is what the live card says: a store without live cards reads the same from the HSM.
      expect(await withPseudoReader(newStore(db, hsm().ops, { liveCards: 0 }), cardId, (reader) => readPurse(reader))).toMatchObject({ balance: 9500, counter: 2 });
      db.close();
    });

    it('a row changed after a session (tampered, put back, another writer) goes through the HSM and is refused', async () => {
      const db = freshDb();
      const c = counting();
      const store = newStore(db, c.ops, { liveCards: 1024 });
      const cardId = await storeNewCard(store, 10_000);
      const psam = await newPsam('aes');
      const before = db.prepare('SELECT sealed, version FROM opal_cards WHERE card_id = ?').get(cardId) as { sealed: Buffer; version: number };
      await withPseudoReader(store, cardId, (reader) => purchase(reader, psam.ch, { amount: 420, ...at }));
      const { sealed } = db.prepare('SELECT sealed FROM opal_cards WHERE card_id = ?').get(cardId) as { sealed: Buffer };
      const bad = Buffer.from(sealed);
      bad[sealed.length - 3]! ^= 0x01;
      db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(bad, cardId);
      await expect(store.connect(cardId)).rejects.toMatchObject({ code: 'OPAL_RECORD_TAMPERED' });
      // The richer record from before the purchase, under the current version number.
      db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(before.sealed, cardId);
      await expect(store.connect(cardId)).rejects.toMatchObject({ code: 'OPAL_RECORD_TAMPERED' });
      // The right record back: opened in the HSM again (the live card was forgotten), state as stored.
      db.prepare('UPDATE opal_cards SET sealed = ? WHERE card_id = ?').run(sealed, cardId);
      const opens = c.opens;
      expect(await withPseudoReader(store, cardId, (reader) => readPurse(reader))).toMatchObject({ balance: 9580, counter: 1 });
      expect(c.opens).toBe(opens + 1);
      db.close();
    });

    it('a session whose save failed leaves no live card: the next session has the stored card', async () => {
      const db = freshDb();
      let crash = false;
      const store = newStore(db, hsm().ops, {
        liveCards: 1024,
        beforeWrite: () => {
          if (crash) throw new Error('simulated crash before the row is written');
        },
      });
      const cardId = await storeNewCard(store, 10_000);
      const psam = await newPsam('aes');
      expect(await withPseudoReader(store, cardId, (reader) => readPurse(reader))).toMatchObject({ balance: 10_000 }); // a live card now
      crash = true;
      await expect(withPseudoReader(store, cardId, (reader) => purchase(reader, psam.ch, { amount: 420, ...at }))).rejects.toThrow();
      crash = false;
      expect(await withPseudoReader(store, cardId, (reader) => readPurse(reader))).toMatchObject({ balance: 10_000, counter: 0 });
      db.close();
    });

    it('liveCards: 0 opens the record in the HSM for every session', async () => {
      const db = freshDb();
      const c = counting();
      const store = newStore(db, c.ops, { liveCards: 0 });
      const cardId = await storeNewCard(store, 10_000);
      for (let i = 0; i < 3; i++) await withPseudoReader(store, cardId, (reader) => readPurse(reader));
      expect(c.opens).toBe(3);
      db.close();
    });
  });
});
