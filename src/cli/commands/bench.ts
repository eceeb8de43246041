// `purselab bench [SUITE...]`: runs the benchmark suites and prints their figures (or JSON).

import { benchSuites } from '../bench/index.ts';
import { machineCpuNow, machineCpuSince, machineShares } from '../bench/machine-cpu.ts';
import { referenceLoopMs, wakeCost } from '../bench/machine-speed.ts';
import { emit, parseCommandArgs, UsageError, type CliCommand } from '../command.ts';

export const benchCommand: CliCommand = {
  name: 'bench',
  summary: 'run benchmarks (APDU transport, HSM, purchases...) and print figures against their floors',
  get help() {
    return [
      'Usage: purselab bench [SUITE...] [--quick] [--json]',
      '',
      'Runs the named suites (all when none is named). Each prints its figures next to a floor',
      'measured in the same run, as a ratio.',
      '',
      'Suites:',
      ...benchSuites.map((s) => `  ${s.name.padEnd(12)} ${s.summary}`),
      '',
      'Options:',
      '  --quick   one tenth of the iterations (smoke run)',
      '  --json    print all figures as one JSON object',
      '',
      'Environment (each suite documents its own in docs/):',
      '  PURSELAB_RIG_SLOTS=4-7 or 0,1      vpcd slots the pcscd suites may use (the rig: bash .ci/rig-up.sh)',
      '  PURSELAB_BENCH_HSM_TARGETS=A|B     hsm: only the targets whose names contain A or B',
      '  PURSELAB_BENCH_CARDS_THREAD=main|worker    purchase: where the cards behind vpcd run (default main)',
      '  PURSELAB_BENCH_CARDHOLDERS=N       payment, opal: concurrent cardholders (default 16)',
      '  PURSELAB_BENCH_CAPACITY_CARDHOLDERS=N   opal: cardholders of the capacity run (default 4x the above; 0: none)',
      '  PURSELAB_BENCH_PSAMS=N             payment: PSAMs in the pool (default: one per cardholder)',
      '  PURSELAB_BENCH_VARIANTS=standard   payment: only the standard variant',
      '  PURSELAB_BENCH_SAME_THREAD=1       payment: the server in the bench thread, not a worker',
      '  PURSELAB_BENCH_CLIENT_THREADS=N    payment: cardholders spread over N worker threads (default 0)',
      '  PURSELAB_BENCH_OPAL_THREADS=split|shop-opal|opal-main|same   opal: how the servers share threads (default split: one each)',
      '  NODE_OPTIONS=--openssl-legacy-provider   needed for the SoftHSM2 parts (single DES)',
    ].join('\n');
  },
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
    });
    const unknown = positionals.filter((p) => !benchSuites.some((s) => s.name === p));
    if (unknown.length) throw new UsageError(`unknown bench suite '${unknown[0]}' (known: ${benchSuites.map((s) => s.name).join(', ')})`);
    const selected = positionals.length ? benchSuites.filter((s) => positionals.includes(s.name)) : benchSuites;
    const ctx = { io, scale: values.quick ? 0.1 : 1, json: values.json === true };
    const results: Record<string, Record<string, number | string | boolean>> = {};
    const failed: string[] = [];
    const ticks0 = machineCpuNow();
    const loopMs = referenceLoopMs();
    const wake = await wakeCost();
    // The share of the machine's time the hypervisor gave elsewhere while the loop and the cipher calls ran.
    const stolen = machineShares(machineCpuSince(ticks0))?.stealPct;
    results['machine'] = {
      referenceLoopMs: Number(loopMs.toFixed(1)),
      cipherCallWarmUs: Number(wake.warmUs.toFixed(2)),
      cipherCallAfterPauseUs: Number(wake.afterPauseUs.toFixed(2)),
      ...(stolen !== undefined ? { stealPct: stolen } : {}),
    };
    if (!ctx.json) {
      const steal = stolen !== undefined ? `; meanwhile ${stolen.toFixed(0)}% of the vCPUs' time was stolen by the hypervisor` : '';
      io.out(`machine speed: a fixed JavaScript loop (10^8 iterations) took ${loopMs.toFixed(0)} ms${steal} (on a shared machine every rate below moves with it: compare runs by it)`);
      io.out(`  one node:crypto cipher call: ${wake.warmUs.toFixed(1)} us back to back, ${wake.afterPauseUs.toFixed(1)} us as the first after a 3 ms pause (coming back to work after a pause costs this machine more: cards behind vpcd and the serial simulator pay part of it on every command)`);
    }
    for (const suite of selected) {
      if (!ctx.json) io.out(`== ${suite.name}: ${suite.summary}`);
      try {
        results[suite.name] = await suite.run(ctx);
      } catch (e) {
        // One broken suite must not hide the others' figures: report it, go on, exit 1 at the end.
        failed.push(suite.name);
        results[suite.name] = { error: (e as Error)?.message ?? String(e) };
        io.err(`purselab bench ${suite.name}: ${(e as Error)?.message ?? String(e)}`);
      }
    }
    emit(io, ctx.json, results, () => (failed.length ? [`bench: ${failed.length} suite(s) failed: ${failed.join(', ')}`] : []));
    return failed.length ? 1 : 0;
  },
};
