// Answer-to-reset (ISO/IEC 7816-3): strict parser with TCK check, pcsc_scan-style explanation, and a builder for emulated cards.

import { PurselabError } from '../errors.ts';
import { toHex } from './hex.ts';
import { swHex } from './response.ts';
import { lookupSw } from './status-words.ts';

export class AtrFormatError extends PurselabError {
  constructor(message: string) {
    super('BAD_ATR', message);
  }
}

/** TAi/TBi/TCi/TDi of one group. Groups 1 and 2 are global; group i >= 3 belongs to the protocol TD(i-1) names. */
export interface InterfaceGroup {
  readonly index: number;
  readonly scope: 'global' | number;
  readonly ta?: number;
  readonly tb?: number;
  readonly tc?: number;
  readonly td?: number;
}

export interface CompactTlvObject {
  /** Tag nibble (1..15). */
  readonly tag: number;
  readonly name: string;
  readonly value: Buffer;
}

export interface HistoricalBytes {
  /** Category indicator (first historical byte), undefined when there are none. */
  readonly category: number | undefined;
  readonly categoryMeaning: string;
  /** COMPACT-TLV objects (categories 00 and 80). */
  readonly objects: readonly CompactTlvObject[];
  /** Life-cycle status and/or SW from the status indicator (last 3 bytes for 00; tag 8 for 80). */
  readonly status?: { readonly lcs?: number; readonly sw?: number };
  /** Category 10: DIR data reference. */
  readonly dirReference?: number;
  /** PC/SC part 3 contactless storage card (80 4F 0C A0 00 00 03 06 SS NN NN ...). */
  readonly pcscStorageCard?: { readonly standard: number; readonly standardName: string; readonly cardName: number; readonly cardNameText: string };
  /** Why the COMPACT-TLV could not be decoded, when it could not (the ATR itself stays valid). */
  readonly problem?: string;
}

export interface Atr {
  readonly bytes: Buffer;
  readonly convention: 'direct' | 'inverse';
  readonly ts: number;
  readonly t0: number;
  readonly groups: readonly InterfaceGroup[];
  /** Transmission protocols offered (T=15 is not one); [0] when TD1 is absent. */
  readonly protocols: readonly number[];
  /** True when a TD announced T=15 (global interface bytes). */
  readonly globalBytes: boolean;
  /** Clock rate conversion factor, divisor and max clock from TA1 (defaults 372, 1, 5 MHz when absent). */
  readonly fi: number | undefined;
  readonly di: number | undefined;
  readonly fmaxMHz: number | undefined;
  /** Extra guard time N from TC1 (0 when absent; 255 means the minimum guard time). */
  readonly extraGuardTime: number;
  /** TA2: specific mode. */
  readonly specificMode?: { readonly protocol: number; readonly canChangeMode: boolean; readonly implicitParameters: boolean };
  /** T=0 parameters (when T=0 is offered): waiting time integer WI from TC2. */
  readonly t0Parameters?: { readonly wi: number };
  /** T=1 parameters (when T=1 is offered) from the first TA/TB/TC after a TD(i-1) with T=1, i >= 3. */
  readonly t1Parameters?: { readonly ifsc: number; readonly bwi: number; readonly cwi: number; readonly errorDetection: 'LRC' | 'CRC' };
  /** From the first TA/TB for T=15. */
  readonly clockStop?: 'not supported' | 'state L' | 'state H' | 'no preference';
  readonly voltageClasses?: readonly ('A' | 'B' | 'C')[];
  readonly spu?: number;
  readonly historical: Buffer;
  readonly historicalInfo: HistoricalBytes;
  readonly tck: number | undefined;
  /** Things a strict card would not send, that do not stop the ATR being used. */
  readonly warnings: readonly string[];
}

// ISO/IEC 7816-3:2006 table 7 (Fi, f(max) MHz by FI) and table 8 (Di by DI); undefined = RFU.
const FI_TABLE: readonly ([number, number] | undefined)[] = [
  [372, 4], [372, 5], [558, 6], [744, 8], [1116, 12], [1488, 16], [1860, 20], undefined,
  undefined, [512, 5], [768, 7.5], [1024, 10], [1536, 15], [2048, 20], undefined, undefined,
];
const DI_TABLE: readonly (number | undefined)[] = [undefined, 1, 2, 4, 8, 16, 32, 64, 12, 20, undefined, undefined, undefined, undefined, undefined, undefined];

