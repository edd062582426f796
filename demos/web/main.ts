// The browser demo (demos/web/index.html): one DeepSeek-style MLA layer serving a ragged batch
// on WebGPU (cpu fallback), plotting decode latency and cache memory as it goes.
// Bundled by esbuild into demos/web/dist/main.js (`npm run demo:web`).
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
import * as mla from '../../src/index.js';
import {
  BYTES_PER_VALUE, buildModel, cacheBytesPerToken, compareOutputs, compilePipelines, disposeModel, gatherInputs,
  mhaBytesPerToken, missingKernels, type Model, type ModelSpec, normalizeDtype, randomInputs, randomWeights,
  requiredKernels, runSequence, runStep,
} from '../common/helpers.mjs';

// ---- configuration from the URL ----------------------------------------------------------------

interface DemoConfig {
  hidden: number;
  heads: number;
  kvLoraRank: number;
  nope: number;
  rope: number;
  v: number;
  prompts: number[];
  steps: number;
  seed: number;
  pageSize: number;
  backend: 'webgpu'|'cpu';
  check: boolean;
  warmup: boolean;
  /** The layer's weight dtype (and normDtype / oProjDtype). */
  dtype: string;
  /** The latent cache's dtype. */
  cacheDtype: string;
}

/** DeepSeek-V2-Lite ÷ 4 in every width, same 16 heads: the same 8.9× cache ratio, SwiftShader-sized. */
const DEFAULTS: DemoConfig = {
  hidden: 512, heads: 16, kvLoraRank: 128, nope: 32, rope: 16, v: 32,
  prompts: [64, 17, 40, 5], steps: 48, seed: 1, pageSize: 16, backend: 'webgpu', check: true,
  warmup: true, dtype: 'float32', cacheDtype: 'float32',
};

function readConfig(search: string): DemoConfig {
  const params = new URLSearchParams(search);
  const config: DemoConfig = {...DEFAULTS, prompts: [...DEFAULTS.prompts]};
  const integer = (key: keyof DemoConfig, min: number) => {
    const text = params.get(key);
    if (text === null) return;
    if (!/^\d+$/.test(text) || Number(text) < min) {
      throw new Error(`URL parameter ${key}: expected an integer ≥ ${min}, got ${JSON.stringify(text)}`);
    }
    (config[key] as number) = Number(text);
  };
  integer('hidden', 1);
  integer('heads', 1);
  integer('kvLoraRank', 1);
  integer('nope', 1);
  integer('rope', 2);
  integer('v', 1);
  integer('steps', 0);
  integer('seed', 0);
  integer('pageSize', 1);
  if (config.rope % 2 !== 0) throw new Error(`URL parameter rope: expected an even width, got ${config.rope}`);
  const prompts = params.get('prompts');
  if (prompts !== null) {
    if (!/^\d+(,\d+)*$/.test(prompts) || prompts.split(',').some((p) => Number(p) < 1)) {
      throw new Error(`URL parameter prompts: expected lengths ≥ 1 like 64,17,40,5, got ${JSON.stringify(prompts)}`);
    }
    config.prompts = prompts.split(',').map(Number);
  }
  const backend = params.get('backend');
  if (backend !== null) {
    if (backend !== 'webgpu' && backend !== 'cpu') {
      throw new Error(`URL parameter backend: expected webgpu or cpu, got ${JSON.stringify(backend)}`);
    }
    config.backend = backend;
  }
  // Any name goes to the package, which says which it takes (short names: bf16, f16, f32).
  for (const key of ['dtype', 'cacheDtype'] as const) {
    const text = params.get(key);
    if (text !== null) {
      if (text === '') throw new Error(`URL parameter ${key}: expected float32, bfloat16 or float16, got ""`);
      config[key] = normalizeDtype(text);
    }
  }
  if (params.get('check') === '0') config.check = false;
  if (params.get('warmup') === '0') config.warmup = false;
  return config;
}

// ---- page elements -------------------------------------------------------------------------------

function byId<T extends Element = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element as unknown as T;
}

function setStatus(text: string): void {
  byId('status').textContent = text;
}

