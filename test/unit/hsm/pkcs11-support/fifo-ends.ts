// For the session-pipe tests (pipe-pair.test.ts, pkcs11-processes.test.ts): how many descriptors a process
// holds on the FIFOs of hsm-bridge/pkcs11/pipe-pair.ts. A FIFO's /proc link names its path in the pair's
// private temporary directory ('(deleted)' once unlinked).

import { readdirSync, readlinkSync } from 'node:fs';

export function fifoEnds(pid: number = process.pid): number {
  return readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return readlinkSync(`/proc/${pid}/fd/${fd}`).includes('/purselab-hsm-');
    } catch {
      return false; // closed while we looked
    }
  }).length;
}
