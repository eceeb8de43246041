// Internet payment end to end over loopback HTTP and the real pcscd + vpcd (seed 003 FIGS. 5-9 and 16): the
// payment server (`purselab serve payment`, a pool of two PSAMs in two vpcd slots) and five merchant shops
// (`purselab serve merchant`, one per variant) run as child processes; the cardholder's card sits in a third
// vpcd slot and pays with `purselab pay URL --reader NAME --yes`. Clients that misbehave on purpose (alter the
// page, forge S3, replay) are payAtMerchant() in this process over the same PC/SC reader.
//
// After every scenario: card balances + PSAM confirmed totals + value the payment server holds as "debited,
// not proven" (its recovery report) equal what the cards were issued with; the payment server's ledger equals
// the PSAMs' confirmed totals; and every merchant released goods exactly for the payments that completed.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, expect, it } from 'vitest';
import '../../card-applet-sim/applets/index.ts'; // registers the applet types the card images name
import { loadCardImage } from '../../card-applet-sim/os/image.ts';
import type { PurseApplet } from '../../card-applet-sim/applets/purse/purse-applet.ts';
import * as A from '../../src/crypto/purse-apdu.ts';
import { ClientPaymentError, payAtMerchant, type PayOptions } from '../../src/client/index.ts';
import type { DebitResultResponse, DrawResponse, PaymentPage, PaymentVariant } from '../../src/protocol/payment-messages.ts';
import { listen } from '../../src/server/app.ts';
import { requestJson } from '../../src/server/http-client.ts';
import { createMerchantServer } from '../../src/server/merchant/server.ts';
import { openMerchantStore } from '../../src/server/merchant/store.ts';
import { openPaymentStore } from '../../src/server/payment/store-sqlite.ts';
import { readTotals, selectPsam } from '../../src/terminal/psam.ts';
import { readPurse } from '../../src/terminal/purse.ts';
import { openPcscChannel, type PcscChannel } from '../../src/transport/pcsc.ts';
import { forgeS3, InterposedChannel, merchantConfig, SHARED_KEY_HEX } from '../unit/client/helpers.ts';
import { describeRig, detectRig, freeSlots, killAll, purselab, runCli, startEmulator, tempDir, type Proc } from './rig.ts';

const rig = await detectRig(3);

/** The one source of truth for both servers' configurations. */
const SHOPS: { id: string; variant: PaymentVariant; encrypted: boolean }[] = [
  { id: 'SHOP-STD', variant: 'standard', encrypted: false },
  { id: 'SHOP-STD-FIG9', variant: 'standard', encrypted: true },
  { id: 'SHOP-EARLY-FIG9', variant: 'early-release', encrypted: true },
  { id: 'SHOP-TRUSTED', variant: 'trusted-agent', encrypted: false },
  { id: 'SHOP-COMPARE-FIG9', variant: 'merchant-compare', encrypted: true },
];
const CATALOGUE = [
  { sku: 'ebook-ts', name: 'E-book', price: 420, goods: 'download token EBOOK' },
  { sku: 'song-01', name: 'Song', price: 99, goods: 'download token SONG' },
  { sku: 'big-box', name: 'Archive', price: 9900, goods: 'subscription ARCH' },
];
const ISSUED = { card: 5000, card2: 2000, expired: 3000 };