function setCell(id: string, text: string, value?: number|string): void {
  const cell = byId(id);
  cell.textContent = text;
  if (value !== undefined) cell.dataset.value = String(value);
}

const fmtInt = (n: number) => n.toLocaleString('en-US');

function fmtBytes(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

/** Lets the browser paint before the next chunk of work. */
const nextFrame = () => new Promise<void>((resolve) => requestAnimationFrame(() => resolve()));

// ---- a small SVG line chart ------------------------------------------------------------------

interface Series {
  label: string;
  color: string;
  dash?: string;
  dots?: boolean;
  step?: boolean;
  points: Array<[number, number]>;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** Rounds up to m × 10^k, m one of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 (each splits into 5 ticks). */
function niceCeil(x: number): number {
  if (!(x > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(x)));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x * (1 - 1e-12)) return m * p;
  return 10 * p;
}

/** An x-axis tick: 1, 2 or 5 × 10^k, at least 1 (the axes count tokens). */
function niceTick(x: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(Math.max(1, x))));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

class LineChart {
  private readonly width = 520;
  private readonly height = 300;
  private readonly margin = {left: 62, right: 14, top: 12, bottom: 40};

  constructor(private readonly svg: SVGSVGElement, private readonly xLabel: string,
              private readonly yLabel: string, readonly series: Series[],
              private readonly formatY: (y: number) => string = (y) => String(y)) {
    this.render();
  }

  add(seriesIndex: number, x: number, y: number): void {
    this.series[seriesIndex].points.push([x, y]);
    this.render();
  }

  private el(name: string, attrs: Record<string, string|number>, text?: string): SVGElement {
    const node = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    this.svg.appendChild(node);
    return node;
  }

  render(): void {
    const {width, height, margin} = this;
    const all = this.series.flatMap((s) => s.points);
    while (this.svg.firstChild) this.svg.removeChild(this.svg.firstChild);
    const xs = all.map(([x]) => x);
    const xMinRaw = xs.length ? Math.min(...xs) : 0;
    const xMaxRaw = xs.length ? Math.max(...xs) : 1;
    const xTick = niceTick(Math.max(1, xMaxRaw - xMinRaw) / 5);
    const xMin = Math.floor(xMinRaw / xTick) * xTick;
    const xMax = Math.max(xMin + xTick, Math.ceil(xMaxRaw / xTick) * xTick);
    const yMax = niceCeil((all.length ? Math.max(...all.map(([, y]) => y)) : 1) * 1.08);
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const px = (x: number) => margin.left + (x - xMin) / (xMax - xMin) * plotW;
    const py = (y: number) => margin.top + plotH - y / yMax * plotH;

    for (let i = 0; i <= 5; i++) {
      const y = yMax * i / 5;
      this.el('line', {x1: margin.left, x2: width - margin.right, y1: py(y), y2: py(y),
                       stroke: '#eef0f3', 'stroke-width': 1});
      this.el('text', {x: margin.left - 6, y: py(y) + 4, 'text-anchor': 'end'}, this.formatY(y));
    }
    for (let x = xMin; x <= xMax + 1e-9; x += xTick) {
      this.el('text', {x: px(x), y: height - margin.bottom + 15, 'text-anchor': 'middle'},
              String(Math.round(x)));
    }
    this.el('line', {x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH, stroke: '#9ca3af'});
    this.el('line', {x1: margin.left, x2: width - margin.right, y1: margin.top + plotH,
                     y2: margin.top + plotH, stroke: '#9ca3af'});
    this.el('text', {x: margin.left + plotW / 2, y: height - 6, 'text-anchor': 'middle'}, this.xLabel);
    this.el('text', {x: 12, y: margin.top + plotH / 2, 'text-anchor': 'middle',
                     transform: `rotate(-90 12 ${margin.top + plotH / 2})`}, this.yLabel);

    this.series.forEach((s, index) => {
      if (s.points.length === 0) return;
      let d = '';
      s.points.forEach(([x, y], i) => {
        if (i === 0) {
          d += `M${px(x).toFixed(1)},${py(y).toFixed(1)}`;
        } else {
          if (s.step) d += `H${px(x).toFixed(1)}`;
          d += `L${px(x).toFixed(1)},${py(y).toFixed(1)}`;
        }
      });
      const path = this.el('path', {d, fill: 'none', stroke: s.color, 'stroke-width': 2,
                                    'stroke-linejoin': 'round'});
      if (s.dash) path.setAttribute('stroke-dasharray', s.dash);
      path.dataset.series = String(index);
      path.dataset.points = String(s.points.length);
      if (s.dots) {
        for (const [x, y] of s.points) this.el('circle', {cx: px(x), cy: py(y), r: 2.4, fill: s.color});
      }
    });
  }
}

