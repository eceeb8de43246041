// The merchant's payment page and the OPAL virtual card (dual mode): with an OPAL server configured (config
// field opalServer or `serve merchant --opal URL`), the page offers "Pay with OPAL virtual card", a link to
// OPAL/?page=<this payment page's URL>, beside the physical-card instructions; without one, no such link.

import { afterAll, describe, expect, it } from 'vitest';
import { MerchantConfigError, parseMerchantConfig, type MerchantConfig } from '../../../src/server/merchant/config.ts';
import { createMerchantServer, type MerchantServer } from '../../../src/server/merchant/server.ts';
import { merchantConfig } from '../client/helpers.ts';

const OPAL = 'http://opal.example:8405';
const servers: MerchantServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
});

async function shop(config: MerchantConfig): Promise<MerchantServer> {
  const s = await createMerchantServer({ config, logLevel: false });
  servers.push(s);
  return s;
}

/** A new order and its payment page (HTML, as a browser asks for it). */
async function orderPage(s: MerchantServer, body: object = { items: [{ sku: 'ebook-ts' }] }): Promise<{ payUrl: string; html: string }> {
  const o = await s.app.inject({ method: 'POST', url: '/api/orders', payload: body, headers: { host: 'shop.example:8403' } });
  expect(o.statusCode, o.body).toBe(201);
  const { payUrl, txnId } = o.json() as { payUrl: string; txnId: string };
  const r = await s.app.inject({ method: 'GET', url: `/orders/${txnId}/pay`, headers: { accept: 'text/html', host: 'shop.example:8403' } });
  expect(r.statusCode).toBe(200);
  return { payUrl, html: r.body };
}

const opalLinks = (html: string) => [...html.matchAll(/<a id="pay-with-opal" href="([^"]*)">([^<]*)<\/a>/g)].map((m) => ({ href: m[1]!.replace(/&amp;/g, '&'), text: m[2]! }));

describe('merchant payment page: Pay with OPAL virtual card', () => {
  it('with an OPAL server configured, links to OPAL/?page=<this payment page> beside the physical-card way', async () => {
    const s = await shop({ ...merchantConfig(), opalServer: OPAL });
    const { payUrl, html } = await orderPage(s);
    expect(payUrl).toMatch(/^http:\/\/shop\.example:8403\/orders\/[0-9A-F]{20}\/pay$/);
    const links = opalLinks(html);
    expect(links).toEqual([{ href: `${OPAL}/?page=${encodeURIComponent(payUrl)}`, text: 'Pay with OPAL virtual card' }]);
    expect(new URL(links[0]!.href).searchParams.get('page')).toBe(payUrl);
    expect(html).toContain('purselab pay URL --reader READER'); // the physical card stays on offer
  });

  it('an authentication order offers "Authenticate with OPAL virtual card"', async () => {
    const s = await shop({ ...merchantConfig(), opalServer: OPAL });
    const { payUrl, html } = await orderPage(s, { benefit: 'lounge' });
    expect(opalLinks(html)).toEqual([{ href: `${OPAL}/?page=${encodeURIComponent(payUrl)}`, text: 'Authenticate with OPAL virtual card' }]);
  });

  it('without an OPAL server, the page has no OPAL link', async () => {
    const s = await shop(merchantConfig());
    const { html } = await orderPage(s);
    expect(html).toContain('purselab pay URL --reader READER');
    expect(opalLinks(html)).toEqual([]);
    expect(html).not.toMatch(/OPAL/);
  });

  it('the config field opalServer: a base URL (trailing slash dropped), anything else refused by name', () => {
    const base = { merchantId: 'SHOP-1', sharedKey: '0123456789ABCDEFFEDCBA9876543210', paymentServer: 'http://127.0.0.1:9', currency: 978, catalogue: [{ sku: 'a', name: 'A', price: 1, goods: 'a' }] };
    expect(parseMerchantConfig({ ...base, opalServer: `${OPAL}/` }, 'f.json', '.').opalServer).toBe(OPAL);
    expect(parseMerchantConfig(base, 'f.json', '.').opalServer).toBeUndefined();
    expect(() => parseMerchantConfig({ ...base, opalServer: 'ftp://opal' }, 'f.json', '.')).toThrow(MerchantConfigError);
    expect(() => parseMerchantConfig({ ...base, opalServer: 'ftp://opal' }, 'f.json', '.')).toThrow(/opalServer/);
  });
});
