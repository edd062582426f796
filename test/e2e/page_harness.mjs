// What the page tests in headless Chromium share (test/e2e/demo_page.test.mjs,
// test/e2e/chat_page.test.mjs): their command line (--no-build, --timeout SECONDS, and options of
// their own), Chromium with WebGPU on SwiftShader (the flags of scripts/chromium-webgpu-flags.json,
// as the karma launcher) through playwright-core, a page's console and errors, waiting for a page
// to set <body data-state> to done or error, screenshots in test-output/, and the checks with the
// `[e2e] PASS …` / `[e2e] FAIL …` line and exit code at the end.
//
// One test a process: the checks' failures are this module's state.
import {existsSync, mkdirSync, readFileSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const outDir = path.join(root, 'test-output');

/**
 * The test's arguments: {build, timeoutS} from --no-build and --timeout SECONDS (default 600),
 * and for each entry `flag: key` of `options` a flag taking a value, stored under `key`
 * (default ''). Anything else: a message and exit code 2.
 */
export function parseArgs(options = {}, argv = process.argv.slice(2)) {
  const args = {build: true, timeoutS: 600};
  for (const key of Object.values(options)) args[key] = '';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--no-build') args.build = false;
    else if (argv[i] === '--timeout') args.timeoutS = Number(argv[++i]);
    else if (Object.hasOwn(options, argv[i])) args[options[argv[i]]] = argv[++i] ?? '';
    else {
      console.error(`[e2e] unknown argument ${JSON.stringify(argv[i])}`);
      process.exit(2);
    }
  }
  return args;
}

// WebGPU on SwiftShader, offline-safe: the same flags as the karma launcher.
const CHROMIUM_ARGS = JSON.parse(
    readFileSync(new URL('../../scripts/chromium-webgpu-flags.json', import.meta.url), 'utf8'));

function findChromium() {
  return [process.env.CHROME_BIN, '/usr/bin/chromium', '/usr/bin/chromium-browser']
    .find((c) => c && existsSync(c));
}

/**
 * Before a test starts its servers: finds Chromium (throws when there is none), and with `build`
 * bundles the page (`bundle()`, said as bundling `entry`). Returns Chromium's path.
 */
export async function prepare({build, entry, bundle}) {
  const executablePath = findChromium();
  if (!executablePath) throw new Error('no Chromium found (set CHROME_BIN, or apt-get install chromium)');
  if (build) {
    console.log(`[e2e] bundling ${entry}`);
    await bundle();
  }
  return executablePath;
}

/** Headless Chromium at `executablePath` (from prepare) with the WebGPU flags, via playwright-core. */
export async function launchChromium(executablePath) {
  const {chromium} = await import('playwright-core');
  return chromium.launch({executablePath, headless: true, args: CHROMIUM_ARGS});
}

/** A new page of `viewport` size and `logs`, its console messages and page errors as lines. */
export async function openPage(browser, viewport) {
  const page = await browser.newPage({viewport});
  const logs = [];
  page.on('console', (m) => logs.push(`console.${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  return {page, logs};
}

/**
 * Goes to `pageUrl` and polls every `pollMs` until <body data-state> is done or error or
 * `timeoutS` has passed, printing #status whenever it changes. Returns the last state seen.
 */
export async function waitForPage(page, pageUrl, {timeoutS, pollMs}) {
  await page.goto(pageUrl);
  return waitForState(page, ['done', 'error'], {timeoutS, pollMs});
}

/**
 * Polls every `pollMs` until <body data-state> is one of `states` (and `until(page, state)`,
 * when given, resolves truthy) or `timeoutS` has passed, printing #status whenever it changes.
 * Returns the last state seen.
 */
export async function waitForState(page, states, {timeoutS, pollMs, until = null}) {
  const deadline = Date.now() + timeoutS * 1000;
  let state = '';
  let lastStatus = '';
  while (Date.now() < deadline) {
    state = await page.evaluate(() => document.body.dataset.state ?? '');
    if (states.includes(state) && (until === null || await until(page, state))) break;
    const status = await page.evaluate(() => document.getElementById('status')?.textContent ?? '');
    if (status !== lastStatus) {
      console.log(`[e2e]   status: ${status}`);
      lastStatus = status;
    }
    await page.waitForTimeout(pollMs);
  }
  return state;
}

/** A full-page screenshot of `page` at `file` (in test-output/, made if needed). */
export async function saveScreenshot(page, file) {
  mkdirSync(outDir, {recursive: true});
  await page.screenshot({path: file, fullPage: true});
  console.log(`[e2e] screenshot: ${path.relative(root, file)}`);
}

/** Prints the last 20 lines of a page's `logs`. */
export function printLogs(logs) {
  logs.slice(-20).forEach((l) => console.log(`[e2e]   ${l}`));
}

/** Seconds since `started` (a Date.now()), one decimal. */
export function secondsSince(started) {
  return ((Date.now() - started) / 1000).toFixed(1);
}

const failures = [];

/** One check: printed as ok or FAIL, and a failure makes the test fail at the end. */
export function check(condition, what) {
  if (!condition) failures.push(what);
  console.log(`[e2e]   ${condition ? 'ok  ' : 'FAIL'} ${what}`);
}

/**
 * Checks that `logs` hold no page errors or console errors (but those matching `ignore`);
 * `label` goes before the check's text.
 */
export function checkNoPageErrors(logs, {label = '', ignore = null} = {}) {
  const errors = logs.filter((l) => (l.startsWith('pageerror') || l.startsWith('console.error')) &&
                                    !(ignore && ignore.test(l)));
  check(errors.length === 0, `${label}no page errors${errors.length ? `: ${errors.slice(0, 3).join(' | ')}` : ''}`);
}

/**
 * Runs the test `run` (an error thrown is one more failure), prints `[e2e] PASS <what> (<file>)`
 * or `[e2e] FAIL <what>: …` and exits with 0 or 1.
 */
export async function runTest(what, file, run) {
  try {
    await run();
  } catch (e) {
    failures.push(e.message);
    console.log(`[e2e] ERROR: ${e.message}`);
  }
  if (failures.length === 0) {
    console.log(`[e2e] PASS ${what} (${file})`);
    process.exit(0);
  }
  console.log(`[e2e] FAIL ${what}: ${failures.length} check(s) failed: ${failures.join('; ')}`);
  process.exit(1);
}
