#!/usr/bin/env node
// The main demo: a DeepSeek-V2-Lite-shaped Multi-head Latent Attention layer serving a ragged
// batch in Node — prefill of every prompt, then decode steps for every sequence — on the tfjs
// `webgpu` backend (Dawn through the npm `webgpu` package; SwiftShader when there is no GPU),
// or on `cpu`. It ends with a table: prefill and decode throughput, the latent cache against a
// standard multi-head cache for the same tokens (in the storage dtypes chosen with --dtype and
// --cache-dtype), the layer's weight bytes, and the largest difference against the cpu
// reference kernels (same dtypes) on one sequence.
//
// With --model DIR|URL it runs a whole checkpoint instead (tfjs-mla/models' loadCausalLM;
// demos/node/causal_lm.mjs): generation from --prompt-ids or --prompt, with tokens/s and the
// latent cache against a standard one.
//
//   npm run demo                       (installs and builds first; scripts/demo.mjs)
//   node demos/node/demo.mjs --help    (after `npm run build`)
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {readFileSync} from 'node:fs';
import * as mla from '../../dist/index.js';
import {initNodeWebGPU, releaseNodeWebGPU, rerunWithVulkanLoader} from '../../dist/node.js';
import {
  BYTES_PER_VALUE, V2_LITE as V2_LITE_SIZES, buildModel, cacheBytesPerToken, compareOutputs, compilePipelines,
  disposeModel, gatherInputs, mhaBytesPerToken, missingKernels, normalizeDtype, randomInputs, randomWeights,
  requiredKernels, runSequence, runStep,
} from '../common/helpers.mjs';

// ---- the Vulkan loader ---------------------------------------------------------------------
// Dawn (the npm `webgpu` package) loads libvulkan.so.1; when the system has none, re-run this
// script with the one Debian's chromium ships on LD_LIBRARY_PATH (read at process start only).

{
  const argv = process.argv.slice(2);
  const backendIndex = argv.findIndex((a) => a === '--backend' || a.startsWith('--backend='));
  const backend = backendIndex < 0 ? 'webgpu' :
    argv[backendIndex].includes('=') ? argv[backendIndex].split('=')[1] : argv[backendIndex + 1];
  if (backend !== 'cpu' && !argv.includes('--help') && !argv.includes('-h')) await rerunWithVulkanLoader();
}

// ---- options -------------------------------------------------------------------------------

/** The default sizes, under the option names. */
const V2_LITE = {
  hidden: V2_LITE_SIZES.hiddenSize, heads: V2_LITE_SIZES.numHeads, kvLoraRank: V2_LITE_SIZES.kvLoraRank,
  qkNopeHeadDim: V2_LITE_SIZES.qkNopeHeadDim, qkRopeHeadDim: V2_LITE_SIZES.qkRopeHeadDim,
  vHeadDim: V2_LITE_SIZES.vHeadDim,
};