export const DEFAULT_FI = 372;
export const DEFAULT_DI = 1;
export const DEFAULT_FMAX_MHZ = 5;
export const DEFAULT_WI = 10;
export const T1_DEFAULTS = { ifsc: 32, bwi: 4, cwi: 13, errorDetection: 'LRC' } as const;
/** TS plus at most 32 characters. */
export const MAX_ATR_LENGTH = 33;

const h = (n: number): string => toHex(Buffer.from([n]));
const bits4 = (n: number): string => n.toString(2).padStart(4, '0');

/** Fi/Di/fmax for a TA1 value (undefined where the table says RFU). */
export function clockRate(ta1: number): { fi: number | undefined; fmaxMHz: number | undefined; di: number | undefined } {
  const f = FI_TABLE[ta1 >> 4];
  return { fi: f?.[0], fmaxMHz: f?.[1], di: DI_TABLE[ta1 & 0xf] };
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing

/** Parse an ATR as PC/SC reports it (inverse-convention bytes already decoded; TS reads 3F). */
export function parseAtr(bytes: Uint8Array): Atr {
  const b = Buffer.from(bytes);
  if (b.length < 2) throw new AtrFormatError(`an ATR needs at least TS and T0, got ${b.length} byte(s)`);
  const ts = b[0]!;
  if (ts !== 0x3b && ts !== 0x3f) {
    const hint = ts === 0x03 ? ' (03 is 3F read without inverse-convention decoding)' : '';
    throw new AtrFormatError(`TS must be 3B (direct) or 3F (inverse convention), got ${h(ts)}${hint}`);
  }
  const warnings: string[] = [];
  const t0 = b[1]!;
  const k = t0 & 0xf;
  const groups: InterfaceGroup[] = [];
  const tdProtocols: number[] = [];
  let y = t0 >> 4;
  let p = 2;
  for (let i = 1; ; i++) {
    const scope: InterfaceGroup['scope'] = i <= 2 ? 'global' : tdProtocols[tdProtocols.length - 1]!;
    const group: { -readonly [K in keyof InterfaceGroup]: InterfaceGroup[K] } = { index: i, scope };
    for (const [bit, key] of [[1, 'ta'], [2, 'tb'], [4, 'tc'], [8, 'td']] as const) {
      if (!(y & bit)) continue;
      if (p >= b.length) throw new AtrFormatError(`truncated ATR: ${key.toUpperCase()}${i} is announced but the ATR ends after ${b.length} bytes`);
      group[key] = b[p++]!;
    }
    groups.push(group);
    if (group.td === undefined) break;
    y = group.td >> 4;
    tdProtocols.push(group.td & 0xf);
  }
  if (p + k > b.length) {
    throw new AtrFormatError(`truncated ATR: T0 announces ${k} historical bytes but only ${b.length - p} byte(s) follow the interface bytes`);
  }
  const historical = Buffer.from(b.subarray(p, p + k));
  const tckRequired = tdProtocols.some((t) => t !== 0);
  let tck: number | undefined;
  const end = p + k + (tckRequired ? 1 : 0);
  if (tckRequired) {
    if (b.length < end) throw new AtrFormatError(`TCK missing: it is required because a protocol other than T=0 is offered (T=${tdProtocols.join(', T=')})`);
    tck = b[end - 1]!;
    let x = 0;
    for (let i = 1; i < end - 1; i++) x ^= b[i]!;
    if (x !== tck) throw new AtrFormatError(`wrong TCK: ATR ends with ${h(tck)} but the XOR of T0..the last historical byte is ${h(x)}`);
  }
  if (b.length > end) {
    const why = tckRequired ? 'after TCK' : 'after the historical bytes (an ATR that offers only T=0 has no TCK)';
    throw new AtrFormatError(`${b.length - end} unexpected byte(s) ${why}: ${toHex(b.subarray(end), ' ')}`);
  }
  if (b.length > MAX_ATR_LENGTH) warnings.push(`ATR is ${b.length} bytes; ISO 7816-3 allows at most ${MAX_ATR_LENGTH}`);
  if (tdProtocols[0] === 15) warnings.push('TD1 announces T=15, which ISO 7816-3 does not allow in TD1');
  const offered = tdProtocols.filter((t) => t !== 15);
  for (let i = 1; i < offered.length; i++) {
    if (offered[i]! < offered[i - 1]!) warnings.push(`protocols are not announced in ascending order (T=${offered.join(', T=')})`);
  }
  const protocols = offered.length ? [...new Set(offered)].sort((a, c) => a - c) : [0];
  return {
    bytes: b,
    convention: ts === 0x3b ? 'direct' : 'inverse',
    ts,
    t0,
    groups,
    protocols,
    globalBytes: tdProtocols.includes(15),
    ...interpretGlobal(groups, warnings),
    ...interpretSpecific(groups, protocols, warnings),
    historical,
    historicalInfo: parseHistoricalBytes(historical),
    tck,
    warnings,
  };
}

function first<K extends 'ta' | 'tb' | 'tc'>(groups: readonly InterfaceGroup[], scope: number, key: K): number | undefined {
  return groups.find((g) => g.index >= 3 && g.scope === scope && g[key] !== undefined)?.[key];
}

function interpretGlobal(groups: readonly InterfaceGroup[], warnings: string[]) {
  const g1 = groups[0]!;
  const g2 = groups[1];
  let rate: { fi: number | undefined; di: number | undefined; fmaxMHz: number | undefined } = {
    fi: DEFAULT_FI,
    di: DEFAULT_DI,
    fmaxMHz: DEFAULT_FMAX_MHZ,
  };
  if (g1.ta !== undefined) {
    rate = clockRate(g1.ta);
    if (rate.fi === undefined) warnings.push(`TA1 = ${h(g1.ta)}: FI = ${g1.ta >> 4} is RFU`);
    if (rate.di === undefined) warnings.push(`TA1 = ${h(g1.ta)}: DI = ${g1.ta & 0xf} is RFU`);
  }
  const ta2 = g2?.ta;
  return {
    ...rate,
    extraGuardTime: g1.tc ?? 0,
    ...(ta2 !== undefined
      ? { specificMode: { protocol: ta2 & 0xf, canChangeMode: (ta2 & 0x80) === 0, implicitParameters: (ta2 & 0x10) !== 0 } }
      : {}),
  };
}

function interpretSpecific(groups: readonly InterfaceGroup[], protocols: readonly number[], warnings: string[]) {
  const out: {
    t0Parameters?: Atr['t0Parameters'];
    t1Parameters?: Atr['t1Parameters'];
    clockStop?: Atr['clockStop'];
    voltageClasses?: Atr['voltageClasses'];
    spu?: number;
  } = {};
  if (protocols.includes(0)) {
    const tc2 = groups[1]?.tc;
    if (tc2 === 0) warnings.push('TC2 = 00: WI = 0 is reserved');
    out.t0Parameters = { wi: tc2 ?? DEFAULT_WI };
  }
  if (protocols.includes(1)) {
    const ta = first(groups, 1, 'ta');
    const tb = first(groups, 1, 'tb');
    const tc = first(groups, 1, 'tc');
    if (ta === 0x00 || ta === 0xff) warnings.push(`IFSC ${h(ta)} is reserved (valid: 01..FE)`);
    if (tb !== undefined && tb >> 4 > 9) warnings.push(`BWI ${tb >> 4} is reserved (valid: 0..9)`);
    out.t1Parameters = {
      ifsc: ta ?? T1_DEFAULTS.ifsc,
      bwi: tb !== undefined ? tb >> 4 : T1_DEFAULTS.bwi,
      cwi: tb !== undefined ? tb & 0xf : T1_DEFAULTS.cwi,
      errorDetection: tc !== undefined && (tc & 1) === 1 ? 'CRC' : 'LRC',
    };
  }
  const ta15 = first(groups, 15, 'ta');
  if (ta15 !== undefined) {
    out.clockStop = (['not supported', 'state L', 'state H', 'no preference'] as const)[ta15 >> 6]!;
    out.voltageClasses = (['A', 'B', 'C'] as const).filter((_, i) => ta15 & (1 << i));
  }
  const tb15 = first(groups, 15, 'tb');
  if (tb15 !== undefined) out.spu = tb15;
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Historical bytes (ISO/IEC 7816-4 section 12.1.1, PC/SC part 3 for contactless storage cards)

const COMPACT_TAG_NAMES: Readonly<Record<number, string>> = {
  0x1: 'country code',
  0x2: 'issuer identification number',
  0x3: 'card service data',
  0x4: 'initial access data',
  0x5: "card issuer's data",
  0x6: 'pre-issuing data',
  0x7: 'card capabilities',
  0x8: 'status indicator',
  0xf: 'application identifier',
};

const PCSC_STANDARDS: Readonly<Record<number, string>> = {
  0x00: 'no information given',
  0x01: 'ISO 14443 A, part 1',
  0x02: 'ISO 14443 A, part 2',
  0x03: 'ISO 14443 A, part 3',
  0x05: 'ISO 14443 B, part 1',
  0x06: 'ISO 14443 B, part 2',
  0x07: 'ISO 14443 B, part 3',
  0x09: 'ISO 15693, part 1',
  0x0a: 'ISO 15693, part 2',
  0x0b: 'ISO 15693, part 3',
  0x0c: 'ISO 15693, part 4',
  0x0d: 'contact card (ISO 7816-10) I2C',
  0x0e: 'contact card (ISO 7816-10) extended I2C',
  0x0f: 'contact card (ISO 7816-10) 2WBP',
  0x10: 'contact card (ISO 7816-10) 3WBP',
  0x11: 'FeliCa',
};

const PCSC_CARD_NAMES: Readonly<Record<number, string>> = {
  0x0001: 'MIFARE Classic 1K',
  0x0002: 'MIFARE Classic 4K',
  0x0003: 'MIFARE Ultralight',
  0x0026: 'MIFARE Mini',
  0x003a: 'MIFARE Ultralight C',
  0xf004: 'Topaz / Jewel',
  0xf011: 'FeliCa 212K',
  0xf012: 'FeliCa 424K',
};

const PCSC_RID = Buffer.from([0xa0, 0x00, 0x00, 0x03, 0x06]);

function parseCompactTlv(bytes: Buffer): { objects: CompactTlvObject[]; problem?: string } {
  const objects: CompactTlvObject[] = [];
  for (let p = 0; p < bytes.length; ) {
    const tag = bytes[p]! >> 4;
    const len = bytes[p]! & 0xf;
    if (p + 1 + len > bytes.length) {
      return { objects, problem: `COMPACT-TLV ${h(bytes[p]!)} (tag ${tag}, length ${len}) runs past the end: only ${bytes.length - p - 1} byte(s) left` };
    }
    objects.push({ tag, name: COMPACT_TAG_NAMES[tag] ?? 'RFU / proprietary', value: Buffer.from(bytes.subarray(p + 1, p + 1 + len)) });
    p += 1 + len;
  }
  return { objects };
}

function statusFromTag8(v: Buffer): { lcs?: number; sw?: number } | undefined {
  if (v.length === 1) return { lcs: v[0]! };
  if (v.length === 2) return { sw: v.readUInt16BE(0) };
  if (v.length === 3) return { lcs: v[0]!, sw: v.readUInt16BE(1) };
  return undefined;
}

export function parseHistoricalBytes(hist: Buffer): HistoricalBytes {
  if (!hist.length) return { category: undefined, categoryMeaning: 'no historical bytes', objects: [] };
  const category = hist[0]!;
  if (category === 0x80 && hist.length === 15 && hist[1] === 0x4f && hist[2] === 0x0c && hist.subarray(3, 8).equals(PCSC_RID)) {
    const standard = hist[8]!;
    const cardName = hist.readUInt16BE(9);
    return {
      category,
      categoryMeaning: 'PC/SC part 3 contactless storage card (application identifier presence indicator 4F)',
      objects: [],
      pcscStorageCard: {
        standard,
        standardName: PCSC_STANDARDS[standard] ?? 'RFU',
        cardName,
        cardNameText: PCSC_CARD_NAMES[cardName] ?? 'not in purselab\'s table',
      },
    };
  }
  if (category === 0x00) {
    if (hist.length < 4) {
      return { category, categoryMeaning: 'COMPACT-TLV with status indicator in the last 3 bytes', objects: [], problem: `category 00 needs a 3-byte status indicator, only ${hist.length - 1} byte(s) follow` };
    }
    const { objects, problem } = parseCompactTlv(hist.subarray(1, hist.length - 3));
    const tail = hist.subarray(hist.length - 3);
    return {
      category,
      categoryMeaning: 'COMPACT-TLV data objects; status indicator in the last 3 bytes',
      objects,
      status: { lcs: tail[0]!, sw: tail.readUInt16BE(1) },
      ...(problem ? { problem } : {}),
    };
  }
  if (category === 0x80) {
    const { objects, problem } = parseCompactTlv(hist.subarray(1));
    const tag8 = objects.find((o) => o.tag === 8);
    const status = tag8 ? statusFromTag8(tag8.value) : undefined;
    return {
      category,
      categoryMeaning: 'COMPACT-TLV data objects (status indicator optional, tag 8)',
      objects,
      ...(status ? { status } : {}),
      ...(problem ? { problem } : {}),
    };
  }
  if (category === 0x10) {
    return {
      category,
      categoryMeaning: 'DIR data reference follows',
      objects: [],
      ...(hist.length === 2 ? { dirReference: hist[1]! } : { problem: `category 10 needs exactly one DIR data reference byte, got ${hist.length - 1}` }),
    };
  }
  const meaning = category >= 0x81 && category <= 0x8f ? 'RFU category' : 'proprietary format';
  return { category, categoryMeaning: meaning, objects: [] };
}

// ---------------------------------------------------------------------------------------------------------------
// Explanation

function flags(value: number, names: readonly [number, string][]): string[] {
  return names.filter(([bit]) => value & bit).map(([, n]) => n);
}

function explainCardServiceData(v: number): string[] {
  const access: Record<number, string> = { 0b100: 'by READ BINARY', 0b000: 'by READ RECORD(S)', 0b010: 'by GET DATA' };
  return [
    ...flags(v, [
      [0x80, 'application selection by full DF name'],
      [0x40, 'application selection by partial DF name'],
      [0x20, 'BER-TLV data objects available in EF.DIR'],
      [0x10, 'BER-TLV data objects available in EF.ATR/INFO'],
    ]),
    `EF.DIR and EF.ATR/INFO access: ${access[(v >> 1) & 7] ?? 'RFU'}`,
    v & 1 ? 'card without MF' : 'card with MF',
  ];
}

function explainCardCapabilities(v: Buffer): string[] {
  const lines: string[] = [];
  if (v.length >= 1) {
    lines.push(`selection methods ${h(v[0]!)}:`);
    for (const f of flags(v[0]!, [
      [0x80, 'DF selection by full DF name'],
      [0x40, 'DF selection by partial DF name'],
      [0x20, 'DF selection by path'],
      [0x10, 'DF selection by file identifier'],
      [0x08, 'implicit DF selection'],
      [0x04, 'short EF identifier supported'],
      [0x02, 'record number supported'],
      [0x01, 'record identifier supported'],
    ])) lines.push(`  - ${f}`);
  }
  if (v.length >= 2) {
    const d = v[1]!;
    const write = ['one-time write', 'proprietary', 'write OR', 'write AND'][(d >> 5) & 3];
    lines.push(`data coding byte ${h(d)}:`);
    if (d & 0x80) lines.push('  - EFs of TLV structure supported');
    lines.push(`  - behaviour of write functions: ${write}`);
    lines.push(`  - value FF for the first byte of BER-TLV tag fields: ${d & 0x10 ? 'valid' : 'invalid'}`);
    lines.push(`  - data unit size: ${2 ** (d & 0xf)} quartet(s)`);
  }
  if (v.length >= 3) {
    const c = v[2]!;
    const assign = ['no logical channel', 'by the interface device', 'by the card', 'by the card and the interface device'][(c >> 3) & 3];
    const n = c & 7;
    lines.push(`command chaining, length fields and logical channels ${h(c)}:`);
    if (c & 0x80) lines.push('  - command chaining');
    if (c & 0x40) lines.push('  - extended Lc and Le fields');
    if (c & 0x20) lines.push('  - extended length information in EF.ATR/INFO');
    lines.push(`  - logical channel number assignment: ${assign}`);
    lines.push(`  - maximum number of logical channels: ${n === 7 ? '8 or more' : n + 1}`);
  }
  return lines;
}

const LCS: Record<number, string> = {
  0x00: 'no information given',
  0x01: 'creation state',
  0x03: 'initialisation state',
  0x04: 'operational state (deactivated)',
  0x05: 'operational state (activated)',
  0x06: 'operational state (deactivated)',
  0x07: 'operational state (activated)',
};

function lcsMeaning(lcs: number): string {
  if (LCS[lcs]) return LCS[lcs]!;
  if (lcs >= 0x0c && lcs <= 0x0f) return 'termination state';
  return lcs >= 0x10 ? 'proprietary' : 'RFU';
}

function explainHistorical(info: HistoricalBytes, hist: Buffer): string[] {
  if (!hist.length) return ['+ No historical bytes'];
  const lines = [`+ Historical bytes: ${toHex(hist, ' ')}`, `  Category indicator byte: ${h(info.category!)} (${info.categoryMeaning})`];
  if (info.pcscStorageCard) {
    const s = info.pcscStorageCard;
    lines.push(
      `    AID: RID A0 00 00 03 06 (PC/SC Workgroup)`,
      `    Standard: ${h(s.standard)} (${s.standardName})`,
      `    Card name: ${toHex(Buffer.from([s.cardName >> 8, s.cardName & 0xff]), ' ')} (${s.cardNameText})`,
    );
  }
  for (const o of info.objects) {
    lines.push(`    Tag: ${o.tag.toString(16).toUpperCase()}, len: ${o.value.length} (${o.name}): ${toHex(o.value, ' ')}`);
    if (o.tag === 3 && o.value.length === 1) lines.push(...explainCardServiceData(o.value[0]!).map((l) => `      - ${l}`));
    if (o.tag === 7) lines.push(...explainCardCapabilities(o.value).map((l) => `      ${l}`));
    if (o.tag === 0xf) lines.push(`      AID: ${toHex(o.value, ' ')}`);
  }
  if (info.dirReference !== undefined) lines.push(`    DIR data reference: ${h(info.dirReference)}`);
  if (info.status) {
    lines.push(`    Status indicator${info.category === 0x00 ? ' (last 3 bytes)' : ' (tag 8)'}:`);
    if (info.status.lcs !== undefined) lines.push(`      LCS (life cycle status): ${h(info.status.lcs)} (${lcsMeaning(info.status.lcs)})`);
    if (info.status.sw !== undefined) lines.push(`      SW: ${swHex(info.status.sw)} (${lookupSw(info.status.sw).meaning})`);
  }
  if (info.problem) lines.push(`    Cannot decode further: ${info.problem}`);
  return lines;
}

function trimNum(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(3).replace(/0+$/, '');
}

function explainTa1(ta: number): string {
  const { fi, di, fmaxMHz } = clockRate(ta);
  if (fi === undefined || di === undefined) return `Fi ${fi ?? 'RFU'}, Di ${di ?? 'RFU'} (reserved values)`;
  const etu = fi / di;
  return `Fi=${fi}, Di=${di}, ${trimNum(etu)} cycles/ETU (${Math.round(4e6 / etu)} bits/s at 4.00 MHz, fMax=${fmaxMHz} MHz => ${Math.round((fmaxMHz! * 1e6) / etu)} bits/s)`;
}

function explainByte(key: 'ta' | 'tb' | 'tc', g: InterfaceGroup, v: number): string {
  const i = g.index;
  if (i === 1) {
    if (key === 'ta') return explainTa1(v);
    if (key === 'tb') return v === 0 ? 'VPP is not electrically connected (TB1 is deprecated)' : `programming param PI1=${v & 0x1f}, II=${(v >> 5) & 3} (TB1 is deprecated)`;
    return v === 0xff ? 'extra guard time: 255 (minimum guard time: 12 ETU for T=0, 11 ETU for T=1)' : `extra guard time: ${v} ETU`;
  }
  if (i === 2) {
    if (key === 'ta') {
      return `specific mode: protocol T=${v & 0xf}, ${v & 0x80 ? 'unable' : 'able'} to change to negotiable mode, parameters ${v & 0x10 ? 'implicitly defined' : 'defined by the interface bytes'}`;
    }
    if (key === 'tb') return `programming param PI2=${v} (TB2 is deprecated)`;
    return `T=0 work waiting time integer WI=${v}${v === 0 ? ' (reserved)' : ''}`;
  }
  if (g.scope === 1) {
    if (key === 'ta') return `IFSC: ${v}${v === 0 || v === 0xff ? ' (reserved)' : ''}`;
    if (key === 'tb') return `block waiting integer BWI=${v >> 4}, character waiting integer CWI=${v & 0xf}`;
    return `error detection code: ${v & 1 ? 'CRC' : 'LRC'}`;
  }
  if (g.scope === 15) {
    if (key === 'ta') {
      const stop = ['not supported', 'state L', 'state H', 'no preference'][v >> 6];
      const classes = (['A 5V', 'B 3V', 'C 1.8V'] as const).filter((_, b) => v & (1 << b));
      return `clock stop: ${stop}; class accepted by the card: ${classes.join(', ') || 'none'}`;
    }
    if (key === 'tb') return `standard or proprietary use of contact C6 (SPU): ${h(v)}`;
  }
  return `specific to T=${g.scope}`;
}

/** A pcsc_scan-like explanation: one line per byte, then historical bytes, TCK and a summary. */
export function explainAtr(atr: Uint8Array | Atr): string[] {
  const a = atr instanceof Uint8Array ? parseAtr(atr) : atr;
  const lines = [`ATR: ${toHex(a.bytes, ' ')}`];
  lines.push(`+ TS = ${h(a.ts)} --> ${a.convention === 'direct' ? 'direct' : 'inverse'} convention`);
  lines.push(`+ T0 = ${h(a.t0)}, Y(1): ${bits4(a.t0 >> 4)}, K: ${a.historical.length} (historical bytes)`);
  a.groups.forEach((g, n) => {
    if (n > 0) lines.push('-----');
    for (const key of ['ta', 'tb', 'tc'] as const) {
      const v = g[key];
      if (v !== undefined) lines.push(`  ${key.toUpperCase()}(${g.index}) = ${h(v)} --> ${explainByte(key, g, v)}`);
    }
    if (g.td !== undefined) {
      const t = g.td & 0xf;
      const what = t === 15 ? 'T=15 - global interface bytes following' : `protocol T=${t}`;
      lines.push(`  TD(${g.index}) = ${h(g.td)} --> Y(${g.index + 1}): ${bits4(g.td >> 4)}, ${what}`);
    }
  });
  lines.push(...explainHistorical(a.historicalInfo, a.historical));
  lines.push(a.tck === undefined ? '+ No TCK (only T=0 offered)' : `+ TCK = ${h(a.tck)} (correct checksum)`);
  lines.push(`+ Protocols offered: ${a.protocols.map((t) => `T=${t}`).join(', ')}${a.globalBytes ? ' (with T=15 global interface bytes)' : ''}`);
  if (a.t1Parameters) {
    const t1 = a.t1Parameters;
    const given = a.groups.some((g) => g.index >= 3 && g.scope === 1 && (g.ta ?? g.tb ?? g.tc) !== undefined);
    lines.push(`+ T=1: IFSC ${t1.ifsc}, BWI ${t1.bwi}, CWI ${t1.cwi}, ${t1.errorDetection}${given ? '' : ' (defaults: no T=1 specific bytes)'}`);
  }
  for (const w of a.warnings) lines.push(`! ${w}`);
  return lines;
}

// ---------------------------------------------------------------------------------------------------------------
// Building

export interface AtrOptions {
  convention?: 'direct' | 'inverse';
  /** Protocols offered, e.g. [1] or [0, 1] (default [1]). Announced in ascending order. */
  protocols?: readonly number[];
  /** Raw global bytes: TA1 (Fi/Di), TB1 (deprecated, usually omitted), TC1 (extra guard time), TA2 (specific mode). */
  ta1?: number;
  tb1?: number;
  tc1?: number;
  ta2?: number;
  /** T=0 waiting time integer, sent as TC2 (requires T=0). */
  t0?: { wi?: number };
  /** T=1 parameters (requires T=1); only the bytes for given fields are sent. */
  t1?: { ifsc?: number; bwi?: number; cwi?: number; crc?: boolean };
  /** T=15 global bytes: TA (clock stop and class indicator), TB (SPU). */
  global?: { ta?: number; tb?: number };
  /** At most 15 bytes. */
  historical?: Uint8Array;
}

type Bytes3 = { ta?: number; tb?: number; tc?: number };

function checkByte(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xff)) throw new AtrFormatError(`${name} must be a byte (0..255), got ${v}`);
}

