#!/usr/bin/env node
// The Node lane: test/node/**/*.spec.ts — host-only specs (safetensors, HF config, planners,
// cache bookkeeping) that need neither a browser nor a GPU — bundled with esbuild for Node and
// run with jasmine-core on tfjs's cpu backend. Seconds, not minutes. `npm test` runs it first;
// alone: `npm run test:node` (no type check: `npm run typecheck` or `npm test` does that).
//
//   node scripts/node-lane.mjs                      every Node spec
//   node scripts/node-lane.mjs --grep <pattern>     only specs whose full name contains <pattern>
//                                                   (as karma-jasmine: a substring, or /regexp/flags)
//   node scripts/node-lane.mjs --json <file>        also write the counts and per-suite times to
//                                                   <file> (scripts/test.mjs reads them)
//
// Prints failures as they happen, then the suites with their spec counts and times, slowest
// first, and `N passed, N failed, N skipped` (under scripts/test.mjs, which sets
// TFJS_MLA_TEST_RUNNER, the table and that line come at the end of the whole run instead).
import {existsSync, mkdirSync, readdirSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {specSideEffectsPlugin} from './lib/spec_side_effects.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));
const started = Date.now();
const underRunner = Boolean(process.env.TFJS_MLA_TEST_RUNNER);

function die(message) {
  console.error(`\n[node] ERROR: ${message}`);
  process.exit(2);
}

// ---- arguments ---------------------------------------------------------------------------
const argv = process.argv.slice(2);
let grep;
let jsonOut;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--grep' || a === '-g') {
    grep = argv[++i];
    if (grep === undefined) die('--grep needs a pattern');
  } else if (a.startsWith('--grep=')) {
    grep = a.slice('--grep='.length);
  } else if (a === '--json') {
    jsonOut = argv[++i];
    if (jsonOut === undefined) die('--json needs a file');
  } else if (a === '--help' || a === '-h') {
    console.log('usage: npm run test:node [-- --grep <pattern>] [-- --json <file>]');
    process.exit(0);
  } else {
    die(`unknown argument ${JSON.stringify(a)} (usage: npm run test:node -- --grep <pattern>)`);
  }
}
if (!existsSync(path.join(root, 'node_modules', 'jasmine-core', 'package.json'))) {
  die('node_modules is missing: run npm ci (or npm test, which installs it)');
}

