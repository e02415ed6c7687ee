// The Facade playground: sign in with a token, write a query (schema-aware) and a transform,
// preview them on live backends, publish, canary, promote, roll back, and read the audit log.
// Plain DOM and CodeMirror 6; every call goes to this server's own origin (/graphql and
// /admin/v1), with the token from this tab's session storage.
import './style.css';
import { EditorView, basicSetup } from 'codemirror';
import { EditorState } from '@codemirror/state';
import { javascript } from '@codemirror/lang-javascript';
import { json } from '@codemirror/lang-json';
import { linter, setDiagnostics } from '@codemirror/lint';
import { autocompletion } from '@codemirror/autocomplete';
import { graphql, updateSchema } from 'cm6-graphql';
import {
  buildClientSchema,
  getIntrospectionQuery,
  getNamedType,
  getOperationAST,
  isEnumType,
  isInputObjectType,
  isInterfaceType,
  isObjectType,
  isUnionType,
  parse,
} from 'graphql';
import { diffLines } from 'diff';
import { CTX_FIELDS, STARTER_TRANSFORM, curlFor, formatBytes, jsonBytes, offsetOf, pushHistory, waterfall } from './lib.js';

const TOKEN_KEY = 'facade.token';
const app = document.getElementById('app');

/** Makes an element: h('div', { class: 'x', onclick }, child, …). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  clients: [],
  client: null,
  endpoint: '',
  endpoints: [],
  schema: null,
  editors: {},
  me: null,
  ops: null, // the AbortController of the open ops stream
};

async function call(method, url, body) {
  const headers = { authorization: `Bearer ${state.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    value = text;
  }
  if (!r.ok) throw new ApiError(r.status, (value && value.error) || text || `HTTP ${r.status}`);
  return value;
}

const admin = (method, path, body) => call(method, `/admin/v1${path}`, body);

function status(text, kind = 'info') {
  const el = document.getElementById('status');
  if (el) {
    el.textContent = text;
    el.className = `status ${kind}`;
  }
}

function fail(e) {
  status(e instanceof ApiError ? `${e.message} (HTTP ${e.status})` : String(e.message || e), 'error');
}

// ---------------------------------------------------------------- sign-in

function signIn() {
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', placeholder: 'fcd_…', size: 60 });
  const error = h('p', { id: 'signin-error', class: 'error' });
  const go = async () => {
    state.token = input.value.trim();
    try {
      state.clients = await admin('GET', '/clients');
      sessionStorage.setItem(TOKEN_KEY, state.token);
      main();
    } catch (e) {
      state.token = null;
      error.textContent = e.status === 401 ? 'This token is not valid (revoked, expired, or mistyped).' : e.message;
    }
  };
  input.addEventListener('keydown', (e) => e.key === 'Enter' && go());
  app.replaceChildren(
    h('section', { class: 'signin' },
      h('h1', {}, 'Facade playground'),
      h('p', {}, 'Sign in with a team or admin token. It is kept in this tab only (session storage) and sent to this server alone.'),
      h('label', {}, 'Token ', input),
      h('button', { id: 'signin-btn', onclick: go }, 'Sign in'),
      error),
  );
  input.focus();
}

function signOut() {
  stopOps();
  sessionStorage.removeItem(TOKEN_KEY);
  // Run history holds documents and variables: it goes with the token, not left for the next
  // person at this browser.
  for (const key of Object.keys(localStorage)) {
    if (key.startsWith('facade.history.')) localStorage.removeItem(key);
  }
  state.token = null;
  signIn();
}

// ---------------------------------------------------------------- main view

function main() {
  if (state.clients.length === 0) {
    app.replaceChildren(h('section', { class: 'signin' }, h('h1', {}, 'Facade playground'),
      h('p', {}, 'This token manages no clients. An admin creates a client for your team first.'),
      h('button', { onclick: signOut }, 'Sign out')));
    return;
  }
  state.client = state.clients[0].name;
  const clientSelect = h('select', { id: 'client', onchange: (e) => selectClient(e.target.value) },
    state.clients.map((c) => h('option', { value: c.name }, `${c.name} (${c.team})`)));
  const endpointInput = h('input', { id: 'endpoint', list: 'endpoints', placeholder: 'endpoint name', value: '', onchange: (e) => selectEndpoint(e.target.value.trim()) });
  const tabs = ['author', 'versions', 'audit', 'ops'];
  const tabButtons = tabs.map((t) => h('button', { id: `tab-${t}`, class: 'tab', onclick: () => showTab(t) }, t[0].toUpperCase() + t.slice(1)));
  app.replaceChildren(
    h('header', {},
      h('strong', {}, 'Facade playground'),
      h('label', {}, 'Client ', clientSelect),
      h('label', {}, 'Endpoint ', endpointInput, h('datalist', { id: 'endpoints' })),
      h('nav', {}, tabButtons),
      h('span', { id: 'status', class: 'status' }),
      h('button', { id: 'signout', onclick: signOut }, 'Sign out')),
    authorView(),
    versionsView(),
    auditView(),
    opsView(),
  );
  showTab('author');
  admin('GET', '/me').then((me) => { state.me = me; }, fail);
  loadSchema();
  selectClient(state.client);
}

function showTab(name) {
  if (name !== 'ops') stopOps();
  for (const t of ['author', 'versions', 'audit', 'ops']) {
    document.getElementById(`view-${t}`).hidden = t !== name;
    document.getElementById(`tab-${t}`).classList.toggle('active', t === name);
  }
  if (name === 'versions') loadVersions().catch(fail);
  if (name === 'audit') loadAudit().catch(fail);
  if (name === 'ops') startOps();
}

async function selectClient(name) {
  state.client = name;
  try {
    state.endpoints = await admin('GET', `/clients/${encodeURIComponent(name)}/endpoints`);
  } catch (e) {
    state.endpoints = [];
    fail(e);
  }
  document.getElementById('endpoints').replaceChildren(...state.endpoints.map((e) => h('option', { value: e.name })));
  const first = state.endpoints[0]?.name ?? '';
  document.getElementById('endpoint').value = first;
  selectEndpoint(first);
}

async function selectEndpoint(name) {
  state.endpoint = name;
  renderHistory();
  const known = state.endpoints.some((e) => e.name === name);
  if (known) {
    // Start from the stable version's document, transform and sample variables.
    try {
      const e = state.endpoints.find((x) => x.name === name);
      const v = await admin('GET', `/clients/${enc(state.client)}/endpoints/${enc(name)}/versions/${e.rollout.stable}`);
      setDoc('query', v.document);
      setDoc('transform', v.script ?? '');
      setDoc('variables', JSON.stringify(v.sampleVariables ?? {}, null, 2));
    } catch (e) {
      fail(e);
    }
  }
  if (!document.getElementById('view-versions').hidden) loadVersions().catch(fail);
}

const enc = encodeURIComponent;

function setDoc(name, text) {
  const view = state.editors[name];
  view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
}

function doc(name) {
  return state.editors[name].state.doc.toString();
}

function endpointPath() {
  if (!state.endpoint) throw new Error('Name the endpoint first (letters, digits, - and _).');
  return `/clients/${enc(state.client)}/endpoints/${enc(state.endpoint)}`;
}

// ---------------------------------------------------------------- author

// The transform's TypeScript check: the types of the draft document from the server (fetched
// again when the document changes), the compiler loaded on first use (`ts-check.js`, a chunk
// of its own). A transform declaring `data: Data` and `ctx: Ctx` is checked in full.
const typesOf = { key: null, text: null };
let checker = null;

async function transformTypes() {
  const document_ = doc('query');
  if (!state.client || !state.endpoint || !document_.trim()) return null;
  const key = `${endpointPath()}\n${document_}`;
  if (typesOf.key !== key) {
    // A document that does not validate has no types to check against (the query editor
    // shows its problems).
    typesOf.text = await admin('POST', `${endpointPath()}/types`, { document: document_ }).catch(() => null);
    typesOf.key = key;
  }
  return typesOf.text;
}

async function tsLint(view) {
  const source = view.state.doc.toString();
  const shown = document.getElementById('ts-problems');
  const types = source.trim() ? await transformTypes() : null;
  if (types == null) {
    if (shown) shown.textContent = '';
    return [];
  }
  checker ??= import('./ts-check.js');
  const found = (await checker).check(types, source);
  if (shown) shown.textContent = found.length ? `Type errors: ${found.map((d) => d.message.split('\n')[0]).join(' · ')}` : '';
  return found.map((d) => ({ from: Math.min(d.from, source.length), to: Math.min(d.to, source.length), severity: 'error', message: d.message }));
}

async function tsCompletions(context) {
  const word = context.matchBefore(/[\w$]*/);
  const afterDot = context.state.sliceDoc(word.from - 1, word.from) === '.';
  if (word.from === word.to && !afterDot && !context.explicit) return null;
  const types = await transformTypes();
  if (types == null) return null;
  checker ??= import('./ts-check.js');
  const options = (await checker).complete(types, context.state.doc.toString(), context.pos);
  return options.length ? { from: word.from, options } : null;
}

