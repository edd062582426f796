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
// - a chat kept in an LMSession: the fixture plus test/fixtures/tokenizer/ (a Llama-3 chat template;
//   its ids fit the model's vocab), served by a second checkpoint server. The page (no autorun)
//   loads, then takes SESSION_MESSAGES one turn at a time (Enter, then the send button), greedy,
//   4 new tokens. Node renders the same conversation with the same tokenizer (the replies as the
//   page shows them) and predicts each turn's path: the page's tokens so far are a prefix of the
//   rendered conversation → reuse (cachedTokens = those tokens − 1, only the rest fed), else start
//   over (cachedTokens 0, the whole conversation fed). The page's #result must show that path,
//   its `sequence` must be the rendered conversation plus the new tokens, and those new tokens
//   must equal what loadCausalLM in Node (dist/, cpu backend) generates from the rest of the
//   sequence with the page's stop tokens. The path of each turn is printed;
// - a checkpoint URL that does not exist ends in data-state "error" with a message naming 404.
// Saves test-output/chat_page.png and test-output/chat_page_session.png. Builds dist/ (tsc) and
// the page's bundle first unless --no-build.
//
//   node test/e2e/chat_page.test.mjs [--no-build] [--timeout SECONDS]
//
// The harness it shares with demo_page.test.mjs (arguments, Chromium, waiting, checks): ./page_harness.mjs.
//
// Run by `npm test` among its e2e steps (skip with `npm test -- --skip-e2e`). Exit code 0 = pass.
// Prints one line `[e2e] PASS …` or `[e2e] FAIL …`.
import {spawnSync} from 'node:child_process';
import {readdirSync, readFileSync, statSync} from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {startCheckpointServer} from '../../scripts/lib/checkpoint_server.mjs';
import {buildChatDemo} from '../../scripts/serve-chat.mjs';
import {startDemoServer} from '../../scripts/serve-demo.mjs';
import {check, checkNoPageErrors, launchChromium, openPage, outDir, parseArgs, prepare, printLogs, root, runTest,
        saveScreenshot, secondsSince, waitForPage, waitForState} from './page_harness.mjs';

const fixtureDir = path.join(root, 'test', 'fixtures', 'tiny_mla_lm');
const expected = JSON.parse(readFileSync(path.join(fixtureDir, 'expected.json'), 'utf8'));
const hfConfig = JSON.parse(readFileSync(path.join(fixtureDir, 'config.json'), 'utf8'));
const tokenizerDir = path.join(root, 'test', 'fixtures', 'tokenizer');

// The chat turns of scenario 2. The model is random: most 4-token replies hold ids the tokenizer
// cannot render (its 294 ids of the model's 512), so the next rendered conversation does not
// extend the session and the page starts over. The first message was picked (by trying messages
// on cpu) for a reply that re-tokenizes to itself, so turn 2 reuses the session; turn 3 then
// starts over. Either way each turn is checked against the path Node predicts.
const SESSION_MESSAGES = ['dog sun why on', 'And then?', 'Thanks!'];
const SESSION_MAX_NEW_TOKENS = 4;

const {build, timeoutS} = parseArgs();

