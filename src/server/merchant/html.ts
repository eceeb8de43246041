// The merchant's HTML pages: the catalogue (GET /), the FIG. 16 benefits page (GET /benefits) and the payment
// page (GET /orders/:id/pay) that carries the patent's page parameters twice: as <param> elements of the
// object that starts the client terminal (cost, currency, exponent, txnId, merchantId, payment server, status
// URL, order MAC, TSK/ETSK) and as the PaymentPage JSON in <script id="purselab-payment-page">, which the
// client terminal reads (src/client/page.ts). With an OPAL server configured, the payment page also offers
// "Pay with OPAL virtual card" (dual mode: the cardholder picks the virtual card or a card in a local reader).

import { currencyName, formatAmount, showAmount } from '../../terminal/amount.ts';
import type { PaymentPage } from '../../protocol/payment-messages.ts';
import type { MerchantConfig } from './config.ts';
import type { StoredOrder } from './store.ts';

/** The id of the script element holding the PaymentPage JSON. */
export const PAGE_SCRIPT_ID = 'purselab-payment-page';

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** JSON safe inside a <script> element (no "</script>", no "<!--"). */
const scriptJson = (v: unknown): string => JSON.stringify(v).replace(/</g, '\\u003c');

const layout = (title: string, body: string): string =>
  `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title></head>\n<body>\n${body}\n</body></html>\n`;

export function cataloguePage(config: MerchantConfig): string {
  const rows = config.catalogue
    .map((c) => `<tr><td>${escapeHtml(c.sku)}</td><td>${escapeHtml(c.name)}</td><td>${escapeHtml(showAmount(c.price, config.currency, config.exponent))}</td></tr>`)
    .join('\n');
  return layout(
    config.name,
    `<h1>${escapeHtml(config.name)}</h1>
<table><thead><tr><th>Item</th><th>Name</th><th>Price</th></tr></thead><tbody>
${rows}
</tbody></table>
<p>Order with <code>POST /api/orders {"items":[{"sku":"...","quantity":1}]}</code>, then pay with
<code>purselab pay URL --reader READER</code> where URL is the order's <code>payUrl</code>.</p>
<p><a href="/benefits">Benefits for card holders</a></p>`,
  );
}

export function benefitsPage(config: MerchantConfig): string {
  const rows = config.benefits.map((b) => `<li><b>${escapeHtml(b.id)}</b>: ${escapeHtml(b.name)}</li>`).join('\n');
  return layout(
    `${config.name}: benefits`,
    `<h1>Benefits</h1>
<p>Claiming a benefit authenticates your card (amount 0): nothing is debited.</p>
<ul>
${rows || '<li>none</li>'}
</ul>
<p>Claim with <code>POST /api/orders {"benefit":"ID"}</code> and pay the order's <code>payUrl</code>.</p>`,
  );
}

/** The payment page's own URL: the status URL and the page are both built on the merchant's base URL. */
export function paymentPageUrlOf(page: PaymentPage): string {
  const txnId = page.ticket.order.txnId;
  const status = `/api/orders/${txnId}/status`;
  const base = page.statusUrl.endsWith(status) ? page.statusUrl.slice(0, -status.length) : new URL(page.statusUrl).origin;
  return `${base}/orders/${txnId}/pay`;
}

/** Where the "Pay with OPAL virtual card" link goes: OPAL's cardholder page, starting from this payment page. */
export function opalPayLink(opalServer: string, page: PaymentPage): string {
  return `${opalServer}/?page=${encodeURIComponent(paymentPageUrlOf(page))}`;
}

export function paymentPageHtml(config: MerchantConfig, order: StoredOrder, page: PaymentPage): string {
  const o = page.ticket.order;
  const params: [string, string][] = [
    ['cost', formatAmount(o.amount, o.exponent)],
    ['amount', String(o.amount)],
    ['currency', String(o.currency)],
    ['exponent', String(o.exponent)],
    ['txnId', o.txnId],
    ['merchantId', o.merchantId],
    ['kind', o.kind],
    ['paymentServer', page.paymentServer],
    ['statusUrl', page.statusUrl],
    ['orderMac', page.ticket.mac],
    ['issuedAt', o.issuedAt],
    ['expiresAt', o.expiresAt],
    ...(page.tsk ? ([['tsk', page.tsk], ['etsk', page.etsk!]] as [string, string][]) : []),
  ];
  const what = order.kind === 'authentication' ? 'Authenticate your card (nothing is debited)' : `Pay ${escapeHtml(formatAmount(o.amount, o.exponent))} ${escapeHtml(currencyName(o.currency))}`;
  // Dual mode: the virtual card at OPAL, beside the physical card in a local reader.
  const opalOffer = config.opalServer
    ? `<p id="opal-offer">No card or reader? <a id="pay-with-opal" href="${escapeHtml(opalPayLink(config.opalServer, page))}">${order.kind === 'authentication' ? 'Authenticate' : 'Pay'} with OPAL virtual card</a> (you confirm it on the OPAL page).</p>\n`
    : '';
  return layout(
    `${config.name}: order ${o.txnId}`,
    `<h1>${escapeHtml(config.name)}: order ${escapeHtml(o.txnId)}</h1>
<p>${escapeHtml(o.description ?? '')}</p>
<p>${what}: <code>purselab pay URL --reader READER</code> with this page's URL (a card in your own reader).</p>
${opalOffer}<object id="purselab-client" type="application/x-purselab-payment">
${params.map(([n, v]) => `  <param name="${n}" value="${escapeHtml(v)}">`).join('\n')}
</object>
<script type="application/json" id="${PAGE_SCRIPT_ID}">${scriptJson(page)}</script>`,
  );
}