function authorView() {
  const queryHost = h('div', { id: 'query', class: 'editor' });
  const varsHost = h('div', { id: 'variables', class: 'editor small' });
  const scriptHost = h('div', { id: 'transform', class: 'editor' });
  state.editors.query = new EditorView({
    parent: queryHost,
    state: EditorState.create({
      doc: '',
      extensions: [basicSetup, graphql(undefined, { onShowInDocs: (field, type, parent) => showType(parent || type) })],
    }),
  });
  state.editors.variables = new EditorView({ parent: varsHost, state: EditorState.create({ doc: '{}', extensions: [basicSetup, json()] }) });
  state.editors.transform = new EditorView({
    parent: scriptHost,
    state: EditorState.create({
      doc: '',
      extensions: [basicSetup, javascript({ typescript: true }), linter(tsLint, { delay: 400 }), autocompletion({ override: [tsCompletions] })],
    }),
  });
  const reason = h('input', { id: 'publish-reason', placeholder: 'reason (audit log)', size: 30 });
  return h('main', { id: 'view-author', class: 'author' },
    h('section', { class: 'left' },
      h('h2', {}, 'Query'), queryHost,
      h('h2', {}, 'Variables (JSON)'), varsHost,
      h('h2', {}, 'Transform (TypeScript or JavaScript) ',
        h('button', { id: 'starter', onclick: () => setDoc('transform', STARTER_TRANSFORM) }, 'Starter template'),
        h('button', { onclick: () => setDoc('transform', '') }, 'No transform')),
      h('details', { class: 'ctx' }, h('summary', {}, 'What ctx holds'),
        h('dl', {}, CTX_FIELDS.map(([k, v]) => [h('dt', {}, `ctx.${k}`), h('dd', {}, v)]))),
      scriptHost,
      h('p', { id: 'ts-problems', class: 'error' }),
      h('p', { id: 'script-error', class: 'error' }),
      h('div', { class: 'row' },
        h('button', { id: 'run', class: 'primary', onclick: () => run().catch(fail) }, 'Run ▶'),
        reason,
        h('button', { id: 'publish', onclick: () => publish(reason.value).catch(fail) }, 'Publish'),
        h('span', { id: 'publish-result' }))),
    h('section', { class: 'right' },
      h('div', { class: 'row' }, h('h2', {}, 'Result'), h('span', { id: 'timings', class: 'muted' })),
      h('div', { class: 'panes' },
        h('div', {}, h('h3', {}, 'Answer ', h('span', { id: 'answer-size', class: 'muted' })), h('pre', { id: 'result' })),
        h('div', {}, h('h3', {}, 'Transformed ', h('span', { id: 'transformed-size', class: 'muted' })), h('pre', { id: 'transformed' }))),
      h('h3', {}, 'Backend calls'),
      h('div', { id: 'waterfall' }),
      h('h3', {}, 'Types ', h('input', { id: 'type-search', placeholder: 'find a type', oninput: (e) => renderTypes(e.target.value) })),
      h('div', { id: 'types' }),
      h('h3', {}, 'History for this endpoint'),
      h('ol', { id: 'history' })));
}

