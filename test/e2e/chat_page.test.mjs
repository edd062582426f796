#!/usr/bin/env node
// The chat page, end to end: bundle demos/chat/main.ts, serve demos/ and the tiny checkpoint
// test/fixtures/tiny_mla_lm (scripts/lib/checkpoint_server.mjs: Range and CORS, another origin)
// on 127.0.0.1, load the page in headless Chromium (WebGPU on SwiftShader) with playwright-core
// and `autorun=1`: it loads the checkpoint over HTTP with loadCausalLM in float32 and generates
// greedily from both prompts of expected.json in one ragged batch. Checks:
// - the page's tokens equal expected.json `greedy` (12 per prompt) exactly, on webgpu;
// - its cache figures: latent and standard bytes per token from config.json, times the tokens;
// - the checkpoint server answered Range requests (206) and sent no more bytes than the
//   fixture's files hold;
// - a checkpoint URL that does not exist ends in data-state "error" with a message naming 404.
// Saves test-output/chat_page.png.
//
//   node test/e2e/chat_page.test.mjs [--no-build] [--timeout SECONDS]
//
// The harness it shares with demo_page.test.mjs (arguments, Chromium, waiting, checks): ./page_harness.mjs.
//
// Run by `npm test` among its e2e steps (skip with `npm test -- --skip-e2e`). Exit code 0 = pass.
// Prints one line `[e2e] PASS …` or `[e2e] FAIL …`.
import {readdirSync, readFileSync, statSync} from 'node:fs';
import path from 'node:path';
import {startCheckpointServer} from '../../scripts/lib/checkpoint_server.mjs';
import {buildChatDemo} from '../../scripts/serve-chat.mjs';
import {startDemoServer} from '../../scripts/serve-demo.mjs';
import {check, checkNoPageErrors, launchChromium, openPage, outDir, parseArgs, prepare, printLogs, root, runTest,
        saveScreenshot, secondsSince, waitForPage} from './page_harness.mjs';

const fixtureDir = path.join(root, 'test', 'fixtures', 'tiny_mla_lm');
const expected = JSON.parse(readFileSync(path.join(fixtureDir, 'expected.json'), 'utf8'));
const hfConfig = JSON.parse(readFileSync(path.join(fixtureDir, 'config.json'), 'utf8'));

const {build, timeoutS} = parseArgs();

/** Opens `pageUrl`, waits for data-state done|error (printing the status now and then); returns what the page shows. */
async function runPage(browser, pageUrl, screenshotPath) {
  const {page, logs} = await openPage(browser, {width: 1100, height: 900});
  console.log(`[e2e] ${pageUrl}`);
  await waitForPage(page, pageUrl, {timeoutS, pollMs: 500});
  if (screenshotPath) await saveScreenshot(page, screenshotPath);
  const shown = await page.evaluate(() => ({
    state: document.body.dataset.state ?? '',
    error: document.body.dataset.error ?? '',
    status: document.getElementById('status')?.textContent ?? '',
    backend: document.body.dataset.backend ?? '',
    note: document.getElementById('backend-note')?.textContent ?? '',
    result: document.getElementById('result')?.textContent ?? '',
    warmupMs: document.body.dataset.warmupMs ?? '',
    loadSeconds: document.body.dataset.loadSeconds ?? '',
  }));
  await page.close();
  if (shown.state !== 'done' && shown.state !== 'error') {
    printLogs(logs);
    throw new Error(`the page did not finish within ${timeoutS} s (state ${JSON.stringify(shown.state)})`);
  }
  return {...shown, logs};
}

