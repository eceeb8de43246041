// Shared test applets and helpers for the emulator suites.

import { Applet, ApduContext, IsoException, SimulatedCard, REFERENCE_AID, type SimulatedCardOptions } from '../../../card-applet-sim/index.ts';

export const AID = Buffer.from('A000000001020304', 'hex');
export const REF = REFERENCE_AID;
export const REF_HEX = REFERENCE_AID.toString('hex').toUpperCase();

/** The five-line example's applet: echoes its data with CLA 80 INS 01. */
export class EchoApplet extends Applet {
  static override typeName = 'test-echo';
  process(apdu: ApduContext): Uint8Array {
    if (apdu.cla !== 0x80) throw new IsoException(0x6e00);
    if (apdu.ins !== 0x01) throw new IsoException(0x6d00);
    return apdu.data;
  }
}

/** An applet whose behaviour tests plug in, with hooks recorded. */
export class ProbeApplet extends Applet {
  static override typeName = 'test-probe';
  readonly calls: string[] = [];
  selectResult = true;
  chaining = false;
  onProcess: (apdu: ApduContext, self: ProbeApplet) => Uint8Array | void = (a) => a.data;
  readonly value = this.store.number('value', 0);
  readonly flag = this.store.flag('flag', false);
  readonly blob = this.store.bytes('blob', 8);
  readonly onDeselect = this.transientBytes(4, 'deselect');
  readonly onReset = this.transientBytes(4, 'reset');
  readonly numDeselect = this.transientNumber('deselect');
  readonly numReset = this.transientNumber('reset');

  override select(): boolean {
    this.calls.push('select');
    return this.selectResult;
  }
  override deselect(): void {
    this.calls.push('deselect');
  }
  override acceptsChaining(): boolean {
    return this.chaining;
  }
  process(apdu: ApduContext): Uint8Array | void {
    this.calls.push(`process ${apdu.ins.toString(16)}`);
    return this.onProcess(apdu, this);
  }
}

/** A card with a ProbeApplet (answering with `fn`) installed at AID and selected. */
export function probeCard(fn: ProbeApplet['onProcess'] = () => undefined): { card: SimulatedCard; p: ProbeApplet } {
  const card = new SimulatedCard();
  const p = new ProbeApplet();
  p.onProcess = fn;
  card.install(AID, p);
  card.select(AID);
  return { card, p };
}

export function referenceCard(options: SimulatedCardOptions = {}): SimulatedCard {
  const card = new SimulatedCard({ serial: Buffer.alloc(8, 0x11), ...options });
  card.install(REFERENCE_AID, 'reference');
  return card;
}

export function selectedReferenceCard(options: SimulatedCardOptions = {}): SimulatedCard {
  const card = referenceCard(options);
  const r = card.select(REFERENCE_AID);
  if (r.sw !== 0x9000) throw new Error(`select failed: ${r.sw.toString(16)}`);
  return card;
}

export const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');
/** SW of a raw response. */
export const swOf = (r: Buffer): number => (r.length < 2 ? 0 : r.readUInt16BE(r.length - 2));

/** Read the reference counter state (counter, increments, last) over APDUs. */
export function readCounter(card: SimulatedCard): { counter: number; increments: number; last: number } {
  const r = card.exchange('80 04 00 00 0C');
  if (r.sw !== 0x9000) throw new Error(`READ COUNTER answered ${r.sw.toString(16)}`);
  return { counter: r.data.readUInt32BE(0), increments: r.data.readUInt32BE(4), last: r.data.readUInt32BE(8) };
}
