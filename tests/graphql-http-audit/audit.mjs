// Runs the graphql-http server audit suite against a running Facade.
// Usage: node audit.mjs http://127.0.0.1:8080/graphql
// Exits non-zero if any MUST audit fails; prints every SHOULD/MAY result that is not ok.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs URL');
  process.exit(2);
}

const results = await auditServer({ url });
let mustFailed = 0;
let ok = 0;
for (const r of results) {
  if (r.status === 'ok') {
    ok += 1;
    continue;
  }
  const must = r.name.startsWith('MUST');
  if (must) mustFailed += 1;
  let body = '';
  try {
    body = (await r.response.text()).slice(0, 200);
  } catch {
    body = '(body unavailable)';
  }
  console.log(`${must ? 'FAIL' : r.status.toUpperCase()} ${r.id} ${r.name}\n  ${r.reason}\n  status ${r.response.status}: ${body}`);
}
const notOk = results.length - ok;
console.log(`graphql-http audit: ${ok} ok, ${notOk} not ok (${mustFailed} MUST failures) of ${results.length}`);
process.exit(mustFailed > 0 ? 1 : 0);
