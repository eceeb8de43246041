// Dual mode (seed 003): at checkout the cardholder pays either with the OPAL virtual card or with a physical card
// in a local reader, and both go through the same payment server and merchant. One purchase each way against one
// payment server (emulated PSAM pool, SQLite) and one merchant, in this process over loopback HTTP: the virtual
// card through OPAL's /v1/purchase, the physical card with `purselab pay` over a card emulated behind the real
// pcscd in a vpcd slot (freeSlots: PURSELAB_RIG_SLOTS). Both orders released, both in the payment server's
// ledger with their own card, value moved exactly once each.
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startOpalWorld, type Cardholder, type OpalWorld } from '../../src/opal/world.ts';
import { requestJson } from '../../src/server/http-client.ts';
import { useOpalHsm } from '../unit/opal/helpers.ts';
import { describeRig, detectRig, freeSlots, killAll, runCli, startEmulator, tempDir, type Proc } from './rig.ts';

const rig = await detectRig(1);
const hsm = useOpalHsm();

describeRig('dual mode: OPAL virtual card and a physical card through the same payment server', rig, () => {
  const tmp = tempDir('purselab-opal-dual-');
  let world: OpalWorld;
  let holder: Cardholder;
  let emu: Proc | undefined;
  let reader = '';

  beforeAll(async () => {
    world = await startOpalWorld({ hsm: hsm().hsm, psams: 2, initialBalance: 5000 });
    holder = await world.cardholder('dana.dual');
    const img = join(tmp.path, 'card.img');
    const issued = await runCli(['card', 'issue', '--profile', 'fixtures/profiles/demo-aes.json', '--keys', 'fixtures/keys/demo-issuer.json', '--out', img, '--balance', '20.00'], { timeoutMs: 60_000 });
    expect(issued.code, issued.stderr).toBe(0);
    const [slot] = await freeSlots(1);
    if (!slot) throw new Error('no free vpcd slot (PURSELAB_RIG_SLOTS)');
    reader = slot.reader;
    emu = await startEmulator(['--vpcd', `127.0.0.1:${slot.port}`, '--card', img], [reader]);
  }, 120_000);
  afterAll(async () => {
    await emu?.stop();
    await killAll();
    await world?.close();
    tmp.remove();
  });

  const orderStatus = (payUrl: string) => requestJson<{ released: boolean; status: string }>(payUrl.replace(/\/orders\/([^/]+)\/pay$/, '/api/orders/$1'));

  it('one purchase with the virtual card, one with the physical card: same payment server, same merchant', async () => {
    const virtualUrl = await world.order('ebook');
    // The merchant's payment page offers both: the virtual card (a link to OPAL with this page) and a card reader.
    const html = await (await fetch(virtualUrl)).text();
    const href = /<a id="pay-with-opal" href="([^"]+)">/.exec(html)?.[1]?.replace(/&amp;/g, '&');
    expect(href).toBe(`${world.opalUrl}/?page=${encodeURIComponent(virtualUrl)}`);
    expect(html).toContain('purselab pay URL --reader READER');
    const v = await requestJson<{ status: string; paymentId: string; balanceAfter: number }>(`${world.opalUrl}/v1/purchase`, { method: 'POST', body: { pageUrl: virtualUrl, amount: 420 }, headers: { authorization: `Bearer ${holder.token}` } });
    expect(v).toMatchObject({ status: 'paid', balanceAfter: 4580 });

    const physicalUrl = await world.order('ebook');
    const r = await runCli(['pay', physicalUrl, '--reader', reader, '--yes', '--json', '--terminal-id', 'dual-physical'], { timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as { status: string; paymentId: string; balanceBefore: number; balanceAfter: number };
    expect(p).toMatchObject({ status: 'paid', balanceBefore: 2000, balanceAfter: 1580 });

    expect((await orderStatus(virtualUrl)).released).toBe(true);
    expect((await orderStatus(physicalUrl)).released).toBe(true);
    // The payment server saw two ordinary purchases from two cards; it cannot tell which one was virtual.
    const rows = await Promise.all([v.paymentId, p.paymentId].map((id) => world.payment.store.get(id)));
    expect(rows.map((x) => x?.state)).toEqual(['completed', 'completed']);
    expect(rows.map((x) => x?.merchantId)).toEqual(['OPAL-SHOP', 'OPAL-SHOP']);
    expect(new Set(rows.map((x) => x?.cardId)).size).toBe(2);
    const ledger = await world.payment.store.ledger();
    expect(ledger.map((e) => e.paymentId).sort()).toEqual([v.paymentId, p.paymentId].sort());
    expect(ledger.reduce((s, e) => s + e.amount, 0)).toBe(840);
    // The virtual card at OPAL agrees.
    const b = await requestJson<{ balance: number; counter: number }>(`${world.opalUrl}/v1/balance`, { headers: { authorization: `Bearer ${holder.token}` } });
    expect(b).toMatchObject({ balance: 4580, counter: 1 });
  }, 120_000);
});