async function loadSchema() {
  try {
    const r = await call('POST', '/graphql', { query: getIntrospectionQuery() });
    state.schema = buildClientSchema(r.data);
    updateSchema(state.editors.query, state.schema);
    renderTypes('');
    window.__facadeEditorReady = performance.now();
  } catch (e) {
    fail(e);
  }
}

function renderTypes(filter) {
  const host = document.getElementById('types');
  if (!state.schema) return;
  const f = filter.toLowerCase();
  const types = Object.values(state.schema.getTypeMap())
    .filter((t) => !t.name.startsWith('__') && t.name.toLowerCase().includes(f))
    .sort((a, b) => a.name.localeCompare(b.name));
  host.replaceChildren(...types.map((t) => h('button', { class: 'type', onclick: () => showType(t.name) }, t.name)), h('div', { id: 'type-detail' }));
}

function showType(name) {
  const t = name && state.schema?.getType(name);
  const detail = document.getElementById('type-detail');
  if (!t || !detail) return;
  const body = [h('h4', {}, t.name), t.description && h('p', {}, t.description)];
  if (isObjectType(t) || isInterfaceType(t) || isInputObjectType(t)) {
    body.push(h('dl', {}, Object.values(t.getFields()).map((f) => [
      h('dt', {}, f.name, f.args?.length ? `(${f.args.map((a) => `${a.name}: ${a.type}`).join(', ')})` : '', ': ',
        h('a', { href: '#', onclick: (e) => { e.preventDefault(); showType(getNamedType(f.type).name); } }, String(f.type)),
        f.deprecationReason ? h('em', { class: 'muted' }, ` deprecated: ${f.deprecationReason}`) : ''),
      h('dd', {}, f.description ?? ''),
    ])));
  }
  if (isUnionType(t)) body.push(h('p', {}, `one of ${t.getTypes().map((x) => x.name).join(', ')}`));
  if (isEnumType(t)) body.push(h('p', {}, t.getValues().map((v) => v.name).join(' · ')));
  detail.replaceChildren(...body.filter(Boolean));
}

