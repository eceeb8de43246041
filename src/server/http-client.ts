// JSON over HTTP between the parties (client terminal -> merchant / payment server, OPAL -> payment server,
// bank -> load server ...): node:http(s) with keep-alive agents and a timeout, our error shape turned back
// into a typed error. (node:http rather than fetch: on this machine fetch costs ~5x more per request, and
// a purchase makes six of them.)

import http from 'node:http';
import https from 'node:https';
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

const agents = {
  'http:': new http.Agent({ keepAlive: true, maxSockets: 256 }),
  'https:': new https.Agent({ keepAlive: true, maxSockets: 256 }),
};

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

function sendRequest(url: string, options: HttpRequestOptions): Promise<HttpResponse> {
  const { method } = options;
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    return Promise.reject(new RemoteError(0, 'REMOTE_BAD_URL', `'${url}' is not a URL`, url));
  }
  const lib = target.protocol === 'https:' ? https : target.protocol === 'http:' ? http : undefined;
  if (!lib) return Promise.reject(new RemoteError(0, 'REMOTE_BAD_URL', `'${url}' is not an http(s) URL`, url));
  const timeoutMs = options.timeoutMs ?? 15_000;
  return new Promise<HttpResponse>((resolve, reject) => {
    let settled = false;
    const fail = (code: string, why: string, cause?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new RemoteError(0, code, `${method} ${url}: ${why}`, url, cause === undefined ? undefined : { cause }));
    };
    const headers: Record<string, string | number> = { ...options.headers };
    if (options.body !== undefined) headers['content-length'] = Buffer.byteLength(options.body);
    const req = lib.request(target, { method, headers, agent: agents[target.protocol as 'http:' | 'https:'] }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('error', (e) => fail('REMOTE_UNREACHABLE', e.message, e));
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, contentType: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    const timer = setTimeout(() => {
      fail('REMOTE_TIMEOUT', 'no answer in time');
      req.destroy();
    }, timeoutMs);
    req.on('error', (e) => fail('REMOTE_UNREACHABLE', e.message, e));
    req.end(options.body);
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
