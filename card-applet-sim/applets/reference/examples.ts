// The reference applet's documented examples (docs/reference-applet.md, ```apdu blocks) as data: the unit tests
// replay them in-process, and the scriptor script for real pcscd + vpcd is derived from them.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { fromHex, toHex } from '../../../src/apdu/hex.ts';

export type ExampleStep =
  | { readonly kind: 'apdu'; readonly command: Buffer; readonly response: Buffer; readonly line: number; readonly comment: string | undefined }
  | { readonly kind: 'reset'; readonly line: number };

export interface ExampleBlock {
  /** The nearest "###" heading above the block. */
  readonly title: string;
  readonly protocol: 'T=0' | 'T=1';
  /** Marked "in-process only": malformed or extended APDUs a PC/SC stack may refuse. */
  readonly inProcessOnly: boolean;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly steps: readonly ExampleStep[];
}

export const REFERENCE_DOC_PATH = fileURLToPath(new URL('../../../docs/reference-applet.md', import.meta.url));
export const REFERENCE_SCRIPTOR_PATH = fileURLToPath(new URL('./reference.scriptor', import.meta.url));

/** Parse every ```apdu block: "# card: T=1[, in-process only]" first, then "> cmd", "< response" (lines join), "reset". */
export function parseApduExamples(markdown: string, source = 'examples'): ExampleBlock[] {
  const lines = markdown.split('\n');
  const blocks: ExampleBlock[] = [];
  let title = '';
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('### ')) title = l.slice(4).trim();
    if (l.trim() !== '```apdu') continue;
    const start = i + 1;
    const header = /^# card: (T=[01])(, in-process only)?$/.exec(lines[++i] ?? '');
    if (!header) throw new Error(`${source}:${start + 1}: an apdu block must start with "# card: T=0" or "# card: T=1"`);
    const steps: ExampleStep[] = [];
    let cmd: { command: Buffer; line: number; comment: string | undefined } | undefined;
    let resp: string[] = [];
    let comment: string | undefined;
    const flush = (): void => {
      if (!cmd) return;
      if (!resp.length) throw new Error(`${source}:${cmd.line}: command without a "<" response`);
      steps.push({ kind: 'apdu', command: cmd.command, response: fromHex(resp.join(' '), `${source}:${cmd.line} response`), line: cmd.line, comment: cmd.comment });
      cmd = undefined;
      resp = [];
    };
    for (i++; i < lines.length && lines[i]!.trim() !== '```'; i++) {
      const t = lines[i]!.trim();
      if (t.startsWith('> ')) {
        flush();
        cmd = { command: fromHex(t.slice(2), `${source}:${i + 1} command`), line: i + 1, comment };
        comment = undefined;
      } else if (t.startsWith('< ')) {
        if (!cmd) throw new Error(`${source}:${i + 1}: response without a command`);
        resp.push(t.slice(2));
      } else if (t === 'reset') {
        flush();
        steps.push({ kind: 'reset', line: i + 1 });
      } else if (t.startsWith('#')) {
        flush();
        comment = t.replace(/^#\s*/, '');
      } else if (t !== '') {
        throw new Error(`${source}:${i + 1}: unexpected line in an apdu block: ${t}`);
      }
    }
    flush();
    blocks.push({ title, protocol: header[1] as 'T=0' | 'T=1', inProcessOnly: header[2] !== undefined, line: start, steps });
  }
  return blocks;
}

export function readReferenceExamples(path = REFERENCE_DOC_PATH): ExampleBlock[] {
  return parseApduExamples(readFileSync(path, 'utf8'), path);
}

/** The plain T=1 blocks as one scriptor session (reset before each block); expected responses as comments. */
export function scriptorScript(blocks: readonly ExampleBlock[]): string {
  const out = [
    '# purselab reference applet: scriptor (pcsc-tools) session, generated from docs/reference-applet.md.',
    '# Run against a NEW emulated T=1 card with the reference applet (counter and store persist in the image):',
    '#   scriptor -r "<vpcd reader>" card-applet-sim/applets/reference/reference.scriptor',
    '# Each "#= " line is the exact response expected to the command above it.',
  ];
  for (const b of blocks) {
    if (b.protocol !== 'T=1' || b.inProcessOnly) continue;
    out.push('', `# ${b.title}`, 'reset');
    for (const s of b.steps) {
      if (s.kind === 'reset') {
        out.push('reset');
        continue;
      }
      out.push(toHex(s.command, ' '), `#= ${toHex(s.response, ' ')}`);
    }
  }
  return `${out.join('\n')}\n`;
}