function variables() {
  const text = doc('variables').trim() || '{}';
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`Variables are not valid JSON: ${e.message}`);
  }
  if (typeof value !== 'object' || Array.isArray(value) || value === null) throw new Error('Variables must be a JSON object.');
  return value;
}

function historyKey() {
  return `facade.history.${state.client}/${state.endpoint}`;
}

function renderHistory() {
  const host = document.getElementById('history');
  if (!host) return;
  const list = JSON.parse(localStorage.getItem(historyKey()) || '[]');
  host.replaceChildren(...list.map((entry) => h('li', {},
    h('a', { href: '#', onclick: (e) => {
      e.preventDefault();
      setDoc('query', entry.document);
      setDoc('variables', entry.variables);
      setDoc('transform', entry.script);
    } }, new Date(entry.at).toLocaleTimeString()), ' ', entry.document.replace(/\s+/g, ' ').slice(0, 60))));
}

async function run() {
  const path = endpointPath();
  const document_ = doc('query');
  const script = doc('transform').trim() ? doc('transform') : undefined;
  const vars = variables();
  const transformView = state.editors.transform;
  transformView.dispatch(setDiagnostics(transformView.state, []));
  document.getElementById('script-error').textContent = '';
  status('running…');
  const r = await admin('POST', `${path}/preview`, { document: document_, variables: vars, script });
  const answer = { data: r.data, ...(r.errors ? { errors: r.errors } : {}) };
  document.getElementById('result').textContent = JSON.stringify(answer, null, 2);
  document.getElementById('answer-size').textContent = formatBytes(jsonBytes(answer));
  document.getElementById('transformed').textContent = r.transformed === undefined ? '(no transform)' : JSON.stringify(r.transformed, null, 2);
  document.getElementById('transformed-size').textContent = r.transformed === undefined ? '' : formatBytes(jsonBytes(r.transformed));
  const t = r.timings;
  document.getElementById('timings').textContent = `total ${t.totalMs.toFixed(1)} ms · execute ${t.executeMs.toFixed(1)} ms · transform ${t.transformMs.toFixed(1)} ms`;
  renderWaterfall(r.trace?.fetches);
  if (r.scriptError) {
    const e = r.scriptError;
    const where = e.line ? `line ${e.line}${e.column ? `, column ${e.column}` : ''}: ` : '';
    document.getElementById('script-error').textContent = `Transform failed: ${where}${e.message}`;
    if (script) {
      const from = offsetOf(script, e.line, e.column);
      transformView.dispatch(setDiagnostics(transformView.state, [{ from, to: Math.min(from + 1, script.length), severity: 'error', message: e.message }]));
    }
  }
  const list = pushHistory(JSON.parse(localStorage.getItem(historyKey()) || '[]'),
    { at: Date.now(), document: document_, variables: doc('variables'), script: doc('transform') });
  localStorage.setItem(historyKey(), JSON.stringify(list));
  renderHistory();
  status(r.scriptError ? 'ran; the transform failed' : 'ran', r.scriptError ? 'error' : 'ok');
}

