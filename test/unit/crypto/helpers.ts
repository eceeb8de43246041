// Shared helpers for the crypto unit tests: fixture loading and hex.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const root = fileURLToPath(new URL('../../../', import.meta.url));

export function fixture<T = any>(relPath: string): T {
  return JSON.parse(readFileSync(root + relPath, 'utf8')) as T;
}

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex').toUpperCase();

/** True if an `openssl` 3 CLI is on PATH (the independent cross-checks skip without it). */
export const haveOpenssl: boolean = (() => {
  const r = spawnSync('openssl', ['version'], { encoding: 'utf8' });
  return r.status === 0 && /OpenSSL 3/.test(r.stdout);
})();

/** Run openssl with stdin bytes; returns stdout bytes. */
export function openssl(args: string[], input: Uint8Array): Buffer {
  const r = spawnSync('openssl', args, { input });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed: ${r.stderr.toString()}`);
  return r.stdout;
}
