// Runs a parsed APDU script over a CardChannel and reports each step (sent, received, pass/fail, reason).

import { encodeResponse, parseResponse, type ResponseApdu } from '../apdu/response.ts';
import { checkResponse, type ApduScript, type ScriptStep } from '../apdu/script.ts';
import { PurselabError } from '../errors.ts';
import type { CardChannel } from '../transport/channel.ts';

/**
 * How commands reach the card:
 * - 'raw' (default): the exact bytes of each line go out with transmitRaw and the expectation is checked against
 *   the card's literal answer, so a script can test 61xx / 6Cxx itself and send GET RESPONSE as its own step
 *   (as scriptor does). This is the default because a script is a byte-level test vector.
 * - 'iso': each line is parsed and sent with transmit, so the channel follows 61xx, re-issues on 6Cxx and chains
 *   long data; the expectation is checked against the final, assembled response.
 */
export type ScriptMode = 'raw' | 'iso';

export interface RunScriptOptions {
  mode?: ScriptMode;
  /** Stop at the first step whose response does not match (default false: run every step). */
  stopOnFailure?: boolean;
  timeoutMs?: number;
  /** Called after each step, e.g. to print progress as it happens. */
  onStep?: (result: StepResult) => void;
}

export interface StepResult {
  readonly index: number;
  readonly step: ScriptStep;
  /** Bytes of the command as written (in 'iso' mode the channel may have sent more exchanges). */
  readonly sent?: Buffer;
  /** The response (data + SW) the expectation was checked against. */
  readonly received?: Buffer;
  readonly response?: ResponseApdu;
  /** ATR after a reset step. */
  readonly atr?: Buffer;
  readonly pass: boolean;
  /** Why the step failed. */
  readonly reason?: string;
  readonly elapsedMs: number;
}

export interface ScriptRunResult {
  readonly source: string;
  readonly mode: ScriptMode;
  readonly pass: boolean;
  readonly steps: readonly StepResult[];
  readonly passed: number;
  readonly failed: number;
  /** Steps not run because the run stopped early (transport error, or stopOnFailure). */
  readonly notRun: number;
}

async function runStep(channel: CardChannel, step: ScriptStep, mode: ScriptMode, timeoutMs: number | undefined) {
  if (step.kind === 'reset') return { atr: await channel.reset({ cold: step.cold }) };
  const opts = timeoutMs !== undefined ? { timeoutMs } : {};
  const response =
    mode === 'raw' ? parseResponse(await channel.transmitRaw(step.bytes, opts)) : await channel.transmit(step.command, opts);
  return { response, received: encodeResponse(response), sent: step.bytes };
}

/**
 * Run every step in order. A response that does not match fails its step and the run continues (unless
 * stopOnFailure); an error from the channel (card removed, timeout, ...) fails its step and ends the run, since
 * the card's state is then unknown. Errors that are not PurselabErrors are bugs and are rethrown.
 */
export async function runScript(script: ApduScript, channel: CardChannel, options: RunScriptOptions = {}): Promise<ScriptRunResult> {
  const mode = options.mode ?? 'raw';
  const results: StepResult[] = [];
  let stopped = false;
  for (const [index, step] of script.steps.entries()) {
    const started = performance.now();
    let result: StepResult;
    try {
      const out = await runStep(channel, step, mode, options.timeoutMs);
      const reason = out.response ? checkResponse(step.kind === 'apdu' ? step.expect : [], out.response) : undefined;
      result = { index, step, ...out, pass: reason === undefined, ...(reason ? { reason } : {}), elapsedMs: performance.now() - started };
    } catch (e) {
      if (!(e instanceof PurselabError)) throw e;
      result = { index, step, ...(step.kind === 'apdu' ? { sent: step.bytes } : {}), pass: false, reason: e.message, elapsedMs: performance.now() - started };
      stopped = true;
    }
    results.push(result);
    options.onStep?.(result);
    if (stopped || (!result.pass && options.stopOnFailure)) break;
  }
  const failed = results.filter((r) => !r.pass).length;
  return {
    source: script.source,
    mode,
    pass: failed === 0 && results.length === script.steps.length,
    steps: results,
    passed: results.length - failed,
    failed,
    notRun: script.steps.length - results.length,
  };
}
