// The payment server as a real program over the real rig: `purselab serve payment` as a child process, a pool
// of two PSAMs as emulated cards in two vpcd slots (`purselab emulate`), the purse card in a third. Purchases
// over loopback HTTP; a PSAM pulled mid-transaction and put back; the server SIGKILLed at each step and
// restarted: afterwards every payment is completed or clearly failed, no PSAM is held, and value is conserved.
// Run with PURSELAB_RIG_SLOTS=0-2 (three slots).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { encodeDebitResponse } from '../../src/crypto/purse-apdu.ts';
import { buy, debitIepOf, drawRequest, merchantOrder, outcomeRequest, type DriverMerchant, type Post } from '../../src/server/payment/driver.ts';
import { readTotals } from '../../src/terminal/psam.ts';
import { debitCard, initializeForPurchase, readPurse } from '../../src/terminal/purse.ts';
import { openPcscChannel, type PcscChannel } from '../../src/transport/pcsc.ts';
import { describeRig, detectRig, freeSlots, killAll, purselab, REPO, runCli, startEmulator, tempDir, type Proc } from './rig.ts';

const rig = await detectRig(3);
const KEY = '0123456789ABCDEFFEDCBA9876543210';
const STD: DriverMerchant = { id: 'RIG-STD', sharedKey: Buffer.from(KEY, 'hex'), encrypted: false };
const ER: DriverMerchant = { id: 'RIG-ER', sharedKey: Buffer.from(KEY, 'hex'), encrypted: false };

