// Replays every example of docs/reference-applet.md against the emulator, and checks that the scriptor script
// for real pcscd + vpcd is exactly the documented session.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  REFERENCE_SCRIPTOR_PATH,
  parseApduExamples,
  readReferenceExamples,
  scriptorScript,
  type ExampleBlock,
} from '../../../card-applet-sim/applets/reference/examples.ts';
import { SimulatedCard } from '../../../card-applet-sim/index.ts';
import { referenceCard } from './helpers.ts';

const blocks = readReferenceExamples();
const H = (b: Buffer): string => b.toString('hex').toUpperCase().replace(/(..)(?!$)/g, '$1 ');

function replay(card: SimulatedCard, block: ExampleBlock): void {
  for (const s of block.steps) {
    if (s.kind === 'reset') {
      card.reset();
      continue;
    }
    expect(H(card.transmit(s.command)), `docs/reference-applet.md:${s.line} ${H(s.command)}`).toBe(H(s.response));
  }
}

describe('docs/reference-applet.md examples', () => {
  it('has the expected blocks', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    expect(blocks.some((b) => b.protocol === 'T=0')).toBe(true);
    expect(blocks.filter((b) => b.inProcessOnly).length).toBeGreaterThanOrEqual(2);
    expect(blocks.flatMap((b) => b.steps).length).toBeGreaterThanOrEqual(80);
  });

  it.each(blocks.map((b) => [`${b.title} (${b.protocol}, line ${b.line})`, b] as const))('%s', (_name, block) => {
    replay(referenceCard({ protocol: block.protocol }), block);
  });

  it('the plain T=1 blocks form one session on one card (what scriptor replays)', () => {
    const card = referenceCard();
    for (const b of blocks.filter((x) => x.protocol === 'T=1' && !x.inProcessOnly)) {
      card.reset();
      replay(card, b);
    }
  });

  it('the scriptor script is generated from the page', () => {
    expect(readFileSync(REFERENCE_SCRIPTOR_PATH, 'utf8')).toBe(scriptorScript(blocks));
  });

  it('the example parser rejects malformed blocks', () => {
    expect(() => parseApduExamples('```apdu\n> 00\n```')).toThrow(/must start with "# card/);
    expect(() => parseApduExamples('```apdu\n# card: T=1\n> 00 A4\n```')).toThrow(/without a "<" response/);
    expect(() => parseApduExamples('```apdu\n# card: T=1\n< 90 00\n```')).toThrow(/response without a command/);
    expect(() => parseApduExamples('```apdu\n# card: T=1\nhello\n```')).toThrow(/unexpected line/);
  });
});
