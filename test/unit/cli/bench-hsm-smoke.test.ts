// `purselab bench hsm --quick --json` on the software target runs to the end and reports every figure the
// suite promises: per operation the rate, latency and ratio over its floor, and for the concurrency series the
// rate, cores busy and speed-up with 1, 4 and 8 callers. Only the serial part of this suite is run by another
// test (serial-bench.test.ts); this keeps the rest (the settling slices, the CPU samples, the JSON) from
// breaking unseen. It asserts what is reported, never how fast.

import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('bench hsm (software target, --quick --json)', () => {
  it('reports rate, latency and floor ratio per operation, and the concurrency series for 1, 4 and 8 callers', () => {
    const r = spawnSync(process.execPath, ['bin/purselab.js', 'bench', 'hsm', '--quick', '--json'], {
      encoding: 'utf8',
      timeout: 120_000,
      env: { ...process.env, PURSELAB_BENCH_HSM_TARGETS: 'software' },
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const figures = (JSON.parse(r.stdout) as { hsm: Record<string, number | string> }).hsm;
    const num = (key: string): number => {
      const v = figures[key];
      expect(typeof v, key).toBe('number');
      expect(Number.isFinite(v), key).toBe(true);
      return v as number;
    };
    for (const op of ['macVerify_3des_warm', 'macVerify_3des_cold', 'macVerify_aes_warm']) {
      expect(num(`software.${op}.opsPerSec`)).toBeGreaterThan(0);
      expect(num(`software.${op}.medianUs`)).toBeGreaterThanOrEqual(0);
      expect(num(`software.${op}.ratio`)).toBeGreaterThan(0);
    }
    for (const op of ['macVerify_3des_cold', 'macVerify_aes_warm']) {
      for (const c of [1, 4, 8]) {
        expect(num(`software.${op}.c${c}.opsPerSec`)).toBeGreaterThan(0);
        expect(num(`software.${op}.c${c}.coresBusy`)).toBeGreaterThan(0);
      }
      expect(num(`software.${op}.c1.speedup`)).toBe(1);
      expect(num(`software.${op}.c4.speedup`)).toBeGreaterThan(0);
    }
    // only the target asked for ran
    expect(Object.keys(figures).filter((k) => /^pkcs11|^serial/.test(k))).toEqual([]);
  }, 150_000);
});
