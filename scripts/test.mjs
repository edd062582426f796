#!/usr/bin/env node
// `npm test`: install (if needed) → the Node lane (test/node/**/*.spec.ts: host-only specs in
// Node, seconds; scripts/node-lane.mjs) → Chromium (if needed) → tsc build + test typecheck →
// esbuild bundle of the other test/**/*.spec.ts → karma (headless Chromium, WebGPU on
// SwiftShader). Ends with each lane's top-level suites (spec count, seconds, slowest first)
// and `N passed, N failed, N skipped` over both lanes (and the page test).
//
//   npm test                        all specs
//   npm test -- --grep <pattern>    only specs whose full name contains <pattern> (or matches
//                                   /regexp/flags), in both lanes
//   npm test -- --skip-build        skip the tsc runs (bundle + karma + page test only)
//   npm test -- --skip-e2e          skip the last steps, the e2e tests (each counts as one test; none run
//                                   with --grep): the demo page (test/e2e/demo_page.test.mjs: demos/web in
//                                   headless Chromium via playwright-core), the chat page (chat_page.test.mjs:
//                                   demos/chat loading test/fixtures/tiny_mla_lm over HTTP), the LM fixture in Node
//                                   on webgpu (node_webgpu_model.test.mjs), README.md's code blocks
//                                   (readme_blocks.test.mjs) and the packed package in a fresh project
//                                   (consumer.test.mjs). Alone: node test/e2e/<file>
//
// Only Node builtins are used until node_modules exists; dependencies are loaded lazily.
import {spawnSync} from 'node:child_process';
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {specSideEffectsPlugin} from './lib/spec_side_effects.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
process.chdir(root);
const require = createRequire(path.join(root, 'package.json'));
const started = Date.now();

function die(message) {
  console.error(`\n[test] ERROR: ${message}`);
  process.exit(1);
}

function step(message) {
  console.log(`\n[test] ${message} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, {stdio: 'inherit', cwd: root});
  if (r.error) die(`${what}: could not run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) die(`${what} failed (${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal})`);
}

// ---- arguments ---------------------------------------------------------------------------
const argv = process.argv.slice(2);
let grep;
let skipBuild = false;
let skipE2e = false;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--grep' || a === '-g') {
    grep = argv[++i];
    if (grep === undefined) die('--grep needs a pattern');
  } else if (a.startsWith('--grep=')) {
    grep = a.slice('--grep='.length);
  } else if (a === '--skip-build') {
    skipBuild = true;
  } else if (a === '--skip-e2e') {
    skipE2e = true;
  } else if (a === '--help' || a === '-h') {
    console.log('usage: npm test [-- --grep <pattern>] [-- --skip-build] [-- --skip-e2e]');
    process.exit(0);
  } else {
    die(`unknown argument ${JSON.stringify(a)} (usage: npm test -- --grep <pattern>)`);
  }
}

// ---- a. dependencies ---------------------------------------------------------------------
if (!existsSync(path.join(root, 'node_modules', 'karma', 'package.json'))) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  if (existsSync(path.join(root, 'package-lock.json'))) {
    step('node_modules missing: npm ci');
    run(npm, ['ci', '--no-audit', '--no-fund'], 'npm ci');
  } else {
    step('node_modules missing and no package-lock.json: npm install');
    run(npm, ['install', '--no-audit', '--no-fund'], 'npm install');
  }
}

// ---- a2. the Node lane (host-only specs, no browser) -------------------------------------
step(`Node lane: test/node/**/*.spec.ts with jasmine in Node${grep !== undefined ? `, --grep ${JSON.stringify(grep)}` : ''}`);
const nodeLaneJson = path.join(root, '.build', 'node-lane.json');
rmSync(nodeLaneJson, {force: true});
{
  const r = spawnSync(process.execPath,
                      [path.join(root, 'scripts', 'node-lane.mjs'), '--json', nodeLaneJson,
                       ...(grep !== undefined ? ['--grep', grep] : [])],
                      {stdio: 'inherit', cwd: root, env: {...process.env, TFJS_MLA_TEST_RUNNER: '1'}});
  if (r.error) die(`Node lane: could not run scripts/node-lane.mjs: ${r.error.message}`);
  if (!existsSync(nodeLaneJson)) die(`the Node lane did not finish (exit ${r.status ?? r.signal}; see [node] above)`);
}
const nodeLane = JSON.parse(readFileSync(nodeLaneJson, 'utf8'));

