// A fixed-size pool of read-write sessions on one slot. Each operation borrows one session for its whole
// sequence of calls (a PKCS#11 session runs one cryptographic operation at a time), so up to `size`
// operations are in flight at once; more wait in FIFO order. A session released as dead (gone, or possibly
// holding an unfinished operation) is closed, and a waiter gets a fresh one.
//
// One more session, the anchor, stays open for the pool's life: the login lives on it, and because a token
// logs the application out when its last session closes, closing a dead operation session never logs out.

import type { Handle, PKCS11, Pkcs11Js } from './binding.ts';

interface Waiter {
  resolve: (h: Handle) => void;
  reject: (e: unknown) => void;
}

export class SessionPool {
  readonly size: number;
  private readonly lib: PKCS11;
  private readonly P: Pkcs11Js;
  private readonly slot: Handle;
  private idle: Handle[] = [];
  private open = 0;
  private inUse = 0;
  private disposed = false;
  private readonly waiters: Waiter[] = [];
  /** The session that holds the login (never lent out). */
  readonly anchor: Handle;

  constructor(P: Pkcs11Js, lib: PKCS11, slot: Handle, size: number) {
    this.P = P;
    this.lib = lib;
    this.slot = slot;
    this.size = size;
    this.anchor = lib.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  }

  get stats(): { open: number; inUse: number; waiting: number; size: number } {
    return { open: this.open, inUse: this.inUse, waiting: this.waiters.length, size: this.size };
  }

  acquire(): Promise<Handle> | Handle {
    const h = this.idle.pop();
    if (h) {
      this.inUse++;
      return h;
    }
    if (this.open < this.size) {
      const s = this.openSession();
      this.inUse++;
      return s;
    }
    return new Promise<Handle>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  release(h: Handle, dead = false): void {
    this.inUse--;
    if (dead || this.disposed) {
      this.closeSession(h);
      const w = this.disposed ? undefined : this.waiters.shift();
      if (w) {
        try {
          const s = this.openSession();
          this.inUse++;
          w.resolve(s);
        } catch (e) {
          w.reject(e);
        }
      }
      return;
    }
    const w = this.waiters.shift();
    if (w) {
      this.inUse++;
      w.resolve(h);
    } else this.idle.push(h);
  }

  /** Close every idle session now and the busy ones as they come back; waiters get `reason`. */
  dispose(reason: unknown): void {
    this.disposed = true;
    try {
      this.lib.C_CloseSession(this.anchor);
    } catch {
      /* already gone */
    }
    for (const h of this.idle) this.closeSession(h);
    this.idle = [];
    for (const w of this.waiters.splice(0)) w.reject(reason);
  }

  private openSession(): Handle {
    const h = this.lib.C_OpenSession(this.slot, this.P.CKF_SERIAL_SESSION | this.P.CKF_RW_SESSION);
    this.open++;
    return h;
  }

  private closeSession(h: Handle): void {
    this.open--;
    try {
      this.lib.C_CloseSession(h);
    } catch {
      /* already gone */
    }
  }
}
