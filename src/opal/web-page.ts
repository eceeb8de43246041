// The cardholder's web page served by OPAL (GET / and GET /app.js): register, log in (and change the one-time
// password), see balance and history, confirm a purchase started from a merchant's payment page
// (/?page=URL) with the virtual card (or see the command that pays it with a physical card in a local reader:
// dual mode, both through the same payment server), load from the bank. Plain HTML and a little JS over the
// JSON routes; the session token lives in sessionStorage only; nothing is rendered as HTML from server data
// (textContent only).

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OPAL virtual card</title>
<style>
 body { font-family: system-ui, sans-serif; max-width: 46rem; margin: 1.5rem auto; padding: 0 1rem; color: #1d232a; }
 h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 1.5rem; }
 section { border: 1px solid #ccd3da; border-radius: 6px; padding: .8rem 1rem; margin: .8rem 0; }
 label { display: block; margin: .35rem 0; } input { width: 100%; padding: .3rem; box-sizing: border-box; }
 button { margin-top: .5rem; padding: .4rem .9rem; }
 .msg { padding: .5rem; border-radius: 4px; background: #eef5ff; } .err { background: #fde8e8; }
 table { border-collapse: collapse; width: 100%; font-size: .9rem; } td, th { border-bottom: 1px solid #e3e7eb; padding: .25rem; text-align: left; }
 [hidden] { display: none !important; }
</style>
</head>
<body>
<h1>OPAL virtual card</h1>
<p id="message" class="msg" hidden></p>

<section id="login-section">
 <h2>Log in</h2>
 <form id="login-form">
  <label>User id <input name="userId" type="password" autocomplete="username" required></label>
  <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
  <button type="submit" id="login-button">Log in</button>
 </form>
</section>

<section id="register-section">
 <h2>Register</h2>
 <form id="register-form">
  <label>User id <input name="userId" required></label>
  <label>Funding account number <input name="fundingAccount" inputmode="numeric" required></label>
  <label>Expiry (MM/YY) <input name="fundingExpiry" required></label>
  <label>CVV2 <input name="cvv2" inputmode="numeric" required></label>
  <label>Billing address <input name="billingAddress" required></label>
  <label>E-mail <input name="email" type="email" required></label>
  <label>Password <input name="password" type="password" autocomplete="new-password" required></label>
  <button type="submit" id="register-button">Register</button>
 </form>
</section>

<section id="change-section" hidden>
 <h2>Choose your password</h2>
 <p>You logged in with the one-time password: confirm the password you chose at registration and set your new one.</p>
 <form id="change-form">
  <label>Current password <input name="currentPassword" type="password" required></label>
  <label>New password <input name="newPassword" type="password" autocomplete="new-password" required></label>
  <button type="submit" id="change-button">Change password</button>
 </form>
</section>

<section id="card-section" hidden>
 <h2>Your card <span id="card-number"></span></h2>
 <p>Balance: <strong id="balance"></strong> (maximum load <span id="max-load"></span>)</p>
 <button id="logout-button">Log out</button>
 <h2>Pay a merchant</h2>
 <form id="quote-form">
  <label>Merchant payment page URL <input name="pageUrl" id="page-url" required></label>
  <button type="submit" id="quote-button">Show the amount</button>
 </form>
 <div id="confirm-box" hidden>
  <p>Merchant <strong id="confirm-merchant"></strong> asks <strong id="confirm-amount"></strong> for <span id="confirm-description"></span>.</p>
  <button id="confirm-button">Proceed with virtual card</button> <button id="cancel-button">Cancel</button>
  <p>Or pay with a physical card in a reader of your own (the same payment server):
   <code id="physical-command"></code></p>
 </div>
 <h2>Load from your bank</h2>
 <form id="load-form">
  <label>Bank URL <input name="bankUrl" required></label>
  <label>Bank user <input name="bankUser" required></label>
  <label>Bank password <input name="bankPassword" type="password" required></label>
  <label>Amount <input name="amount" required></label>
  <button type="submit" id="load-button">Load</button>
 </form>
 <h2>History</h2>
 <table id="history"><thead><tr><th>#</th><th>Type</th><th>Status</th><th>Amount</th><th>When</th></tr></thead><tbody></tbody></table>
</section>
<script src="/app.js"></script>
</body>
</html>
`;

export const PAGE_JS = `'use strict';
const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem('opal-token');
let quote = null;

function show(text, error) {
  const m = $('message');
  m.textContent = text; m.hidden = false; m.className = error ? 'msg err' : 'msg';
}
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = 'Bearer ' + token;
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((data.error && data.error.message) || ('HTTP ' + res.status));
  return data;
}
const formData = (form) => Object.fromEntries(new FormData(form).entries());
function money(minor, exponent) { return (minor / Math.pow(10, exponent)).toFixed(exponent); }

function view(state) {
  $('login-section').hidden = state !== 'out';
  $('register-section').hidden = state !== 'out';
  $('change-section').hidden = state !== 'change';
  $('card-section').hidden = state !== 'in';
}

async function refresh() {
  const b = await api('GET', '/v1/balance');
  $('card-number').textContent = b.card;
  $('balance').textContent = b.shown;
  $('max-load').textContent = money(b.maxLoad, b.exponent);
  const h = await api('GET', '/v1/history');
  const rows = [].concat(h.purchase, h.load, h.recredit).sort((x, y) => (x.at < y.at ? 1 : -1));
  const tbody = $('history').querySelector('tbody');
  tbody.textContent = '';
  for (const r of rows) {
    const tr = document.createElement('tr');
    const amount = r.detail.amount !== undefined ? r.detail.amount : r.detail.confirmedAmount;
    for (const v of [r.id, r.table === 'purchase' ? r.kind : r.table, r.status, amount === undefined ? '' : String(amount), r.at.replace('T', ' ').slice(0, 19)]) {
      const td = document.createElement('td'); td.textContent = String(v); tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
}

async function enter() {
  view('in');
  await refresh();
  const page = new URLSearchParams(location.search).get('page');
  if (page) { $('page-url').value = page; await getQuote(page); }
}

async function getQuote(pageUrl) {
  quote = await api('POST', '/v1/purchase/quote', { pageUrl });
  quote.pageUrl = pageUrl;
  $('confirm-merchant').textContent = quote.merchantId;
  $('confirm-amount').textContent = quote.shown;
  $('confirm-description').textContent = quote.description || quote.txnId;
  $('physical-command').textContent = 'purselab pay "' + pageUrl + '" --reader READER';
  $('confirm-box').hidden = false;
}

$('register-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try { const r = await api('POST', '/v1/register', formData(e.target)); show('Registered card ' + r.card + ': ' + r.message); e.target.reset(); }
  catch (err) { show(err.message, true); }
});
$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const r = await api('POST', '/v1/login', formData(e.target));
    token = r.token; sessionStorage.setItem('opal-token', token); e.target.reset();
    if (r.mustChangePassword) { view('change'); show('Logged in with the one-time password: choose your password.'); }
    else { show('Logged in.'); await enter(); }
  } catch (err) { show(err.message, true); }
});
$('change-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try { await api('POST', '/v1/password', formData(e.target)); e.target.reset(); show('Password changed.'); await enter(); }
  catch (err) { show(err.message, true); }
});
$('logout-button').addEventListener('click', async () => {
  try { await api('POST', '/v1/logout'); } catch (err) { /* the session may already be gone */ }
  token = null; sessionStorage.removeItem('opal-token'); view('out'); show('Logged out.');
});
$('quote-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try { await getQuote(formData(e.target).pageUrl); } catch (err) { show(err.message, true); }
});
$('cancel-button').addEventListener('click', () => { quote = null; $('confirm-box').hidden = true; show('Purchase cancelled: nothing was debited.'); });
$('confirm-button').addEventListener('click', async () => {
  if (!quote) return;
  $('confirm-button').disabled = true;
  try {
    const r = await api('POST', '/v1/purchase', { pageUrl: quote.pageUrl, amount: quote.amount, txnId: quote.txnId });
    show('Purchase ' + r.status + ': ' + r.message + (r.goods ? ' (' + r.goods + ')' : ''));
    $('confirm-box').hidden = true; quote = null;
  } catch (err) { show(err.message, true); }
  $('confirm-button').disabled = false;
  await refresh().catch(() => undefined);
});
$('load-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try { const r = await api('POST', '/v1/load', formData(e.target)); show('Load ' + r.status + '.'); }
  catch (err) { show(err.message, true); }
  await refresh().catch(() => undefined);
});

(async () => {
  if (!token) return view('out');
  try { await enter(); } catch { token = null; sessionStorage.removeItem('opal-token'); view('out'); }
})();
`;