/** dist/ for the Node reference of scenario 2 (loadCausalLM from dist/models/index.js). */
function buildDist() {
  console.log('[e2e] building dist/ (tsc -p tsconfig.json)');
  const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], {cwd: root, stdio: 'inherit'});
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.json failed (exit ${r.status ?? r.signal})`);
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const startsWith = (seq, prefix) => prefix.length <= seq.length && prefix.every((t, i) => t === seq[i]);

/**
 * Scenario 2: a conversation of SESSION_MESSAGES on the page at `chatUrl`, the checkpoint (with
 * its tokenizer) at `checkpoint.url`; each turn checked against `lm`, the same checkpoint in Node
 * on cpu. Returns the path each turn took.
 */
async function runSession(browser, chatUrl, checkpoint, lm) {
  const params = new URLSearchParams({model: checkpoint.url, dtype: 'float32', backend: 'webgpu', temperature: '0',
                                      max_new_tokens: String(SESSION_MAX_NEW_TOKENS)});
  const {page, logs} = await openPage(browser, {width: 1100, height: 900});
  const pageUrl = `${chatUrl}?${params}`;
  console.log(`[e2e] ${pageUrl} (Load, then ${SESSION_MESSAGES.length} messages)`);
  await page.goto(pageUrl);
  await page.click('#load-button');
  const failed = async () => {
    printLogs(logs);
    return new Error(`the page reports an error: ${await page.evaluate(() => document.body.dataset.error ?? '')}`);
  };
  const loaded = await waitForState(page, ['ready', 'error'], {timeoutS, pollMs: 250});
  if (loaded === 'error') throw await failed();
  if (loaded !== 'ready') throw new Error(`the page was not ready within ${timeoutS} s (state ${JSON.stringify(loaded)})`);
  check(lm.tokenizer?.hasChatTemplate === true, 'the checkpoint with test/fixtures/tokenizer/ has a chat template (Node)');

  const conversation = [];
  let previous = null;  // the page's session tokens after the last turn
  const paths = [];
  for (const [i, message] of SESSION_MESSAGES.entries()) {
    const turn = `turn ${i + 1}`;
    const before = await page.textContent('#result');
    await page.fill('#input', message);
    if (i === 0) await page.press('#input', 'Enter');
    else await page.click('#send-button');
    const state = await waitForState(page, ['done', 'error'], {
      timeoutS, pollMs: 250, until: async (p, s) => s === 'error' || (await p.textContent('#result')) !== before,
    });
    if (state === 'error') throw await failed();
    if (state !== 'done') throw new Error(`${turn} did not finish within ${timeoutS} s (state ${JSON.stringify(state)})`);
    const r = JSON.parse(await page.textContent('#result'));
    const reply = r.tokens?.[0] ?? [];
    console.log(`[e2e]   ${turn} ${JSON.stringify(message)}: fed ${JSON.stringify(r.promptTokens)}, cached ${r.cachedTokens}, ` +
                `reply ${JSON.stringify(reply)} ${JSON.stringify(r.text?.[0])}, sequence of ${r.sequence?.length}`);

    // What the page should have done: render the conversation as it does, compare with what it holds.
    conversation.push({role: 'user', content: message});
    const rendered = lm.tokenizer.applyChatTemplate(conversation);
    const reuse = previous !== null && startsWith(rendered, previous);
    const taken = reuse ? 'reuse' : i === 0 ? 'new session' : 'start-over';
    paths.push(taken);
    console.log(`[e2e]   ${turn}: ${reuse ? `the rendered conversation (${rendered.length} tokens) extends the session's ` +
                `${previous.length}: reuse` : i === 0 ? 'a new session' : `the rendered conversation (${rendered.length} ` +
                `tokens) does not extend the session's ${previous.length} (the reply re-tokenizes differently): start-over`}`);
    if (reuse) {
      check(r.cachedTokens === previous.length - 1,
            `${turn} reuse: cachedTokens ${r.cachedTokens} = turn ${i}'s sequence (${previous.length}) − 1`);
      check(r.promptTokens?.[0] === rendered.length - previous.length && r.promptTokens[0] < rendered.length,
            `${turn} reuse: fed ${r.promptTokens?.[0]} tokens = the ${rendered.length} rendered − the ${previous.length} held`);
      check(Array.isArray(r.sequence) && startsWith(r.sequence, previous),
            `${turn} reuse: its sequence starts with turn ${i}'s`);
    } else {
      check(r.cachedTokens === 0, `${turn} ${taken}: cachedTokens ${r.cachedTokens} = 0`);
      check(r.promptTokens?.[0] === rendered.length, `${turn} ${taken}: fed the whole conversation, ${r.promptTokens?.[0]} = ${rendered.length} tokens`);
    }
    check(reply.length >= 1 && reply.length <= SESSION_MAX_NEW_TOKENS && Array.isArray(r.sequence) &&
          same(r.sequence, [...rendered, ...reply]),
          `${turn}: the page's sequence is the rendered conversation (${rendered.length}) + its ${reply.length} new tokens`);
    // The same tokens from Node, cpu, one generate over the sequence minus its new tokens.
    const k = reply.length;
    const [nodeReply] = await lm.generate([r.sequence.slice(0, -k)], {maxNewTokens: SESSION_MAX_NEW_TOKENS, temperature: 0,
                                                                     stopTokens: r.stopTokens});
    check(same(nodeReply, r.sequence.slice(-k)),
          `${turn}: Node (cpu) generates ${JSON.stringify(nodeReply)} from the ${r.sequence.length - k} tokens before, ` +
          `stop tokens ${JSON.stringify(r.stopTokens)} = the page's ${JSON.stringify(r.sequence.slice(-k))}`);
    conversation.push({role: 'assistant', content: r.text?.[0] ?? ''});
    previous = r.sequence;
  }
  await saveScreenshot(page, path.join(outDir, 'chat_page_session.png'));
  await page.close();
  checkNoPageErrors(logs, {label: 'session: ', ignore: /Failed to load resource: .*status of 404/});
  return paths;
}

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
  const executablePath = await prepare({build, entry: 'demos/chat/main.ts', bundle: async () => {
    buildDist();
    await buildChatDemo();
  }});
  const {loadCausalLM} = await import('../../dist/models/index.js');
  const demo = await startDemoServer({port: 0});
  const checkpoint = await startCheckpointServer({root: fixtureDir, supportRange: true, host: '127.0.0.1', port: 0});
  const tokenizerFiles = new Map(['tokenizer.json', 'tokenizer_config.json'].map(
      (f) => [f, readFileSync(path.join(tokenizerDir, f))]));
  const withTokenizer = await startCheckpointServer({root: fixtureDir, files: tokenizerFiles, host: '127.0.0.1', port: 0});
  let browser;
  let lm;
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

    // 2. A chat in a session: each turn on the path Node predicts, the same tokens as Node on cpu.
    const sessionStarted = Date.now();
    await tf.setBackend('cpu');
    lm = await loadCausalLM(withTokenizer.url, {dtype: 'float32'});
    const paths = await runSession(browser, chatUrl, withTokenizer, lm);
    console.log(`[e2e] session run finished in ${secondsSince(sessionStarted)} s: ${paths.join(', ')}` +
                (paths.includes('reuse') ? '' : ' (no turn reused the session: the reuse path went unexercised)'));

    // 3. A checkpoint that is not there: a clear error.
    const missing = new URLSearchParams({model: new URL('no-such-checkpoint/', checkpoint.url).href, dtype: 'float32',
                                         backend: 'webgpu', prompt_ids: '1,4,214', autorun: '1'});
    const bad = await runPage(browser, `${chatUrl}?${missing}`, null);
    console.log(`[e2e]   page shows: ${bad.status}`);
    check(bad.state === 'error' && /404/.test(bad.error) && bad.status.startsWith('Error:'),
          'a missing checkpoint ends in data-state error, its message naming 404');
  } finally {
    if (browser) await browser.close().catch(() => {});
    lm?.dispose();
    demo.server.close();
    await checkpoint.close();
    await withTokenizer.close();
  }
}

await runTest('chat page', 'test/e2e/chat_page.test.mjs', run);
