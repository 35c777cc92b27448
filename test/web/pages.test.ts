import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser, skipWithoutChromium } from '../support/browser.ts';
import { HOME, SUN, startWebStack, type WebStack } from './web-stack.ts';

/**
 * The web pages in real headless Chromium against a real settlement (embedded broker, ledger,
 * market, certificates, governance): sign in as each role and see its view; a signed reading
 * published to the broker changes the prosumer's live power; place and cancel an order; retire
 * a certificate; verify a meter; issue an enrollment code; no sideways scrolling on a phone.
 * A screenshot of each page goes to test-results/. Waits are Playwright's auto-waiting locators.
 */
const SHOTS = join(import.meta.dirname, '../../test-results');
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };

describe.skipIf(skipWithoutChromium('web pages in Chromium'))('web pages in headless Chromium', { timeout: 60_000 }, () => {
  let stack: WebStack;
  let browser: Awaited<ReturnType<typeof launchBrowser>>;
  /** Per page: script errors and Content-Security-Policy refusals, which must stay empty. */
  const problems = new Map<Page, string[]>();

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    stack = await startWebStack();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  /** A new tab (its own sessionStorage) signed in with `key`, showing the role's first view. */
  async function signIn(key: string, viewport = DESKTOP): Promise<Page> {
    const page = await browser.context.newPage();
    await page.setViewportSize(viewport);
    const seen: string[] = [];
    problems.set(page, seen);
    page.on('pageerror', (e) => seen.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (/Content.Security.Policy|Refused to/i.test(m.text())) seen.push(`CSP: ${m.text()}`);
    });
    await page.goto(`${stack.url}/`);
    await page.locator('#api-key').fill(key);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#role').waitFor();
    return page;
  }

  async function noProblems(page: Page): Promise<void> {
    expect(problems.get(page)).toEqual([]);
    await page.close();
  }

  const scrollWidth = (page: Page) => page.evaluate<number>('document.documentElement.scrollWidth');
  const shot = (page: Page, name: string) => page.screenshot({ path: join(SHOTS, `web-${name}.png`), fullPage: true });

  it('refuses an unknown key at sign-in and keeps nothing', async () => {
    const page = await browser.context.newPage();
    problems.set(page, []);
    await page.goto(`${stack.url}/`);
    await shot(page, 'sign-in');
    await page.locator('#api-key').fill('gtx_not-a-key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('#sign-in-error', { hasText: 'not known or was revoked' }).waitFor();
    expect(await page.evaluate<string | null>("sessionStorage.getItem('gtx.apiKey')")).toBeNull();
    await noProblems(page);
  });

  it('a prosumer sees its home and the market, not the utility or installer views, and signs out', async () => {
    const page = await signIn(stack.keys.prosumer);
    await page.locator('#role', { hasText: 'prosumer' }).waitFor();
    await page.locator('#account', { hasText: SUN.account }).waitFor();
    expect(await page.locator('#tabs a').allTextContents()).toEqual(['My home', 'Market']);
    // Its meter, its trade (sold in the auction, awaiting delivery), its certificate, the price.
    await page.locator(`[data-meter="${SUN.meter}"]`).waitFor();
    await page.locator('#trades td', { hasText: 'awaiting delivery' }).waitFor();
    await page.locator('#trades td[data-label="You"]', { hasText: 'sold' }).waitFor();
    await page.locator('#certificates td', { hasText: 'web-sun-1' }).first().waitFor();
    await page.locator('#price-now', { hasText: 'THB/kWh' }).waitFor();
    await page.locator('#price-chart canvas').waitFor();
    // Nothing of the household's: its meter is not on the page.
    expect(await page.locator(`[data-meter="${HOME.meter}"]`).count()).toBe(0);
    // A hand-typed hash for a view of another role shows the prosumer's own.
    await page.goto(`${stack.url}/#utility`);
    await page.locator('#view-prosumer').waitFor();
    await shot(page, 'prosumer');
    // A reload keeps the session (sessionStorage); signing out ends it.
    await page.reload();
    await page.locator('#view-prosumer #orders').waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.locator('#sign-in-form').waitFor();
    expect(await page.evaluate<string | null>("sessionStorage.getItem('gtx.apiKey')")).toBeNull();
    await noProblems(page);
  });

  it('the prosumer’s live power changes when a signed reading reaches the broker', async () => {
    const page = await signIn(stack.keys.prosumer);
    const power = page.locator(`[data-meter="${SUN.meter}"] [data-role="power"]`);
    await power.waitFor();
    // Connected to the event stream first, so what changes below comes from the stream.
    await page.locator('#live[data-state="live"]').waitFor();
    await stack.publishSunReading({ powerW: 4321, importWh: 1100 });
    await page.locator(`[data-meter="${SUN.meter}"] [data-role="power"]`, { hasText: '4.321 kW' }).waitFor();
    await stack.publishSunReading({ powerW: -2500 });
    await page.locator(`[data-meter="${SUN.meter}"] [data-role="power"]`, { hasText: '-2.500 kW' }).waitFor();
    await page.locator(`[data-meter="${SUN.meter}"] .direction`, { hasText: 'exporting' }).waitFor();
    // Today's imported energy follows from the intervals (integer Wh shown as kWh).
    await page.locator(`[data-meter="${SUN.meter}"] [data-role="import-today"]`, { hasText: /^\d[\d,]*\.\d{3} kWh$/ }).waitFor();
    await noProblems(page);
  });

  it('places an order and sees it listed, then cancels it', async () => {
    const page = await signIn(stack.keys.prosumer);
    const form = page.locator('#order-form');
    await form.locator('select[name="side"]').selectOption('sell');
    await form.locator('input[name="energyKwh"]').fill('1.25');
    await form.getByRole('button', { name: 'Place order' }).click();
    await form.locator('p.ok', { hasText: 'Order placed: sell 1.250 kWh' }).waitFor();
    const row = page.locator('#orders table.data tbody tr', { hasText: '1.250 kWh' }).filter({ has: page.locator('.badge', { hasText: 'open' }) });
    await row.waitFor();
    await row.getByRole('button', { name: 'Cancel' }).click();
    await page.locator('#orders table.data tbody tr', { hasText: '1.250 kWh' }).filter({ has: page.locator('.badge', { hasText: 'cancelled' }) }).waitFor();
    const orders = (await (await fetch(`${stack.url}/api/v1/orders`, { headers: { authorization: `Bearer ${stack.keys.prosumer}` } })).json()) as Array<{ energyKwh: string; status: string }>;
    expect(orders.find((o) => o.energyKwh === '1.250')?.status).toBe('cancelled');
    await noProblems(page);
  });

  it('retires a certificate; the reason, hostile markup included, shows as text', async () => {
    const page = await signIn(stack.keys.prosumer);
    const row = page.locator('#certificates table.data tbody tr', { hasText: 'web-sun-1' }).filter({ has: page.locator('.badge', { hasText: 'active' }) }).first();
    await row.waitFor();
    const id = await row.getAttribute('data-id');
    const hostile = '<img src=x onerror="window.pwned=1">green <b>tariff</b>';
    await row.locator('summary', { hasText: 'Retire' }).click();
    await row.locator('input[name="reason"]').fill(hostile);
    await row.locator('input[name="beneficiary"]').fill('Somchai & family');
    await row.getByRole('button', { name: 'Retire', exact: true }).click();
    const retired = page.locator(`#certificates table.data tbody tr[data-id="${id}"]`);
    await retired.locator('.badge', { hasText: 'retired' }).waitFor();
    await retired.locator('td', { hasText: `Somchai & family: ${hostile}` }).waitFor();
    expect(await page.locator('#certificates img').count()).toBe(0);
    expect(await page.evaluate<unknown>('window.pwned')).toBeUndefined();
    const [rec] = (await (await fetch(`${stack.url}/api/v1/recs?status=retired`, { headers: { authorization: `Bearer ${stack.keys.prosumer}` } })).json()) as Array<{ id: string; retirement: { reason: string } }>;
    expect(rec).toMatchObject({ id, retirement: { reason: hostile } });
    await noProblems(page);
  });

  it('the market view shows the price history and the auction’s clearing price and volume', async () => {
    const page = await signIn(stack.keys.prosumer);
    await page.locator('#tab-market').click();
    await page.locator('#view-market').waitFor();
    await page.locator('#market-price', { hasText: 'THB/kWh' }).waitFor();
    const auction = page.locator('#auctions table.data tbody tr').first();
    await auction.locator('td[data-label="Clearing price"]', { hasText: '4.00' }).waitFor();
    await auction.locator('td[data-label="Volume"]', { hasText: '1.500 kWh' }).waitFor();
    await page.locator('#auction-chart canvas').waitFor();
    await shot(page, 'market');
    await noProblems(page);
  });

  it('a utility sees every meter, its readings and rejections, and verifies its signature chain', async () => {
    const page = await signIn(stack.keys.utility);
    await page.locator('#role', { hasText: 'utility' }).waitFor();
    expect(await page.locator('#tabs a').allTextContents()).toEqual(['Utility', 'Market']);
    const sun = page.locator('#meters table.data tbody tr', { hasText: SUN.meter });
    await page.locator('#meters table.data tbody tr', { hasText: HOME.meter }).waitFor();
    await sun.getByRole('button', { name: 'Verify' }).click();
    await page.locator('#verify-result', { hasText: 'PASS' }).waitFor();
    await page.locator('#meter-detail-title', { hasText: SUN.meter }).waitFor();
    await page.locator('#meter-detail table.data tbody tr').first().waitFor();
    await page.locator('#supply-demand-chart canvas').waitFor();
    await page.locator('#supply-demand table.data tbody tr').first().waitFor();
    await shot(page, 'utility');
    await noProblems(page);
  });

  it('an installer issues an enrollment code for a customer and sees its gateways and meters', async () => {
    const page = await signIn(stack.keys.installer);
    await page.locator('#role', { hasText: 'installer' }).waitFor();
    expect(await page.locator('#tabs a').allTextContents()).toEqual(['Installer', 'Market']);
    await page.locator('#gateways table.data tbody tr', { hasText: SUN.gateway }).waitFor();
    await page.locator('#meters table.data tbody tr', { hasText: HOME.meter }).waitFor();
    const form = page.locator('#code-form');
    await form.locator('select[name="owner"]').selectOption(HOME.account);
    await form.getByRole('button', { name: 'Create code' }).click();
    const code = await page.locator('#issued-code').textContent();
    expect(code?.length).toBeGreaterThan(8);
    await page.locator('#codes table.data tbody tr', { hasText: HOME.account }).first().waitFor();
    await page.locator('#rejections-meter').selectOption(SUN.meter);
    await page.locator('#rejections', { hasText: /No rejections|Reason/ }).waitFor();
    await shot(page, 'installer');
    await noProblems(page);
  });

  it('an admin sees the utility, installer and market views', async () => {
    const page = await signIn(stack.keys.admin);
    expect(await page.locator('#tabs a').allTextContents()).toEqual(['Utility', 'Installer', 'Market']);
    await page.locator('#tab-installer').click();
    await page.locator('#view-installer #code-form').waitFor();
    await noProblems(page);
  });

  it('fits a phone: no sideways scrolling at 390 px on any view', async () => {
    for (const [role, views] of [
      ['prosumer', ['prosumer', 'market']],
      ['installer', ['installer']],
      ['utility', ['utility']],
    ] as const) {
      const page = await signIn(stack.keys[role], PHONE);
      for (const view of views) {
        await page.goto(`${stack.url}/#${view}`);
        await page.locator(`#view-${view} section`).first().waitFor();
        // Tables have loaded (a row or their "nothing yet" line) before measuring.
        await page.locator(`#view-${view} table.data, #view-${view} p.empty`).first().waitFor();
        expect([role, view, await scrollWidth(page)]).toEqual([role, view, PHONE.width]);
        await shot(page, `${view}-phone`);
      }
      await noProblems(page);
    }
  });
});