function renderWaterfall(fetches) {
  const rows = waterfall(fetches);
  const host = document.getElementById('waterfall');
  host.replaceChildren(...rows.map((r) => h('div', { class: 'wf-row' },
    h('span', { class: 'wf-label', title: r.label }, r.label),
    h('span', { class: 'wf-track' },
      h('span', { class: `wf-bar ${r.outcome === 'ok' ? 'ok' : 'bad'}`, style: `left:${r.left}%;width:${r.width}%` })),
    h('span', { class: 'wf-info' },
      `${r.durationMs.toFixed(1)} ms · ${r.keys === 0 ? 'single call' : `${r.keys} key${r.keys === 1 ? '' : 's'}`} · ${r.status ?? '—'} ${r.outcome}`))));
  if (rows.length === 0) host.textContent = 'no backend calls';
}

async function publish(reason) {
  const path = endpointPath();
  const script = doc('transform').trim() ? doc('transform') : undefined;
  const body = { document: doc('query'), script, sampleVariables: variables(), reason: reason || undefined };
  const r = await admin('POST', `${path}/versions`, body);
  document.getElementById('publish-result').textContent = r.created === false ? `unchanged: version ${r.version}` : `published version ${r.version}`;
  status(`published ${state.client}/${state.endpoint}@${r.version}`, 'ok');
  state.endpoints = await admin('GET', `/clients/${enc(state.client)}/endpoints`);
  document.getElementById('endpoints').replaceChildren(...state.endpoints.map((e) => h('option', { value: e.name })));
}

// ---------------------------------------------------------------- versions and rollout

