// bench hsm's closing line: the three targets judged together on the setting the docs recommend for the
// machine's cores (processes = cores - 1, within what the bench measures), from the figures the suite wrote.

import { describe, expect, it } from 'vitest';
import { recommendedSetting, targetsVerdict } from '../../../src/cli/bench/hsm-verdict.ts';

const allMet = {
  'pkcs11.ratioTargetMet': true,
  'pkcs11.concurrencyTargetMet': false,
  'pkcs11Process.ratioTargetMet': true,
  'pkcs11Process.concurrencyTargetMet': true,
  'pkcs11Processes.ratioTargetMet': true,
  'pkcs11Processes.concurrencyTargetMet': false,
  'serial pty 115200.wireTargetMet': 'met',
};

describe('bench hsm targets verdict', () => {
  it('picks processes = cores - 1, capped at the two the bench measures', () => {
    expect([1, 2, 3, 8].map((c) => recommendedSetting(c).processes)).toEqual([0, 1, 2, 2]);
    expect(recommendedSetting(2).key).toBe('pkcs11Process');
  });

  it('2 cores: judged on 1 process; the other settings do not count', () => {
    const v = targetsVerdict(allMet, 2)!;
    expect(v.met).toBe(true);
    expect(v.line).toContain('processes=1 for 2 cores');
    expect(v.line).toMatch(/all: met$/);
  });

  it('one target not met, or not measured, and the whole is not met', () => {
    expect(targetsVerdict({ ...allMet, 'serial pty 115200.wireTargetMet': 'NOT met' }, 2)!.met).toBe(false);
    expect(targetsVerdict({ ...allMet, 'pkcs11Process.concurrencyTargetMet': false }, 2)!.met).toBe(false);
    const { ['serial pty 115200.wireTargetMet']: _, ...noSerial } = allMet;
    const v = targetsVerdict(noSerial, 2)!;
    expect(v.met).toBe(false);
    expect(v.line).toContain('serial within 1.2x of the wire time: not measured');
    // 1 core: the plain setting, whose concurrency target failed here
    expect(targetsVerdict(allMet, 1)!.met).toBe(false);
  });

  it('nothing measured (e.g. only the software target ran): no line', () => {
    expect(targetsVerdict({ 'software.macVerify_aes_warm.ratio': 1.1 }, 2)).toBeUndefined();
  });
});
