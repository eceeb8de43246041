// `purselab serve payment --config FILE [--host ADDR] [--port N] [--db PATH]`: the payment server of seed 003
// (206) with its pool of PSAMs. Runs until SIGINT/SIGTERM, then closes cleanly (in-flight requests finish, PSAM
// channels close, emu: images are saved, the store closes).

import { listen } from '../../server/app.ts';
import { loadPaymentConfig } from '../../server/payment/config.ts';
import { createPaymentServer, crashPointFromEnv } from '../../server/payment/server.ts';
import { type CliCommand } from '../command.ts';
import { listenUntilSignal, parseServeArgs } from './serve-common.ts';

export const servePaymentCommand: CliCommand = {
  name: 'serve payment',
  summary: 'run the payment server: PSAM pool, draw request -> DEBIT with S2 -> S3 verified -> Debit Result',
  help: [
    'Usage: purselab serve payment --config FILE [--host ADDR] [--port N] [--db PATH] [--log-level L]',
    '',
    'Serves the payment server of seed 003 (docs/payment-server.md) with a pool of PSAMs:',
    '  POST /v1/draw            draw request (order ticket + card start-up data) -> Debit IEP with S2',
    '  POST /v1/debit-response  the card\'s DEBIT answer -> Debit Result C (client) and M (merchant); idempotent',
    '  POST /v1/confirm         trusted-agent / merchant-compare: the card\'s S3 after the fact',
    '  POST /v1/abort           the client gave up before the DEBIT',
    '  GET  /v1/health          the PSAM pool (ids, state, in service) and payment counts',
    '  GET  /v1/admin/recovery, POST /v1/admin/recredit, POST /v1/admin/batch, GET /v1/admin/batches[/ID]',
    'Prints "payment server listening on URL" when ready; JSON logs (pino) go to stderr. Card numbers are',
    'masked and keys never logged.',
    '',
    'Options:',
    '  --config FILE     configuration (fixtures/payment/payment-server.json: merchants with key 402 and variant,',
    '                    PSAM readers or emu:IMAGE, issuerLinkKey, acquirerKeys, timeouts)',
    '  --host ADDR       address to listen on (default 127.0.0.1)',
    '  --port N          TCP port (default 8402; 0 = any free port)',
    '  --db PATH         SQLite file (default: the configuration\'s db, else ./payment.db)',
    '  --log-level L     fatal error warn info debug trace silent (default info)',
    '',
    'After a restart every interrupted payment is completed (a stored S3 is verified with its PSAM) or clearly',
    'failed; payments whose DEBIT went out without a result are listed by `purselab payment report`.',
    '',
    'Example:',
    '  purselab psam issue --profile fixtures/profiles/psam-3des.json --keys fixtures/keys/demo-issuer.json --out fixtures/payment/psam-1.img',
    '  purselab serve payment --config fixtures/payment/payment-server.json --port 8402 --db payment.db',
  ].join('\n'),
  async run(args, io) {
    const { values, file, host, port, logLevel } = parseServeArgs(args, { command: 'serve payment', defaultPort: 8402, configExample: 'fixtures/payment/payment-server.json', extra: {} });
    const config = loadPaymentConfig(file);
    io.out(`serve payment: opening ${config.psams.length} PSAM(s) ...`);
    const server = await createPaymentServer({
      config,
      ...(values.db ? { dbPath: values.db } : {}),
      logLevel,
      logStream: process.stderr,
      crashAt: crashPointFromEnv(),
    });
    const url = await listenUntilSignal(server.app, { host, port }, () => listen(server.app, host, port), () => server.close(), io);
    for (const p of server.pool.health()) io.out(`  ${p.id} ${p.reader}: ${p.inService ? `PSAM ${p.psamId}` : `OUT OF SERVICE (${p.lastError})`}`);
    io.out(`  ${config.merchants.size} merchant(s): ${[...config.merchants.values()].map((m) => `${m.id} ${m.variant}${m.encrypted ? '+FIG.9' : ''}`).join(', ')}; store ${server.dbPath}`);
    io.out(`payment server listening on ${url}`);
    await new Promise<never>(() => undefined); // until SIGINT/SIGTERM (closeOnSignals exits)
    return 0;
  },
};