async function run() {
  const started = Date.now();
  const executablePath = await prepare({build, entry: 'demos/chat/main.ts', bundle: buildChatDemo});
  const demo = await startDemoServer({port: 0});
  const checkpoint = await startCheckpointServer({root: fixtureDir, supportRange: true, host: '127.0.0.1', port: 0});
  let browser;
  try {
    browser = await launchChromium(executablePath);
    const chatUrl = `http://127.0.0.1:${demo.port}/chat/`;

    // 1. Greedy generation from both fixture prompts, one ragged batch, float32, webgpu.
    const maxNewTokens = expected.greedy[0].length;
    const params = new URLSearchParams({
      model: checkpoint.url, dtype: 'float32', backend: 'webgpu', prompt_ids: expected.prompts.map((p) => p.join(',')).join(';'),
      max_new_tokens: String(maxNewTokens), temperature: '0', autorun: '1',
    });
    const shown = await runPage(browser, `${chatUrl}?${params}`, path.join(outDir, 'chat_page.png'));
    if (shown.state !== 'done') {
      printLogs(shown.logs);
      throw new Error(`the page reports an error: ${shown.error}`);
    }
    console.log(`[e2e]   status: ${shown.status}`);
    const result = JSON.parse(shown.result);
    console.log(`[e2e]   result: ${JSON.stringify(result)}`);
    check(result.backend === 'webgpu' && shown.backend === 'webgpu',
          `backend is webgpu (page: ${JSON.stringify(result.backend)}${shown.note ? `; ${shown.note}` : ''})`);
    expected.greedy.forEach((want, b) => {
      const got = result.tokens?.[b];
      check(JSON.stringify(got) === JSON.stringify(want),
            `prompt ${b} (${expected.prompts[b].length} tokens): greedy tokens ${JSON.stringify(got)} = expected ${JSON.stringify(want)}`);
    });
    check(result.tokens?.length === expected.greedy.length, `${result.tokens?.length} sequences returned`);
    check(JSON.stringify(result.promptTokens) === JSON.stringify(expected.prompts.map((p) => p.length)),
          `prompt lengths ${JSON.stringify(result.promptTokens)}`);
    check(result.text === null, 'no tokenizer: the page shows ids (text null)');
    const tps = result.tokensPerSecond ?? {};
    check(tps.prefill > 0 && Number.isFinite(tps.prefill) && tps.decode > 0 && Number.isFinite(tps.decode) &&
          result.timeToFirstTokenMs > 0,
          `prefill ${tps.prefill?.toFixed?.(1)} tokens/s, decode ${tps.decode?.toFixed?.(1)} tokens/s, ` +
          `first token ${result.timeToFirstTokenMs?.toFixed?.(0)} ms: positive and finite`);
    // The cache figures: float32 values; latent L + R per token and layer, standard K (H·(N+R)) + V (H·V).
    const {num_hidden_layers: layers, num_attention_heads: H, kv_lora_rank: L, qk_nope_head_dim: N,
           qk_rope_head_dim: R, v_head_dim: V} = hfConfig;
    const tokens = expected.prompts.reduce((s, p) => s + p.length, 0) + expected.greedy.reduce((s, g) => s + g.length, 0);
    const latentPerToken = layers * (L + R) * 4;
    const standardPerToken = layers * (H * (N + R) + H * V) * 4;
    check(result.cacheBytes?.latent === tokens * latentPerToken,
          `latent cache ${result.cacheBytes?.latent} B = ${tokens} tokens × ${latentPerToken} B (${layers} layers × (${L}+${R}) × 4)`);
    check(result.cacheBytes?.standard === tokens * standardPerToken,
          `standard cache ${result.cacheBytes?.standard} B = ${tokens} tokens × ${standardPerToken} B ` +
          `(${layers} layers × (${H}·(${N}+${R}) + ${H}·${V}) × 4)`);
    // The browser logs a console error for every 404; the loader asks for optional files
    // (tokenizer.json, tokenizer_config.json, generation_config.json) the fixture does not have.
    checkNoPageErrors(shown.logs, {ignore: /Failed to load resource: .*status of 404/});

    // What the checkpoint server saw: byte ranges, no more bytes than the folder holds.
    const stats = checkpoint.stats;
    const fixtureBytes = readdirSync(fixtureDir).reduce((s, f) => s + statSync(path.join(fixtureDir, f)).size, 0);
    for (const r of stats.requests) {
      console.log(`[e2e]   checkpoint server: ${r.method} ${r.path}${r.range ? ` (${r.range})` : ''} → ${r.status}, ${r.bytes} B`);
    }
    const partial = stats.requests.filter((r) => r.status === 206 && r.range !== null);
    check(partial.length > 0 && partial.every((r) => r.path.endsWith('.safetensors')),
          `the checkpoint server answered ${partial.length} Range request(s) for the shards with 206`);
    check(stats.bytesSent > 0 && stats.bytesSent <= fixtureBytes,
          `bytes sent ${stats.bytesSent} ≤ the fixture's files, ${fixtureBytes} B`);
    const shards = readdirSync(fixtureDir).filter((f) => f.endsWith('.safetensors'));
    for (const shard of shards) {
      const sent = stats.requests.filter((r) => r.path === shard).reduce((s, r) => s + r.bytes, 0);
      const size = statSync(path.join(fixtureDir, shard)).size;
      check(sent > 0 && sent <= size, `${shard}: ${sent} B sent ≤ its ${size} B (not more than the file)`);
    }
    console.log(`[e2e] generation run finished in ${secondsSince(started)} s ` +
                `(load ${shown.loadSeconds} s, shader warm-up ${shown.warmupMs} ms)`);

    // 2. A checkpoint that is not there: a clear error.
    const missing = new URLSearchParams({model: new URL('no-such-checkpoint/', checkpoint.url).href, dtype: 'float32',
                                         backend: 'webgpu', prompt_ids: '1,4,214', autorun: '1'});
    const bad = await runPage(browser, `${chatUrl}?${missing}`, null);
    console.log(`[e2e]   page shows: ${bad.status}`);
    check(bad.state === 'error' && /404/.test(bad.error) && bad.status.startsWith('Error:'),
          'a missing checkpoint ends in data-state error, its message naming 404');
  } finally {
    if (browser) await browser.close().catch(() => {});
    demo.server.close();
    await checkpoint.close();
  }
}

await runTest('chat page', 'test/e2e/chat_page.test.mjs', run);
