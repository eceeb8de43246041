// SoftHSM2 loaded into Node runs on Node's OpenSSL 3, which keeps single DES (needed for derived 2-key 3DES card
// keys) in its legacy provider, loaded only when Node starts with --openssl-legacy-provider. A bench suite that
// measures SoftHSM2 in a Node started without it measures that part in a child Node started with it:
// `purselab bench SUITE --json` (and --quick when this run is quick), whose figures for SUITE come back.

import { spawnSync } from 'node:child_process';
import type { BenchContext, BenchFigures } from './suite.ts';

/**
 * Run `purselab bench SUITE --json` in a child Node with --openssl-legacy-provider and `env` added, saying so
 * first (unless --json); its figures for SUITE.
 */
export function measureInLegacyChild(ctx: BenchContext, suite: string, env: Readonly<Record<string, string>>): BenchFigures {
  if (!ctx.json) ctx.io.out('  (measuring SoftHSM2 in a child Node started with --openssl-legacy-provider, for single DES)');
  const args = ['--openssl-legacy-provider', ...process.execArgv, ...process.argv.slice(1, 2), 'bench', suite, '--json', ...(ctx.scale < 1 ? ['--quick'] : [])];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env: { ...process.env, ...env }, maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(`bench ${suite}: the child Node with --openssl-legacy-provider failed (${r.status ?? r.signal}): ${(r.stderr ?? '').slice(-2000)}`);
  const figures = (JSON.parse(r.stdout) as Record<string, BenchFigures | undefined>)[suite];
  if (!figures) throw new Error(`bench ${suite}: the child Node with --openssl-legacy-provider printed no figures for ${suite}`);
  return figures;
}