const HELP = `usage: npm run demo -- [options]      (or: node demos/node/demo.mjs [options] after a build)
       npm run demo -- --model DIR|URL (--prompt-ids 1,4,214 | --prompt TEXT) [model options]

Runs one DeepSeek-V2-Lite-shaped MLA attention layer (no q-LoRA, kvLoraRank 512, nope 128,
rope 64, v 128, YaRN factor 40) over a ragged batch: prefill of every prompt in one step,
then --steps decode steps for every sequence, with a paged latent KV cache. Prints progress
on stderr and a table on stdout.

options:
  --backend webgpu|cpu      tfjs backend (default webgpu; falls back to cpu, saying so, when no
                            WebGPU adapter is found or this package's webgpu kernels are missing)
  --prompts 64,17,40,5      prompt lengths of the batch, one sequence each (default 64,17,40,5)
  --steps N                 decode steps per sequence after the prefill (default 8)
  --seed N                  seed of the random weights and inputs (default 1)
  --hidden N                hidden size (default 2048)
  --heads N                 attention heads (default 16)
  --kv-lora-rank N          latent width L (default 512)
  --qk-nope-head-dim N      per-head no-rope query/key width (default 128)
  --qk-rope-head-dim N      roped width R (default 64)
  --v-head-dim N            per-head value width (default 128)
  --page-size N             tokens per cache page (default 64)
  --cache-dtype D           how the latent cache stores its rows: float32 (default), bfloat16
                            or float16 (16-bit values packed two per 32-bit word: half the
                            bytes per token), float8_e4m3fn (FlashMLA's FP8 layout: e4m3 c_kv
                            with a scale per 128 values, bf16 k_pe); short names bf16, f16, fp8
                            (the standard-cache comparison counts 1 byte a value for fp8)
  --dtype D                 the layer's weight dtype (also its normDtype and oProjDtype):
                            float32 (default), bfloat16 or float16; a dtype the layer does not
                            take ends the demo with its Error (exit 1)
  --graph-mode M            auto | prefill | decode: the layer's attention path (default auto:
                            the prefill (decompressing) path for the prompts, the absorbed
                            path for decode steps; decode takes the absorbed path throughout)
  --weights FILE            real weights: a .safetensors file holding one attention layer
                            (needs --config; the size options are then taken from the config)
  --config FILE             the model's Hugging Face config.json (DeepSeek-V2/V3)
  --layer-prefix P          name prefix of the layer in --weights
                            (default model.layers.0.self_attn.)
  --check-seq N             which sequence to re-run on the cpu reference (default 0)
  --no-check                skip the cpu reference comparison
  --no-warmup               on webgpu, time the shader compilation too (by default the
                            pipelines of a prefill and a decode step are compiled first,
                            untimed, with tfjs's WEBGPU_ENGINE_COMPILE_ONLY mode)
  --help                    this text

Random weights are uniform with standard deviation 1/sqrt(fan_in) (RMSNorm weights 1), inputs
uniform with standard deviation 1, all from --seed: the same on every backend.

A whole model (tfjs-mla/models' loadCausalLM): generation, tokens/s and the cache
  --model DIR|URL           a Hugging Face checkpoint of an MLA model (youtu, dense
                            deepseek_v2/v3): a folder, or a base URL such as
                            https://huggingface.co/tencent/Youtu-LLM-2B/resolve/main/ (only the
                            byte ranges of the weights are fetched); the layer options above
                            (sizes, --prompts, --steps, --weights, ...) do not apply
  --prompt-ids 1,4,214      the prompt as token ids
  --prompt TEXT             the prompt as text (needs the checkpoint's tokenizer; its chat
                            template is applied when it has one)
  --max-new-tokens N        new tokens at most (default 32; generation also ends at an eos token
                            of the config or the tokenizer)
  --temperature T           0 (default): greedy; > 0: sampling (with --top-p P, --top-k K, and
                            --seed N for repeatable samples)
  --dtype D, --cache-dtype D  the model's weights (default bfloat16) and latent cache (default:
                            the weights' dtype)
  --backend webgpu|cpu, --no-warmup  as above (the warm-up is a short untimed generate)
  Prints the new tokens (and their text with a tokenizer), time to first token, prefill and
  decode tokens/s, and the latent cache's bytes against a standard K/V cache's.`;

function isV2Lite(spec) {
  return spec.hidden === V2_LITE.hidden && spec.heads === V2_LITE.heads && spec.kvLoraRank === V2_LITE.kvLoraRank &&
         spec.qkNopeHeadDim === V2_LITE.qkNopeHeadDim && spec.qkRopeHeadDim === V2_LITE.qkRopeHeadDim &&
         spec.vHeadDim === V2_LITE.vHeadDim;
}

function fail(message) {
  console.error(`demo: ${message}`);
  console.error('demo: see --help');
  process.exit(2);
}

