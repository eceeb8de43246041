// The README's main job through the real rig: `purselab demo` serves the card and PSAM to pcscd through vpcd
// and runs load, purchases, authentication and batch close over PC/SC, then the Internet load and purchases
// through the servers over loopback HTTP with the same card, exiting 0 with every check held.

import { expect, it } from 'vitest';
import { describeRig, detectRig, runCli, waitForReader, noCardIn } from './rig.ts';

const rig = await detectRig(2);

describeRig('purselab demo over pcscd + vpcd', rig, () => {
  it('runs every step through two vpcd readers and leaves them empty afterwards', async () => {
    const r = await runCli(['demo'], { timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/transport: real pcscd \+ vpcd: card in "Virtual PCD[^"]*", PSAM in "Virtual PCD[^"]*"/);
    expect(r.stdout).toMatch(/credited; S3 verified: true/);
    expect(r.stdout).toMatch(/MAC verified/);
    expect(r.stdout).toMatch(/conserved/);
    expect(r.stdout).toMatch(/ok {3}load: card credited once, account debited once, float credited/);
    expect(r.stdout).toMatch(/ok {3}purchase: goods released, card debited the merchant amount/);
    expect(r.stdout).toMatch(/ok {3}OPAL purchase: goods released, virtual card debited/);
    expect(r.stdout).toMatch(/demo: every check held/);
    const reader = /card in "([^"]+)"/.exec(r.stdout)![1]!;
    expect(await waitForReader(reader, noCardIn, 10_000)).toBe(true);
  });
});
