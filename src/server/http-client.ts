// JSON over HTTP between the parties (client terminal -> merchant / payment server, OPAL -> payment server,
// bank -> load server ...): fetch with a timeout, our error shape turned back into a typed error.

import { PurselabError } from '../errors.ts';

export class RemoteError extends PurselabError {
  /** HTTP status, or 0 when the server could not be reached or did not answer in time. */
  readonly status: number;
  readonly url: string;
  constructor(status: number, code: string, message: string, url: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.status = status;
    this.url = url;
  }
}

export interface JsonRequestOptions {
  readonly method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly body?: unknown;
  readonly headers?: Record<string, string>;
  /** Default 15 s. */
  readonly timeoutMs?: number;
}

/** Request JSON, resolve with the parsed body on 2xx; RemoteError (with the server's code) otherwise. */
export async function requestJson<T = unknown>(url: string, options: JsonRequestOptions = {}): Promise<T> {
  const method = options.method ?? (options.body === undefined ? 'GET' : 'POST');
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: { accept: 'application/json', ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers },
      ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    });
  } catch (e) {
    const timeout = (e as Error).name === 'TimeoutError';
    throw new RemoteError(0, timeout ? 'REMOTE_TIMEOUT' : 'REMOTE_UNREACHABLE', `${method} ${url}: ${timeout ? 'no answer in time' : (e as Error).message}`, url, { cause: e });
  }
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    throw new RemoteError(res.status, 'REMOTE_BAD_RESPONSE', `${method} ${url}: HTTP ${res.status} with a body that is not JSON`, url);
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new RemoteError(res.status, err?.code ?? `HTTP_${res.status}`, err?.message ?? `${method} ${url}: HTTP ${res.status}`, url);
  }
  return body as T;
}