// ---- b. Chromium -------------------------------------------------------------------------
function findChromium() {
  const candidates = [process.env.CHROME_BIN, '/usr/bin/chromium', '/usr/bin/chromium-browser'];
  return candidates.find(c => c && existsSync(c));
}
let chrome = findChromium();
if (!chrome) {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const isDebian = existsSync('/etc/debian_version');
  if (isRoot && isDebian) {
    step('Chromium missing: apt-get install -y chromium');
    const env = {...process.env, DEBIAN_FRONTEND: 'noninteractive'};
    for (const args of [['update'], ['install', '-y', 'chromium']]) {
      const r = spawnSync('apt-get', args, {stdio: 'inherit', env});
      if (r.status !== 0) die(`apt-get ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    }
    chrome = findChromium();
  }
  if (!chrome) {
    die('no Chromium found. The tests run in headless Chromium with WebGPU (SwiftShader).\n' +
        '  Debian/Ubuntu: sudo apt-get install -y chromium   (or run this as root to let it install)\n' +
        '  elsewhere: set CHROME_BIN to a Chromium/Chrome binary with WebGPU support.');
  }
}
process.env.CHROME_BIN = chrome;

// ---- c. build + typecheck ----------------------------------------------------------------
if (!skipBuild) {
  const tsc = require.resolve('typescript/bin/tsc');
  step('tsc -p tsconfig.json (build dist/)');
  run(process.execPath, [tsc, '-p', 'tsconfig.json'], 'build (tsc -p tsconfig.json)');
  step('tsc -p test/tsconfig.json --noEmit (typecheck tests)');
  run(process.execPath, [tsc, '-p', 'test/tsconfig.json', '--noEmit'],
      'test typecheck (tsc -p test/tsconfig.json --noEmit)');
  step('tsc -p test/node/tsconfig.json --noEmit (typecheck the Node lane)');
  run(process.execPath, [tsc, '-p', 'test/node/tsconfig.json', '--noEmit'],
      'Node lane typecheck (tsc -p test/node/tsconfig.json --noEmit)');
  step('tsc -p demos/web/tsconfig.json (typecheck the browser demo)');
  run(process.execPath, [tsc, '-p', 'demos/web/tsconfig.json'],
      'demo typecheck (tsc -p demos/web/tsconfig.json)');
  step('tsc -p demos/chat/tsconfig.json (typecheck the chat page)');
  run(process.execPath, [tsc, '-p', 'demos/chat/tsconfig.json'],
      'chat page typecheck (tsc -p demos/chat/tsconfig.json)');
}

// ---- d. bundle ---------------------------------------------------------------------------
const specs = readdirSync(path.join(root, 'test'), {recursive: true})
  .map(f => String(f).split(path.sep).join('/'))
  // test/node/ is the Node lane's (run above), not the browser's.
  .filter(f => f.endsWith('.spec.ts') && !f.split('/').includes('node_modules') && !f.startsWith('node/'))
  .map(f => `./test/${f}`)
  .sort();
if (specs.length === 0) die('no test/**/*.spec.ts files found');
step(`esbuild: bundling ${specs.length} spec file(s) into .build/tests.js`);
const entry = ['./test/helpers/setup.ts', ...specs].map(f => `import ${JSON.stringify(f)};`).join('\n') + '\n';
mkdirSync(path.join(root, '.build'), {recursive: true});
writeFileSync(path.join(root, '.build', 'tests-entry.ts'), entry);
const esbuild = await import('esbuild');
try {
  const result = await esbuild.build({
    stdin: {contents: entry, resolveDir: root, sourcefile: 'tests-entry.ts', loader: 'ts'},
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2020',
    sourcemap: true,
    sourcesContent: true,
    loader: {'.json': 'json'},
    outfile: path.join(root, '.build', 'tests.js'),
    logLevel: 'warning',
    plugins: [specSideEffectsPlugin(root, 'tests-entry.ts')],
  });
  if (result.errors.length > 0) die('esbuild failed');
} catch (e) {
  die(`esbuild failed to bundle the specs (see above)`);
}

// ---- e. karma ----------------------------------------------------------------------------
step(`karma: headless Chromium (${chrome})${grep ? `, --grep ${JSON.stringify(grep)}` : ''}`);
const karma = require('karma');
const karmaConfig = await karma.config.parseConfig(
  path.join(root, 'karma.conf.cjs'),
  // With --grep the browser may run no spec (they may all be in the Node lane): the run's
  // own "no spec ran" check below covers both lanes.
  grep !== undefined ? {client: {args: ['--grep', grep]}, failOnEmptyTestSuite: false} : {},
  {promiseConfig: true, throwErrors: true});

process.env.TFJS_MLA_TEST_RUNNER = '1';
const summary = require(path.join(root, 'scripts', 'karma-summary-reporter.cjs'));
const exitCode = await new Promise(resolve => {
  const server = new karma.Server(karmaConfig, code => resolve(code));
  server.start();
});
let {passed, skipped} = summary.totals;
// A browser error outside any spec or a disconnect fails the run: count it so the line agrees.
let failed = summary.totals.failed + (exitCode !== 0 && summary.totals.failed === 0 && passed > 0 ? 1 : 0);
// The Node lane's specs count in the same closing line.
passed += nodeLane.passed;
failed += nodeLane.failed;
skipped += nodeLane.skipped;

// ---- f. the demo page, end to end (one test) ---------------------------------------------
let e2eFailed = false;
if (!skipE2e && grep === undefined) {
  step('e2e: demos/web page in headless Chromium (test/e2e/demo_page.test.mjs)');
  const r = spawnSync(process.execPath, [path.join(root, 'test', 'e2e', 'demo_page.test.mjs')],
                      {stdio: 'inherit', cwd: root, env: process.env});
  e2eFailed = r.status !== 0;
  if (e2eFailed) {
    failed += 1;
    console.error(`[test] FAILED: the demo page test (exit ${r.status ?? r.signal}; see [e2e] above)`);
  } else {
    passed += 1;
  }
  step('e2e: demos/chat page loads test/fixtures/tiny_mla_lm over HTTP, greedy tokens (test/e2e/chat_page.test.mjs)');
  const c = spawnSync(process.execPath, [path.join(root, 'test', 'e2e', 'chat_page.test.mjs')],
                      {stdio: 'inherit', cwd: root, env: process.env});
  if (c.status !== 0) {
    e2eFailed = true;
    failed += 1;
    console.error(`[test] FAILED: the chat page test (exit ${c.status ?? c.signal}; see [e2e] above)`);
  } else {
    passed += 1;
  }
  // ---- g. packaging end to end (one test each) ------------------------------------------
  for (const [file, what] of [['node_webgpu_model.test.mjs', 'tfjs-mla/models in Node on webgpu: the LM fixture from a folder and over HTTP'],
                              ['readme_blocks.test.mjs', 'every ts/js block of README.md, type-checked and run in Node'],
                              ['consumer.test.mjs', 'npm pack → README install into an empty project → CommonJS, esbuild bundle, script tags in headless Chromium']]) {
    step(`e2e: ${what} (test/e2e/${file})`);
    const e = spawnSync(process.execPath, [path.join(root, 'test', 'e2e', file), ...(file.startsWith('readme') ? ['--no-build'] : [])],
                        {stdio: 'inherit', cwd: root, env: process.env});
    if (e.status !== 0) {
      e2eFailed = true;
      failed += 1;
      console.error(`[test] FAILED: test/e2e/${file} (exit ${e.status ?? e.signal}; see its lines above)`);
    } else {
      passed += 1;
    }
  }
}
const seconds = ((Date.now() - started) / 1000).toFixed(1);
if (passed + failed === 0) {
  console.error(`[test] FAILED: no spec ran${grep ? ` (does --grep ${JSON.stringify(grep)} match any spec?)` : ''}`);
} else if (exitCode !== 0 && failed === 0) {
  console.error(`[test] FAILED: karma exited with ${exitCode} (browser error or disconnect, see above)`);
}
// Each lane's top-level suites, slowest first, then the closing line.
const {formatSuiteTimes} = require(path.join(root, 'scripts', 'suite-times.cjs'));
console.log(['', ...formatSuiteTimes('Node lane suites', nodeLane.suites),
             ...formatSuiteTimes('Browser lane suites (karma)', summary.suites)].join('\n'));
console.log(`[test] done in ${seconds} s`);
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(exitCode !== 0 || e2eFailed || failed > 0 || passed + failed === 0 ? 1 : 0);
