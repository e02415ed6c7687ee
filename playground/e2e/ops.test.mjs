// The ops page in a real headless Chromium: an admin signs in, opens Ops, sees a tile per
// backend, trips a breaker from the page and sees its tile change, then resets it. No
// request may leave the server's origin and no console error may be logged.
//
// Run by the Rust test `playground::the_ops_page_trips_a_breaker_in_chromium`, which starts
// the server and passes FACADE_URL and FACADE_ADMIN_TOKEN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const base = process.env.FACADE_URL;
const token = process.env.FACADE_ADMIN_TOKEN;
const shots = process.env.PLAYGROUND_SCREENSHOTS;

test('trip and reset a breaker from the ops page', { timeout: 120_000 }, async (t) => {
  if (!token) {
    t.skip('FACADE_ADMIN_TOKEN is not set');
    return;
  }
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions'],
  });
  // Closed however the test ends (a failure or a timeout would otherwise leave it running).
  t.after(() => browser.close());
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  const origin = new URL(base).origin;
  const elsewhere = [];
  const consoleErrors = [];
  page.on('request', (r) => !r.url().startsWith(origin) && !r.url().startsWith('data:') && elsewhere.push(r.url()));
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(`${base}/playground/`);
  await page.fill('#token', token);
  await page.click('#signin-btn');
  await page.waitForSelector('#client');
  await page.click('#tab-ops');
  const tile = page.locator('#tile-ratings');
  await tile.waitFor();
  assert.equal(await page.locator('.tile').count(), 6, 'a tile per backend');
  await page.waitForSelector('#tile-ratings.breaker-closed');
  assert.equal((await tile.locator('.breaker').textContent()).trim(), 'closed');

  await tile.locator('button.trip').click();
  await page.waitForSelector('#tile-ratings.breaker-open');
  assert.equal((await tile.locator('.breaker').textContent()).trim(), 'open');
  if (shots) await page.screenshot({ path: `${shots}/playground-ops.png` });
  await page.locator('#tile-ratings button.reset').click();
  await page.waitForSelector('#tile-ratings.breaker-closed');

  // Leaving the page closes its stream.
  await page.click('#tab-author');
  assert.deepEqual(elsewhere, [], 'no request left the server');
  assert.deepEqual(consoleErrors, [], 'no console error');
});
