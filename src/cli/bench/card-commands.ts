// Per-command time inside the two emulated cards of `bench purchase`: which command of a purchase costs what, in
// process (warm) and behind pcscd + vpcd (where each command arrives cold). Labels come from the command's own
// bytes (which card, CLA, INS); samples are kept per label and summarised as medians, in the order the commands
// first ran. Pure functions and a small sample store: the bench's timers feed it.

import { CLA_ISO, IepIns, PsamIns } from '../../crypto/purse-apdu.ts';
import { percentile } from './stats.ts';

/** Which card answered: 0 the purse card, 1 the PSAM (the order of `bench purchase`'s two readers). */
export type CardRole = 0 | 1;

const INS_SELECT = 0xa4;

/** INS -> command name ("INITIALIZE FOR PURCHASE"), per card role, built once from the APDU contract's tables. */
const namesOf = (table: Readonly<Record<string, number>>): ReadonlyMap<number, string> =>
  new Map(Object.entries(table).map(([name, code]) => [code, name.replace(/_/g, ' ')]));
const NAMES: readonly [ReadonlyMap<number, string>, ReadonlyMap<number, string>] = [namesOf(IepIns), namesOf(PsamIns)];

/** "card DEBIT", "PSAM INITIALIZE PURCHASE", "card SELECT"; an unknown INS as "card INS 7A". */
export function commandLabel(who: CardRole, apdu: Uint8Array): string {
  if (apdu.length < 4) return `${deviceOf(who)} (short APDU)`;
  return commandLabelOf(who, apdu[0]!, apdu[1]!);
}

/** The label of the command with this CLA and INS, for one of the two cards. */
export function commandLabelOf(who: CardRole, cla: number, ins: number): string {
  const device = deviceOf(who);
  if (ins === INS_SELECT && cla === CLA_ISO) return `${device} SELECT`;
  const name = NAMES[who].get(ins);
  return `${device} ${name ?? `INS ${ins.toString(16).toUpperCase().padStart(2, '0')}`}`;
}

const deviceOf = (who: CardRole): string => (who === 0 ? 'card' : 'PSAM');

/** Per label, the microseconds each command took; labels in the order they were first seen. */
export class CommandTimes {
  private readonly samples = new Map<string, number[]>();

  add(label: string, us: number): void {
    let s = this.samples.get(label);
    if (!s) this.samples.set(label, (s = []));
    s.push(us);
  }

  clear(): void {
    this.samples.clear();
  }

  /** The time of every command recorded since the last clear(), added up (µs). */
  get totalUs(): number {
    let sum = 0;
    for (const s of this.samples.values()) for (const us of s) sum += us;
    return sum;
  }

  /**
   * Per label, the median time and how often the label ran per purchase (`purchases` of them were recorded).
   * The medians times those counts add up to a typical purchase's time inside the cards.
   */
  medians(purchases: number): CommandMedian[] {
    return [...this.samples].map(([label, s]) => ({ label, medianUs: percentile(s, 50), perPurchase: purchases > 0 ? s.length / purchases : NaN }));
  }
}

export interface CommandMedian {
  readonly label: string;
  readonly medianUs: number;
  /** How many times a purchase sends this command (1 for each command of a plain purchase). */
  readonly perPurchase: number;
}

/** "card SELECT 1.3, card INITIALIZE FOR PURCHASE 0.9, ... (sum 39.3)", in µs; a command sent twice per purchase gets "x2". */
export function commandMediansText(rows: readonly CommandMedian[]): string {
  let sum = 0;
  const parts = rows.map((r) => {
    sum += r.medianUs * r.perPurchase;
    const times = Math.abs(r.perPurchase - 1) < 0.01 ? '' : ` x${r.perPurchase.toFixed(1)}`;
    return `${r.label} ${r.medianUs.toFixed(1)}${times}`;
  });
  return `${parts.join(', ')} (sum of medians ${sum.toFixed(1)})`;
}

/** The medians as --json figures: `${prefix}_card_SELECT: 1.3`, ... (µs, one decimal). */
export function commandMedianFigures(prefix: string, rows: readonly CommandMedian[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) out[`${prefix}_${r.label.replace(/ /g, '_')}`] = Number(r.medianUs.toFixed(1));
  return out;
}
