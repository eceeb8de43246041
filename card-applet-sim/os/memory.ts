// The card's persistent-memory manager: Java Card-style transactions (undo log), a counter of persistent
// writes, and the power-loss switch that cuts power right after the k-th write point.

import { PowerLostSignal, TransactionException, TransactionReason } from './iso.ts';

/** A persistent cell that can put back a value saved in the undo log. */
export interface UndoableCell {
  restore(saved: unknown, offset: number): void;
}

/**
 * One per card. Persistent cells (see store.ts) call `record` before they change inside a transaction and
 * `written` after every change; `written` is where the power-loss switch fires.
 *
 * Tearing model (documented in docs/card-os.md): every persistent write is atomic. Write points are the
 * setters of persistent cells and the commit of a transaction. `armPowerLoss(k)` lets the k-th write point
 * from now complete, then cuts power: the card is off, the open transaction (if any) is rolled back at
 * once (which is what the next power-on would do; nothing can observe the card in between), and any
 * further write in the same command is refused.
 */
export class CardMemory {
  private writes = 0;
  private countdown = 0;
  private depth = 0;
  private readonly undoCells: UndoableCell[] = [];
  private readonly undoValues: unknown[] = [];
  private readonly undoOffsets: number[] = [];
  /** True from the moment power is cut until the next power-on. */
  private lost = false;
  /** Called once when the switch fires (the card powers itself off). */
  onPowerLoss: (() => void) | undefined;

  /** Persistent write points so far (cell writes + commits), since the card was made. */
  get writeCount(): number {
    return this.writes;
  }
  get inTransaction(): boolean {
    return this.depth !== 0;
  }
  /** True after the power-loss switch fired and before the next power-on. */
  get powerLost(): boolean {
    return this.lost;
  }
  /** Write points left before the switch fires (undefined when disarmed). */
  get powerLossArmedIn(): number | undefined {
    return this.countdown === 0 ? undefined : this.countdown;
  }

  /** Cut power at the k-th persistent write point from now (k >= 1). Stays armed across commands until it fires. */
  armPowerLoss(k: number): void {
    if (!Number.isInteger(k) || k < 1) throw new RangeError(`armPowerLoss needs a whole number >= 1, got ${k}`);
    this.countdown = k;
  }
  disarmPowerLoss(): void {
    this.countdown = 0;
  }

  /** Set the write counter (card images carry it across restarts, like a real card's wear counter). */
  restoreWriteCount(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`write count must be a whole number, got ${n}`);
    this.writes = n;
  }

  /** Power returns: the switch's effect is over (the transaction was already rolled back when power went). */
  powerUp(): void {
    if (this.depth !== 0) this.rollback();
    this.lost = false;
  }

  /** Throw if the card has lost power: nothing may be written any more in this command. */
  guard(): void {
    if (this.lost) throw new PowerLostSignal();
  }

  /** Save a cell's old value in the undo log (only inside a transaction). */
  record(cell: UndoableCell, saved: unknown, offset: number): void {
    this.undoCells.push(cell);
    this.undoValues.push(saved);
    this.undoOffsets.push(offset);
  }

  /** Count one write point; fire the power-loss switch if this is the armed one. */
  written(): void {
    this.writes++;
    if (this.countdown !== 0 && --this.countdown === 0) this.cutPower();
  }

  beginTransaction(): void {
    this.guard();
    if (this.depth !== 0) {
      throw new TransactionException(TransactionReason.IN_PROGRESS, 'beginTransaction: a transaction is already in progress (nesting is not allowed)');
    }
    this.depth = 1;
  }

  /** Make every write since begin permanent. The commit is a write point of its own (after it completes). */
  commitTransaction(): void {
    this.guard();
    if (this.depth === 0) throw new TransactionException(TransactionReason.NOT_IN_PROGRESS, 'commitTransaction: no transaction in progress');
    this.clearUndo();
    this.depth = 0;
    this.written();
  }

  /** Undo every write since begin. */
  abortTransaction(): void {
    if (this.depth === 0) throw new TransactionException(TransactionReason.NOT_IN_PROGRESS, 'abortTransaction: no transaction in progress');
    this.rollback();
  }

  /** Run `fn` in a transaction: commit when it returns, abort (and rethrow) when it throws. */
  atomically<T>(fn: () => T): T {
    this.beginTransaction();
    let result: T;
    try {
      result = fn();
    } catch (e) {
      if (this.depth !== 0) this.rollback();
      throw e;
    }
    this.commitTransaction();
    return result;
  }

  /** Abort a transaction left open (end of a command, reset); returns true when there was one. */
  abortIfOpen(): boolean {
    if (this.depth === 0) return false;
    this.rollback();
    return true;
  }

  private rollback(): void {
    const cells = this.undoCells;
    for (let i = cells.length - 1; i >= 0; i--) cells[i]!.restore(this.undoValues[i], this.undoOffsets[i]!);
    this.clearUndo();
    this.depth = 0;
  }

  private clearUndo(): void {
    if (this.undoCells.length === 0) return;
    this.undoCells.length = 0;
    this.undoValues.length = 0;
    this.undoOffsets.length = 0;
  }

  private cutPower(): void {
    this.countdown = 0;
    this.lost = true;
    if (this.depth !== 0) this.rollback();
    this.onPowerLoss?.();
    throw new PowerLostSignal();
  }
}
