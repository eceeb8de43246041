// Internet loads over the whole real stack: `purselab load` (PC/SC client) -> real pcscd + vpcd -> the purse
// card in `purselab emulate`; `purselab serve bank` and `purselab serve load` as processes on loopback HTTP, the
// issuer keys in SoftHSM2 (PKCS#11) in one suite and behind the serial HSM simulator on a socat pty in the other.
// Both suites SIGKILL the load server at every crash point and resume. After every scenario
// (test/unit/load-server/conservation.ts): customer accounts + card balance + issuer float constant (issuer float =
// float account - the load server's settled value), money and value each constant, no hold left held.

import { afterAll, beforeAll, expect, it } from 'vitest';
import { requestJson } from '../../src/server/http-client.ts';
import { CRASH_POINTS } from '../../src/server/load/service.ts';
import { softhsmMissing } from '../../hsm-bridge/pkcs11/softhsm-temp.ts';
import { socatMissing } from '../../hsm-bridge/serial/lab.ts';
import { expectConserved as checkConserved } from '../unit/load-server/conservation.ts';
import { startE2E, type Backend, type E2EWorld } from '../unit/load-server/e2e-world.ts';
import { describeRig, detectRig, killAll } from './rig.ts';

const rig = await detectRig(1);

function suite(backend: Backend): void {
  const missing = backend === 'pkcs11' ? softhsmMissing() : socatMissing();
  const state = missing ? { ...rig, ok: false, reason: missing } : rig;
  describeRig(`Internet load over pcscd + vpcd, issuer HSM ${backend === 'pkcs11' ? 'in SoftHSM2 (PKCS#11)' : 'behind the serial simulator (socat pty, 115200 baud)'}`, state, () => {
    let w: E2EWorld;
    let start: Awaited<ReturnType<E2EWorld['totals']>>;
    beforeAll(async () => {
      w = await startE2E(backend);
      start = await w.totals();
    }, 180_000);
    afterAll(async () => {
      await w?.close();
      await killAll();
    });

    let loaded = 0;
    const expectConserved = async () => checkConserved(start, await w.totals(), loaded);

    it('a load of 20.00: S1, S2, S3 through the HSM; the bank captures into the float', async () => {
      const r = await w.load(['--amount', '20.00', '--yes']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json).toMatchObject({ ok: true, status: 'loaded', basis: 's3-verified', amount: 2000, card: '999001******0025' });
      expect(r.json.hold).toMatchObject({ state: 'captured', amount: 2000 });
      loaded += 2000;
      await expectConserved();
    }, 60_000);

    it('without --yes and without a terminal the client refuses before anything is held', async () => {
      const r = await w.load(['--amount', '1.00']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('pass --yes');
      await expectConserved();
    }, 60_000);

    it('above the maximum balance: refused by the bank, no hold', async () => {
      const r = await w.load(['--amount', '480.01', '--yes']);
      expect(r.code).not.toBe(0);
      expect(r.json).toMatchObject({ ok: false, code: 'ABOVE_MAX_LOAD' });
      await expectConserved();
    }, 60_000);

    it('the Load Result replayed to the bank: refused, counted once', async () => {
      const r = await w.load(['--amount', '1.00', '--yes']);
      expect(r.code, r.stderr).toBe(0);
      loaded += 100;
      const txnId = r.json.txnId as string;
      const res = await requestJson<{ loadResult: unknown }>(`${w.loadUrl}/v1/loads/${txnId}/result`);
      await expect(requestJson(`${w.bankUrl}/v1/loads/${txnId}/result`, { body: { loadResult: res.loadResult } })).rejects.toMatchObject({ status: 409, code: 'LOAD_RESULT_REPLAYED' });
      await expectConserved();
    }, 60_000);

    for (const point of CRASH_POINTS) {
      it(`load server SIGKILLed at ${point} and restarted: --resume ends credited exactly when debited`, async () => {
        await w.stopLoad();
        await w.startLoad(point);
        const r = await w.load(['--amount', '2.00', '--yes']);
        expect(r.code).not.toBe(0);
        expect(r.json).toMatchObject({ ok: false, code: 'LOAD_UNFINISHED' });
        const exit = await w.loadProc()!.exited;
        expect(exit.signal).toBe('SIGKILL');
        await w.startLoad();
        const again = await w.load(['--resume', r.json.txnId as string]);
        expect([0, 1]).toContain(again.code);
        if (again.json.status === 'loaded') loaded += 200;
        if (point === 's3-verified' || point === 'result-saved') expect(again.json.status).toBe('loaded');
        expect((again.json.hold as { state: string }).state).toBe(again.json.status === 'loaded' ? 'captured' : 'released');
        await expectConserved();
      }, 120_000);
    }
  });
}

suite('pkcs11');
suite('serial');