function present(g: Bytes3): number {
  return (g.ta !== undefined ? 1 : 0) | (g.tb !== undefined ? 2 : 0) | (g.tc !== undefined ? 4 : 0);
}

/** Build an ATR with correct structure and TCK; parseAtr(buildAtr(o)) always succeeds. */
export function buildAtr(options: AtrOptions = {}): Buffer {
  const protocols = [...new Set(options.protocols ?? [1])].sort((a, b) => a - b);
  if (!protocols.length) throw new AtrFormatError('an ATR must offer at least one protocol');
  for (const t of protocols) {
    if (!Number.isInteger(t) || t < 0 || t > 14) throw new AtrFormatError(`protocol T=${t} cannot be offered (0..14; T=15 is for global bytes)`);
  }
  const hist = Buffer.from(options.historical ?? []);
  if (hist.length > 15) throw new AtrFormatError(`at most 15 historical bytes, got ${hist.length}`);
  for (const [name, v] of Object.entries({ TA1: options.ta1, TB1: options.tb1, TC1: options.tc1, TA2: options.ta2, 'T=15 TA': options.global?.ta, 'T=15 TB': options.global?.tb })) {
    checkByte(name, v);
  }
  if (options.t0 && !protocols.includes(0)) throw new AtrFormatError('T=0 parameters given but T=0 is not offered');
  if (options.t1 && !protocols.includes(1)) throw new AtrFormatError('T=1 parameters given but T=1 is not offered');
  const wi = options.t0?.wi;
  if (wi !== undefined && (!Number.isInteger(wi) || wi < 1 || wi > 255)) throw new AtrFormatError(`WI must be 1..255, got ${wi}`);

  const specific = new Map<number, Bytes3>();
  const t1 = options.t1;
  if (t1) {
    const { ifsc, bwi, cwi } = t1;
    if (ifsc !== undefined && (!Number.isInteger(ifsc) || ifsc < 1 || ifsc > 254)) throw new AtrFormatError(`IFSC must be 1..254, got ${ifsc}`);
    if (bwi !== undefined && (!Number.isInteger(bwi) || bwi < 0 || bwi > 9)) throw new AtrFormatError(`BWI must be 0..9, got ${bwi}`);
    if (cwi !== undefined && (!Number.isInteger(cwi) || cwi < 0 || cwi > 15)) throw new AtrFormatError(`CWI must be 0..15, got ${cwi}`);
    const g: Bytes3 = {};
    if (ifsc !== undefined) g.ta = ifsc;
    if (bwi !== undefined || cwi !== undefined) g.tb = ((bwi ?? T1_DEFAULTS.bwi) << 4) | (cwi ?? T1_DEFAULTS.cwi);
    if (t1.crc !== undefined) g.tc = t1.crc ? 1 : 0;
    if (present(g)) specific.set(1, g);
  }
  if (options.global && present(options.global)) specific.set(15, { ...options.global });

  // TD sequence: protocols ascending, then T=15. Bytes specific to T must follow a TD(i-1) with i >= 3, so a
  // protocol with specific bytes that would only appear in TD1 is announced again in TD2.
  const tds = [...protocols, ...(specific.has(15) ? [15] : [])];
  if (specific.has(tds[0]!)) tds.unshift(tds[0]!);
  const g1: Bytes3 = { ta: options.ta1, tb: options.tb1, tc: options.tc1 };
  const g2: Bytes3 = { ta: options.ta2, tc: wi };
  const groups: Bytes3[] = [g1];
  if (tds.length === 1 && tds[0] === 0 && !present(g2)) tds.length = 0; // only T=0, by default: no TD1
  const placed = new Set<number>();
  tds.forEach((t, k) => {
    if (k === 0) return void groups.push(g2);
    const s = specific.get(t);
    groups.push(s && !placed.has(t) ? s : {});
    if (s) placed.add(t);
  });
  if (tds.length === 0) groups.length = 1;

  const out: number[] = [options.convention === 'inverse' ? 0x3f : 0x3b];
  const y = (j: number): number => present(groups[j]!) | (j < tds.length ? 8 : 0);
  out.push((y(0) << 4) | hist.length);
  groups.forEach((g, j) => {
    for (const v of [g.ta, g.tb, g.tc]) if (v !== undefined) out.push(v);
    if (j < tds.length) out.push((j + 1 < groups.length ? y(j + 1) << 4 : 0) | tds[j]!);
  });
  out.push(...hist);
  if (tds.some((t) => t !== 0)) out.push(out.slice(1).reduce((x, v) => x ^ v, 0));
  if (out.length > MAX_ATR_LENGTH) throw new AtrFormatError(`the ATR would be ${out.length} bytes; ISO 7816-3 allows at most ${MAX_ATR_LENGTH}`);
  return Buffer.from(out);
}
