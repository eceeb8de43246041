// Reading a JSON input file (profiles, key sets) with the one message form every loader uses.

import { readFileSync } from 'node:fs';

/**
 * The parsed content of `path`. On failure calls `fail` with the reason, `cannot read it (ENOENT)` or
 * `not valid JSON (...)`, so that the caller throws its own error naming the file.
 */
export function readJsonFile(path: string, fail: (reason: string) => never): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    return fail(`cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    return fail(`not valid JSON (${(e as Error).message})`);
  }
}