describeRig('payment server over pcscd + vpcd: PSAM pool of 2, PSAM pulled, SIGKILL at each step', rig, () => {
  const tmp = tempDir('purselab-rig-payserver-');
  const cfg = join(tmp.path, 'payment.json');
  const db = join(tmp.path, 'payment.db');
  let slots: { reader: string; port: number }[] = [];
  const psamEmu: (Proc | undefined)[] = [];
  let cardEmu: Proc | undefined;
  let server: Proc | undefined;
  let url = '';
  let card: PcscChannel;
  const START = 50_000;

  const post: Post = async (path, body) => {
    const r = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(15_000) });
    return { status: r.status, body: await r.json() };
  };
  const get = async (path: string) => (await fetch(`${url}${path}`, { signal: AbortSignal.timeout(15_000) })).json() as Promise<any>;

  async function startServer(env: NodeJS.ProcessEnv = {}): Promise<void> {
    server = purselab(['serve', 'payment', '--config', cfg, '--port', '0', '--db', db, '--log-level', 'warn'], { env });
    await server.waitForOutput(/payment server listening on http:\/\/\S+/, 30_000);
    url = /payment server listening on (http:\/\/\S+)/.exec(server.stdout)![1]!;
  }
  async function waitHealth(pred: (h: any) => boolean, ms = 20_000): Promise<any> {
    const end = Date.now() + ms;
    for (;;) {
      const h = await get('/v1/health');
      if (pred(h)) return h;
      if (Date.now() > end) throw new Error(`health never matched: ${JSON.stringify(h)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const startPsam = async (i: number) => {
    psamEmu[i] = await startEmulator(['--vpcd', `127.0.0.1:${slots[i]!.port}`, '--card', join(tmp.path, `psam-${i}.img`)], [slots[i]!.reader]);
  };
  /** Card balance + PSAM confirmed and unconfirmed sums, and the ledger (read while nothing is held). */
  async function values() {
    const balance = (await readPurse(card)).balance;
    let confirmed = 0;
    let unconfirmed = 0;
    for (const s of slots.slice(0, 2)) {
      const ch = await openPcscChannel(s.reader);
      try {
        for (const t of await readTotals(ch)) if (t.txType === 1) ((confirmed += t.sum), (unconfirmed += t.unconfirmedSum));
      } finally {
        await ch.close();
      }
    }
    return { balance, confirmed, unconfirmed };
  }

  beforeAll(async () => {
    slots = await freeSlots(3);
    for (const [i, profile] of ['psam-3des', 'psam-aes'].entries()) {
      const r = await runCli(['psam', 'issue', '--profile', `fixtures/profiles/${profile}.json`, '--keys', 'fixtures/keys/demo-issuer.json', '--out', join(tmp.path, `psam-${i}.img`)]);
      expect(r.code, r.stderr).toBe(0);
    }
    const c = await runCli(['card', 'issue', '--profile', 'fixtures/profiles/demo-3des.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', join(tmp.path, 'card.img'), '--balance', '500.00']);
    expect(c.code, c.stderr).toBe(0);
    await startPsam(0);
    await startPsam(1);
    cardEmu = await startEmulator(['--vpcd', `127.0.0.1:${slots[2]!.port}`, '--card', join(tmp.path, 'card.img')], [slots[2]!.reader]);
    writeFileSync(
      cfg,
      JSON.stringify({
        merchants: [
          { id: 'RIG-STD', sharedKey: KEY, variant: 'standard' },
          { id: 'RIG-ER', sharedKey: KEY, variant: 'early-release' },
        ],
        psams: [{ reader: slots[0]!.reader }, { reader: slots[1]!.reader }],
        issuerLinkKey: 'A0A1A2A3A4A5A6A7A8A9AAABACADAEAF',
        acquirerKeys: join(REPO, 'fixtures/keys/demo-issuer.json'),
        timeouts: { acquireMs: 1000, probeMs: 200 },
      }),
    );
    await startServer();
    card = await openPcscChannel(slots[2]!.reader);
  }, 120_000);

  afterAll(async () => {
    await card?.close().catch(() => undefined);
    await server?.stop();
    for (const p of psamEmu) await p?.stop();
    await cardEmu?.stop();
    await killAll();
    tmp.remove();
  });

  it('serves purchases with PSAMs behind pcscd; health lists both PSAMs in service', async () => {
    const h = await waitHealth((x) => x.psams.every((p: any) => p.inService));
    expect(h.psams.map((p: any) => p.psamId).sort()).toEqual(['9990029000000001', '9990029000000019']);
    const r = await buy(post, STD, card, { amount: 420 });
    expect(r.result!.body).toMatchObject({ status: 'approved', resultC: { verifiedBy: 'psam', amount: 420 } });
    const e = await buy(post, ER, card, { amount: 80 });
    expect(e.result!.body.status).toBe('approved');
    await waitHealth((x) => x.held === 0);
  });

  it('a pool of two: two payments hold one PSAM each, a third gets 503 PSAM_POOL_BUSY', async () => {
    const a = await buy(post, STD, card, { amount: 1, stopAfter: 'draw' });
    const b = await buy(post, STD, card, { amount: 1, stopAfter: 'draw' });
    const h = await get('/v1/health');
    expect(h.held).toBe(2);
    expect(new Set(h.psams.map((p: any) => p.heldBy))).toEqual(new Set([a.paymentId, b.paymentId]));
    const c = await buy(post, STD, card, { amount: 1 });
    expect(c.draw).toMatchObject({ status: 503, body: { error: { code: 'PSAM_POOL_BUSY' } } });
    for (const x of [a, b]) expect((await post('/v1/abort', { paymentId: x.paymentId, reason: 'test' })).status).toBe(200);
    expect((await get('/v1/health')).held).toBe(0);
  });

  it('a PSAM pulled mid-transaction goes out of service; back in its reader, the stored S3 completes the payment', async () => {
    const before = await values();
    const side = merchantOrder(STD, { amount: 33 });
    const { raw } = await initializeForPurchase(card);
    const d = await post('/v1/draw', drawRequest(side, { atr: card.atr, startupRaw: raw }));
    expect(d.status).toBe(200);
    const iep = debitIepOf(side, d.body);
    const h = await get('/v1/health');
    const i = h.psams.findIndex((p: any) => p.heldBy === d.body.paymentId);
    const resp = await debitCard(card, iep.txType, Buffer.from(iep.debitData, 'hex'));
    await psamEmu[i]!.stop('SIGTERM'); // the PSAM leaves its reader (its image is saved)
    const dr = encodeDebitResponse(resp).toString('hex').toUpperCase();
    const res = await post('/v1/debit-response', outcomeRequest(side, d.body.paymentId, { sw: '9000', debitResponse: dr }));
    expect(res.status).toBe(503);
    await waitHealth((x) => x.psams[i].inService === false && x.status === 'degraded');
    await startPsam(i); // put back
    await waitHealth((x) => x.psams[i].inService === true);
    const again = await post('/v1/debit-response', outcomeRequest(side, d.body.paymentId, { sw: '9000', debitResponse: dr }));
    expect(again.body).toMatchObject({ status: 'approved', resultC: { verifiedBy: 'psam' } });
    await waitHealth((x) => x.held === 0);
    const after = await values();
    expect(after.balance).toBe(before.balance - 33);
    expect(after.confirmed).toBe(before.confirmed + 33);
  });

  for (const point of ['received', 'psam-assigned', 'debit-issued', 'debit-response-received', 'psam-verified', 'completed'] as const) {
    it(`SIGKILL after '${point}', restart: the payment is completed or clearly failed, nothing held, value conserved`, async () => {
      const before = await values();
      await server!.stop('SIGTERM');
      await startServer({ PURSELAB_PAYMENT_CRASH_AT: point });
      await waitHealth((x) => x.psams.every((p: any) => p.inService));
      const side = merchantOrder(STD, { amount: 7 });
      const { raw } = await initializeForPurchase(card);
      let paymentId: string | undefined;
      let dr: string | undefined;
      const d = await post('/v1/draw', drawRequest(side, { atr: card.atr, startupRaw: raw })).catch(() => undefined);
      if (d) {
        expect(d.status).toBe(200);
        paymentId = d.body.paymentId;
        const iep = debitIepOf(side, d.body);
        dr = encodeDebitResponse(await debitCard(card, iep.txType, Buffer.from(iep.debitData, 'hex'))).toString('hex').toUpperCase();
        const r = await post('/v1/debit-response', outcomeRequest(side, paymentId!, { sw: '9000', debitResponse: dr })).catch(() => undefined);
        expect(r, `the server should have died after '${point}'`).toBeUndefined();
      }
      const exit = await server!.exited;
      expect(exit.signal).toBe('SIGKILL');
      await startServer();
      await waitHealth((x) => x.psams.every((p: any) => p.inService));
      const recovery = await get('/v1/admin/recovery');
      if (dr) {
        // the client retries its debit response after the restart
        const retry = await post('/v1/debit-response', outcomeRequest(side, paymentId!, { sw: '9000', debitResponse: dr }));
        expect(retry.body).toMatchObject({ status: 'approved' });
      } else {
        // cut before any DEBIT data reached the client: nothing debited, the payment failed (or shows as debit-unknown)
        expect(Object.keys(recovery.counts).every((s) => ['completed', 'failed', 'debit-unknown'].includes(s))).toBe(true);
      }
      const h = await waitHealth((x) => x.held === 0);
      expect(h.payments['received'] ?? 0).toBe(0);
      expect(h.payments['psam-assigned'] ?? 0).toBe(0);
      expect(h.payments['debit-issued'] ?? 0).toBe(0);
      expect(h.payments['debit-response-received'] ?? 0).toBe(0);
      const after = await values();
      const debited = dr ? 7 : 0;
      expect(after.balance).toBe(before.balance - debited);
      expect(after.confirmed).toBe(before.confirmed + debited);
      // an S2 that never reached the card is an unconfirmed PSAM record: not collected as value
      expect(after.unconfirmed - before.unconfirmed).toBe(point === 'debit-issued' ? 7 : 0);
    });
  }

  it('closes both PSAM batches; MACs verify and the totals match the ledger; the CLI report is clean', async () => {
    const r = await post('/v1/admin/batch', {});
    expect(r.status).toBe(200);
    for (const b of r.body.batches) expect(b).toMatchObject({ status: 'exported', collection: { macVerified: true, ledger: { matches: true } } });
    const total = r.body.batches.reduce((a: number, b: any) => a + b.collection.ledger.confirmedSum, 0);
    expect(total).toBe(START - (await readPurse(card)).balance);
    const rep = await runCli(['payment', 'report', '--db', db, '--json']);
    expect(rep.code, rep.stderr).toBe(0);
    const report = JSON.parse(rep.stdout);
    expect(report.entries.every((e: any) => e.state === 'debit-unknown' && e.reason === 'INTERRUPTED')).toBe(true);
  });
});
