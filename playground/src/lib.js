// Pure helpers of the playground, tested with `node --test src/` (no DOM here).

/** Bytes as text: 812 B, 12.4 KB, 1.2 MB. */
export function formatBytes(n) {
  if (n < 1000) return `${n} B`;
  if (n < 1_000_000) return `${(n / 1000).toFixed(1)} KB`;
  return `${(n / 1_000_000).toFixed(1)} MB`;
}

/** The size of a value as compact JSON, in UTF-8 bytes. */
export function jsonBytes(value) {
  return new TextEncoder().encode(JSON.stringify(value ?? null)).length;
}

/** A shell-quoted word. */
function quote(s) {
  return `'${String(s).replaceAll("'", `'\\''`)}'`;
}

/**
 * The device call for an endpoint: GET with the variables as query parameters (objects and
 * lists as JSON), or POST with a JSON body for a mutation.
 */
export function curlFor({ origin, client, endpoint, variables = {}, device = 'device-1', mutation = false }) {
  const path = `${origin}/v1/${encodeURIComponent(client)}/${encodeURIComponent(endpoint)}`;
  if (mutation) {
    return `curl -X POST ${quote(path)} -H ${quote(`x-device-id: ${device}`)} -H 'content-type: application/json' -d ${quote(JSON.stringify(variables))}`;
  }
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(variables)) {
    params.set(k, typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));
  }
  const qs = params.toString();
  return `curl ${quote(qs ? `${path}?${qs}` : path)} -H ${quote(`x-device-id: ${device}`)}`;
}

/** Rows of a fetch waterfall: where each bar starts and how wide it is, in % of the whole. */
export function waterfall(fetches) {
  const list = Array.isArray(fetches) ? fetches : [];
  const end = Math.max(1e-6, ...list.map((f) => (f.startMs ?? 0) + (f.durationMs ?? 0)));
  return list.map((f) => ({
    label: `${f.backend} ${f.method ?? ''} ${f.route ?? ''}`.trim(),
    keys: Array.isArray(f.keys) ? f.keys.length : (f.keys ?? 0),
    left: ((f.startMs ?? 0) / end) * 100,
    width: Math.max(0.5, ((f.durationMs ?? 0) / end) * 100),
    outcome: f.outcome ?? 'ok',
    status: f.status ?? null,
    durationMs: f.durationMs ?? 0,
  }));
}

/** The offset of a 1-based line and column in `text` (clamped to the text). */
export function offsetOf(text, line, column) {
  const lines = text.split('\n');
  const l = Math.min(Math.max(1, line || 1), lines.length);
  let offset = 0;
  for (let i = 0; i < l - 1; i++) offset += lines[i].length + 1;
  return offset + Math.min(Math.max(0, (column || 1) - 1), lines[l - 1].length);
}

/** A run history: newest first, at most `max`, an identical run moved to the front. */
export function pushHistory(list, entry, max = 20) {
  const same = (a) => a.document === entry.document && a.variables === entry.variables && a.script === entry.script;
  return [entry, ...list.filter((a) => !same(a))].slice(0, max);
}

/** The transform a new endpoint starts with; `ctx` documented in place. */
export const STARTER_TRANSFORM = `// transform(data, ctx) shapes the query's answer for this device.
// data: the GraphQL answer's "data" (null where a field failed).
// ctx.variables: the request's variables        ctx.errors: the GraphQL errors, or null
// ctx.client, ctx.endpoint, ctx.version (0 in a preview), ctx.canary (true on the canary side)
// ctx.device.id: the x-device-id header          ctx.device.headers: the headers allowed by config
// Return any JSON value. Runs in QuickJS with a deadline and a memory limit; no IO.
export default function transform(data, ctx) {
  return data;
}
`;

/** The `ctx` fields, for the help beside the transform editor. */
export const CTX_FIELDS = [
  ['variables', 'the request variables (query string or JSON body)'],
  ['errors', 'the GraphQL errors of the answer, or null'],
  ['client / endpoint', 'the endpoint called'],
  ['version', 'the version serving the call (0 in a preview)'],
  ['canary', 'true when the device is on the canary side'],
  ['device.id', 'the x-device-id header, or null'],
  ['device.headers', 'request headers the server lets transforms see'],
];