// ---- the model (demos/common/helpers.mjs, shared with the Node demo) ----------------------------

/** The layer sizes of a page config (V2-Lite's rope theta and YaRN scaling). */
function modelSpec(config: DemoConfig): ModelSpec {
  return {hidden: config.hidden, heads: config.heads, kvLoraRank: config.kvLoraRank, qkNopeHeadDim: config.nope,
          qkRopeHeadDim: config.rope, vHeadDim: config.v, pageSize: config.pageSize,
          dtype: config.dtype, cacheDtype: config.cacheDtype};
}

const NAME_PREFIX = 'mla_web_demo';

async function chooseBackend(config: DemoConfig): Promise<{backend: string, note: string}> {
  if (config.backend === 'cpu') {
    await tf.setBackend('cpu');
    return {backend: 'cpu', note: 'Running on cpu (asked for with ?backend=cpu).'};
  }
  const kernels = requiredKernels(mla, config.prompts);
  let why = '';
  if (!('gpu' in navigator) || !(navigator as {gpu?: unknown}).gpu) {
    why = 'this browser has no WebGPU (navigator.gpu is missing)';
  } else {
    try {
      if (!(await tf.setBackend('webgpu'))) why = 'tf.setBackend(\'webgpu\') failed (no adapter?)';
    } catch (e) {
      why = `tf.setBackend('webgpu') failed: ${e instanceof Error ? e.message : String(e)}`;
    }
    const missing = missingKernels(kernels);
    if (why === '' && missing.length > 0) why = `this build has no webgpu kernel for ${missing.join(', ')}`;
  }
  if (why === '') return {backend: 'webgpu', note: ''};
  await tf.setBackend('cpu');
  return {backend: 'cpu', note: `WebGPU unavailable: ${why}. Fell back to the cpu backend.`};
}

