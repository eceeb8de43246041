// `purselab serve load --config FILE --hsm SPEC [--port N] [--db PATH]`: the issuer's load server of seed 003
// (862) with its HSM (864) on any hsm-bridge backend. Runs until SIGINT/SIGTERM, then closes cleanly
// (in-flight requests finish, the store and the HSM session close).

import { HSM_SPEC_ENV, parseHsmSpec } from '../../../hsm-bridge/config.ts';
import { relaunchWithLegacyOpenSsl } from '../../../hsm-bridge/pkcs11/relaunch.ts';
import { listen } from '../../server/app.ts';
import { loadLoadConfig } from '../../server/load/config.ts';
import { createLoadServer, crashPointFromEnv } from '../../server/load/server.ts';
import { type CliCommand } from '../command.ts';
import { listenUntilSignal, parseServeArgs, requireHsmSpec } from './serve-common.ts';

export const serveLoadCommand: CliCommand = {
  name: 'serve load',
  summary: 'run the issuer\'s load server: Load Request -> S1 verified in the HSM -> S2 -> S3 verified -> Load Result',
  help: [
    'Usage: purselab serve load --config FILE --hsm SPEC [--host ADDR] [--port N] [--db PATH] [--log-level L]',
    '',
    'Serves the load server of seed 003 (docs/bank-and-load-server.md) with the issuer HSM:',
    '  POST /v1/loads                    Load Request (S1, card, amount ... + the bank\'s ticket) -> Credit IEP (S2)',
    '  POST /v1/loads/TXN/response       the card\'s Load Response (S3) -> Load Result sealed for the bank',
    '  POST /v1/loads/TXN/recovery       zero-value Load Request (negative-result handling) -> Load Result',
    '  GET  /v1/loads/TXN[/result]       progress / sealed result, to resume a load cut off',
    '  POST /v1/bank/loads/TXN/status    the bank\'s cancel / timeout query (aborts a load that has no S2 yet)',
    '  POST /v1/recredit                 re-credit claim of the payment server (with issuerLinkKey)',
    'Prints "load server listening on URL" when ready; JSON logs (pino) go to stderr. Card numbers are masked',
    'and keys never logged. Every step is saved in SQLite before the next; after a restart each load is',
    'completed or clearly failed through the client\'s resume or the bank\'s query.',
    '',
    'Options:',
    '  --config FILE     configuration (fixtures/load/demo-load.json: banks and their shared keys, issuerLinkKey)',
    `  --hsm SPEC        issuer HSM: software:PATH | pkcs11:MODULE#TOKEN[#PIN_ENV] | serial:LINE (default: $${HSM_SPEC_ENV});`,
    '                    pkcs11 options after ";": processes=N (session processes), master-copies=off (docs/hsm-bridge.md)',
    '  --host ADDR       address to listen on (default 127.0.0.1)',
    '  --port N          TCP port (default 8410; 0 = any free port)',
    '  --db PATH         SQLite file (default ./load.db)',
    '  --log-level L     fatal error warn info debug trace silent (default info)',
    '',
    'Example:',
    '  PURSELAB_HSM_MASTER=secret purselab hsm init --software issuer.store --keys fixtures/keys/demo-issuer.json',
    '  PURSELAB_HSM_MASTER=secret purselab serve load --config fixtures/load/demo-load.json --hsm software:issuer.store',
  ].join('\n'),
  async run(args, io) {
    const { values, file, host, port, logLevel } = parseServeArgs(args, { command: 'serve load', defaultPort: 8410, configExample: 'fixtures/load/demo-load.json', extra: { hsm: { type: 'string' } } });
    const hsm = parseHsmSpec(requireHsmSpec(values.hsm, 'software:issuer-hsm.store'));
    if (hsm.backend === 'pkcs11') {
      const relaunched = relaunchWithLegacyOpenSsl();
      if (relaunched) return relaunched;
    }
    const config = loadLoadConfig(file);
    const server = await createLoadServer({ config, dbPath: values.db ?? 'load.db', hsm, logLevel, logStream: process.stderr, crashAt: crashPointFromEnv() });
    const url = await listenUntilSignal(server.app, { host, port }, () => listen(server.app, host, port), () => server.close(), io);
    io.out(`  issuer ${config.issuerId}, HSM: ${server.hsmDescription}; bank(s): ${[...config.banks.keys()].join(', ')}; store ${values.db ?? 'load.db'}`);
    io.out(`load server listening on ${url}`);
    await new Promise<never>(() => undefined);
    return 0;
  },
};
