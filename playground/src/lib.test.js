import { test } from 'node:test';
import assert from 'node:assert/strict';
import { curlFor, formatBytes, jsonBytes, offsetOf, pushHistory, waterfall } from './lib.js';

test('sizes', () => {
  assert.equal(formatBytes(812), '812 B');
  assert.equal(formatBytes(12_400), '12.4 KB');
  assert.equal(jsonBytes({ a: 'é' }), 10);
});

test('the device call quotes what it must', () => {
  const c = curlFor({ origin: 'http://127.0.0.1:8080', client: 'tv', endpoint: 'home', variables: { profileId: '1', q: "it's" } });
  assert.equal(c, `curl 'http://127.0.0.1:8080/v1/tv/home?profileId=1&q=it%27s' -H 'x-device-id: device-1'`);
  const m = curlFor({ origin: 'http://h', client: 'tv', endpoint: 'rate', variables: { stars: 5 }, mutation: true });
  assert.match(m, /^curl -X POST 'http:\/\/h\/v1\/tv\/rate' .* -d '\{"stars":5\}'$/);
});

test('waterfall bars fit the whole request', () => {
  const rows = waterfall([
    { backend: 'members', method: 'GET', route: '/profiles/1', startMs: 0, durationMs: 10, keys: ['1'] },
    { backend: 'lists', method: 'GET', route: '/rows', startMs: 10, durationMs: 30, keys: [] },
  ]);
  assert.equal(rows.length, 2);
  assert.equal(rows[0].left, 0);
  assert.equal(rows[1].left, 25);
  assert.equal(rows[1].width, 75);
  assert.equal(rows[0].keys, 1);
  assert.deepEqual(waterfall(undefined), []);
});

test('offsets of line and column', () => {
  const text = 'ab\ncde\nf';
  assert.equal(offsetOf(text, 1, 1), 0);
  assert.equal(offsetOf(text, 2, 3), 5);
  assert.equal(offsetOf(text, 9, 9), 8);
});

test('history keeps the newest distinct runs', () => {
  let h = [];
  for (let i = 0; i < 30; i++) h = pushHistory(h, { document: `q${i}`, variables: '{}', script: '' }, 20);
  assert.equal(h.length, 20);
  assert.equal(h[0].document, 'q29');
  h = pushHistory(h, { document: 'q20', variables: '{}', script: '' }, 20);
  assert.equal(h[0].document, 'q20');
  assert.equal(h.length, 20);
});