// ---- the run -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const config = readConfig(location.search);
  const {hidden, heads: H, kvLoraRank: L, nope: N, rope: R, v: V, prompts, steps} = config;
  const B = prompts.length;
  const finalLens = prompts.map((p) => p + steps);
  const seqIds = prompts.map((_, b) => b);
  const mlaFloats = L + R;
  const mhaFloats = H * (N + R) + H * V;
  byId('config').textContent =
      `hidden ${hidden}, ${H} heads, kvLoraRank ${L}, nope ${N}, rope ${R}, v ${V} · prompts ` +
      `${prompts.join('/')} · ${steps} decode steps · page size ${config.pageSize} · seed ${config.seed} · ` +
      `weights ${config.dtype}, cache ${config.cacheDtype}`;

  setStatus('Setting up the backend…');
  const {backend, note} = await chooseBackend(config);
  await tf.ready();
  document.body.dataset.backend = backend;
  setCell('backend', backend === 'webgpu' ? 'webgpu' : `cpu${note ? ' (fallback)' : ''}`, backend);
  byId('backend-note').textContent = note;

  const latency = new LineChart(byId<SVGSVGElement>('latency-chart'), 'context length of the longest sequence (tokens)',
                                'ms / step', [{label: 'decode', color: 'var(--mla)', dots: true, points: []}],
                                (y) => y === 0 || y >= 10 ? y.toFixed(0) : y.toFixed(1));
  const memory = new LineChart(byId<SVGSVGElement>('memory-chart'), 'tokens held in the cache',
                               'KiB', [
                                 {label: 'standard', color: 'var(--mha)', points: []},
                                 {label: 'MLA rows', color: 'var(--mla)', points: []},
                                 {label: 'MLA pages', color: 'var(--pages)', dash: '4 3', step: true, points: []},
                               ], (y) => y.toFixed(0));

  // Weights and inputs, seeded; kept on the host so the cpu reference gets the same numbers.
  setStatus('Creating the weights…');
  const spec = modelSpec(config);
  setCell('dtypes', `weights ${config.dtype}, latent cache ${config.cacheDtype}`, `${config.dtype}/${config.cacheDtype}`);
  // A dtype the package does not take throws here (the page shows its Error).
  const probe = buildModel(mla, spec, null, [1], NAME_PREFIX);
  const shapes = probe.layer.expectedWeightShapes();
  probe.cache.dispose();
  probe.layer.dispose();
  const weights = randomWeights(shapes, config.seed);
  const inputs = randomInputs(config.seed, finalLens, hidden);
  const model: Model = buildModel(mla, spec, weights, finalLens, NAME_PREFIX);
  const numParams = model.numParams;
  setCell('weight-bytes', `${fmtInt(model.weightBytes)} B (${fmtBytes(model.weightBytes)}; ` +
          `${(model.weightBytes / numParams).toFixed(2)} B per value, ${config.dtype}; float32: ` +
          `${fmtBytes(4 * numParams)})`, model.weightBytes);
  // Bytes per token and layer of the latent cache in its dtype, and of a standard multi-head
  // cache (K and V of every head) in the same dtype.
  const cacheDtype = model.kvParams.dtype;
  const tokenBytes = cacheBytesPerToken(model.kvParams);
  const mhaTokenBytes = mhaBytesPerToken(spec, cacheDtype);
  setCell('bytes-per-token', `${fmtInt(tokenBytes)} B = ${mlaFloats} values × ${+(tokenBytes / mlaFloats).toFixed(3)} B ` +
          `(${cacheDtype}; float32: ${fmtInt(4 * mlaFloats)} B); standard multi-head: ${fmtInt(mhaTokenBytes)} B ` +
          `= ${fmtInt(mhaFloats)} values × ${BYTES_PER_VALUE[cacheDtype as keyof typeof BYTES_PER_VALUE] ?? 4} B`,
          tokenBytes);
  byId('bytes-per-token').dataset.mha = String(mhaTokenBytes);

  if (config.warmup && backend === 'webgpu') {
    // WebGPU compiles each program's pipeline on first use (slow on SwiftShader): compile them
    // all first, untimed (compilePipelines: tfjs's compile-only mode over a prefill and a decode
    // step of the same shapes, on a layer and cache of its own).
    setStatus('Compiling the WebGPU shaders (untimed)…');
    await nextFrame();
    const warmStart = performance.now();
    await compilePipelines(() => buildModel(mla, spec, weights, finalLens, NAME_PREFIX),
                           {seqIds, prompts, steps, inputs, hidden});
    document.body.dataset.warmupMs = String(Math.round(performance.now() - warmStart));
  }

  seqIds.forEach((id) => model.cache.claim(id));
  const pageBytes = () => seqIds.reduce((s, id) => s + model.cache.pagesOf(id).length, 0) *
                          config.pageSize * tokenBytes;
  const plotMemory = (tokens: number) => {
    memory.series[0].points.push([tokens, tokens * mhaTokenBytes / 1024]);
    memory.series[1].points.push([tokens, tokens * tokenBytes / 1024]);
    memory.series[2].points.push([tokens, pageBytes() / 1024]);
    memory.render();
  };
  plotMemory(0);

  const prefillTokens = prompts.reduce((a, b) => a + b, 0);
  setStatus(`Prefill: ${B} prompts, ${prefillTokens} tokens…`);
  await nextFrame();
  const sample: Float32Array[] = [];
  let t = performance.now();
  const pre = await runStep(model, seqIds, prompts, gatherInputs(inputs, prompts.map((p) => [0, p]), hidden), hidden);
  const prefillMs = performance.now() - t;
  sample.push(pre.values.slice(0, prompts[0] * hidden));
  const prefillTps = prefillTokens / (prefillMs / 1000);
  setCell('prefill-tps', `${prefillTps.toFixed(1)} tokens/s (${prefillTokens} tokens in ${prefillMs.toFixed(0)} ms)`,
          prefillTps);
  plotMemory(prefillTokens);

  let decodeMs = 0;
  for (let s = 0; s < steps; s++) {
    t = performance.now();
    const out = await runStep(model, seqIds, prompts.map(() => 1),
                              gatherInputs(inputs, prompts.map((p) => [p + s, p + s + 1]), hidden), hidden);
    const ms = performance.now() - t;
    decodeMs += ms;
    sample.push(out.values.slice(0, hidden));
    const longest = Math.max(...prompts) + s + 1;
    latency.add(0, longest, ms);
    plotMemory(prefillTokens + B * (s + 1));
    setStatus(`Decode step ${s + 1}/${steps}: ${ms.toFixed(0)} ms for ${B} tokens, longest context ${longest}`);
    await nextFrame();
  }
  const decodeTps = steps > 0 ? B * steps / (decodeMs / 1000) : 0;
  setCell('decode-tps', steps > 0 ?
      `${decodeTps.toFixed(1)} tokens/s (${(decodeMs / steps).toFixed(1)} ms per step of ${B} tokens)` : 'n/a (steps=0)',
      decodeTps);

  const tokensHeld = seqIds.reduce((s, id) => s + model.cache.cacheLength(id), 0);
  const mlaBytes = tokensHeld * tokenBytes;
  const mhaBytes = tokensHeld * mhaTokenBytes;
  setCell('tokens-held', fmtInt(tokensHeld), tokensHeld);
  setCell('mla-bytes', `${fmtInt(mlaBytes)} B (${fmtBytes(mlaBytes)}; ${mlaFloats} values per token, ${cacheDtype})`,
          mlaBytes);
  setCell('mha-bytes', `${fmtInt(mhaBytes)} B (${fmtBytes(mhaBytes)}; ${H}·(${N}+${R}) + ${H}·${V} = ` +
          `${fmtInt(mhaFloats)} values per token, ${cacheDtype})`, mhaBytes);
  const ratio = mhaBytes / mlaBytes;
  setCell('ratio', `${ratio.toFixed(2)}× smaller with MLA`, ratio);
  const layerBytes = disposeModel(model);
  byId('weight-bytes').dataset.layerBytes = String(layerBytes);

  // The cpu reference: sequence 0 alone, the same weights and inputs.
  if (config.check) {
    setStatus(`Checking sequence 0 against the cpu reference (same dtypes: weights ${config.dtype}, ` +
              `cache ${config.cacheDtype})…`);
    await nextFrame();
    await tf.setBackend('cpu');
    const ref = buildModel(mla, spec, weights, [finalLens[0]], NAME_PREFIX);
    let refOut: Float32Array[];
    try {
      refOut = await runSequence(ref, prompts[0], steps, inputs[0], hidden);
    } finally {
      ref.cache.dispose();
      ref.layer.dispose();
    }
    const {maxDiff, maxRef} = compareOutputs(sample, refOut);
    byId('check').dataset.maxRef = String(maxRef);
    setCell('check', `max |Δ| ${maxDiff.toExponential(2)} = ${(maxDiff / maxRef).toExponential(2)} of max|y| ` +
            `${maxRef.toPrecision(3)} (sequence 0, ${finalLens[0]} tokens, same dtypes)`, maxDiff);
    await tf.setBackend(backend);
  } else {
    setCell('check', 'skipped (?check=0)');
  }

  byId('results').dataset.ready = 'true';
  const warmup = document.body.dataset.warmupMs;
  setStatus(`Done on ${backend}: prefill ${prefillTps.toFixed(1)} tokens/s, decode ${decodeTps.toFixed(1)} tokens/s, ` +
            `cache ${ratio.toFixed(2)}× smaller with MLA` +
            (warmup ? ` (after a ${(Number(warmup) / 1000).toFixed(1)} s untimed warm-up that compiled the shaders).` : '.'));
  document.body.dataset.state = 'done';
}

document.body.dataset.state = 'running';
main().catch((e: unknown) => {
  const message = e instanceof Error ? e.message : String(e);
  console.error(e);
  setStatus(`Error: ${message}`);
  document.body.dataset.error = message;
  document.body.dataset.state = 'error';
});
