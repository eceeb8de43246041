// The OPAL cardholder web page in real headless Chromium (Debian `chromium`, driven by playwright-core): register,
// first login with the e-mailed one-time password, the forced password change, balance and history, a purchase
// started on the merchant's payment page (its "Pay with OPAL virtual card" link) and confirmed on OPAL's page,
// and a load from the bank. The servers
// (payment with emulated PSAMs, merchant, OPAL on a software HSM, bank and load) run in this process over
// loopback HTTP. Screenshots are kept in .tmp/artifacts/opal/ (gitignored). With PURSELAB_REQUIRE_RIG=1 (CI) a
// missing Chromium or playwright-core fails instead of skipping.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { startOpalWorld, type OpalWorld } from '../../src/opal/world.ts';
import { ALICE, startWorld as startLoadWorld, type LoadWorld } from '../unit/load-server/harness.ts';
import { useOpalHsm } from '../unit/opal/helpers.ts';
import { useDemoIssuer } from '../unit/psam/helpers.ts';
import { describeRig, REPO } from './rig.ts';

const CHROMIUM = process.env.PURSELAB_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = join(REPO, '.tmp/artifacts/opal');

async function loadPlaywright(): Promise<typeof import('playwright-core') | string> {
  if (!existsSync(CHROMIUM)) return `no Chromium at ${CHROMIUM} (apt-get install chromium)`;
  try {
    return await import('playwright-core');
  } catch (e) {
    return `playwright-core is not installed (npm ci): ${(e as Error).message}`;
  }
}
const pw = await loadPlaywright();
const state = { ok: typeof pw !== 'string', reason: typeof pw === 'string' ? pw : '', readers: [], slots: [] };

const hsm = useOpalHsm();
const issuer = useDemoIssuer();

describeRig('OPAL web page in headless Chromium', state, () => {
  let world: OpalWorld;
  let loads: LoadWorld;
  let browser: Browser;
  let page: Page;
  let shot = 0;
  const snap = async (name: string) => {
    await page.screenshot({ path: join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  };
  const message = () => page.locator('#message');

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    world = await startOpalWorld({ hsm: hsm().hsm, psams: 1, initialBalance: 5000 });
    loads = await startLoadWorld(issuer);
    const { chromium } = pw as typeof import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
    page = await browser.newPage();
    page.setDefaultTimeout(20_000);
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await world?.close();
    await loads?.close();
  });

  it('register, first login with the one-time password, forced change, balance', async () => {
    await page.goto(world.opalUrl);
    await expect(page.title()).resolves.toBe('OPAL virtual card');
    await snap('start');
    const reg = page.locator('#register-form');
    await reg.locator('[name=userId]').fill('carol.browser');
    await reg.locator('[name=fundingAccount]').fill('4111111111111111');
    await reg.locator('[name=fundingExpiry]').fill('09/39');
    await reg.locator('[name=cvv2]').fill('123');
    await reg.locator('[name=billingAddress]').fill('1 Browser Street');
    await reg.locator('[name=email]').fill('carol@example.org');
    await reg.locator('[name=password]').fill('Chosen-pass 2026');
    await page.click('#register-button');
    await expect.poll(() => message().textContent()).toMatch(/^Registered card 999001\*{6}\d{4}/);
    await snap('registered');
    const otp = /one-time password: (\S+)/.exec(world.mailer.sent.at(-1)!.text)![1]!;

    // A wrong password is refused on the page.
    await page.fill('#login-form [name=userId]', 'carol.browser');
    await page.fill('#login-form [name=password]', 'not the password 1');
    await page.click('#login-button');
    await expect.poll(() => message().getAttribute('class')).toBe('msg err');

    await page.fill('#login-form [name=userId]', 'carol.browser');
    await page.fill('#login-form [name=password]', otp);
    await page.click('#login-button');
    await page.locator('#change-section').waitFor({ state: 'visible' });
    expect(await page.locator('#card-section').isHidden()).toBe(true);
    await snap('forced-change');
    await page.fill('#change-form [name=currentPassword]', 'Chosen-pass 2026');
    await page.fill('#change-form [name=newPassword]', 'New-pass 2027');
    await page.click('#change-button');
    await page.locator('#card-section').waitFor({ state: 'visible' });
    await expect.poll(() => page.locator('#balance').textContent()).toBe('50.00 EUR');
    expect(await page.locator('#card-number').textContent()).toMatch(/^999001\*{6}\d{4}$/);
    await snap('balance');
  });

  it('a purchase started by the OPAL link on the merchant page is confirmed on OPAL: paid, balance and history follow', async () => {
    const payUrl = await world.order('ebook');
    await page.goto(payUrl); // the merchant's payment page: the cardholder picks the virtual card there
    await expect(page.locator('h1').textContent()).resolves.toMatch(/OPAL world shop: order/);
    const link = page.locator('a#pay-with-opal');
    await expect(link.textContent()).resolves.toBe('Pay with OPAL virtual card');
    expect(await page.locator('body').textContent()).toContain('purselab pay URL --reader READER'); // or a physical card
    await snap('merchant-page');
    await link.click();
    await page.waitForURL(`${world.opalUrl}/?page=${encodeURIComponent(payUrl)}`);
    await page.locator('#confirm-box').waitFor({ state: 'visible' });
    expect(await page.locator('#confirm-amount').textContent()).toBe('4.20 EUR');
    expect(await page.locator('#confirm-merchant').textContent()).toBe('OPAL-SHOP');
    expect(await page.locator('#physical-command').textContent()).toBe(`purselab pay "${payUrl}" --reader READER`);
    await snap('confirm');
    await page.click('#confirm-button');
    await expect.poll(() => message().textContent()).toMatch(/^Purchase paid/);
    await expect.poll(() => page.locator('#balance').textContent()).toBe('45.80 EUR');
    const rows = await page.locator('#history tbody tr').allTextContents();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatch(/purchasepaid420/);
    // The merchant released the goods for that order.
    const order = (await (await fetch(payUrl.replace(/\/orders\/([^/]+)\/pay$/, '/api/orders/$1'))).json()) as { status: string; released: boolean };
    expect(order.released).toBe(true);
    await snap('paid');
  });

  it('cancel on the confirm box debits nothing', async () => {
    const payUrl = await world.order('cent');
    await page.goto(`${world.opalUrl}/?page=${encodeURIComponent(payUrl)}`);
    await page.locator('#confirm-box').waitFor({ state: 'visible' });
    await page.click('#cancel-button');
    await expect.poll(() => message().textContent()).toMatch(/nothing was debited/);
    await page.reload();
    await expect.poll(() => page.locator('#balance').textContent()).toBe('45.80 EUR');
  });

  it('load from the bank', async () => {
    await page.goto(world.opalUrl);
    await page.locator('#card-section').waitFor({ state: 'visible' });
    await page.fill('#load-form [name=bankUrl]', loads.bankUrl);
    await page.fill('#load-form [name=bankUser]', ALICE.user);
    await page.fill('#load-form [name=bankPassword]', ALICE.password);
    await page.fill('#load-form [name=amount]', '10.00');
    await page.click('#load-button');
    await expect.poll(() => message().textContent()).toBe('Load loaded.');
    await expect.poll(() => page.locator('#balance').textContent()).toBe('55.80 EUR');
    const rows = await page.locator('#history tbody tr').allTextContents();
    expect(rows.some((r) => /loadloaded1000/.test(r))).toBe(true);
    await snap('loaded');
    await page.click('#logout-button');
    await page.locator('#login-section').waitFor({ state: 'visible' });
    await snap('logged-out');
  });
});
