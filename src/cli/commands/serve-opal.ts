// `purselab serve opal --config FILE --hsm SPEC [--port N] [--db PATH]`: the OPAL virtual-card server (seed 003
// FIGS. 3-4): users, virtual cards sealed by the HSM, the pseudo reader, purchase / load / re-credit flows and the
// cardholder's web page. Runs until SIGINT/SIGTERM, then closes the HTTP server, the database and the HSM.

import { createHsm, describeConfig, parseHsmSpec, HSM_SPEC_ENV } from '../../../hsm-bridge/config.ts';
import { relaunchWithLegacyOpenSsl } from '../../../hsm-bridge/pkcs11/relaunch.ts';
import { loadOpalConfig } from '../../opal/config.ts';
import { opalCrashPointFromEnv, OPAL_CRASH_ENV } from '../../opal/crash.ts';
import { createOpalServer } from '../../opal/server.ts';
import { type CliCommand } from '../command.ts';
import { listenUntilSignal, parseServeArgs, requireHsmSpec } from './serve-common.ts';

export const serveOpalCommand: CliCommand = {
  name: 'serve opal',
  summary: 'run the OPAL virtual-card server (virtual cards sealed by an HSM, pseudo reader, web page)',
  help: [
    'Usage: purselab serve opal --config FILE --hsm SPEC [--port N] [--host ADDR] [--db PATH] [--log-level L]',
    '',
    'The online purchase and load server (seed 003, docs/opal-server.md): each virtual card is the purse',
    "applet's state sealed under HSM-held record keys; the same applet code runs on it behind a pseudo card",
    'reader, so the client terminal library pays and loads with it unchanged.',
    '  GET  /                    the cardholder web page (register, log in, balance, history, pay, load)',
    '  POST /v1/register, /v1/login, /v1/logout, /v1/password;  GET /v1/balance, /v1/history',
    '  POST /v1/purchase/quote, /v1/purchase, /v1/load, /v1/load/resume',
    '  POST /v1/admin/recredit, /v1/admin/recredit-claim;  GET /v1/admin/recovery (operator token)',
    'On start, flows a crash cut (history rows still "started") are marked interrupted with what to do next.',
    'Prints "serve opal: listening on URL" when ready; JSON logs (pino) go to stderr.',
    '',
    'Options:',
    '  --config FILE    OPAL configuration (fixtures/opal/opal.json: issuers by BIN with card profile and key set,',
    '                   scrypt, lockout, session length, mail directory, admin token variable)',
    `  --hsm SPEC       the OPAL HSM holding opal-record-enc/-mac (purselab hsm init): software:PATH |`,
    `                   pkcs11:MODULE#TOKEN[#PIN_ENV] | serial:LINE  (default: env ${HSM_SPEC_ENV});`,
    '                   pkcs11 options after ";": processes=N (session processes), master-copies=off (docs/hsm-bridge.md)',
    '  --port N         TCP port (default 8405; 0 = any free port)',
    '  --host ADDR      address to listen on (default 127.0.0.1)',
    '  --db PATH        SQLite file (default ./opal.db)',
    '  --log-level L    pino level: fatal error warn info debug trace silent (default info)',
    `  (tests only: ${OPAL_CRASH_ENV}=POINT kills the process at that point of a purchase or load)`,
    '',
    'Example:',
    '  PURSELAB_HSM_MASTER=change-me purselab hsm init --software opal-hsm.store',
    '  PURSELAB_HSM_MASTER=change-me purselab serve opal --config fixtures/opal/opal.json --hsm software:opal-hsm.store --port 8405',
  ].join('\n'),
  async run(args, io) {
    const { values, file, host, port, logLevel } = parseServeArgs(args, { command: 'serve opal', defaultPort: 8405, configExample: 'fixtures/opal/opal.json', extra: { hsm: { type: 'string' } } });
    const hsmConfig = parseHsmSpec(requireHsmSpec(values.hsm, 'software:opal-hsm.store'));
    if (hsmConfig.backend === 'pkcs11') {
      const relaunched = relaunchWithLegacyOpenSsl();
      if (relaunched) return relaunched;
    }
    const config = loadOpalConfig(file);
    const hsm = await createHsm(hsmConfig);
    await hsm.open();
    io.err(`serve opal: HSM ${describeConfig(hsmConfig)} open`);
    const dbPath = values.db ?? 'opal.db';
    let server;
    try {
      server = await createOpalServer({ config, hsm, dbPath, logLevel, logStream: process.stderr, crashAt: opalCrashPointFromEnv() });
    } catch (e) {
      await hsm.close();
      throw e;
    }
    const opal = server;
    const url = await listenUntilSignal(opal.app, { host, port }, () => opal.listen(host, port), async () => {
      await opal.close();
      await hsm.close();
    }, io);
    io.out(`serve opal: listening on ${url}`);
    if (server.recovered.length > 0) io.out(`  recovery: ${server.recovered.length} flow(s) cut by a crash marked interrupted (GET /v1/admin/recovery)`);
    io.out(`  issuers: ${config.issuers.map((i) => `${i.bin} (${i.name})`).join(', ')}; database ${dbPath}; one-time passwords mailed to ${config.mailDir}`);
    await new Promise<never>(() => undefined); // until SIGINT/SIGTERM (closeOnSignals exits)
    return 0;
  },
};