function parseOptions(argv) {
  const o = {
    backend: 'webgpu', prompts: [64, 17, 40, 5], steps: 8, seed: 1,
    hidden: V2_LITE.hidden, heads: V2_LITE.heads, kvLoraRank: V2_LITE.kvLoraRank,
    qkNopeHeadDim: V2_LITE.qkNopeHeadDim, qkRopeHeadDim: V2_LITE.qkRopeHeadDim,
    vHeadDim: V2_LITE.vHeadDim, pageSize: 64, weights: null, config: null,
    layerPrefix: 'model.layers.0.self_attn.', checkSeq: 0, check: true, warmup: true, graphMode: 'auto',
    sizesGiven: [], dtype: 'float32', cacheDtype: 'float32',
    // --model (a whole checkpoint; demos/node/causal_lm.mjs)
    model: null, promptIds: null, prompt: null, maxNewTokens: 32, temperature: 0, topP: null, topK: null,
    given: new Set(),
  };
  const number = (name, text, min, max = Infinity) => {
    const n = Number(text);
    if (text === undefined || text === '' || !Number.isFinite(n) || n < min || n > max) {
      fail(`${name} expects a number ${max === Infinity ? `≥ ${min}` : `in [${min}, ${max}]`}, got ${JSON.stringify(text)}`);
    }
    return n;
  };
  const integer = (name, text, min) => {
    if (text === undefined || !/^\d+$/.test(text) || Number(text) < min) {
      fail(`${name} expects an integer ≥ ${min}, got ${JSON.stringify(text)}`);
    }
    return Number(text);
  };
  const sizes = {
    '--hidden': 'hidden', '--heads': 'heads', '--kv-lora-rank': 'kvLoraRank',
    '--qk-nope-head-dim': 'qkNopeHeadDim', '--qk-rope-head-dim': 'qkRopeHeadDim',
    '--v-head-dim': 'vHeadDim',
  };
  for (let i = 0; i < argv.length; i++) {
    let arg = argv[i];
    let value;
    const eq = arg.indexOf('=');
    if (arg.startsWith('--') && eq > 0) {
      value = arg.slice(eq + 1);
      arg = arg.slice(0, eq);
    }
    const next = () => value ?? argv[++i];
    o.given.add(arg);
    switch (arg) {
      case '--help': case '-h':
        console.log(HELP);
        process.exit(0);
        break;
      case '--backend': {
        const b = next();
        if (b !== 'webgpu' && b !== 'cpu') fail(`--backend expects webgpu or cpu, got ${JSON.stringify(b)}`);
        o.backend = b;
        break;
      }
      case '--prompts': {
        const text = next();
        if (text === undefined || !/^\d+(,\d+)*$/.test(text)) {
          fail(`--prompts expects comma-separated lengths like 64,17,40,5, got ${JSON.stringify(text)}`);
        }
        o.prompts = text.split(',').map(Number);
        if (o.prompts.some((n) => n < 1)) fail('--prompts: every prompt needs at least 1 token');
        break;
      }
      case '--steps': o.steps = integer('--steps', next(), 0); break;
      case '--seed': o.seed = integer('--seed', next(), 0); break;
      case '--page-size': o.pageSize = integer('--page-size', next(), 1); break;
      case '--weights': o.weights = next() ?? fail('--weights expects a file'); break;
      case '--config': o.config = next() ?? fail('--config expects a file'); break;
      case '--layer-prefix': {
        const p = next();
        if (p === undefined) fail('--layer-prefix expects a prefix');
        o.layerPrefix = p;
        break;
      }
      case '--graph-mode': {
        const m = next();
        if (!['auto', 'prefill', 'decode'].includes(m)) {
          fail(`--graph-mode expects auto, prefill or decode, got ${JSON.stringify(m)}`);
        }
        o.graphMode = m;
        break;
      }
      case '--dtype': case '--cache-dtype': {
        const d = next();
        if (d === undefined || d === '' || d.startsWith('--')) fail(`${arg} expects a dtype (float32, bfloat16, float16)`);
        o[arg === '--dtype' ? 'dtype' : 'cacheDtype'] = normalizeDtype(d);
        break;
      }
      case '--check-seq': o.checkSeq = integer('--check-seq', next(), 0); break;
      case '--model': {
        const m = next();
        if (m === undefined || m === '' || m.startsWith('--')) fail('--model expects a checkpoint folder or URL');
        o.model = m;
        break;
      }
      case '--prompt-ids': {
        const text = next();
        if (text === undefined || !/^\s*\d+\s*(,\s*\d+\s*)*$/.test(text)) {
          fail(`--prompt-ids expects comma-separated token ids like 1,4,214, got ${JSON.stringify(text)}`);
        }
        o.promptIds = text.split(',').map(Number);
        break;
      }
      case '--prompt': {
        const text = next();
        if (text === undefined || text === '') fail('--prompt expects a text');
        o.prompt = text;
        break;
      }
      case '--max-new-tokens': o.maxNewTokens = integer('--max-new-tokens', next(), 1); break;
      case '--temperature': o.temperature = number('--temperature', next(), 0); break;
      case '--top-p': o.topP = number('--top-p', next(), 0, 1); break;
      case '--top-k': o.topK = integer('--top-k', next(), 1); break;
      case '--no-check': o.check = false; break;
      case '--no-warmup': o.warmup = false; break;
      default:
        if (arg in sizes) {
          o[sizes[arg]] = integer(arg, next(), arg === '--qk-rope-head-dim' ? 2 : 1);
          o.sizesGiven.push(arg);
          break;
        }
        fail(`unknown option ${JSON.stringify(argv[i])}`);
    }
  }
  const modelOnly = ['--prompt-ids', '--prompt', '--max-new-tokens', '--temperature', '--top-p', '--top-k']
    .filter((a) => o.given.has(a));
  if (o.model === null && modelOnly.length > 0) fail(`${modelOnly.join(', ')}: only with --model`);
  if (o.model !== null) {
    const layerOnly = ['--prompts', '--steps', '--page-size', '--weights', '--config', '--layer-prefix', '--graph-mode',
                       '--check-seq', '--no-check', ...Object.keys(sizes)].filter((a) => o.given.has(a));
    if (layerOnly.length > 0) fail(`${layerOnly.join(', ')}: not with --model (they set up the single-layer demo)`);
    if ((o.promptIds === null) === (o.prompt === null)) fail('--model needs one of --prompt-ids 1,4,214 or --prompt TEXT');
    return o;
  }
  if (o.qkRopeHeadDim % 2 !== 0) fail(`--qk-rope-head-dim must be even, got ${o.qkRopeHeadDim}`);
  if ((o.weights === null) !== (o.config === null)) fail('--weights and --config go together');
  if (o.checkSeq >= o.prompts.length) {
    fail(`--check-seq ${o.checkSeq}: the batch has ${o.prompts.length} sequences`);
  }
  return o;
}

