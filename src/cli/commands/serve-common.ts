// What every `purselab serve ...` command shares: --port / --log-level parsing, and starting to listen with a
// clean failure (the server's resources closed, a one-line usage error) and a clean shutdown on SIGINT/SIGTERM.

import type { FastifyInstance } from 'fastify';
import { closeOnSignals } from '../../server/app.ts';
import { UsageError, type CliIo } from '../command.ts';

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** --port N (0 = any free port) and --log-level; `logLevel` is what createServerApp takes (false = silent). */
export function serveOptions(values: { port?: string | undefined; 'log-level'?: string | undefined }, defaultPort: number): { port: number; level: string; logLevel: string | false } {
  const port = values.port === undefined ? defaultPort : Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be 0..65535, got '${values.port}'`);
  const level = values['log-level'] ?? 'info';
  if (!LEVELS.includes(level)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}, got '${level}'`);
  return { port, level, logLevel: level === 'silent' ? false : level };
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