/** The spec filter of karma-jasmine (so --grep selects the same way in both lanes). */
function grepRegExp(filter) {
  const parts = /^[/](.*)[/]([gmixXsuUAJD]*)$/.exec(filter);
  if (parts === null) return new RegExp(filter.replace(/[-[\]{}()*+?.,\\^$|#\s]/g, '\\$&'));
  return new RegExp(parts[1], parts[2]);
}

// ---- bundle ------------------------------------------------------------------------------
const nodeDir = path.join(root, 'test', 'node');
const specs = existsSync(nodeDir) ?
  readdirSync(nodeDir, {recursive: true})
    .map(f => String(f).split(path.sep).join('/'))
    .filter(f => f.endsWith('.spec.ts'))
    .map(f => `./test/node/${f}`)
    .sort() :
  [];
if (specs.length === 0) die('no test/node/**/*.spec.ts files found');
const outfile = path.join(root, '.build', 'node-tests.cjs');
mkdirSync(path.dirname(outfile), {recursive: true});
const entry = ['./test/node/setup.ts', ...specs].map(f => `import ${JSON.stringify(f)};`).join('\n') + '\n';
const esbuild = await import('esbuild');
try {
  const result = await esbuild.build({
    stdin: {contents: entry, resolveDir: root, sourcefile: 'node-tests-entry.ts', loader: 'ts'},
    bundle: true,
    // CommonJS, with every npm package left to Node's require: one tfjs-core instance (the
    // one the cpu backend and tfjs-layers register with), and no bundling of tfjs itself.
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    sourcesContent: true,
    loader: {'.json': 'json'},
    outfile,
    logLevel: 'warning',
    plugins: [specSideEffectsPlugin(root, 'node-tests-entry.ts')],
  });
  if (result.errors.length > 0) die('esbuild failed');
} catch (e) {
  die('esbuild failed to bundle test/node (see above)');
}

// ---- jasmine -----------------------------------------------------------------------------
// Stack traces of failures point into test/*.ts and src/*.ts.
process.setSourceMapsEnabled(true);
const {addSpec, formatSuiteTimes} = require('./scripts/suite-times.cjs');
const jasmine = require('jasmine-core').boot();  // the globals describe, it, expect, …
const env = jasmine.getEnv();
const filter = grep !== undefined ? grepRegExp(grep) : undefined;
env.configure({
  random: false,
  specFilter: spec => filter === undefined || filter.test(spec.getFullName()),
});

const totals = {passed: 0, failed: 0, skipped: 0};
const suites = new Map();
const failures = [];
const suiteStack = [];
let topStarted = 0;

const indent = (text, pad) => String(text).replace(/\s+$/, '').split('\n').map(l => pad + l).join('\n');
const messagesOf = result => result.failedExpectations.map(f => f.stack && !f.stack.includes(f.message)
  ? `${f.message}\n${f.stack}` : (f.stack || f.message));

function reportFailure(name, messages, ms) {
  failures.push({name, messages});
  console.log(`\n✗ FAILED ${name}${ms === undefined ? '' : ` (${(ms / 1000).toFixed(1)} s)`}\n` +
              indent(messages.join('\n'), '    '));
}

env.addReporter({
  suiteStarted(result) {
    if (suiteStack.length === 0) topStarted = Date.now();
    suiteStack.push(result.description);
  },
  specDone(result) {
    const top = suiteStack[0] ?? '(top level)';
    const ran = result.status === 'passed' || result.status === 'failed';
    // As karma-jasmine: pending and --grep-excluded specs count as skipped.
    if (result.status === 'passed') totals.passed++;
    else if (result.status === 'failed') totals.failed++;
    else totals.skipped++;
    addSpec(suites, top, {ran, skipped: result.status === 'pending', ms: 0});
    if (result.status === 'failed') reportFailure(result.fullName, messagesOf(result), result.duration ?? undefined);
  },
  suiteDone(result) {
    suiteStack.pop();
    // A failing beforeAll/afterAll: one failure for the suite.
    if (result.failedExpectations.length > 0) {
      totals.failed++;
      reportFailure(`${result.fullName} (beforeAll/afterAll)`, messagesOf(result));
    }
    if (suiteStack.length === 0) addSpec(suites, result.description, {ran: false, skipped: false,
                                                                     ms: Date.now() - topStarted});
  },
});

let loadError;
try {
  require(outfile);
} catch (e) {
  loadError = e;
}
let done;
if (loadError === undefined) {
  done = await env.execute();
} else {
  totals.failed++;
  reportFailure('loading test/node specs', [loadError && loadError.stack || String(loadError)]);
}
// An error outside any suite (a top-level afterAll, an unhandled rejection between specs).
if (done && done.failedExpectations.length > 0) {
  totals.failed += done.failedExpectations.length;
  reportFailure('outside any suite', messagesOf(done));
}

// ---- summary -----------------------------------------------------------------------------
const seconds = (Date.now() - started) / 1000;
const suiteList = [...suites.values()];
const out = ['', `[node] ${totals.passed + totals.failed + totals.skipped} specs in ${seconds.toFixed(1)} s ` +
                 `(${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped)`];
if (failures.length > 0) {
  out.push(`Failed (${failures.length}):`);
  for (const f of failures) {
    out.push(`  ✗ ${f.name}`);
    out.push(indent(f.messages.join('\n'), '      '));
  }
}
if (!underRunner) {
  out.push(...formatSuiteTimes('Node lane suites', suiteList));
  if (totals.passed + totals.failed === 0) {
    out.push(`[node] FAILED: no spec ran${grep !== undefined ? ` (does --grep ${JSON.stringify(grep)} match any spec?)` : ''}`);
  }
  out.push(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
}
console.log(out.join('\n'));
if (jsonOut !== undefined) {
  writeFileSync(path.resolve(jsonOut), JSON.stringify({...totals, seconds, suites: suiteList}, null, 1) + '\n');
}
const empty = totals.passed + totals.failed === 0 && !underRunner;
process.exit(totals.failed > 0 || empty ? 1 : 0);
