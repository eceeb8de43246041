// The server foundation: SQLite migrations per component, the fastify app's one error shape, schema
// validation that refuses unknown fields, and logs with secrets redacted.

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { PurselabError } from '../../../src/errors.ts';
import { createServerApp, conflict, listen } from '../../../src/server/app.ts';
import { RemoteError, requestJson } from '../../../src/server/http-client.ts';
import { openSqlite, schemaVersion, type Migration } from '../../../src/store/sqlite.ts';

const dir = mkdtempSync(join(tmpdir(), 'purselab-foundation-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const V1: Migration[] = [{ version: 1, name: 'accounts', up: 'CREATE TABLE accounts (id TEXT PRIMARY KEY, balance INTEGER NOT NULL)' }];
const V2: Migration[] = [...V1, { version: 2, name: 'seed', up: (db) => db.prepare("INSERT INTO accounts VALUES ('a', 100)").run() }];

describe('SQLite store', () => {
  it('applies migrations once, in order, per component, and survives reopening', () => {
    const path = join(dir, 'm.db');
    const db1 = openSqlite(path, { component: 'bank', migrations: V1 });
    expect(schemaVersion(db1, 'bank')).toBe(1);
    expect(db1.pragma('journal_mode', { simple: true })).toBe('wal');
    db1.close();
    const db2 = openSqlite(path, { component: 'bank', migrations: V2 });
    expect(schemaVersion(db2, 'bank')).toBe(2);
    expect(schemaVersion(db2, 'merchant')).toBe(0);
    db2.close();
    const db3 = openSqlite(path, { component: 'bank', migrations: V2 });
    expect(db3.prepare('SELECT COUNT(*) AS n FROM accounts').get()).toEqual({ n: 1 });
    db3.close();
  });
  it('refuses a database from a newer purselab and misnumbered migrations', () => {
    const path = join(dir, 'new.db');
    openSqlite(path, { component: 'bank', migrations: V2 }).close();
    expect(() => openSqlite(path, { component: 'bank', migrations: V1 })).toThrow(/version 2, this purselab knows 1/);
    expect(() => openSqlite(join(dir, 'bad.db'), { component: 'x', migrations: [{ version: 2, name: 'oops', up: '' }] })).toThrow(/expected 1/);
  });
  it('rolls back a failing migration whole', () => {
    const path = join(dir, 'fail.db');
    const bad: Migration[] = [...V1, { version: 2, name: 'half', up: "INSERT INTO accounts VALUES ('b', 1); INSERT INTO nope VALUES (1)" }];
    expect(() => openSqlite(path, { component: 'bank', migrations: bad })).toThrow(/nope/);
    const db = openSqlite(path, { component: 'bank', migrations: V1 });
    expect(schemaVersion(db, 'bank')).toBe(1);
    expect(db.prepare('SELECT COUNT(*) AS n FROM accounts').get()).toEqual({ n: 0 });
    db.close();
  });
});

describe('server app', () => {
  const logs = new PassThrough();
  let logText = '';
  logs.on('data', (d: Buffer) => (logText += d.toString()));
  const app = createServerApp({ name: 'test', logStream: logs, logLevel: 'info' });
  app.post(
    '/v1/thing',
    { schema: { body: { type: 'object', required: ['amount'], additionalProperties: false, properties: { amount: { type: 'integer' }, password: { type: 'string' } } } } },
    async (req) => {
      const body = req.body as { amount: number; password?: string };
      req.log.info({ body }, 'got it');
      if (body.amount === 409) throw conflict('TXN_REPLAYED', 'transaction T1 was already used');
      if (body.amount === 422) throw new PurselabError('CARD_EXPIRED', 'card expired');
      if (body.amount === 500) throw new Error('secret internals');
      if (body.amount === 501) throw Object.assign(new Error('the purchase broke'), { startup: { cardId: '9990010000000017' } });
      return { ok: body.amount };
    },
  );

  it('answers with one error shape', async () => {
    const post = (payload: unknown) => app.inject({ method: 'POST', url: '/v1/thing', payload: payload as object });
    expect((await post({ amount: 1 })).json()).toEqual({ ok: 1 });
    const unknown = await post({ amount: 1, extra: true });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().error.code).toBe('BAD_REQUEST');
    expect((await post({ amount: '1' })).statusCode).toBe(400);
    expect((await post({ amount: 409 })).json()).toEqual({ error: { code: 'TXN_REPLAYED', message: 'transaction T1 was already used' } });
    expect((await post({ amount: 422 })).statusCode).toBe(422);
    const internal = await post({ amount: 500 });
    expect(internal.statusCode).toBe(500);
    expect(internal.body).not.toContain('secret internals');
    const missing = await app.inject({ method: 'GET', url: '/nowhere' });
    expect(missing.json().error.code).toBe('NOT_FOUND');
  });
  it('redacts passwords in logs', async () => {
    await app.inject({ method: 'POST', url: '/v1/thing', payload: { amount: 2, password: 'hunter2-secret' } });
    expect(logText).toContain('got it');
    expect(logText).not.toContain('hunter2-secret');
    expect(logText).toContain('[redacted]');
  });
  it('logs an unexpected error by its class, message and stack, never the data it carries (a full card id)', async () => {
    expect((await app.inject({ method: 'POST', url: '/v1/thing', payload: { amount: 501 } })).statusCode).toBe(500);
    expect(logText).toContain('the purchase broke');
    expect(logText).not.toContain('9990010000000017');
  });
  it('speaks HTTP over loopback with typed remote errors', async () => {
    const url = await listen(app, '127.0.0.1', 0);
    try {
      expect(await requestJson(`${url}/v1/thing`, { body: { amount: 3 } })).toEqual({ ok: 3 });
      const err = await requestJson(`${url}/v1/thing`, { body: { amount: 409 } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RemoteError);
      expect(err).toMatchObject({ status: 409, code: 'TXN_REPLAYED' });
    } finally {
      await app.close();
    }
    const down = await requestJson(`${url}/v1/thing`, { body: { amount: 3 }, timeoutMs: 2000 }).catch((e: unknown) => e);
    expect(down).toMatchObject({ status: 0, code: 'REMOTE_UNREACHABLE' });
  });
  it('a server that never answers is REMOTE_TIMEOUT; a bad URL is REMOTE_BAD_URL; a non-JSON body is REMOTE_BAD_RESPONSE', async () => {
    const silent = createServer(() => undefined); // accepts, reads, never answers
    const text = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('not json'));
    await Promise.all([silent, text].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
    const at = (s: typeof silent) => `http://127.0.0.1:${(s.address() as AddressInfo).port}/`;
    try {
      const t0 = Date.now();
      expect(await requestJson(at(silent), { body: { a: 1 }, timeoutMs: 300 }).catch((e: unknown) => e)).toMatchObject({ status: 0, code: 'REMOTE_TIMEOUT' });
      expect(Date.now() - t0).toBeLessThan(10_000); // ended by our timeout, not the test's
      expect(await requestJson(at(text)).catch((e: unknown) => e)).toMatchObject({ status: 200, code: 'REMOTE_BAD_RESPONSE' });
      expect(await requestJson('ftp://127.0.0.1/x').catch((e: unknown) => e)).toMatchObject({ status: 0, code: 'REMOTE_BAD_URL' });
      expect(await requestJson('not a url').catch((e: unknown) => e)).toMatchObject({ status: 0, code: 'REMOTE_BAD_URL' });
    } finally {
      silent.closeAllConnections();
      await Promise.all([silent, text].map((s) => new Promise((r) => s.close(r))));
    }
  });
});