function versionsView() {
  return h('main', { id: 'view-versions', class: 'versions', hidden: true },
    h('section', {},
      h('h2', {}, 'Rollout'), h('p', { id: 'rollout' }),
      h('div', { class: 'row' },
        h('label', {}, 'Canary version ', h('select', { id: 'canary-version' })),
        h('label', {}, 'Percent ', h('input', { id: 'canary-percent', type: 'number', min: 0, max: 100, value: 10 })),
        h('input', { id: 'rollout-reason', placeholder: 'reason (audit log)', size: 30 })),
      h('div', { class: 'row' },
        h('button', { id: 'set-canary', onclick: () => setCanary().catch(fail) }, 'Set canary'),
        h('button', { id: 'promote', onclick: () => transition('promote').catch(fail) }, 'Promote canary'),
        h('button', { id: 'rollback', onclick: () => transition('rollback').catch(fail) }, 'Roll back')),
      h('h2', {}, 'Device call'),
      h('div', { class: 'row' }, h('code', { id: 'curl' }), h('button', { id: 'copy-curl', onclick: copyCurl }, 'Copy')),
      h('h2', {}, 'Versions'),
      h('table', { id: 'versions' }),
      h('h2', {}, 'Diff ', h('select', { id: 'diff-a' }), ' → ', h('select', { id: 'diff-b' }),
        h('button', { id: 'diff-btn', onclick: () => showDiff() }, 'Compare')),
      h('div', { id: 'diff' })));
}

let versions = [];

async function loadVersions() {
  const table = document.getElementById('versions');
  if (!state.endpoints.some((e) => e.name === state.endpoint)) {
    versions = [];
    table.replaceChildren(h('tr', {}, h('td', {}, 'Not published yet.')));
    document.getElementById('rollout').textContent = '';
    renderCurl(null);
    return;
  }
  const path = endpointPath();
  const [list, rollout] = await Promise.all([admin('GET', `${path}/versions`), admin('GET', `${path}/rollout`)]);
  versions = list;
  document.getElementById('rollout').textContent = rollout.canary && rollout.canaryPercent > 0
    ? `stable ${rollout.stable} · canary ${rollout.canary} at ${rollout.canaryPercent} %`
    : `stable ${rollout.stable} · no canary`;
  document.getElementById('rollout').dataset.stable = rollout.stable;
  table.replaceChildren(
    h('tr', {}, ['version', 'published', 'by', 'transform', 'sha256'].map((c) => h('th', {}, c))),
    ...list.slice().reverse().map((v) => h('tr', {},
      h('td', {}, v.version, v.version === rollout.stable ? ' (stable)' : '', v.version === rollout.canary ? ' (canary)' : ''),
      h('td', {}, new Date(v.createdMs).toLocaleString()),
      h('td', {}, v.author),
      h('td', {}, v.script ? 'yes' : '—'),
      h('td', { class: 'muted' }, v.sha256.slice(0, 12)))));
  const options = () => list.map((v) => h('option', { value: v.version }, `version ${v.version}`));
  document.getElementById('canary-version').replaceChildren(...options());
  document.getElementById('canary-version').value = String(list[list.length - 1].version);
  document.getElementById('diff-a').replaceChildren(...options());
  document.getElementById('diff-b').replaceChildren(...options());
  document.getElementById('diff-a').value = String(list[Math.max(0, list.length - 2)].version);
  document.getElementById('diff-b').value = String(list[list.length - 1].version);
  renderCurl(list.find((v) => v.version === rollout.stable));
}

function renderCurl(version) {
  const el = document.getElementById('curl');
  if (!version) {
    el.textContent = '';
    return;
  }
  let mutation = false;
  try {
    mutation = getOperationAST(parse(version.document), version.operationName)?.operation === 'mutation';
  } catch {
    mutation = false;
  }
  let vars = {};
  try {
    vars = variables();
  } catch {
    vars = {};
  }
  el.textContent = curlFor({ origin: location.origin, client: state.client, endpoint: state.endpoint, variables: vars, mutation });
}

function copyCurl() {
  const text = document.getElementById('curl').textContent;
  navigator.clipboard?.writeText(text).then(() => status('copied', 'ok'), () => status('select the command and copy it', 'info'));
}

function reasonBody() {
  const reason = document.getElementById('rollout-reason').value.trim();
  return reason ? { reason } : {};
}

