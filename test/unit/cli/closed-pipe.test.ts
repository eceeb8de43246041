// Output into a pipe whose reader has gone (`purselab ... | head -1`): the CLI ends quietly, no EPIPE stack trace.
import { spawn } from 'node:child_process';
import { expect, it } from 'vitest';

it('a closed stdout pipe ends the command quietly (exit 0, nothing on stderr)', async () => {
  const child = spawn(process.execPath, ['bin/purselab.js', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy(); // the reader is gone before the CLI writes its first line
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(stderr).not.toMatch(/EPIPE|Unhandled/);
  expect(code).toBe(0);
}, 60_000);
