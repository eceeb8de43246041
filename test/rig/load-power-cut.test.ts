// Power cut in the card during CREDIT FOR LOAD at every persistent write, over the whole real stack: the purse
// card in `purselab emulate --power-cut 42:K` behind the real pcscd + vpcd, `purselab serve bank` and
// `purselab serve load` (issuer keys in SoftHSM2) as processes, `purselab load --amount 1.00 --yes` as the
// client, then `purselab load --resume TXN` for a load the client could not finish. For K = 1, 2, ... until the
// switch no longer fires (CREDIT made fewer than K writes): the card answers nothing, pcscd sees it removed and
// inserted again, and in the end the account is debited exactly when the card was credited, the hold is captured
// or released (never left held), and customer accounts + card + issuer float is constant (conservation.ts).

import { afterAll, beforeAll, expect, it } from 'vitest';
import { IepIns } from '../../src/crypto/purse-apdu.ts';
import { softhsmMissing } from '../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { expectConserved } from '../unit/load-server/conservation.ts';
import { startE2E, type E2EWorld } from '../unit/load-server/e2e-world.ts';
import { cardIn, describeRig, detectRig, killAll, waitForReader } from './rig.ts';

const rig = await detectRig(1);
const missing = softhsmMissing();
const CREDIT = IepIns.CREDIT_FOR_LOAD.toString(16).toUpperCase();
/** Far above the writes CREDIT FOR LOAD makes: the loop ends when the switch stops firing. */
const MAX_K = 30;

describeRig('power cut in the card during CREDIT FOR LOAD at every persistent write (pcscd + vpcd, SoftHSM2)', missing ? { ...rig, ok: false, reason: missing } : rig, () => {
  let w: E2EWorld;
  let start: Awaited<ReturnType<E2EWorld['totals']>>;
  beforeAll(async () => {
    w = await startE2E('pkcs11');
    start = await w.totals();
  }, 180_000);
  afterAll(async () => {
    await w?.close();
    await killAll();
  });

  it('every cut ends credited-and-captured or not-credited-and-released; the last K (no cut) loads', async () => {
    let loaded = 0;
    const outcomes: string[] = [];
    let writes: number | undefined;
    for (let k = 1; k <= MAX_K && writes === undefined; k++) {
      const emu = await w.restartEmulator(['--power-cut', `${CREDIT}:${k}`]);
      const before = await w.totals();
      const known = new Set((await w.holds()).keys());
      const r = await w.load(['--amount', '1.00', '--yes']);

      const fired = /lost power at persistent write (\d+) of 80420000/.exec(emu.stdout);
      const miss = /did not fire: INS 42 ended after (\d+) persistent write/.exec(emu.stdout);
      expect(fired || miss, `k=${k}: the switch saw no CREDIT FOR LOAD; emulator: ${emu.stdout}\nclient: ${r.stderr}`).toBeTruthy();
      if (miss) writes = Number(miss[1]);
      if (fired) {
        expect(Number(fired[1])).toBe(k);
        // The card comes back by itself (re-inserted: cold reset, committed state), its image saved at the cut.
        expect(emu.stdout).toMatch(/uncommitted writes rolled back\); image saved; re-inserting the card/);
        expect(await waitForReader(w.reader, cardIn, 15_000)).toBe(true);
      }
      const imageAtCut = fired ? await w.imageBalance() : undefined;

      // The load of this round: the client's answer, else the bank's one new hold.
      const fresh = [...(await w.holds()).keys()].filter((t) => !known.has(t));
      expect(fresh, `k=${k}: one hold per load`).toHaveLength(1);
      const txnId = fresh[0]!;
      if (typeof r.json.txnId === 'string') expect(r.json.txnId).toBe(txnId);
      let status = r.json.status as string | undefined;
      let how = 'client';
      if ((await w.holds()).get(txnId)!.state === 'held') {
        const again = await w.load(['--resume', txnId]);
        expect([0, 1], `k=${k} resume: ${again.stderr}`).toContain(again.code);
        status = again.json.status as string;
        how = 'resume';
      }
      const hold = (await w.holds()).get(txnId)!;
      expect(hold.state, `k=${k}`).toBe(status === 'loaded' ? 'captured' : 'released');
      const now = await w.totals();
      const credited = now.card - before.card;
      expect(credited, `k=${k}: card credited exactly when debited`).toBe(hold.state === 'captured' ? 100 : 0);
      loaded += credited;
      // The image saved at the cut holds the old balance or the new one, and it is the one the card kept.
      if (imageAtCut !== undefined) expect(imageAtCut, `k=${k}: image at the cut`).toBe(now.card);
      expectConserved(start, now, loaded);
      outcomes.push(`k=${k} ${fired ? 'cut' : 'no cut'} ${status} (${how}, ${hold.reason ?? '-'})`);
      if (miss) {
        // K beyond the last write: CREDIT ran whole and the load went through untouched.
        expect(r.code, r.stderr).toBe(0);
        expect(r.json).toMatchObject({ status: 'loaded', basis: 's3-verified' });
      }
    }
    console.log(`[load-power-cut] CREDIT FOR LOAD: ${writes} persistent writes\n  ${outcomes.join('\n  ')}`);
    expect(writes, `the switch still fired at K = ${MAX_K}`).toBeDefined();
    expect(outcomes).toHaveLength(writes! + 1);
    // Cutting at a write inside the credit's transaction leaves the old state: not loaded, released; cutting at
    // its last write (the commit) leaves the card credited with the answer lost: loaded, captured.
    expect(outcomes.some((o) => o.includes(' cut not-loaded'))).toBe(true);
    expect(outcomes[writes! - 1]).toContain(' cut loaded');
  }, 900_000);
});
