// The transform editor's TypeScript checker: the TypeScript compiler's language service over
// three files — the endpoint's types as the server generates them for the draft document
// (`POST …/types`), a global declaration making `Data` and `Ctx` usable without an import,
// and the transform being written. Loaded only when a transform is checked (a dynamic import:
// the compiler is a chunk of its own, not part of the first load).
import ts from 'typescript';
import es5 from 'typescript/lib/lib.es5.d.ts?raw';
import es2015Core from 'typescript/lib/lib.es2015.core.d.ts?raw';
import es2015Collection from 'typescript/lib/lib.es2015.collection.d.ts?raw';
import es2015Iterable from 'typescript/lib/lib.es2015.iterable.d.ts?raw';
import es2015Symbol from 'typescript/lib/lib.es2015.symbol.d.ts?raw';
import es2015Wellknown from 'typescript/lib/lib.es2015.symbol.wellknown.d.ts?raw';
import es2015Promise from 'typescript/lib/lib.es2015.promise.d.ts?raw';
import es2016Array from 'typescript/lib/lib.es2016.array.include.d.ts?raw';
import es2017Object from 'typescript/lib/lib.es2017.object.d.ts?raw';
import es2017String from 'typescript/lib/lib.es2017.string.d.ts?raw';
import es2019Array from 'typescript/lib/lib.es2019.array.d.ts?raw';
import es2019Object from 'typescript/lib/lib.es2019.object.d.ts?raw';

const TYPES = '/endpoint.types.ts';
const GLOBALS = '/globals.d.ts';
const TRANSFORM = '/transform.ts';

// What a transform runs on (QuickJS: ES2020 and later; no DOM, no Node).
const LIBS = {
  '/lib.es5.d.ts': es5,
  '/lib.es2015.core.d.ts': es2015Core,
  '/lib.es2015.collection.d.ts': es2015Collection,
  '/lib.es2015.iterable.d.ts': es2015Iterable,
  '/lib.es2015.symbol.d.ts': es2015Symbol,
  '/lib.es2015.symbol.wellknown.d.ts': es2015Wellknown,
  '/lib.es2015.promise.d.ts': es2015Promise,
  '/lib.es2016.array.include.d.ts': es2016Array,
  '/lib.es2017.object.d.ts': es2017Object,
  '/lib.es2017.string.d.ts': es2017String,
  '/lib.es2019.array.d.ts': es2019Array,
  '/lib.es2019.object.d.ts': es2019Object,
};

const files = new Map(Object.entries(LIBS).map(([name, text]) => [name, { text, version: 1 }]));
files.set(GLOBALS, {
  text: `type Data = import('${TYPES.replace('.ts', '')}').Data;\ntype Ctx = import('${TYPES.replace('.ts', '')}').Ctx;\ntype Variables = import('${TYPES.replace('.ts', '')}').Variables;\n`,
  version: 1,
});

function put(name, text) {
  const old = files.get(name);
  if (old && old.text === text) return;
  files.set(name, { text, version: (old?.version ?? 0) + 1 });
}

const options = {
  strict: true,
  // A transform written in JavaScript (`function (data, ctx)`) is not flagged; one that
  // declares `data: Data` is checked in full.
  noImplicitAny: false,
  noLib: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2020,
  module: ts.ModuleKind.ESNext,
  moduleResolution: ts.ModuleResolutionKind.Bundler,
};

const host = {
  getScriptFileNames: () => [...files.keys()],
  getScriptVersion: (name) => String(files.get(name)?.version ?? 0),
  getScriptSnapshot: (name) => (files.has(name) ? ts.ScriptSnapshot.fromString(files.get(name).text) : undefined),
  getCurrentDirectory: () => '/',
  getCompilationSettings: () => options,
  getDefaultLibFileName: () => '/lib.es5.d.ts',
  fileExists: (name) => files.has(name),
  readFile: (name) => files.get(name)?.text,
  // Any import of the endpoint's types (`./home.types`, `./endpoint.types`) is the types file.
  resolveModuleNames: (names) =>
    names.map((n) => (/\.types(\.ts)?$/.test(n) ? { resolvedFileName: TYPES, extension: ts.Extension.Ts } : undefined)),
};

const service = ts.createLanguageService(host, ts.createDocumentRegistry());

/** The transform's problems against these types: `{from, to, message}` in the transform's text. */
export function check(types, source) {
  put(TYPES, types);
  put(TRANSFORM, source);
  const found = [...service.getSyntacticDiagnostics(TRANSFORM), ...service.getSemanticDiagnostics(TRANSFORM)];
  return found.map((d) => ({
    from: d.start ?? 0,
    to: (d.start ?? 0) + Math.max(d.length ?? 1, 1),
    message: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  }));
}

/** Completions at `pos` in the transform: `{label, type, detail}`. */
export function complete(types, source, pos) {
  put(TYPES, types);
  put(TRANSFORM, source);
  const found = service.getCompletionsAtPosition(TRANSFORM, pos, { includeCompletionsWithInsertText: false });
  if (!found) return [];
  const kind = (k) => ({ property: 'property', method: 'method', function: 'function', var: 'variable', let: 'variable', const: 'constant', keyword: 'keyword', type: 'type', interface: 'interface' })[k] ?? 'variable';
  return found.entries
    .filter((e) => e.kind !== 'keyword' || found.isMemberCompletion === false)
    .slice(0, 200)
    .map((e) => ({ label: e.name, type: kind(e.kind), boost: e.kind === 'property' ? 10 : 0 }));
}
