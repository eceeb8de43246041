// Every purse/PSAM vector in fixtures/vectors/purse-*.json is recomputed from its typed fields and the
// TEST master keys in fixtures/keys/demo-issuer.json.
import { describe, expect, it } from 'vitest';
import { keyCheckValue, suiteFor } from '../../../src/crypto/index.ts';
import {
  batchMacInput,
  computeTotals,
  deriveCardKey,
  derivePsamKey,
  loadS1Input,
  loadS2Input,
  loadS3Input,
  psamAdminInput,
  purchaseS2Input,
  purchaseS3Input,
  purseMac,
  purseMacVerify,
  updateParametersInput,
} from '../../../src/crypto/purse-mac.ts';
import { fixture, hex, toHex } from './helpers.ts';

const keys = fixture<any>('fixtures/keys/demo-issuer.json');
const iep = fixture<any>('fixtures/vectors/purse-iep.json');
const psam = fixture<any>('fixtures/vectors/purse-psam.json');

const BYTES = new Set(['location', 'loadTxnId', 'cardChallenge', 'lastLoadTxnId', 'challenge', 's3', 'data']);
function typed(f: Record<string, unknown>): any {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(f)) out[k] = BYTES.has(k) && typeof v === 'string' ? hex(v) : v;
  return out;
}
function masterOf(usage: string, alg: number): Buffer {
  return hex(keys.masterKeys.find((m: any) => m.usage === usage && m.alg === alg).key);
}

const BUILDERS: Record<string, (f: any) => Buffer> = {
  purchaseS2: purchaseS2Input,
  purchaseS3: purchaseS3Input,
  loadS1: loadS1Input,
  loadS2: loadS2Input,
  loadS3: loadS3Input,
  updateParameters: updateParametersInput,
  psamAdmin: psamAdminInput,
};

describe('TEST key set', () => {
  it('is marked as TEST keys', () => {
    expect(keys.warning).toMatch(/TEST KEYS ONLY/);
  });
  it('master KCVs match the keys', () => {
    for (const m of keys.masterKeys) expect(toHex(keyCheckValue(m.keyType, hex(m.key)))).toBe(m.kcv);
  });
  it('card and PSAM keys are the documented diversification of the masters, with matching KCVs', () => {
    for (const c of keys.cards) {
      const k = deriveCardKey(masterOf(c.usage, c.alg), c.cardId, c.alg);
      expect(toHex(k)).toBe(c.key);
      expect(toHex(keyCheckValue(suiteFor(c.alg).keyType, k))).toBe(c.kcv);
    }
    for (const p of keys.psams) {
      const k = derivePsamKey(masterOf(p.usage, p.alg), p.psamId, p.alg);
      expect(toHex(k)).toBe(p.key);
      expect(toHex(keyCheckValue(suiteFor(p.alg).keyType, k))).toBe(p.kcv);
    }
  });
  it('every usage and suite has its own master (no key shared between purposes)', () => {
    const values = keys.masterKeys.map((m: any) => m.key);
    expect(new Set(values).size).toBe(values.length);
    expect(keys.masterKeys.length).toBe(10);
  });
});

describe('purse (IEP) vectors', () => {
  for (const v of iep.vectors) {
    it(v.name, () => {
      const key = deriveCardKey(masterOf(v.keyUsage, v.alg), v.keyOwner, v.alg);
      expect(toHex(key)).toBe(v.key);
      const input = BUILDERS[v.layout]!(typed(v.fields));
      expect(toHex(input)).toBe(v.input);
      expect(toHex(purseMac(v.alg, key, input))).toBe(v.mac);
      expect(purseMacVerify(v.alg, key, input, hex(v.mac))).toBe(true);
    });
  }
  it('covers both suites and every MAC of the purse', () => {
    const layouts = new Set(iep.vectors.map((v: any) => `${v.layout}/${v.alg}`));
    for (const l of ['purchaseS2', 'purchaseS3', 'loadS1', 'loadS2', 'loadS3', 'updateParameters']) {
      expect(layouts.has(`${l}/1`)).toBe(true);
      expect(layouts.has(`${l}/2`)).toBe(true);
    }
  });
});

describe('PSAM vectors', () => {
  for (const v of psam.vectors) {
    it(v.name, () => {
      const key = derivePsamKey(masterOf(v.keyUsage, v.alg), v.keyOwner, v.alg);
      expect(toHex(key)).toBe(v.key);
      let input: Buffer;
      if (v.layout === 'batch') {
        const records = v.fields.records.map(typed);
        expect(computeTotals(records)).toEqual(v.fields.totals);
        input = batchMacInput(v.fields.header, records, v.fields.totals);
      } else {
        input = BUILDERS[v.layout]!(typed(v.fields));
      }
      expect(toHex(input)).toBe(v.input);
      expect(toHex(purseMac(v.alg, key, input))).toBe(v.mac);
    });
  }
});
