#!/usr/bin/env node
// The browser demo page, end to end: bundle demos/web/main.ts, serve demos/ on a free port,
// load the page in headless Chromium (WebGPU on SwiftShader) with playwright-core, wait for the
// finished run, check the numbers it shows, and save a screenshot in test-output/.
//
//   node test/e2e/demo_page.test.mjs [--no-build] [--timeout SECONDS] [--url-params 'steps=8&…']
//
// Then it loads the page once more with a bfloat16 latent cache (`cacheDtype=bfloat16`, a short
// run: two small prompts, two decode steps) and checks the bytes per token it shows are half the
// float32 figure of the first load.
//
// The harness it shares with chat_page.test.mjs (arguments, Chromium, waiting, checks): ./page_harness.mjs.
//
// Run by `npm test` as its last step (skip with `npm test -- --skip-e2e`). Exit code 0 = pass.
// Prints one line `[e2e] PASS …` or `[e2e] FAIL …`.
import path from 'node:path';
import {buildWebDemo, startDemoServer} from '../../scripts/serve-demo.mjs';
import {check, checkNoPageErrors, launchChromium, openPage, outDir, parseArgs, prepare, printLogs, runTest,
        saveScreenshot, secondsSince, waitForPage} from './page_harness.mjs';

const screenshot = path.join(outDir, 'demo_page.png');

// The sizes the page runs with (its defaults, spelled out so the checks below can use them;
// --url-params overrides them).
let SIZES = {hidden: 512, heads: 16, kvLoraRank: 128, nope: 32, rope: 16, v: 32};
let PROMPTS = [64, 17, 40, 5];
let STEPS = 24;
/** The reduced-precision load: its own small batch (decode path only: prompts ≤ 8 tokens). */
const HALF_LOAD = {cacheDtype: 'bfloat16', prompts: [6, 3], steps: 2};

const {build, timeoutS, extraParams} = parseArgs({'--url-params': 'extraParams'});

const screenshotHalf = path.join(outDir, 'demo_page_bf16.png');

/**
 * Loads `pageUrl` in `page`, waits for the run to finish (printing the status line now and
 * then), saves a screenshot and returns the numbers the page shows (throws when the page ends
 * in an error or runs past --timeout).
 */
async function loadAndRead(page, pageUrl, logs, screenshotPath) {
  const state = await waitForPage(page, pageUrl, {timeoutS, pollMs: 1000});
  await saveScreenshot(page, screenshotPath);

  if (state !== 'done') {
    const error = await page.evaluate(() => document.body.dataset.error ?? '');
    printLogs(logs);
    throw new Error(state === 'error' ? `the page reports an error: ${error}` :
                                        `the run did not finish within ${timeoutS} s (state ${JSON.stringify(state)})`);
  }

  const read = await page.evaluate(() => {
    const cell = (id) => document.getElementById(id);
    const value = (id) => cell(id)?.dataset.value;
    const svgPoints = (id) => [...document.querySelectorAll(`#${id} path[data-points]`)]
      .map((p) => Number(p.getAttribute('data-points')));
    return {
      backend: value('backend'), backendText: cell('backend')?.textContent,
      note: cell('backend-note')?.textContent,
      dtypes: value('dtypes'), bytesPerToken: Number(value('bytes-per-token')),
      weightBytes: Number(value('weight-bytes')), layerBytes: Number(cell('weight-bytes')?.dataset.layerBytes),
      prefillTps: Number(value('prefill-tps')), decodeTps: Number(value('decode-tps')),
      tokensHeld: Number(value('tokens-held')), mlaBytes: Number(value('mla-bytes')),
      mhaBytes: Number(value('mha-bytes')), ratio: Number(value('ratio')),
      maxDiff: Number(value('check')), maxRef: Number(cell('check')?.dataset.maxRef),
      ready: cell('results')?.dataset.ready,
      latencyPoints: svgPoints('latency-chart'), memoryPoints: svgPoints('memory-chart'),
      texts: ['dtypes', 'weight-bytes', 'bytes-per-token', 'prefill-tps', 'decode-tps', 'mla-bytes', 'mha-bytes',
              'ratio', 'check'].map((id) => `${id}: ${cell(id)?.textContent}`),
    };
  });
  read.texts.forEach((t) => console.log(`[e2e]   ${t}`));
  return read;
}

