// `purselab serve merchant --config FILE [--port N] [--db PATH]`: the merchant's web shop (seed 003 merchant
// server 208): catalogue, orders, the payment page with the patent's page parameters, and the status URL that
// releases the goods only on a valid result. Runs until SIGINT/SIGTERM, then closes cleanly.

import { loadMerchantConfig, parseBaseUrl } from '../../server/merchant/config.ts';
import { createMerchantServer } from '../../server/merchant/server.ts';
import { type CliCommand } from '../command.ts';
import { listenUntilSignal, parseServeArgs } from './serve-common.ts';

export const serveMerchantCommand: CliCommand = {
  name: 'serve merchant',
  summary: 'run the merchant web shop (catalogue, orders, payment page, status URL that releases goods)',
  help: [
    'Usage: purselab serve merchant --config FILE [--port N] [--host ADDR] [--db PATH] [--payment-server URL] [--opal URL] [--log-level L]',
    '',
    'Serves a small shop for Internet card payments (seed 003, docs/merchant-and-client.md):',
    '  GET  /                      catalogue (HTML);  GET /api/catalogue (JSON);  GET /benefits (FIG. 16)',
    '  POST /api/orders            {"items":[{"sku":"ebook-ts","quantity":1}]} or {"benefit":"lounge"} -> order',
    '  GET  /orders/ID/pay         payment page: cost, currency, exponent, txnId, merchantId, payment server,',
    '                              status URL, order MAC (and TSK/ETSK with the FIG. 9 layer); JSON with',
    '                              Accept: application/json or at /orders/ID/pay.json',
    '  POST /api/orders/ID/status  the result the client relays; goods are released once, only when it proves',
    '                              this order was paid (Debit Result M, authorisation + S3, or expected S3 + S3)',
    '  GET  /api/orders/ID         order status',
    'Prints "serve merchant: listening on URL" when ready; JSON logs (pino) go to stderr.',
    '',
    'Options:',
    '  --config FILE           merchant configuration (fixtures/merchant/merchant.json: merchant id, TEST key 402,',
    '                          variant, encrypted, payment server, catalogue, benefits)',
    '  --port N                TCP port (default 8403; 0 = any free port)',
    '  --host ADDR             address to listen on (default 127.0.0.1)',
    '  --db PATH               SQLite file for orders and releases (default: in memory, lost on exit)',
    '  --payment-server URL    override the configuration\'s payment server address',
    '  --opal URL              an OPAL virtual-card server (purselab serve opal): the payment page then also offers',
    '                          "Pay with OPAL virtual card", a link to URL/?page=<the payment page> (dual mode);',
    '                          overrides the configuration\'s opalServer',
    '  --log-level L           pino level: fatal error warn info debug trace silent (default info)',
    '',
    'Example:',
    '  purselab serve merchant --config fixtures/merchant/merchant.json --port 8403 --db merchant.db',
  ].join('\n'),
  async run(args, io) {
    const { values, file, host, port, logLevel } = parseServeArgs(args, {
      command: 'serve merchant',
      defaultPort: 8403,
      configExample: 'fixtures/merchant/merchant.json',
      extra: { 'payment-server': { type: 'string' }, opal: { type: 'string' } },
    });
    let config = loadMerchantConfig(file);
    if (values['payment-server'] !== undefined) {
      config = { ...config, paymentServer: parseBaseUrl(values['payment-server'], 'serve merchant', '--payment-server') };
    }
    if (values.opal !== undefined) config = { ...config, opalServer: parseBaseUrl(values.opal, 'serve merchant', '--opal') };
    const server = await createMerchantServer({
      config,
      dbPath: values.db ?? ':memory:',
      logLevel,
      logStream: process.stderr,
    });
    const url = await listenUntilSignal(server.app, { host, port }, () => server.listen(host, port), () => server.store.close(), io);
    io.out(`serve merchant: listening on ${url}`);
    io.out(`  merchant ${config.merchantId} (${config.name}), variant ${config.variant}${config.encrypted ? ' + FIG. 9 encryption' : ''}, payment server ${config.paymentServer}${config.opalServer ? `, OPAL ${config.opalServer}` : ''}`);
    io.out(`  ${config.catalogue.length} items, ${config.benefits.length} benefits; orders in ${values.db ?? 'memory (lost on exit: --db PATH keeps them)'}`);
    await new Promise<never>(() => undefined); // until SIGINT/SIGTERM (closeOnSignals exits)
    return 0;
  },
};