async function setCanary() {
  const stable = Number(document.getElementById('rollout').dataset.stable);
  const canary = Number(document.getElementById('canary-version').value);
  const percent = Number(document.getElementById('canary-percent').value);
  await admin('PUT', `${endpointPath()}/rollout`, { stable, canary, canaryPercent: percent, ...reasonBody() });
  status(`canary ${canary} at ${percent} %`, 'ok');
  await loadVersions();
}

async function transition(kind) {
  await admin('POST', `${endpointPath()}/${kind}`, reasonBody());
  status(kind === 'promote' ? 'canary promoted' : 'rolled back', 'ok');
  await loadVersions();
}

function showDiff() {
  const a = versions.find((v) => v.version === Number(document.getElementById('diff-a').value));
  const b = versions.find((v) => v.version === Number(document.getElementById('diff-b').value));
  const host = document.getElementById('diff');
  if (!a || !b) return;
  const part = (title, x, y) => h('div', {}, h('h3', {}, title),
    h('pre', { class: 'diff' }, diffLines(x ?? '', y ?? '').map((d) => h('span', { class: d.added ? 'add' : d.removed ? 'del' : '' }, d.value))));
  host.replaceChildren(part('Document', a.document, b.document), part('Transform', a.script, b.script));
}

// ---------------------------------------------------------------- audit

function auditView() {
  return h('main', { id: 'view-audit', class: 'audit', hidden: true },
    h('div', { class: 'row' }, h('h2', {}, 'Audit log'), h('button', { id: 'audit-refresh', onclick: () => loadAudit().catch(fail) }, 'Refresh')),
    h('table', { id: 'audit' }));
}

async function loadAudit() {
  const entries = await admin('GET', `/audit?client=${enc(state.client)}&limit=200`);
  document.getElementById('audit').replaceChildren(
    h('tr', {}, ['when', 'who', 'what', 'endpoint', 'detail', 'reason'].map((c) => h('th', {}, c))),
    ...entries.map((e) => h('tr', { class: 'audit-entry' },
      h('td', {}, new Date(e.atMs).toLocaleString()),
      h('td', {}, e.actor),
      h('td', {}, e.action),
      h('td', {}, e.target),
      h('td', { class: 'muted' }, JSON.stringify(e.detail)),
      h('td', {}, e.reason ?? ''))));
}

// ---------------------------------------------------------------- ops

function opsView() {
  return h('main', { id: 'view-ops', class: 'ops', hidden: true },
    h('h2', {}, 'Backends ', h('span', { class: 'muted' }, 'last 10 s; circle: rate, colour: errors; line: the last minute')),
    h('div', { id: 'tiles' }),
    h('h2', {}, 'Endpoints ', h('span', { class: 'muted' }, 'stable and canary side by side')),
    h('table', { id: 'ops-endpoints' }),
    h('h2', {}, 'Automatic rollbacks'),
    h('ul', { id: 'ops-rollbacks' }));
}

function stopOps() {
  if (state.ops) {
    state.ops.abort();
    state.ops = null;
  }
}

/** Reads /ops/stream (server-sent events) with the token in a header: EventSource cannot. */
async function startOps() {
  stopOps();
  const controller = new AbortController();
  state.ops = controller;
  try {
    const r = await fetch('/ops/stream', { headers: { authorization: `Bearer ${state.token}` }, signal: controller.signal });
    if (!r.ok) throw new ApiError(r.status, await r.text());
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('');
        if (event.includes('event: snapshot') && data) renderOps(JSON.parse(data));
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') fail(e);
  }
}

const errorColour = (pct) => (pct >= 50 ? '#dc2626' : pct >= 25 ? '#f97316' : pct >= 10 ? '#facc15' : '#16a34a');

function sparkline(rates) {
  const max = Math.max(1, ...rates);
  const step = 140 / Math.max(1, rates.length - 1);
  const points = rates.map((r, i) => `${(i * step).toFixed(1)},${(40 - (r / max) * 38).toFixed(1)}`).join(' ');
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('viewBox', '0 0 140 40');
  svg.setAttribute('class', 'spark');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', points);
  svg.append(line);
  return svg;
}