// ---- progress on stderr --------------------------------------------------------------------

const isTTY = Boolean(process.stderr.isTTY);
const t0 = performance.now();
const elapsed = () => `${((performance.now() - t0) / 1000).toFixed(1)} s`;

/** A progress bar on a TTY; on a pipe, plain lines (about ten per phase). */
class Progress {
  start(label, total, detail = '') {
    this.label = label;
    this.total = total;
    this.done = 0;
    this.lastLine = -1;
    this.detail = detail;
    this.draw(detail);
    if (isTTY && this.timer === undefined) {
      // Redraw every second so the elapsed time moves during long steps.
      this.timer = setInterval(() => {
        if (this.done < this.total) this.draw(this.detail);
      }, 1000);
      this.timer.unref();
    }
  }

  tick(detail = '') {
    this.done++;
    this.detail = detail;
    this.draw(detail);
    if (this.done === this.total && isTTY) process.stderr.write('\n');
  }

  draw(detail) {
    const {label, total, done} = this;
    if (isTTY) {
      const width = 28;
      const filled = total === 0 ? width : Math.round(width * done / total);
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      const line = `${label.padEnd(18)} [${bar}] ${String(done).padStart(String(total).length)}/${total}` +
                   `  ${detail}  (${elapsed()})`;
      process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
    } else {
      // Plain lines: the first, roughly every tenth, and the last.
      const tenth = Math.floor(10 * done / Math.max(1, total));
      if (done === 0 || done === total || tenth !== this.lastLine) {
        this.lastLine = tenth;
        process.stderr.write(`[demo] ${label} ${done}/${total}${detail ? `  ${detail}` : ''}  (${elapsed()})\n`);
      }
    }
  }
}

