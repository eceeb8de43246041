// Facts about the vpcd rig shared by the benchmark, the rig tests and the docs: which reader is which
// vpcd slot (TCP port), and whether the loopback quickack route that removes vpcd's ~40 ms stall is on.

import { execFile } from 'node:child_process';

/** The 8 vpcd slots .ci/rig-up.sh configures (the stock /etc/reader.conf.d/vpcd has the first two). */
export const VPCD_SLOTS: readonly { readonly reader: string; readonly port: number }[] = [
  { reader: 'Virtual PCD 00 00', port: 35963 },
  { reader: 'Virtual PCD 00 01', port: 35964 },
  { reader: 'Virtual PCD B 00 00', port: 35965 },
  { reader: 'Virtual PCD B 00 01', port: 35966 },
  { reader: 'Virtual PCD C 00 00', port: 35967 },
  { reader: 'Virtual PCD C 00 01', port: 35968 },
  { reader: 'Virtual PCD D 00 00', port: 35969 },
  { reader: 'Virtual PCD D 00 01', port: 35970 },
];

export function vpcdPortFor(reader: string): number | undefined {
  return VPCD_SLOTS.find((s) => s.reader === reader)?.port;
}

/**
 * The vpcd slots this process may use: all of them, or the indexes in PURSELAB_RIG_SLOTS ("4-7" or
 * "0,1,5") so that several test runs or benchmarks can share one rig without taking each other's readers.
 */
export function allowedSlots(spec = process.env.PURSELAB_RIG_SLOTS): readonly { readonly reader: string; readonly port: number }[] {
  const s = spec?.trim();
  if (!s) return VPCD_SLOTS;
  const allowed = new Set<number>();
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`PURSELAB_RIG_SLOTS: '${part}' is not an index or a range like 4-7`);
    for (let i = Number(m[1]); i <= Number(m[2] ?? m[1]); i++) allowed.add(i);
  }
  return VPCD_SLOTS.filter((_, i) => allowed.has(i));
}

/** The command that turns the stall off (root; loopback only). */
export const QUICKACK_ROUTE_CMD = 'ip route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1 quickack 1';
export const PLAIN_ROUTE_CMD = 'ip route replace local 127.0.0.1 dev lo table local proto kernel scope host src 127.0.0.1';

function run(cmd: string, args: string[]): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 5000 }, (err, stdout, stderr) => resolve({ ok: !err, stdout: String(stdout), stderr: String(stderr) }));
  });
}

/** Is `local 127.0.0.1 ... quickack 1` in the local routing table? undefined when `ip` cannot tell. */
export async function quickackRouteActive(): Promise<boolean | undefined> {
  const r = await run('ip', ['route', 'show', 'table', 'local']);
  if (!r.ok) return undefined;
  return /^local 127\.0\.0\.1 .*\bquickack 1\b/m.test(r.stdout);
}

/** Turn the quickack route on or off (needs root / CAP_NET_ADMIN). Returns false when not allowed. */
export async function setQuickackRoute(on: boolean): Promise<boolean> {
  const args = (on ? QUICKACK_ROUTE_CMD : PLAIN_ROUTE_CMD).split(' ').slice(1);
  return (await run('ip', args)).ok;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
