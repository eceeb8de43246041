// The power-cut switch of `purselab emulate --power-cut INS:K`: a VpcdCard in front of a SimulatedCard that arms
// the card OS's power-loss switch (docs/card-os.md) when the next command with instruction byte INS arrives, so
// that the K-th persistent write inside that command cuts power. The card then gives no answer (the connector
// drops the vpcd connection: pcscd sees the command fail and the card removed, then a fresh insertion with a
// cold reset), the torn transaction is already rolled back, and `onCut` can save the image (committed state
// only: old or new, never a mix). One shot: a command that ends with fewer than K writes disarms the switch and
// reports `onMiss` with the number of writes it made, so the switch never fires in a later command.

import type { VpcdCard } from './connector.ts';

/** What the switch needs from the card (SimulatedCard has it). */
export interface PowerCuttableCard extends VpcdCard {
  armPowerLoss(k: number): void;
  disarmPowerLoss(): void;
  readonly persistentWrites: number;
  readonly powerLossCount: number;
}

export interface PowerCutSpec {
  /** Instruction byte of the command to cut. */
  readonly ins: number;
  /** Cut power right after the k-th persistent write inside that command (k >= 1). */
  readonly k: number;
  /** Which --card (1-based) the switch is for; default 1. */
  readonly card: number;
}

/** "INS:K" or "INS:K@N" (INS in hex, e.g. 42:3 = the 3rd persistent write of CREDIT FOR LOAD, first card). */
export function parsePowerCut(spec: string): PowerCutSpec {
  const m = /^(?:0x)?([0-9A-Fa-f]{1,2}):(\d{1,6})(?:@(\d{1,3}))?$/.exec(spec.trim());
  if (!m) throw new Error(`bad --power-cut '${spec}' (expected INS:K with INS in hex and K >= 1, e.g. 42:3, or INS:K@N for the N-th --card)`);
  const k = Number(m[2]);
  const card = m[3] === undefined ? 1 : Number(m[3]);
  if (k < 1) throw new Error(`bad --power-cut '${spec}': K counts persistent writes from 1`);
  if (card < 1) throw new Error(`bad --power-cut '${spec}': N counts --card options from 1`);
  return { ins: parseInt(m[1]!, 16), k, card };
}

export interface PowerCutEvents {
  /** The switch fired at write k of the command (the command gets no answer). */
  onCut?: (info: { ins: number; k: number; apduHeader: string }) => void;
  /** The command ended after `writes` persistent writes (< k): the switch is disarmed, nothing was cut. */
  onMiss?: (info: { ins: number; k: number; writes: number }) => void;
}

export class PowerCutCard implements VpcdCard {
  private spent = false;

  constructor(
    private readonly card: PowerCuttableCard,
    readonly spec: PowerCutSpec,
    private readonly events: PowerCutEvents = {},
  ) {}

  /** True once the armed command has been seen (fired or not). */
  get done(): boolean {
    return this.spent;
  }
  get atr(): Buffer {
    return this.card.atr;
  }
  powerOn(): Buffer {
    return this.card.powerOn();
  }
  powerOff(): void {
    this.card.powerOff();
  }
  reset(): Buffer {
    return this.card.reset();
  }

  transmit(apdu: Buffer): Buffer {
    if (this.spent || apdu.length < 4 || apdu[1] !== this.spec.ins) return this.card.transmit(apdu);
    this.spent = true;
    const { ins, k } = this.spec;
    const losses = this.card.powerLossCount;
    const writes = this.card.persistentWrites;
    this.card.armPowerLoss(k);
    const rsp = this.card.transmit(apdu);
    if (this.card.powerLossCount > losses) {
      this.events.onCut?.({ ins, k, apduHeader: apdu.subarray(0, 4).toString('hex').toUpperCase() });
    } else {
      this.card.disarmPowerLoss();
      this.events.onMiss?.({ ins, k, writes: this.card.persistentWrites - writes });
    }
    return rsp;
  }
}