function say(line) {
  if (isTTY) process.stderr.write('\r\x1b[2K');
  process.stderr.write(`[demo] ${line}\n`);
}

// ---- the run ------------------------------------------------------------------------------------

/** Activates cpu once with tfjs's "install tfjs-node" banner muted (it would land mid-progress). */
async function quietCpu() {
  const warn = console.warn;
  console.warn = () => {};
  try {
    await tf.setBackend('cpu');
    tf.tensor1d([0]).dispose();
  } finally {
    console.warn = warn;
  }
}

async function chooseBackend(wanted, kernels) {
  await quietCpu();
  if (wanted === 'cpu') {
    await tf.setBackend('cpu');
    return {backend: 'cpu', device: 'cpu (tfjs-backend-cpu, JS)', note: null};
  }
  try {
    const info = await initNodeWebGPU();
    const missing = missingKernels(kernels);
    if (missing.length > 0) {
      await releaseNodeWebGPU();
      await tf.setBackend('cpu');
      return {backend: 'cpu', device: 'cpu (tfjs-backend-cpu, JS)',
              note: `FALLING BACK TO CPU: this build has no webgpu kernel for ${missing.join(', ')}`};
    }
    const a = info.adapterInfo;
    const device = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' / ');
    return {backend: 'webgpu', device: `webgpu (${device || 'unknown adapter'})`, note: null};
  } catch (e) {
    await tf.setBackend('cpu');
    return {backend: 'cpu', device: 'cpu (tfjs-backend-cpu, JS)',
            note: `FALLING BACK TO CPU: no WebGPU here (${e.message.replace(/^initNodeWebGPU: /, '')})`};
  }
}

