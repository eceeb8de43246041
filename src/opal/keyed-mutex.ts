// One lock per key (a card id) inside one process: holders run one at a time, in arrival order; a waiter that
// waits longer than its timeout gives up with OPAL_CARD_BUSY and leaves the queue. Across processes the card
// store's version column does the same job (optimistic: a stale writer is refused).

import { OpalError } from './errors.ts';

interface Waiter {
  readonly grant: () => void;
  readonly timer: NodeJS.Timeout | undefined;
}

export class KeyedMutex {
  private readonly queues = new Map<string, Waiter[]>();

  /** Wait for the lock of `key`; resolves with the function that releases it (idempotent). */
  async acquire(key: string, timeoutMs: number, what = key): Promise<() => void> {
    const queue = this.queues.get(key);
    if (!queue) {
      this.queues.set(key, []);
      return this.releaser(key);
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        grant: () => {
          if (waiter.timer) clearTimeout(waiter.timer);
          resolve(this.releaser(key));
        },
        timer:
          timeoutMs > 0
            ? setTimeout(() => {
                const q = this.queues.get(key);
                const i = q ? q.indexOf(waiter) : -1;
                if (i >= 0) q!.splice(i, 1);
                reject(new OpalError('OPAL_CARD_BUSY', `card ${what} is in use by another session (waited ${timeoutMs} ms)`));
              }, timeoutMs)
            : undefined,
      };
      queue.push(waiter);
    });
  }

  /** Whether someone holds the lock of `key`. */
  isHeld(key: string): boolean {
    return this.queues.has(key);
  }

  private releaser(key: string): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const q = this.queues.get(key);
      const next = q?.shift();
      if (next) next.grant();
      else this.queues.delete(key);
    };
  }
}
