// JSON over HTTP between the parties (client terminal -> merchant / payment server, OPAL -> payment server,
// bank -> load server ...): undici's request() on one keep-alive agent, with a timeout, our error shape turned
// back into a typed error. (undici's request rather than fetch, which costs ~5x more per request on this
// machine, or node:http, whose client side cost ~12% more CPU per purchase in `bench payment`.)

import { Agent, request } from 'undici';
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

export interface HttpResponse {
  readonly status: number;
  readonly contentType: string;
  readonly text: string;
}

/** One keep-alive agent for every origin (http and https), as many connections per origin as callers need. */
const agent = new Agent({ keepAliveTimeout: 30_000, connections: 256 });

export interface HttpRequestOptions {
  readonly method: string;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly timeoutMs?: number;
}

/**
 * A test seam for cutting links: called for every request with the function that really sends it. Tests
 * use it to drop a request before it leaves or to lose its answer after the server acted on it.
 */
export type HttpInterceptor = (url: string, options: HttpRequestOptions, send: () => Promise<HttpResponse>) => Promise<HttpResponse>;
let interceptor: HttpInterceptor | undefined;

/** Install an interceptor (undefined removes it); returns a function that restores the previous one. */
export function interceptHttp(fn: HttpInterceptor | undefined): () => void {
  const previous = interceptor;
  interceptor = fn;
  return () => {
    interceptor = previous;
  };
}

/** One HTTP exchange; RemoteError status 0 (REMOTE_UNREACHABLE / REMOTE_TIMEOUT) when there is no answer. */
export function httpRequest(url: string, options: HttpRequestOptions): Promise<HttpResponse> {
  return interceptor ? interceptor(url, options, () => sendRequest(url, options)) : sendRequest(url, options);
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);

async function sendRequest(url: string, options: HttpRequestOptions): Promise<HttpResponse> {
  const { method } = options;
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new RemoteError(0, 'REMOTE_BAD_URL', `'${url}' is not a URL`, url);
  }
  if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new RemoteError(0, 'REMOTE_BAD_URL', `'${url}' is not an http(s) URL`, url);
  const timeoutMs = options.timeoutMs ?? 15_000;
  try {
    const res = await request(target, {
      method: method as 'GET',
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.body !== undefined ? { body: options.body } : {}),
      dispatcher: agent,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    const type = res.headers['content-type'];
    return { status: res.statusCode, contentType: Array.isArray(type) ? type.join(', ') : (type ?? ''), text: await res.body.text() };
  } catch (e) {
    if (e instanceof RemoteError) throw e;
    const code = (e as { code?: string }).code ?? '';
    if (TIMEOUT_CODES.has(code)) throw new RemoteError(0, 'REMOTE_TIMEOUT', `${method} ${url}: no answer in time`, url, { cause: e });
    const why = (e as Error).message || code || 'request failed';
    throw new RemoteError(0, 'REMOTE_UNREACHABLE', `${method} ${url}: ${why}`, url, { cause: e });
  }
}

/** Request JSON, resolve with the parsed body on 2xx; RemoteError (with the server's code) otherwise. */
export async function requestJson<T = unknown>(url: string, options: JsonRequestOptions = {}): Promise<T> {
  const method = options.method ?? (options.body === undefined ? 'GET' : 'POST');
  const res = await httpRequest(url, {
    method,
    headers: { accept: 'application/json', ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}), ...options.headers },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
  });
  let body: unknown;
  try {
    body = res.text ? JSON.parse(res.text) : undefined;
  } catch {
    throw new RemoteError(res.status, 'REMOTE_BAD_RESPONSE', `${method} ${url}: HTTP ${res.status} with a body that is not JSON`, url);
  }
  if (res.status < 200 || res.status > 299) {
    const err = (body as { error?: { code?: string; message?: string } } | undefined)?.error;
    throw new RemoteError(res.status, err?.code ?? `HTTP_${res.status}`, err?.message ?? `${method} ${url}: HTTP ${res.status}`, url);
  }
  return body as T;
}
