// A virtual card behind the pseudo reader and an emulated physical card (EmulatorChannel) made from the same
// issued image, with the same card randomness, answer a purchase and a load sequence byte for byte alike: the
// same applet code runs on both, and the pseudo reader applies the same ISO exchange rules.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cardFromImage, cardToImage } from '../../../card-applet-sim/os/image.ts';
import { issuePurseCard } from '../../../card-applet-sim/applets/purse/issuing.ts';
import { command } from '../../../src/apdu/command.ts';
import { toHex } from '../../../src/apdu/hex.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import type { CardChannel } from '../../../src/transport/channel.ts';
import { purchase, readPurse, runLoad } from '../../../src/terminal/index.ts';
import { openPseudoReader } from '../../../src/opal/pseudo-reader.ts';
import { issuerFromPaymentOps } from '../../../src/terminal/load.ts';
import { CARD_PROFILES, KEYS, LOC, NOW, TODAY, TamperChannel, newPsam } from '../psam/helpers.ts';
import { newStore, openOpalDb, useOpalHsm, useTempDir } from './helpers.ts';

const hsm = useOpalHsm();
const tmp = useTempDir();

/** Every exchange a channel sees, as hex lines. */
function recorder(inner: CardChannel): { ch: TamperChannel; lines: string[] } {
  const lines: string[] = [];
  const ch = new TamperChannel(inner);
  ch.onResponse = (c, r) => {
    lines.push(`${toHex(Buffer.from([c.cla, c.ins, c.p1, c.p2]))} ${toHex(c.data)} -> ${toHex(r.data)} ${r.sw.toString(16)}`);
    return r;
  };
  return { ch, lines };
}

/** The same sequence on a card channel: purchase, load, a long (chained) command, read. */
async function sequence(card: CardChannel, loadTxnId: Buffer): Promise<void> {
  const psam = await newPsam('aes');
  await purchase(card, psam.ch, { amount: 420, date: TODAY, time: NOW, location: LOC });
  const issuer = issuerFromPaymentOps(hsm().ops);
  await runLoad(card, issuer, { amount: 2500, currency: 978, exponent: 2, date: TODAY, time: NOW, loadTxnId });
  await card.transmit(command(0x00, 0xa4, 0x04, 0x00, Buffer.alloc(300, 0xf0), 256)); // chained SELECT of no applet
  await readPurse(card);
}

describe('pseudo reader vs emulated physical card', () => {
  for (const profile of ['aes', 'des'] as const) {
    it(`identical APDU responses for identical inputs (purchase + load, ${profile})`, async () => {
      const issued = issuePurseCard(CARD_PROFILES[profile], KEYS, { balance: 10_000, purseNumber: '0000000777' });
      const image = cardToImage(issued.card);
      const loadTxnId = randomBytes(8);

      const physical = recorder(new EmulatorChannel(cardFromImage(image, { randomSeed: 'same seed' })));
      await sequence(physical.ch, loadTxnId);

      const db = openOpalDb(join(tmp(), `${profile}.db`));
      const store = newStore(db, hsm().ops);
      await store.create(issued.cardId, cardFromImage(image));
      const reader = await openPseudoReader(store, issued.cardId, { randomSeed: 'same seed' });
      const virtual = recorder(reader);
      await sequence(virtual.ch, loadTxnId);
      await reader.close();

      expect(virtual.lines.length).toBeGreaterThan(8);
      expect(virtual.lines).toEqual(physical.lines);
      // And the stored card is where the physical one is.
      const stored = await store.load(issued.cardId);
      expect(stored.image.applets[0]!.state).toEqual(cardToImage((physical.ch.inner as EmulatorChannel).card).applets[0]!.state);
      db.close();
    });
  }
});
