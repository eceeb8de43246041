// JSON over HTTP between the parties (client terminal -> merchant / payment server, OPAL -> payment server,
// bank -> load server ...): undici's dispatch() on one keep-alive agent, with a timeout, our error shape turned
// back into a typed error. (dispatch with a handler that collects the body, rather than undici's request(),
// whose readable body stream cost ~27 us more client CPU per request here (43 against 70 us, 16 callers on a
// fastify echo); request() in turn beat fetch, ~5x dearer, and node:http, ~12% more CPU per purchase.)

import { Agent, type Dispatcher } from 'undici';
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
    return await dispatchRequest({
      origin: target.origin,
      path: `${target.pathname}${target.search}`,
      method: method as Dispatcher.HttpMethod,
      headers: options.headers ?? null,
      body: options.body ?? null,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
  } catch (e) {
    if (e instanceof RemoteError) throw e;
    const code = (e as { code?: string }).code ?? '';
    if (TIMEOUT_CODES.has(code)) throw new RemoteError(0, 'REMOTE_TIMEOUT', `${method} ${url}: no answer in time`, url, { cause: e });
    const why = (e as Error).message || code || 'request failed';
    throw new RemoteError(0, 'REMOTE_UNREACHABLE', `${method} ${url}: ${why}`, url, { cause: e });
  }
}

/** One request on the shared agent: status, content type and the whole body as text. */
function dispatchRequest(opts: Dispatcher.DispatchOptions): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    let status = 0;
    let contentType = '';
    const chunks: Buffer[] = [];
    agent.dispatch(opts, {
      onRequestStart() {}, // (its presence marks this as a handler of undici's current API)
      onResponseStart(_controller, statusCode, headers) {
        status = statusCode;
        const type = headers['content-type'];
        contentType = Array.isArray(type) ? type.join(', ') : (type ?? '');
        chunks.length = 0; // a 1xx answer comes before the real one
      },
      onResponseData(_controller, chunk) {
        chunks.push(chunk);
      },
      onResponseEnd() {
        resolve({ status, contentType, text: chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8') });
      },
      onResponseError(_controller, err) {
        reject(err);
      },
    });
  });
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