async function run() {
  const started = Date.now();
  const executablePath = await prepare({build, entry: 'demos/web/main.ts', bundle: buildWebDemo});
  const {server, url} = await startDemoServer({port: 0});
  let browser;
  try {
    browser = await launchChromium(executablePath);
    const {page, logs} = await openPage(browser, {width: 1200, height: 900});
    const params = new URLSearchParams({
      ...Object.fromEntries(Object.entries(SIZES).map(([k, v]) => [k, String(v)])),
      prompts: PROMPTS.join(','), steps: String(STEPS), backend: 'webgpu',
    });
    for (const [k, v] of new URLSearchParams(extraParams)) params.set(k, v);
    SIZES = Object.fromEntries(Object.keys(SIZES).map((k) => [k, Number(params.get(k))]));
    PROMPTS = params.get('prompts').split(',').map(Number);
    STEPS = Number(params.get('steps'));
    const pageUrl = `${url}?${params}`;
    console.log(`[e2e] ${pageUrl} in ${executablePath} (headless, WebGPU on SwiftShader)`);
    const read = await loadAndRead(page, pageUrl, logs, screenshot);

    const {hidden, heads: H, kvLoraRank: L, nope: N, rope: R, v: V} = SIZES;
    void hidden;
    const tokens = PROMPTS.reduce((a, b) => a + b, 0) + PROMPTS.length * STEPS;
    const expectedRatio = (H * (N + R) + H * V) / (L + R);
    check(read.backend === 'webgpu', `backend is webgpu (page says ${JSON.stringify(read.backendText)}` +
                                     `${read.note ? `; ${read.note}` : ''})`);
    check(read.ready === 'true', 'the numbers panel is marked ready');
    check(Number.isFinite(read.prefillTps) && read.prefillTps > 0, `prefill throughput is positive and finite (${read.prefillTps})`);
    check(Number.isFinite(read.decodeTps) && read.decodeTps > 0, `decode throughput is positive and finite (${read.decodeTps})`);
    check(read.tokensHeld === tokens, `tokens held ${read.tokensHeld} = prompts + steps · batch = ${tokens}`);
    check(read.dtypes === 'float32/float32', `dtypes shown: weights/cache ${read.dtypes}`);
    check(read.bytesPerToken === (L + R) * 4, `cache bytes per token and layer ${read.bytesPerToken} = (L+R) · 4 (float32)`);
    check(read.weightBytes > 0 && read.layerBytes >= read.weightBytes,
          `layer weight bytes shown (${read.weightBytes}; ${read.layerBytes} with the derived weights at the end)`);
    check(read.mlaBytes === tokens * (L + R) * 4, `MLA bytes ${read.mlaBytes} = tokens · (L+R) · 4`);
    check(read.mhaBytes === tokens * (H * (N + R) + H * V) * 4, `standard bytes ${read.mhaBytes} = tokens · (H(N+R) + HV) · 4`);
    check(read.mlaBytes < read.mhaBytes, 'MLA bytes < standard bytes');
    check(Math.abs(read.ratio - expectedRatio) < 1e-9, `ratio ${read.ratio.toFixed(4)} = ${expectedRatio.toFixed(4)} for these sizes`);
    check(Number.isFinite(read.maxDiff) && read.maxRef > 0 && read.maxDiff / read.maxRef < 1e-3,
          `webgpu agrees with the cpu reference (max |Δ| ${read.maxDiff} = ${(read.maxDiff / read.maxRef).toExponential(2)} of max|y|)`);
    check(read.latencyPoints.length === 1 && read.latencyPoints[0] === STEPS,
          `the latency chart plots ${STEPS} decode steps (${read.latencyPoints.join(', ')})`);
    check(read.memoryPoints.length === 3 && read.memoryPoints.every((n) => n === STEPS + 2),
          `the memory chart plots 3 series of ${STEPS + 2} points (${read.memoryPoints.join(', ')})`);
    checkNoPageErrors(logs);
    console.log(`[e2e] page run finished in ${secondsSince(started)} s`);
    await page.close();

    // Once more with a bfloat16 cache, a short run: the bytes per token are half the float32 figure.
    const halfStarted = Date.now();
    const {page: halfPage, logs: halfLogs} = await openPage(browser, {width: 1200, height: 900});
    const halfParams = new URLSearchParams(params);
    halfParams.set('cacheDtype', HALF_LOAD.cacheDtype);
    halfParams.set('prompts', HALF_LOAD.prompts.join(','));
    halfParams.set('steps', String(HALF_LOAD.steps));
    const halfUrl = `${url}?${halfParams}`;
    console.log(`[e2e] ${halfUrl}`);
    const half = await loadAndRead(halfPage, halfUrl, halfLogs, screenshotHalf);
    const halfTokens = HALF_LOAD.prompts.reduce((a, b) => a + b, 0) + HALF_LOAD.prompts.length * HALF_LOAD.steps;
    check(half.dtypes === `float32/${HALF_LOAD.cacheDtype}`, `bfloat16 load: dtypes shown ${half.dtypes}`);
    check(half.bytesPerToken * 2 === read.bytesPerToken,
          `bfloat16 load: cache bytes per token and layer ${half.bytesPerToken} = half the float32 figure ${read.bytesPerToken}`);
    check(half.mlaBytes === halfTokens * half.bytesPerToken,
          `bfloat16 load: MLA bytes ${half.mlaBytes} = tokens ${halfTokens} · ${half.bytesPerToken}`);
    check(Math.abs(half.ratio - expectedRatio) < 1e-9, `bfloat16 load: ratio ${half.ratio.toFixed(4)} (both caches bfloat16)`);
    check(half.weightBytes === read.weightBytes, `bfloat16 load: the same float32 weight bytes (${half.weightBytes})`);
    check(half.backend === read.backend, `bfloat16 load: backend ${half.backend}`);
    check(Number.isFinite(half.maxDiff) && half.maxRef > 0 && half.maxDiff / half.maxRef < 1e-3,
          `bfloat16 load: agrees with the cpu reference on a bfloat16 cache (max |Δ| ${half.maxDiff} = ` +
          `${(half.maxDiff / half.maxRef).toExponential(2)} of max|y|)`);
    checkNoPageErrors(halfLogs, {label: 'bfloat16 load: '});
    console.log(`[e2e] bfloat16 load finished in ${secondsSince(halfStarted)} s`);
  } finally {
    if (browser) await browser.close().catch(() => {});
    server.close();
  }
}

await runTest('demo page', 'test/e2e/demo_page.test.mjs', run);
