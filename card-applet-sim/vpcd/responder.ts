// The do-nothing card: answers every APDU with 9000 and does no work. Plugged into vpcd it measures
// the floor of the host -> pcscd -> vpcd -> card path, so the real emulator's own cost is a ratio.

import type { VpcdCard } from './connector.ts';

/** TS=3B, T0=80 (TD1 follows, no historical bytes), TD1=80 (T=0, TD2 follows), TD2=01 (T=1), TCK=01. */
export const RESPONDER_ATR = Buffer.from('3B80800101', 'hex');

const SW_OK = Buffer.from([0x90, 0x00]);

export class NullResponderCard implements VpcdCard {
  readonly atr: Buffer;
  powered = false;
  apdus = 0;

  constructor(atr: Buffer = RESPONDER_ATR) {
    this.atr = atr;
  }

  powerOn(): Buffer {
    this.powered = true;
    return this.atr;
  }

  powerOff(): void {
    this.powered = false;
  }

  reset(): Buffer {
    this.powered = true;
    return this.atr;
  }

  transmit(_apdu: Buffer): Buffer {
    this.apdus++;
    return SW_OK;
  }
}
