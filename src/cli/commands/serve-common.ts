// What every `purselab serve ...` command shares: its common options (--config FILE, --host, --port, --db,
// --log-level) parsed and checked, the --hsm SPEC of the servers that hold an HSM, and starting to listen with
// a clean failure (the server's resources closed, a one-line usage error) and a clean shutdown on SIGINT/SIGTERM.

import type { ParseArgsConfig } from 'node:util';
import type { FastifyInstance } from 'fastify';
import { HSM_SPEC_ENV } from '../../../hsm-bridge/config.ts';
import { closeOnSignals } from '../../server/app.ts';
import { parseCommandArgs, refusePositionals, requireOption, UsageError, type CliIo } from '../command.ts';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** --port N (0 = any free port) and --log-level; `logLevel` is what createServerApp takes (false = silent). */
export function serveOptions(values: { port?: string | undefined; 'log-level'?: string | undefined }, defaultPort: number): { port: number; level: string; logLevel: string | false } {
  const port = values.port === undefined ? defaultPort : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535, got '${values.port}'`);
  const level = values['log-level'] ?? 'info';
  if (!LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}, got '${level}'`);
  return { port, level, logLevel: level === 'silent' ? false : level };
}

const SERVE_OPTIONS = {
  config: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  db: { type: 'string' },
  'log-level': { type: 'string' },
} as const;

/**
 * The arguments of `purselab <command>`: the common serve options plus `extra` ones; no positionals; --config
 * required (`configExample` in the message); host (default 127.0.0.1), port (default `defaultPort`), log level.
 */
export function parseServeArgs<E extends NonNullable<ParseArgsConfig['options']>>(args: string[], o: { command: string; defaultPort: number; configExample: string; extra: E }) {
  const { values, positionals } = parseCommandArgs(args, { ...SERVE_OPTIONS, ...o.extra });
  refusePositionals(positionals, `see purselab ${o.command} --help`);
  const v = values as { config?: string; host?: string; port?: string; db?: string; 'log-level'?: string };
  const file = requireOption(v.config, '--config FILE', `e.g. ${o.configExample}`);
  const { port, logLevel } = serveOptions(v, o.defaultPort);
  return { values, file, host: v.host ?? '127.0.0.1', port, logLevel, db: v.db };
}

/** The HSM spec of --hsm, or of PURSELAB_HSM; a usage error (with `example`) when neither is given. */
export function requireHsmSpec(flag: string | undefined, example: string): string {
  const spec = flag ?? process.env[HSM_SPEC_ENV];
  if (!spec) throw new UsageError(`--hsm SPEC is required (or set ${HSM_SPEC_ENV}), e.g. ${example}`);
  return spec;
}

/**
 * Listen (`start` resolves with the URL); if that fails, run `close` and throw a UsageError naming host:port.
 * Once listening, SIGINT/SIGTERM close the app and then run `close` (closeOnSignals).
 */
export async function listenUntilSignal(app: FastifyInstance, where: { host: string; port: number }, start: () => Promise<string>, close: () => Promise<void> | void, io: CliIo): Promise<string> {
  let url: string;
  try {
    url = await start();
  } catch (e) {
    await close();
    throw new UsageError(`cannot listen on ${where.host}:${where.port}: ${(e as Error).message}`);
  }
  closeOnSignals(app, close, io);
  return url;
}