async function breaker(name, action) {
  try {
    await admin('POST', `/backends/${enc(name)}/breaker`, { action });
    status(`${name}: breaker ${action === 'trip' ? 'tripped' : 'reset'}`, 'ok');
  } catch (e) {
    fail(e);
  }
}

function renderOps(s) {
  const isAdmin = state.me?.kind === 'admin';
  const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '—');
  document.getElementById('tiles').replaceChildren(...s.backends.map((b) => {
    const radius = 6 + Math.min(24, Math.sqrt(b.callsPerSec) * 3);
    const dot = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    dot.setAttribute('viewBox', '0 0 60 60');
    dot.setAttribute('class', 'dot');
    const c = document.createElementNS('http://www.w3.org/2000/svg', 'circle');
    c.setAttribute('cx', '30');
    c.setAttribute('cy', '30');
    c.setAttribute('r', radius.toFixed(1));
    c.setAttribute('fill', errorColour(b.errorPct));
    dot.append(c);
    const refused = b.rejectedPerSec.circuitOpen + b.rejectedPerSec.rateLimited + b.rejectedPerSec.bulkheadFull;
    return h('div', { id: `tile-${b.name}`, class: `tile breaker-${b.breaker}` },
      h('div', { class: 'tile-head' }, h('strong', {}, b.name), h('span', { class: 'breaker' }, b.breaker.replace('_', ' '))),
      h('div', { class: 'tile-body' }, dot,
        h('div', {},
          h('div', {}, `${fmt(b.callsPerSec)}/s · ${fmt(b.errorPct)} % errors`),
          h('div', { class: 'muted' }, `p50 ${fmt(b.p50Ms)} ms · p99 ${fmt(b.p99Ms)} ms`),
          h('div', { class: 'muted' }, `in flight ${b.inFlight}/${b.bulkhead} · refused ${fmt(refused)}/s`))),
      sparkline(b.rates),
      isAdmin && h('div', { class: 'row' },
        h('button', { class: 'trip', onclick: () => breaker(b.name, 'trip') }, 'Trip'),
        h('button', { class: 'reset', onclick: () => breaker(b.name, 'reset') }, 'Reset')));
  }));
  const byEndpoint = new Map();
  for (const e of s.endpoints) {
    const key = `${e.client}/${e.endpoint}`;
    if (!byEndpoint.has(key)) byEndpoint.set(key, {});
    byEndpoint.get(key)[e.side] = e;
  }
  const side = (e) => (e ? [h('td', {}, `@${e.version}`), h('td', {}, fmt(e.requestsPerSec)), h('td', {}, fmt(e.errorPct)), h('td', {}, fmt(e.p99Ms))] : [h('td', { colspan: 4, class: 'muted' }, '—')]);
  document.getElementById('ops-endpoints').replaceChildren(
    h('tr', {}, h('th', {}, 'endpoint'), h('th', { colspan: 4 }, 'stable: version, req/s, error %, p99 ms'), h('th', { colspan: 4 }, 'canary: version, req/s, error %, p99 ms'), h('th', {}, 'guard')),
    ...[...byEndpoint].map(([key, sides]) => h('tr', {}, h('td', {}, key), ...side(sides.stable), ...side(sides.canary),
      h('td', {}, sides.canary ? (sides.canary.guarded ? 'on' : 'off') : ''))));
  document.getElementById('ops-rollbacks').replaceChildren(...(s.rollbacks.length ? s.rollbacks : [null]).map((r) => (r
    ? h('li', {}, `${new Date(r.atMs).toLocaleTimeString()} ${r.endpoint}: canary ${r.canary} rolled back — ${r.reason}`)
    : h('li', { class: 'muted' }, 'none on this instance'))));
}

// ---------------------------------------------------------------- start

if (state.token) {
  admin('GET', '/clients').then((clients) => {
    state.clients = clients;
    main();
  }, () => signOut());
} else {
  signIn();
}
