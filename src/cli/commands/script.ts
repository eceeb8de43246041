// `purselab script FILE --reader NAME`: runs an APDU script against a card; exit code 0 when every step passes.

import { hexifyBytes, toHex } from '../../apdu/hex.ts';
import { swHex } from '../../apdu/response.ts';
import { describeStep, parseScript } from '../../apdu/script.ts';
import { runScript, type StepResult } from '../../terminal/script-runner.ts';
import { openChannel } from '../../transport/open.ts';
import { parseCommandArgs, requireOption, UsageError, type CliCommand, type CliIo } from '../command.ts';
import { formatExchange, parseTimeout, readInputFile } from './apdu.ts';

function printStep(io: CliIo, r: StepResult, source: string): void {
  const where = `${source}:${r.step.line}`;
  const label = r.step.label ? ` [${r.step.label}]` : '';
  io.out(`${r.pass ? 'PASS' : 'FAIL'} ${where}${label}  ${describeStep(r.step)}`);
  if (r.step.kind === 'reset') {
    if (r.atr) io.out(`  ATR ${toHex(r.atr, ' ')}`);
  } else {
    for (const line of formatExchange(undefined, r.response)) io.out(`  ${line}`);
  }
  if (r.reason) io.out(`  ${r.reason}`);
}

export const scriptCommand: CliCommand = {
  name: 'script',
  summary: 'run an APDU script with expected responses against a card (exit 0 = all steps pass)',
  help: [
    'Usage: purselab script FILE --reader NAME [--iso] [--stop] [--json]',
    '',
    'Runs the steps of FILE (format: docs/apdu-script.md) in order and prints each one with PASS/FAIL.',
    'Exit code: 0 when every step passed, 1 when a step failed or the card could not be reached,',
    '2 for usage errors. A syntax error in FILE is reported with its line number before the card is touched.',
    '',
    'Options:',
    '  --reader NAME   PC/SC reader name (exact or a unique substring), or emu:PATH for an emulated card image',
    '  --iso           let the channel handle 61xx/6Cxx/chaining (default: raw, the exact bytes of each line)',
    '  --stop          stop at the first failing step',
    '  --timeout MS    per-APDU timeout in milliseconds',
    '  --json          print the run as JSON',
  ].join('\n'),
  async run(args, io) {
    const { values, positionals } = parseCommandArgs(args, {
      reader: { type: 'string' },
      iso: { type: 'boolean', default: false },
      stop: { type: 'boolean', default: false },
      timeout: { type: 'string' },
      json: { type: 'boolean', default: false },
    });
    if (positionals.length !== 1) throw new UsageError('give exactly one script FILE');
    const reader = requireOption(values.reader, '--reader NAME', 'purselab readers lists them');
    const timeoutMs = parseTimeout(values.timeout);
    const file = positionals[0]!;
    const script = parseScript(await readInputFile(file), file);
    const json = values.json === true;
    const channel = await openChannel(reader, timeoutMs !== undefined ? { timeoutMs } : {});
    let result;
    try {
      result = await runScript(script, channel, {
        mode: values.iso ? 'iso' : 'raw',
        stopOnFailure: values.stop === true,
        ...(timeoutMs !== undefined ? { timeoutMs } : {}),
        ...(json ? {} : { onStep: (r: StepResult) => printStep(io, r, file) }),
      });
    } finally {
      await channel.close();
    }
    if (json) {
      const steps = result.steps.map((r) => ({
        line: r.step.line,
        label: r.step.label ?? null,
        step: describeStep(r.step),
        sent: r.sent ?? null,
        received: r.received ?? null,
        sw: r.response ? swHex(r.response.sw) : null,
        atr: r.atr ?? null,
        pass: r.pass,
        reason: r.reason ?? null,
        ms: Math.round(r.elapsedMs * 1000) / 1000,
      }));
      io.out(JSON.stringify(hexifyBytes({ ...result, steps }), null, 2));
    } else {
      const notRun = result.notRun ? `, ${result.notRun} not run` : '';
      io.out(`${result.pass ? 'PASS' : 'FAIL'}: ${result.passed} passed, ${result.failed} failed${notRun} (${script.steps.length} steps, ${result.mode} mode)`);
    }
    return result.pass ? 0 : 1;
  },
};
