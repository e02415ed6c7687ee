// End to end in a real headless Chromium (Debian's, driven by playwright-core): a device team
// signs in with its token, writes a query with completion, runs it, writes a transform,
// previews it, publishes, sets a 10 % canary, rolls back, and finds each step in the audit
// view. No request may leave the server's origin and no console error may be logged.
//
// Run by the Rust test `playground::the_playground_end_to_end_in_chromium`, which starts the
// server and passes FACADE_URL (the server) and FACADE_TOKEN (a team token of client "shop").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const base = process.env.FACADE_URL;
const token = process.env.FACADE_TOKEN;
if (!token) throw new Error('FACADE_TOKEN is not set');
const shots = process.env.PLAYGROUND_SCREENSHOTS; // a folder, to refresh the docs' screenshots
const client = process.env.FACADE_CLIENT ?? 'shop'; // the one client the team token may touch

test('author, preview, publish, canary, roll back, audit', { timeout: 120_000 }, async (t) => {
  assert.ok(base && token, 'FACADE_URL and FACADE_TOKEN are set');
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-extensions'],
  });
  // Closed however the test ends (a failure or a timeout would otherwise leave it running).
  t.after(() => browser.close());
  // A common laptop screen: everything must fit its width.
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const origin = new URL(base).origin;
  const elsewhere = [];
  const consoleErrors = [];
  let firstLoadBytes = 0;
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(origin) && !url.startsWith('data:')) elsewhere.push(url);
  });
  page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  page.on('response', async (r) => {
    if (r.url().includes('/playground')) {
      const sizes = await r.request().sizes().catch(() => null);
      if (sizes) firstLoadBytes += sizes.responseBodySize + sizes.responseHeadersSize;
    }
  });

  const started = Date.now();
  await page.goto(`${base}/playground/`);
  // Sign in with the team token.
  await page.fill('#token', token);
  await page.click('#signin-btn');
  await page.waitForSelector('#client');
  assert.deepEqual(await page.$$eval('#client option', (os) => os.map((o) => o.value)), [client], 'only its own client is offered');
  // The editor is ready once the schema arrived.
  await page.waitForFunction(() => window.__facadeEditorReady !== undefined);
  const editorReadyMs = await page.evaluate(() => window.__facadeEditorReady);
  const loadMs = Date.now() - started;
  // The first load: the page and its assets before anything is typed (the TypeScript
  // checker comes later, when a transform is first checked).
  const firstLoad = firstLoadBytes;

  await page.fill('#endpoint', 'titles');
  await page.press('#endpoint', 'Tab');

  // Write the query with completion: "ti" offers "title".
  await page.click('#query .cm-content');
  await page.keyboard.type('{ ti');
  // Picked with the mouse: CodeMirror ignores a keyboard accept within 75 ms of the list
  // (re)appearing, and on a busy machine an Enter went into the text as a line break.
  const option = page.locator('.cm-tooltip-autocomplete li', { hasText: /^title/ }).first();
  await option.click();
  await page.waitForFunction(() => /\btitle\b/.test(document.querySelector('#query .cm-content').innerText));
  await page.keyboard.type('(id: 1) { name year }');
  const query = await page.evaluate(() => document.querySelector('#query .cm-content').innerText);
  assert.match(query.replace(/\s+/g, ' '), /^\{ title\(id: 1\) \{ name year \} ?\}$/);

  // Run it.
  await page.click('#run');
  await page.waitForFunction(() => document.querySelector('#result').textContent.includes('"title"'));
  const result = JSON.parse(await page.textContent('#result'));
  assert.equal(typeof result.data.title.name, 'string');
  assert.ok((await page.locator('#waterfall .wf-row').count()) >= 1, 'the backend call is shown');

  // A transform that throws shows where.
  await page.click('#starter');
  await page.click('#transform .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText('export default function transform(data, ctx) {\n  return data.title.nope.deeper;\n}\n');
  await page.click('#run');
  await page.waitForFunction(() => document.querySelector('#script-error').textContent.includes('line 2'));
  assert.ok(await page.locator('#transform .cm-lintRange-error').count() >= 1, 'a marker in the editor');

  // In TypeScript, the transform is checked against the query's types as it is written:
  // completion offers the fields the query selects, and a misspelt one is marked before
  // anything runs or is published.
  await page.click('#transform .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText('export default function transform(data: Data, ctx: Ctx) {\n  return data.title?.');
  await page.keyboard.press('Control+Space');
  await page.locator('.cm-tooltip-autocomplete li', { hasText: /^year/ }).first().waitFor({ timeout: 60_000 });
  await page.keyboard.press('Escape');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText('export default function transform(data: Data, ctx: Ctx) {\n  return { heading: data.title?.nmae, canary: ctx.canary };\n}\n');
  await page.waitForFunction(() => document.querySelector('#ts-problems').textContent.includes("'nmae'"), null, { timeout: 60_000 });
  assert.ok(await page.locator('#transform .cm-lintRange-error').count() >= 1, 'the misspelt field is marked');
  if (shots) await page.screenshot({ path: `${shots}/playground-typescript.png` });

  // Write the transform and preview it.
  await page.click('#transform .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText('export default function transform(data, ctx) {\n  return { heading: data.title.name.toUpperCase(), year: data.title.year, canary: ctx.canary };\n}\n');
  await page.click('#run');
  await page.waitForFunction(() => document.querySelector('#transformed').textContent.includes('"heading"'));
  assert.equal(await page.textContent('#script-error'), '');
  const transformed = JSON.parse(await page.textContent('#transformed'));
  assert.equal(transformed.heading, result.data.title.name.toUpperCase());
  assert.match(await page.textContent('#transformed-size'), /B$/);
  if (shots) await page.screenshot({ path: `${shots}/playground-preview.png` });
  // Nothing is cut off at the right edge at 1366 px: no horizontal scroll, the panes inside.
  const fits = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
    transformed: document.querySelector('#transformed').getBoundingClientRect().right,
    waterfall: document.querySelector('#waterfall').getBoundingClientRect().right,
  }));
  assert.ok(fits.scroll <= fits.width, `the page scrolls sideways at 1366 px: ${JSON.stringify(fits)}`);
  assert.ok(fits.transformed <= fits.width && fits.waterfall <= fits.width, `a pane is cut off: ${JSON.stringify(fits)}`);

  // Publish version 1, then version 2 with another transform.
  await page.fill('#publish-reason', 'first cut');
  await page.click('#publish');
  await page.waitForFunction(() => document.querySelector('#publish-result').textContent.includes('version 1'));
  await page.click('#transform .cm-content');
  await page.keyboard.press('Control+A');
  await page.keyboard.insertText('export default function transform(data, ctx) {\n  return { heading: data.title.name, year: data.title.year, canary: ctx.canary };\n}\n');
  await page.fill('#publish-reason', 'lower case');
  await page.click('#publish');
  await page.waitForFunction(() => document.querySelector('#publish-result').textContent.includes('version 2'));

  // A 10 % canary of version 2, then roll back.
  await page.click('#tab-versions');
  await page.waitForFunction(() => document.querySelector('#rollout').textContent.includes('stable 1'));
  assert.equal(await page.isVisible('#view-author'), false, 'one view at a time');
  await page.selectOption('#canary-version', '2');
  await page.fill('#canary-percent', '10');
  await page.fill('#rollout-reason', 'try lower case');
  await page.click('#set-canary');
  await page.waitForFunction(() => document.querySelector('#rollout').textContent.includes('canary 2 at 10 %'));
  assert.ok((await page.textContent('#curl')).includes(`/v1/${client}/titles`));
  await page.click('#diff-btn');
  await page.waitForSelector('#diff pre.diff .add');
  if (shots) await page.screenshot({ path: `${shots}/playground-versions.png` });
  await page.fill('#rollout-reason', 'not now');
  await page.click('#rollback');
  await page.waitForFunction(() => document.querySelector('#rollout').textContent.includes('no canary'));

  // Each step is in the audit view.
  await page.click('#tab-audit');
  await page.waitForSelector('#audit .audit-entry');
  const actions = await page.$$eval('#audit .audit-entry', (rows) => rows.map((r) => `${r.children[2].textContent} ${r.children[5].textContent}`));
  for (const step of ['version.publish first cut', 'version.publish lower case', 'rollout.set try lower case', 'rollout.rollback not now']) {
    assert.ok(actions.includes(step), `${step} in ${JSON.stringify(actions)}`);
  }
  if (shots) await page.screenshot({ path: `${shots}/playground-audit.png` });

  // The ops page: every backend, but no breaker buttons for a team token.
  await page.click('#tab-ops');
  await page.waitForSelector('#tile-members');
  assert.equal(await page.locator('.tile button.trip').count(), 0, 'a team cannot trip breakers');
  await page.click('#tab-author');

  // Runs left a history in this browser; signing out takes it away (probe 2, L7).
  const historyKeys = () => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('facade.history.')));
  assert.ok((await historyKeys()).length > 0, 'runs were kept in the history');
  await page.click('#signout');
  await page.waitForSelector('#signin-btn');
  assert.deepEqual(await historyKeys(), [], 'no history left after signing out');

  assert.deepEqual(elsewhere, [], 'no request left the server');
  assert.deepEqual(consoleErrors, [], 'no console error');
  // Figures for docs/BENCHMARKS.md (first load: the page and its assets, before sign-in).
  console.log(JSON.stringify({ figures: { firstLoadBytes: firstLoad, withCheckerBytes: firstLoadBytes, editorReadyMs: Math.round(editorReadyMs), signedInAndReadyMs: loadMs } }));
});