describeRig('payment e2e: serve payment + serve merchant + pay, over pcscd + vpcd', rig, () => {
  const tmp = tempDir('purselab-rig-payment-');
  const file = (n: string) => join(tmp.path, n);
  let slots: { reader: string; port: number }[] = [];
  const procs: Proc[] = [];
  let cardEmu: Proc | undefined;
  let psamEmu: Proc | undefined;
  let paymentUrl = '';
  const shops = new Map<string, { url: string; db: string }>();
  const channels: PcscChannel[] = [];
  let card!: PcscChannel;
  let psams: PcscChannel[] = [];
  const yes: PayOptions = { confirm: () => true };

  const cli = async (args: string[]) => {
    const r = await runCli(args, { timeoutMs: 90_000 });
    if (r.code !== 0) throw new Error(`purselab ${args.slice(0, 3).join(' ')}: exit ${r.code}: ${r.stderr}`);
    return r;
  };
  const serverUrl = async (p: Proc, re: RegExp): Promise<string> => {
    await p.waitForOutput(re, 60_000);
    return re.exec(p.stdout)![1]!;
  };

  beforeAll(async () => {
    const keys = 'fixtures/keys/demo-issuer.json';
    // An expired card: the demo profile with a last valid day in the past.
    writeFileSync(file('expired.json'), JSON.stringify({ name: 'expired', bin: '999001', purseNumber: '0000000058', algorithm: '3DES', currency: 978, exponent: 2, maxBalance: 50000, balance: 0, expiry: '2020-01-31', keyVersions: { purchase: 1, load: 1, update: 1 } }));
    await Promise.all([
      cli(['card', 'issue', '--profile', 'fixtures/profiles/demo-3des.json', '--keys', keys, '--out', file('card.img'), '--balance', '50.00']),
      cli(['card', 'issue', '--profile', 'fixtures/profiles/demo-aes.json', '--keys', keys, '--out', file('card2.img'), '--balance', '20.00']),
      cli(['card', 'issue', '--profile', file('expired.json'), '--keys', keys, '--out', file('expired.img'), '--balance', '30.00']),
      cli(['psam', 'issue', '--profile', 'fixtures/profiles/psam-3des.json', '--keys', keys, '--out', file('psam1.img')]),
      cli(['psam', 'issue', '--profile', 'fixtures/profiles/psam-aes.json', '--keys', keys, '--out', file('psam2.img')]),
    ]);
    slots = await freeSlots(3);
    cardEmu = await startEmulator(['--vpcd', `127.0.0.1:${slots[0]!.port}`, '--card', file('card.img')], [slots[0]!.reader]);
    psamEmu = await startEmulator(['--vpcd', `127.0.0.1:${slots[1]!.port}`, '--card', file('psam1.img'), '--vpcd', `127.0.0.1:${slots[2]!.port}`, '--card', file('psam2.img')], [slots[1]!.reader, slots[2]!.reader]);

    writeFileSync(file('payment.json'), JSON.stringify({ merchants: SHOPS.map((s) => ({ id: s.id, sharedKey: SHARED_KEY_HEX, variant: s.variant, encrypted: s.encrypted })), psams: [{ reader: slots[1]!.reader }, { reader: slots[2]!.reader }], location: 'RIGSHOP1' }));
    const pay = purselab(['serve', 'payment', '--config', file('payment.json'), '--port', '0', '--db', file('payment.db'), '--log-level', 'warn']);
    procs.push(pay);
    paymentUrl = await serverUrl(pay, /payment server listening on (http:\/\/\S+)/);

    await Promise.all(
      SHOPS.map(async (s) => {
        const cfg = { merchantId: s.id, name: s.id, sharedKey: SHARED_KEY_HEX, variant: s.variant, encrypted: s.encrypted, paymentServer: paymentUrl, currency: 978, exponent: 2, catalogue: CATALOGUE, benefits: [{ id: 'lounge', name: 'Lounge', goods: 'lounge pass' }] };
        writeFileSync(file(`${s.id}.json`), JSON.stringify(cfg));
        const p = purselab(['serve', 'merchant', '--config', file(`${s.id}.json`), '--port', '0', '--db', file(`${s.id}.db`), '--log-level', 'warn']);
        procs.push(p);
        shops.set(s.id, { url: await serverUrl(p, /serve merchant: listening on (http:\/\/\S+)/), db: file(`${s.id}.db`) });
      }),
    );
    card = await openPcscChannel(slots[0]!.reader);
    psams = [await openPcscChannel(slots[1]!.reader), await openPcscChannel(slots[2]!.reader)];
    channels.push(card, ...psams);
  }, 240_000);

  afterAll(async () => {
    for (const c of channels) await c.close().catch(() => undefined);
    for (const p of procs) await p.stop();
    await cardEmu?.stop();
    await psamEmu?.stop();
    await killAll();
    tmp.remove();
  });

  const order = async (shop: string, body: object = { items: [{ sku: 'ebook-ts' }] }) => requestJson<{ txnId: string; payUrl: string; payJsonUrl: string; statusUrl: string; amount: number }>(`${shops.get(shop)!.url}/api/orders`, { body });
  const orderStatus = async (shop: string, txnId: string) => requestJson<{ status: string; released: boolean }>(`${shops.get(shop)!.url}/api/orders/${txnId}`);
  const payCli = async (url: string, reader: string) => {
    const r = await runCli(['pay', url, '--reader', reader, '--yes', '--json', '--terminal-id', 'rig-e2e'], { timeoutMs: 90_000 });
    return { ...r, json: JSON.parse(r.stdout) as Record<string, unknown> };
  };
  const emuBalance = (img: string) => (loadCardImage(file(img)).getApplet(A.IEP_AID) as PurseApplet).balance.get();
  const cardBalance = async () => (await readPurse(card)).balance;

  /** The invariants, after every scenario. */
  async function checkInvariants(): Promise<void> {
    // Early-release records are confirmed in the background: wait until none is left (bounded).
    const payDb = openPaymentStore(file('payment.db'));
    try {
      for (let i = 0; i < 100 && (await payDb.listUnconfirmed()).length > 0; i++) await new Promise((r) => setTimeout(r, 200));
      expect(await payDb.listUnconfirmed()).toEqual([]);
      const ledger = await payDb.ledger();
      let psamSum = 0;
      for (const ch of psams) {
        await selectPsam(ch);
        const totals = await readTotals(ch, 'open');
        const confirmed = totals.filter((t) => t.txType === 1).reduce((s, t) => s + t.sum, 0);
        const info = (await import('../../src/terminal/psam.ts')).readPsamData;
        const id = (await info(ch, { select: false })).psamId;
        expect(ledger.filter((l) => l.psamId === id && l.kind === 'purchase').reduce((s, l) => s + l.amount, 0), `ledger vs PSAM ${id}`).toBe(confirmed);
        psamSum += confirmed;
      }
      const recovery = await requestJson<{ entries: { paymentId: string; amount: number; recreditEligible: boolean }[] }>(`${paymentUrl}/v1/admin/recovery`);
      const inFlight = recovery.entries.filter((e) => e.recreditEligible).reduce((s, e) => s + e.amount, 0);
      const cards = (await cardBalance()) + emuBalance('card2.img') + emuBalance('expired.img');
      expect(cards + psamSum + inFlight, `cards ${cards} + PSAMs ${psamSum} + in flight ${inFlight}`).toBe(ISSUED.card + ISSUED.card2 + ISSUED.expired);
      // Goods only for payments that happened: paid releases == the ledger's purchases of that merchant, and
      // every authentication release names a completed payment.
      for (const s of SHOPS) {
        const m = openMerchantStore(shops.get(s.id)!.db);
        try {
          const releases = await m.listReleases();
          const paid = releases.filter((r) => r.status === 'paid').map((r) => `${r.txnId}/${r.paymentId}`).sort();
          expect(paid, `releases of ${s.id}`).toEqual(ledger.filter((l) => l.merchantId === s.id && l.kind === 'purchase').map((l) => `${l.txnId}/${l.paymentId}`).sort());
          for (const r of releases.filter((x) => x.status === 'authenticated')) {
            const p = await payDb.get(r.paymentId);
            expect(p, `authentication ${r.paymentId}`).toMatchObject({ state: 'completed', kind: 'authentication', txnId: r.txnId, merchantId: s.id });
          }
        } finally {
          await m.close();
        }
      }
    } finally {
      await payDb.close();
    }
  }

  it('a cardholder buys an item: purselab pay with the card in a vpcd reader; paid, goods released, card number masked', async () => {
    const o = await order('SHOP-STD', { items: [{ sku: 'ebook-ts' }, { sku: 'song-01' }] });
    const r = await payCli(o.payUrl, slots[0]!.reader);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ ok: true, status: 'paid', released: true, amount: 519, card: '999001******0017', balanceBefore: 5000, balanceAfter: 4481, goods: '1 x download token EBOOK; 1 x download token SONG' });
    expect(r.stderr).toMatch(/\[draw\] payment pay_[0-9a-f]+ \(standard\): PSAM \d+ transaction \d+ signed the debit of 5\.19 EUR/);
    expect(r.stdout + r.stderr).not.toContain('9990010000000017');
    expect(await orderStatus('SHOP-STD', o.txnId)).toMatchObject({ status: 'paid', released: true });
    expect(await cardBalance()).toBe(4481);
    await checkInvariants();
  });

  for (const s of SHOPS.slice(1)) {
    it(`${s.variant}${s.encrypted ? ' + FIG. 9 encryption layer' : ''} (${s.id}): paid and released`, async () => {
      const before = await cardBalance();
      const o = await order(s.id);
      const r = await payCli(o.payUrl, slots[0]!.reader);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json).toMatchObject({ status: 'paid', released: true, variant: s.variant, amount: 420, balanceAfter: before - 420 });
      expect(await cardBalance()).toBe(before - 420);
      await checkInvariants();
    });
  }

  it('authentication (FIG. 16): a benefit claim authenticates the card, nothing is debited, the benefit is released', async () => {
    const before = await cardBalance();
    const o = await order('SHOP-STD-FIG9', { benefit: 'lounge' });
    const r = await payCli(o.payUrl, slots[0]!.reader);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json).toMatchObject({ status: 'authenticated', released: true, amount: 0, goods: 'lounge pass', balanceAfter: before });
    expect(await cardBalance()).toBe(before);
    await checkInvariants();
  });

  it('insufficient funds: refused with a clear message, nothing debited, nothing released', async () => {
    const before = await cardBalance();
    const o = await order('SHOP-STD', { items: [{ sku: 'big-box' }] });
    const r = await payCli(o.payUrl, slots[0]!.reader);
    expect(r.code).toBe(1);
    expect(r.json).toMatchObject({ ok: false, code: 'CARD_CANNOT_PAY', cardDebited: 'no' });
    expect(r.stderr).toContain(`insufficient funds: the card holds ${(before / 100).toFixed(2)} EUR, the purchase is 99.00 EUR; nothing was debited`);
    // Without the terminal's own check, the PSAM refuses the draw.
    const e = (await payAtMerchant(o.payUrl, card, { ...yes, precheck: false }).catch((x) => x)) as ClientPaymentError;
    expect(e).toMatchObject({ code: 'INSUFFICIENT_FUNDS', cardDebited: 'no' });
    expect(await cardBalance()).toBe(before);
    expect(await orderStatus('SHOP-STD', o.txnId)).toMatchObject({ status: 'pending', released: false });
    await checkInvariants();
  });

  it('expired card: refused by the terminal, and by the PSAM when the terminal does not check; nothing debited', async () => {
    const o = await order('SHOP-STD');
    const r = await payCli(o.payUrl, `emu:${file('expired.img')}`);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('card expired (last valid day 20200131); nothing was debited');
    const { openChannel } = await import('../../src/transport/open.ts');
    const ch = await openChannel(`emu:${file('expired.img')}`);
    try {
      expect(await payAtMerchant(o.payUrl, ch, { ...yes, precheck: false }).catch((x) => x)).toMatchObject({ code: 'CARD_EXPIRED', cardDebited: 'no' });
    } finally {
      await ch.close();
    }
    expect(emuBalance('expired.img')).toBe(ISSUED.expired);
    await checkInvariants();
  });

  it('unknown merchant: the payment server refuses the draw, nothing debited', async () => {
    const ghost = await createMerchantServer({ config: merchantConfig({ merchantId: 'GHOST-SHOP', paymentServer: paymentUrl }), logLevel: false });
    try {
      const url = await ghost.listen();
      const o = await requestJson<{ payUrl: string }>(`${url}/api/orders`, { body: { items: [{ sku: 'song-01' }] } });
      const before = await cardBalance();
      const r = await payCli(o.payUrl, slots[0]!.reader);
      expect(r.code).toBe(1);
      expect(r.json).toMatchObject({ ok: false, code: 'UNKNOWN_MERCHANT', cardDebited: 'no' });
      expect(await cardBalance()).toBe(before);
    } finally {
      await ghost.close();
    }
    await checkInvariants();
  });

  /** A man in the middle between the client and the payment server: records, and can alter the Debit IEP. */
  async function startProxy(alterDebitAmount: boolean): Promise<{ url: string; app: FastifyInstance; seen: { route: string; req: unknown; res: unknown }[] }> {
    const app = Fastify();
    const seen: { route: string; req: unknown; res: unknown }[] = [];
    app.post('/v1/:route', async (req, reply) => {
      const route = (req.params as { route: string }).route;
      const res = await fetch(`${paymentUrl}/v1/${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(req.body) });
      let body = (await res.json()) as Record<string, unknown>;
      if (alterDebitAmount && route === 'draw' && res.ok && (body as unknown as DrawResponse).debit) {
        const d = (body as unknown as DrawResponse).debit!;
        const data = Buffer.from(d.debitData, 'hex');
        data.writeUInt32BE(1, 12); // AMT of the DEBIT data: 0.01 instead of the order's amount
        body = { ...body, debit: { ...d, debitData: data.toString('hex') } };
      }
      seen.push({ route, req: req.body, res: body });
      return reply.status(res.status).send(body);
    });
    return { url: await listen(app, '127.0.0.1', 0), app, seen };
  }

  it('tampered amount: an altered page fails the order MAC; a Debit IEP for another amount is never passed to the card', async () => {
    const before = await cardBalance();
    const o = await order('SHOP-STD');
    const page = await requestJson<PaymentPage>(o.payJsonUrl);
    const altered: PaymentPage = { ...page, ticket: { ...page.ticket, order: { ...page.ticket.order, amount: 1 } } };
    expect(await payAtMerchant(altered, card, yes).catch((x) => x)).toMatchObject({ code: 'ORDER_MAC_INVALID', cardDebited: 'no' });

    const proxy = await startProxy(true);
    try {
      const o2 = await order('SHOP-STD');
      const page2 = await requestJson<PaymentPage>(o2.payJsonUrl);
      const watched = new InterposedChannel(card);
      const e = (await payAtMerchant({ ...page2, paymentServer: proxy.url }, watched, yes).catch((x) => x)) as ClientPaymentError;
      expect(e).toMatchObject({ code: 'AMOUNT_MISMATCH', cardDebited: 'no' });
      expect(watched.debits()).toHaveLength(0);
      expect(proxy.seen.map((x) => x.route)).toEqual(['draw', 'abort']);
      const p = await requestJson<{ state: string }>(`${paymentUrl}/v1/admin/payments/${e.paymentId}`);
      expect(p.state).toBe('failed');
      expect(await orderStatus('SHOP-STD', o2.txnId)).toMatchObject({ status: 'pending', released: false });
    } finally {
      await proxy.app.close();
    }
    expect(await cardBalance()).toBe(before);
    await checkInvariants();
  });

  it('forged S3 (the card response altered): declined, nothing released; the debit shows in the recovery report', async () => {
    const before = await cardBalance();
    const o = await order('SHOP-STD');
    const forging = new InterposedChannel(card);
    forging.after = forgeS3;
    const r = await payAtMerchant(o.payUrl, forging, yes);
    expect(r).toMatchObject({ status: 'declined', released: false, reason: 'S3_INVALID' });
    expect(await cardBalance()).toBe(before - 420); // the card did debit: the value is in the recovery report
    const recovery = await requestJson<{ entries: { paymentId: string; recreditEligible: boolean; amount: number }[] }>(`${paymentUrl}/v1/admin/recovery`);
    expect(recovery.entries.find((x) => x.paymentId === r.paymentId)).toMatchObject({ recreditEligible: true, amount: 420 });
    expect(await orderStatus('SHOP-STD', o.txnId)).toMatchObject({ status: 'declined', released: false });
    await checkInvariants();
  });

  it('replayed draw request and replayed Debit Result (to the same order and to another): refused or idempotent', async () => {
    const proxy = await startProxy(false);
    try {
      const o = await order('SHOP-STD-FIG9');
      const page = await requestJson<PaymentPage>(o.payJsonUrl);
      const r = await payAtMerchant({ ...page, paymentServer: proxy.url }, card, yes);
      expect(r).toMatchObject({ status: 'paid', released: true });
      const draw = proxy.seen.find((x) => x.route === 'draw')!;
      const replay = await requestJson(`${paymentUrl}/v1/draw`, { body: draw.req }).catch((x) => x);
      expect(replay).toMatchObject({ status: 409, code: 'DRAW_REPLAYED' });
      const result = proxy.seen.find((x) => x.route === 'debit-response')!.res as DebitResultResponse;
      const statusBody = { txnId: o.txnId, paymentId: r.paymentId, resultM: result.resultM };
      expect(await requestJson(o.statusUrl, { body: statusBody })).toMatchObject({ released: true, message: 'already released' });
      const other = await order('SHOP-STD-FIG9');
      expect(await requestJson(other.statusUrl, { body: { ...statusBody, txnId: other.txnId } }).catch((x) => x)).toMatchObject({ status: 403, code: 'RESULT_NOT_AUTHENTIC' });
      expect(await requestJson(other.statusUrl, { body: statusBody }).catch((x) => x)).toMatchObject({ status: 400, code: 'TXN_MISMATCH' });
      expect(await orderStatus('SHOP-STD-FIG9', other.txnId)).toMatchObject({ status: 'pending', released: false });
    } finally {
      await proxy.app.close();
    }
    await checkInvariants();
  });

  it('a pool of 2 PSAMs: while one payment holds a PSAM, a second cardholder is served by the other', async () => {
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let atDebit!: () => void;
    const reachedDebit = new Promise<void>((r) => (atDebit = r));
    const held = new InterposedChannel(card);
    held.before = async (c) => {
      if (c.ins === A.IepIns.DEBIT) {
        atDebit();
        await gate;
      }
      return undefined;
    };
    const o1 = await order('SHOP-STD');
    const first = payAtMerchant(o1.payUrl, held, yes);
    await reachedDebit; // payment 1 holds its PSAM (standard: from the draw until VERIFY S3)
    const o2 = await order('SHOP-STD', { items: [{ sku: 'song-01' }] });
    const second = await payCli(o2.payUrl, `emu:${file('card2.img')}`);
    open();
    const r1 = await first;
    expect(second.code, second.stderr).toBe(0);
    expect(second.json).toMatchObject({ status: 'paid', released: true, amount: 99, card: '999001******0025', balanceAfter: ISSUED.card2 - 99 });
    expect(r1).toMatchObject({ status: 'paid', released: true });
    expect(second.json.psamId).not.toBe(r1.psamId);
    expect(emuBalance('card2.img')).toBe(ISSUED.card2 - 99);
    await checkInvariants();
  });
});
