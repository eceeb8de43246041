// The purse and PSAM docs quote the generated layout tables and vectors verbatim.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { DOCS, allLayouts, renderRegions } from '../../../fixtures/vectors/purse-docs.ts';

const root = fileURLToPath(new URL('../../../', import.meta.url));

describe('docs are in step with the code', () => {
  for (const d of DOCS) {
    it(`${d}: every generated region is up to date (run generate-purse-vectors.ts --write --docs)`, () => {
      const text = readFileSync(root + d, 'utf8');
      expect(renderRegions(text)).toBe(text);
    });
  }
  it('every layout is documented in one of the docs', () => {
    const all = DOCS.map((d) => readFileSync(root + d, 'utf8')).join('\n');
    for (const name of Object.keys(allLayouts())) expect(all, name).toContain(`<!-- layout:${name} -->`);
  });
  it('every vector appears in the docs', () => {
    const all = DOCS.map((d) => readFileSync(root + d, 'utf8')).join('\n');
    for (const f of ['purse-iep', 'purse-psam']) {
      const v = JSON.parse(readFileSync(root + `fixtures/vectors/${f}.json`, 'utf8'));
      for (const x of v.vectors) {
        expect(all).toContain(x.input);
        expect(all).toContain(x.mac);
      }
    }
  });
  it('the worked purchase S2 example in purse-applet.md is the first vector', () => {
    const text = readFileSync(root + 'docs/purse-applet.md', 'utf8');
    const block = text.split('Worked layout of the first vector')[1]!;
    const bytes = [...block.matchAll(/^((?:[0-9A-F]{2} )+)\s/gm)].map((m) => m[1]!.replace(/\s/g, '')).join('');
    const v = JSON.parse(readFileSync(root + 'fixtures/vectors/purse-iep.json', 'utf8')).vectors[0];
    expect(bytes).toBe(v.input);
  });
});
