// Test support for the payment server: emulated PSAMs and purse cards from the fixture profiles and the TEST key
// set, a server with in-process PSAM channels (a PSAM can be "pulled"), fastify inject as the transport of the
// driver (src/server/payment/driver.ts), and the value check (card balances + PSAM totals + ledger).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issuePsamCard } from '../../../card-applet-sim/applets/psam/issuing.ts';
import { issuePurseCard } from '../../../card-applet-sim/applets/purse/issuing.ts';
import type { SimulatedCard } from '../../../card-applet-sim/os/card.ts';
import { parsePaymentConfig } from '../../../src/server/payment/config.ts';
import type { DriverMerchant, Post } from '../../../src/server/payment/driver.ts';
import { createPaymentServer, type PaymentServer } from '../../../src/server/payment/server.ts';
import { readTotals } from '../../../src/terminal/psam.ts';
import { readPurse } from '../../../src/terminal/purse.ts';
import { EmulatorChannel } from '../../../src/transport/emulator-channel.ts';
import { TransportError } from '../../../src/transport/errors.ts';
import { CARD_PROFILES, KEYS, PSAM_PROFILES, repoPath } from '../psam/helpers.ts';

export const KEY_HEX = {
  std: '0123456789ABCDEFFEDCBA9876543210',
  er: '11111111111111112222222222222222',
  ta: '33333333333333334444444444444444',
  mc: '55555555555555556666666666666666',
  enc: '77777777777777778888888888888888',
  link: '9999999999999999AAAAAAAAAAAAAAAA',
};

export const MERCHANTS = {
  std: { id: 'shop-std', sharedKey: Buffer.from(KEY_HEX.std, 'hex'), encrypted: false },
  er: { id: 'shop-er', sharedKey: Buffer.from(KEY_HEX.er, 'hex'), encrypted: false },
  ta: { id: 'shop-ta', sharedKey: Buffer.from(KEY_HEX.ta, 'hex'), encrypted: false },
  mc: { id: 'shop-mc', sharedKey: Buffer.from(KEY_HEX.mc, 'hex'), encrypted: false },
  enc: { id: 'shop-enc', sharedKey: Buffer.from(KEY_HEX.enc, 'hex'), encrypted: true },
} satisfies Record<string, DriverMerchant>;

export function configJson(psamCount: number, timeouts: Record<string, number> = {}) {
  return {
    merchants: [
      { id: 'shop-std', name: 'standard shop', sharedKey: KEY_HEX.std, variant: 'standard' },
      { id: 'shop-er', sharedKey: KEY_HEX.er, variant: 'early-release' },
      { id: 'shop-ta', sharedKey: KEY_HEX.ta, variant: 'trusted-agent' },
      { id: 'shop-mc', sharedKey: KEY_HEX.mc, variant: 'merchant-compare' },
      { id: 'shop-enc', sharedKey: KEY_HEX.enc, variant: 'standard', encrypted: true },
    ],
    psams: Array.from({ length: psamCount }, (_, i) => ({ reader: `test:psam-${i}` })),
    issuerLinkKey: KEY_HEX.link,
    acquirerKeys: repoPath('fixtures/keys/demo-issuer.json'),
    location: 'TESTSHOP',
    timeouts: { acquireMs: 500, holdMs: 10_000, probeMs: 50, ...timeouts },
  };
}

export interface World {
  server: PaymentServer;
  post: Post;
  get: (path: string) => Promise<{ status: number; body: any }>;
  psams: SimulatedCard[];
  /** Readers whose PSAM is "pulled" (opening them fails, and the channel reports CARD_REMOVED). */
  pulled: Set<number>;
  dir: string;
  close(): Promise<void>;
  restart(): Promise<void>;
}

let purseNumber = 100;
/** A fresh purse card (3DES suite, EUR, `balance` minor units). */
export function newCard(balance = 10_000, suite: 'des' | 'aes' = 'des'): { card: SimulatedCard; ch: EmulatorChannel; cardId: string } {
  const issued = issuePurseCard(CARD_PROFILES[suite], KEYS, { balance, purseNumber: String(++purseNumber).padStart(10, '0') });
  return { card: issued.card, ch: new EmulatorChannel(issued.card, { readerName: 'test card' }), cardId: issued.cardId };
}

/** A pulled PSAM's channel: every APDU fails as the card were gone. */
class PullableChannel extends EmulatorChannel {
  constructor(card: SimulatedCard, readonly isPulled: () => boolean) {
    super(card, { readerName: 'test PSAM' });
  }
  override async transmit(...a: Parameters<EmulatorChannel['transmit']>) {
    if (this.isPulled()) throw new TransportError('CARD_REMOVED', 'test PSAM pulled');
    return super.transmit(...a);
  }
}

export async function startWorld(options: { psams?: number; timeouts?: Record<string, number>; dir?: string; psamCards?: SimulatedCard[] } = {}): Promise<World> {
  const n = options.psams ?? 2;
  const profiles = [PSAM_PROFILES.des, PSAM_PROFILES.aes];
  const psams = options.psamCards ?? Array.from({ length: n }, (_, i) => issuePsamCard({ ...profiles[i % 2]!, psamId: i < 2 ? profiles[i]!.psamId : `999002900000${String(100 + i).padStart(4, '0')}` }, KEYS).card);
  const pulled = new Set<number>();
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'purselab-payment-'));
  const config = parsePaymentConfig(configJson(n, options.timeouts), 'test config', dir);
  const make = () =>
    createPaymentServer({
      config,
      dbPath: join(dir, 'payment.db'),
      logLevel: false,
      watchPcsc: false,
      resolveEveryMs: 0,
      openPsam: async (reader) => {
        const i = Number(reader.split('-').pop());
        if (pulled.has(i)) throw new TransportError('NO_CARD', `${reader}: no card`);
        return new PullableChannel(psams[i]!, () => pulled.has(i));
      },
    });
  const w: World = {
    server: await make(),
    post: async (path, body) => {
      const r = await w.server.app.inject({ method: 'POST', url: path, payload: body as object });
      return { status: r.statusCode, body: r.json() };
    },
    get: async (path) => {
      const r = await w.server.app.inject({ method: 'GET', url: path });
      return { status: r.statusCode, body: r.json() };
    },
    psams,
    pulled,
    dir,
    async close() {
      await w.server.close();
      if (!options.dir) rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await w.server.close();
      w.server = await make();
    },
  };
  return w;
}

/** Confirmed + unconfirmed purchase sums of the open batch of every PSAM (EUR), read through fresh channels. */
export async function psamSums(psams: SimulatedCard[]): Promise<{ confirmed: number; unconfirmed: number }> {
  let confirmed = 0;
  let unconfirmed = 0;
  for (const p of psams) {
    const ch = new EmulatorChannel(p);
    for (const t of await readTotals(ch)) {
      if (t.txType !== 1) continue;
      confirmed += t.sum;
      unconfirmed += t.unconfirmedSum;
    }
  }
  return { confirmed, unconfirmed };
}

export async function balanceOf(card: EmulatorChannel): Promise<number> {
  return (await readPurse(card)).balance;
}