async function hostWeightsFromFile(options, layerShapes) {
  say(`loading ${options.weights} (prefix ${JSON.stringify(options.layerPrefix)})`);
  const tensors = await mla.loadSafetensors(options.weights, {prefix: options.layerPrefix});
  const weights = {};
  for (const name of layerShapes.keys()) {
    if (!(name in tensors)) {
      const found = Object.keys(tensors);
      throw new Error(`--weights: no '${options.layerPrefix}${name}' in ${options.weights} ` +
                      `(under the prefix: ${found.length ? found.slice(0, 8).join(', ') : 'nothing; check --layer-prefix'})`);
    }
  }
  for (const [name, t] of Object.entries(tensors)) {
    weights[name] = {shape: t.shape, values: await t.data()};
    t.dispose();
  }
  return weights;
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${n.toLocaleString('en-US')} B${u > 0 ? ` (${v.toFixed(2)} ${units[u]})` : ''}`;
}

function fmtRate(tokens, ms) {
  const rate = tokens / (ms / 1000);
  return `${rate >= 100 ? rate.toFixed(0) : rate >= 10 ? rate.toFixed(1) : rate.toFixed(2)} tokens/s`;
}

async function main() {
  const options = parseOptions(process.argv.slice(2));
  if (options.model !== null) {
    // A whole checkpoint (tfjs-mla/models): demos/node/causal_lm.mjs.
    const {runCausalLM} = await import('./causal_lm.mjs');
    return runCausalLM(options, {chooseBackend, say, fmtBytes, fmtRate, isTTY,
                                 kernels: [mla.FUSED_ROPE, mla.MLA_PREFILL, mla.MLA_DECODE]});
  }
  const {prompts, steps} = options;
  const B = prompts.length;
  const finalLens = prompts.map((p) => p + steps);

  // Sizes: from the config with --weights, else the options (V2-Lite by default).
  let spec = {...options, hfConfig: null};
  if (options.config !== null) {
    if (options.sizesGiven.length > 0) {
      say(`ignoring ${options.sizesGiven.join(', ')}: the sizes come from ${options.config}`);
    }
    const hfConfig = JSON.parse(readFileSync(options.config, 'utf8'));
    const {args} = mla.fromHFConfig(hfConfig, {maxSeqLen: Math.max(...finalLens), pageSize: options.pageSize});
    spec = {...spec, hfConfig, hidden: args.hiddenSize, heads: args.numAttentionHeads,
            kvLoraRank: args.kvLoraRank, qkNopeHeadDim: args.qkNopeHeadDim,
            qkRopeHeadDim: args.qkRopeHeadDim, vHeadDim: args.vHeadDim, qLoraRank: args.qLoraRank ?? null};
  }
  const {hidden, heads: H, kvLoraRank: L, qkNopeHeadDim: N, qkRopeHeadDim: R, vHeadDim: V} = spec;

  // The weights' shapes, from an unbuilt layer of these sizes and dtypes (on cpu, before WebGPU
  // starts): a dtype the package does not take ends the run here, with its Error.
  await quietCpu();
  let probe;
  try {
    probe = buildModel(mla, spec, null, [1]);
  } catch (e) {
    throw new DtypeError(`--dtype ${options.dtype} --cache-dtype ${options.cacheDtype}: ${e?.message ?? e}`);
  }
  const shapes = probe.layer.expectedWeightShapes();
  probe.cache.dispose();
  probe.layer.dispose();

  const chosen = await chooseBackend(options.backend, requiredKernels(mla, prompts, options.graphMode));
  if (chosen.note) say(chosen.note);
  say(`backend: ${chosen.device}`);

  // The weights, on the host, so every backend gets the same numbers.
  const weights = options.weights !== null ? await hostWeightsFromFile(options, shapes) :
                                             randomWeights(shapes, options.seed);
  const nParams = Object.values(weights).reduce((s, w) => s + w.values.length, 0);
  say(`layer: hidden ${hidden}, ${H} heads, ${spec.qLoraRank ? `q-LoRA ${spec.qLoraRank}` : 'no q-LoRA'}, ` +
      `kvLoraRank ${L}, nope ${N}, rope ${R}, v ${V}; ${(nParams / 1e6).toFixed(1)} M parameters ` +
      `(${options.weights ?? `random, seed ${options.seed}`})`);
  say(`dtypes: weights ${options.dtype}, latent cache ${options.cacheDtype}`);
  say(`batch: ${B} prompts of ${prompts.join('/')} tokens, then ${steps} decode steps each`);

  // Every token's input row, per sequence (seeded: the cpu reference sees the same ones).
  const inputs = randomInputs(options.seed, finalLens, hidden);

  const progress = new Progress();
  const model = buildModel(mla, spec, weights, finalLens);
  const seqIds = prompts.map((_, b) => b);

  let warmupMs = null;
  if (options.warmup && chosen.backend === 'webgpu') {
    // WebGPU compiles a pipeline the first time each program runs (seconds each on SwiftShader):
    // compile them all first, untimed (compilePipelines: tfjs's compile-only mode over one
    // prefill and one decode step of the same shapes, on a layer and cache of its own).
    const t = performance.now();
    await compilePipelines(() => buildModel(mla, spec, weights, finalLens),
                           {seqIds, prompts, steps, inputs, hidden}, (pending) => {
      progress.start('compiling shaders', pending.length, 'WebGPU pipelines (slow on SwiftShader)');
      pending.forEach((p) => p.then(() => progress.tick('WebGPU pipelines ready'), () => {}));
    });
    warmupMs = performance.now() - t;
  }

  seqIds.forEach((id) => model.cache.claim(id));
  const sample = options.checkSeq;
  const sampleOut = [];   // outputs of the sampled sequence, token by token

  // Prefill: every prompt in one ragged step.
  progress.start('prefill', 1);
  const prefillTokens = prompts.reduce((a, b) => a + b, 0);
  let t = performance.now();
  const pre = await runStep(model, seqIds, prompts,
                            gatherInputs(inputs, prompts.map((p) => [0, p]), hidden), hidden);
  const prefillMs = performance.now() - t;
  sampleOut.push(pre.values.subarray(pre.offsets[sample] * hidden, pre.offsets[sample + 1] * hidden));
  progress.tick(`${prefillTokens} tokens, ${fmtRate(prefillTokens, prefillMs)}`);

  // Decode: one new token per sequence per step.
  progress.start('decode', steps);
  const stepMs = [];
  for (let s = 0; s < steps; s++) {
    t = performance.now();
    const out = await runStep(model, seqIds, prompts.map(() => 1),
                              gatherInputs(inputs, prompts.map((p) => [p + s, p + s + 1]), hidden), hidden);
    stepMs.push(performance.now() - t);
    sampleOut.push(out.values.subarray(sample * hidden, (sample + 1) * hidden));
    progress.tick(`${stepMs[s].toFixed(0)} ms/step, context ${Math.max(...prompts) + s + 1}`);
  }
  const decodeMs = stepMs.reduce((a, b) => a + b, 0);
  const decodeTokens = B * steps;

  // Memory of the tokens held: one latent row (L + R values) per token and layer, against
  // K (H·(N+R)) and V (H·V) per token and layer for standard multi-head attention, both in the
  // cache's dtype (16-bit: 2 bytes a value).
  const tokensHeld = seqIds.reduce((s, id) => s + model.cache.cacheLength(id), 0);
  const mlaFloats = L + R;
  const mhaFloats = H * (N + R) + H * V;
  const cacheDtype = model.kvParams.dtype;
  const mlaTokenBytes = cacheBytesPerToken(model.kvParams);
  const mhaTokenBytes = mhaBytesPerToken(spec, cacheDtype);
  const mlaBytes = tokensHeld * mlaTokenBytes;
  const mhaBytes = tokensHeld * mhaTokenBytes;
  const storage = model.cache.storage(0);
  const pageBytes = storage.size * 4;   // float32 or packed int32 words: 4 bytes an element
  const totalPages = model.cache.totalNumPages;
  const weightBytes = model.weightBytes;
  const layerBytes = disposeModel(model);   // with the derived (absorbed) weights made during the run

  // The cpu reference: the same weights and the sampled sequence's tokens alone.
  let check = null;
  if (options.check) {
    const backendBefore = tf.getBackend();
    await tf.setBackend('cpu');
    progress.start(`cpu reference (seq ${sample}, same dtypes)`, 1 + steps);
    const ref = buildModel(mla, spec, weights, [finalLens[sample]]);
    let refOut;
    try {
      refOut = await runSequence(ref, prompts[sample], steps, inputs[sample], hidden,
                                 (s) => progress.tick(s === 0 ? 'prefill' : `decode step ${s}`));
    } finally {
      ref.cache.dispose();
      ref.layer.dispose();
    }
    check = {...compareOutputs(sampleOut, refOut), tokens: finalLens[sample]};
    if (tf.findBackend(backendBefore) !== null) await tf.setBackend(backendBefore);
  }

  // ---- the table (stdout) --------------------------------------------------------------------
  const rows = [
    ['backend', chosen.device + (chosen.note ? '  [fallback]' : '')],
    ['layer', `hidden ${hidden}, ${H} heads, L ${L}, nope ${N}, rope ${R}, v ${V}` +
              (spec.hfConfig ? ` (${options.config})` : isV2Lite(spec) ? ' (V2-Lite shape, random weights)' :
                                                         ' (random weights)')],
    ['batch', `${B} sequences, prompts ${prompts.join('/')}, ${steps} decode steps each` +
              (options.graphMode === 'auto' ? '' : `, graphMode '${options.graphMode}'`)],
    ...(warmupMs === null ? [] : [['shader compilation (untimed)', `${(warmupMs / 1000).toFixed(1)} s before the run`]]),
    [`prefill (${prefillTokens} tokens, 1 step)`, `${fmtRate(prefillTokens, prefillMs)}  (${(prefillMs / 1000).toFixed(2)} s)`],
    [`decode (${B} × ${steps} tokens)`, steps === 0 ? 'n/a (--steps 0)' :
      `${fmtRate(decodeTokens, decodeMs)}  (${(decodeMs / steps).toFixed(0)} ms/step of ${B} tokens)`],
    ['dtypes', `weights ${options.dtype} (dtype, normDtype, oProjDtype), latent cache ${cacheDtype}`],
    ['layer weights', `${fmtBytes(weightBytes)} held for ${nParams.toLocaleString('en-US')} values` +
                      ` (${(weightBytes / nParams).toFixed(2)} B/value); float32: ${fmtBytes(4 * nParams)}` +
                      ` (${(weightBytes / (4 * nParams)).toFixed(2)}×)`],
    ['layer at the end (+ derived)', `${fmtBytes(layerBytes)}  (weights and the absorbed W_UK/W_UV it made)`],
    ['cache bytes per token and layer', `${mlaTokenBytes.toLocaleString('en-US')} B  = ${mlaFloats} values × ` +
                                        `${+(mlaTokenBytes / mlaFloats).toFixed(3)} B (${cacheDtype}); float32: ${(4 * mlaFloats).toLocaleString('en-US')} B` +
                                        ` (${(mlaTokenBytes / (4 * mlaFloats)).toFixed(2)}×)`],
    ['  standard MHA per token/layer', `${mhaTokenBytes.toLocaleString('en-US')} B  = (${H}·(${N}+${R}) + ${H}·${V}) values × ` +
                                       `${BYTES_PER_VALUE[cacheDtype] ?? 4} B (${cacheDtype})`],
    ['tokens held in the cache', `${tokensHeld.toLocaleString('en-US')}`],
    ['MLA latent cache', `${fmtBytes(mlaBytes)}  = ${mlaFloats} values/token/layer (${cacheDtype})`],
    ['standard MHA cache (K+V)', `${fmtBytes(mhaBytes)}  = ${H}·(${N}+${R}) + ${H}·${V} = ${mhaFloats.toLocaleString('en-US')} values/token/layer (${cacheDtype})`],
    ['MHA / MLA', `${(mhaBytes / mlaBytes).toFixed(2)}× smaller with MLA` +
                  (cacheDtype === 'float32' ? '' : `; ${(tokensHeld * mhaFloats * 4 / mlaBytes).toFixed(2)}× against a float32 MHA cache`)],
    ['pages allocated (MLA)', `${totalPages} × ${model.args.kvParams.pageSize} rows = ${fmtBytes(pageBytes)}`],
    check === null ? ['vs cpu reference', 'skipped (--no-check)'] :
      [`vs cpu reference (seq ${sample}, ${check.tokens} tokens, same dtypes)`,
       `max |Δ| ${check.maxDiff.toExponential(2)}  = ${(check.maxDiff / check.maxRef).toExponential(2)} of max|y| ${check.maxRef.toPrecision(3)}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = [
    '',
    `tfjs-mla demo: DeepSeek-style Multi-head Latent Attention on ${chosen.backend}`,
    `${'metric'.padEnd(w)}  value`,
    `${'-'.repeat(w)}  ${'-'.repeat(Math.max(...rows.map(([, v]) => v.length)))}`,
    ...rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`),
  ];
  console.log(lines.join('\n'));
  if (chosen.note) console.log(`\nnote: ${chosen.note}`);
  say(`done in ${elapsed()}`);
  return check !== null && !Number.isFinite(check.maxDiff) ? 1 : 0;
}

/** A dtype (--dtype, --cache-dtype) the package does not take: its Error, without a stack. */
class DtypeError extends Error {}

let code = 1;
try {
  code = await main();
} catch (e) {
  if (isTTY) process.stderr.write('\n');
  console.error(`demo: ERROR: ${process.env.DEMO_DEBUG && e?.stack ? e.stack : e?.message ?? e}`);
  if (e instanceof DtypeError) console.error('demo: the package does not take these dtypes (see --help)');
  code = 1;
}
try {
  await releaseNodeWebGPU();   // async (it lets Dawn finish before teardown)
} catch {
  // nothing to release
}
process.exit(code);
