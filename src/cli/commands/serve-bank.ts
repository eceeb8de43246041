// `purselab serve bank --config FILE [--port N] [--db PATH] [--load-server URL]`: the bank server of seed 003
// (860) with seeded demo accounts. Runs until SIGINT/SIGTERM, then closes cleanly (in-flight requests finish,
// the hold sweep stops, the store closes).

import { listen } from '../../server/app.ts';
import { createBankApp } from '../../server/bank/app.ts';
import { loadBankConfig } from '../../server/bank/config.ts';
import { BankService } from '../../server/bank/service.ts';
import { SqliteBankStore } from '../../server/bank/store.ts';
import { type CliCommand } from '../command.ts';
import { listenUntilSignal, parseServeArgs } from './serve-common.ts';

export const serveBankCommand: CliCommand = {
  name: 'serve bank',
  summary: 'run the bank server: cardholder login, load screen, hold, capture/release on the Load Result',
  help: [
    'Usage: purselab serve bank --config FILE [--host ADDR] [--port N] [--db PATH] [--load-server URL] [--log-level L]',
    '',
    'Serves the bank of seed 003 (docs/bank-and-load-server.md): funding accounts seeded from the configuration',
    '(on first start; balances then live in the database), cardholder logins (scrypt), and loads:',
    '  POST /v1/login                 user + password -> bearer token',
    '  POST /v1/loads/quote           card balance, currency, maximum -> max load (maximum - balance)',
    '  POST /v1/loads                 amount -> hold on the account + the client applet parameters',
    '  POST /v1/loads/TXN/result      the status URL: the sealed Load Result -> capture (to the issuer float) or release',
    '  POST /v1/loads/TXN/cancel      give up a load; GET /v1/loads/TXN: hold state',
    'Expired holds are swept in the background: the load server is asked, and a load without an S2 is aborted',
    'and released; a load whose S2 has left keeps its hold until its outcome is known.',
    'Prints "bank server listening on URL" when ready; JSON logs (pino) go to stderr.',
    '',
    'Options:',
    '  --config FILE       configuration (fixtures/bank/demo-bank.json)',
    '  --host ADDR         address to listen on (default 127.0.0.1)',
    '  --port N            TCP port (default 8400; 0 = any free port)',
    '  --db PATH           SQLite file (default ./bank.db)',
    '  --load-server URL   the load server (overrides the configuration\'s loadServer)',
    '  --log-level L       fatal error warn info debug trace silent (default info)',
    '',
    'Example:',
    '  purselab serve bank --config fixtures/bank/demo-bank.json --load-server http://127.0.0.1:8410',
  ].join('\n'),
  async run(args, io) {
    const { values, file, host, port, logLevel } = parseServeArgs(args, {
      command: 'serve bank',
      defaultPort: 8400,
      configExample: 'fixtures/bank/demo-bank.json',
      extra: { 'load-server': { type: 'string' } },
    });
    const config = loadBankConfig(file);
    const store = new SqliteBankStore(values.db ?? 'bank.db');
    const service = new BankService({ store, config, ...(values['load-server'] ? { loadServer: values['load-server'] } : {}) });
    await service.seed();
    const app = createBankApp({ service, sweepIntervalSeconds: config.sweepIntervalSeconds, logLevel, logStream: process.stderr });
    const url = await listenUntilSignal(app, { host, port }, () => listen(app, host, port), () => store.close(), io);
    io.out(`  bank ${config.bankId}: ${config.accounts.length} account(s), float ${config.floatAccount.accountId}; load server ${service.loadServer}; store ${values.db ?? 'bank.db'}`);
    io.out(`bank server listening on ${url}`);
    await new Promise<never>(() => undefined);
    return 0;
  },
};
