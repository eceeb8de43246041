// `purselab bench [SUITE...]`: runs the benchmark suites and prints their figures (or JSON).

import { benchSuites } from '../bench/index.ts';
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
