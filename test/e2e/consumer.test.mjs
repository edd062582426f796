#!/usr/bin/env node
// The package as a user meets it: `npm pack` this checkout (its `prepare` builds dist/), install the
// tarball into an empty `npm init -y` project with README.md's install line, then
//   - the tarball has dist/ (ESM, dist/cjs, the script build) and LICENSE; `webgpu` is not installed;
//   - CommonJS: `require('tfjs-mla')`, `require('tfjs-mla/node')` and `require('tfjs-mla/models')` work
//     (the LM fixture generates its reference greedy tokens through the CommonJS build); a small tf.model with the
//     layer is saved there (model.json + weights.bin) with its cpu outputs;
//   - TypeScript (strict, skipLibCheck) resolves 'tfjs-mla', 'tfjs-mla/node' and 'tfjs-mla/models' under
//     moduleResolution node10 (typesVersions) and nodenext from CommonJS (the require types);
//   - a page bundled with esbuild (minified, tree-shaken) that only does `import 'tfjs-mla'` has the
//     layer class and the kernels registered; in headless Chromium on webgpu it loads the saved
//     model with tf.loadLayersModel, matches the cpu numbers, and survives a save/load round trip
//     (tf.io.withSaveHandler / tf.io.fromMemory);
//   - the script-tag build (package.json `unpkg`) runs after tfjs's own .min.js files and exposes
//     the global `tfmla`, and README.md's ```html block runs as written (CDN URLs served from the
//     installed packages; `@tensorflow/tfjs` is installed for it), including the clear Error on
//     the umbrella package's default backend, webgl.
//
//   node test/e2e/consumer.test.mjs [--keep]     (--keep: leave the temp project and print its path)
//
// Needs the npm registry (the tfjs packages; npm's cache is used when it has them) and Chromium
// with WebGPU (the flags of scripts/chromium-webgpu-flags.json, as karma). Run by `npm test` as an
// e2e step (one test; skipped with --skip-e2e or --grep). Exit 0 = pass; prints `[consumer] PASS …`.
import {spawnSync} from 'node:child_process';
import {createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {createServer} from 'node:http';
import {tmpdir} from 'node:os';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {codeBlocks} from './markdown.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const keep = process.argv.includes('--keep');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const CHROMIUM_ARGS = JSON.parse(readFileSync(path.join(root, 'scripts', 'chromium-webgpu-flags.json'), 'utf8'));
const TFJS_VERSION = '4.22.0';

const failures = [];
function check(condition, what) {
  if (!condition) failures.push(what);
  console.log(`[consumer]   ${condition ? 'ok  ' : 'FAIL'} ${what}`);
  return condition;
}

function sh(cmd, args, cwd, what, options = {}) {
  const t0 = Date.now();
  const r = spawnSync(cmd, args, {cwd, encoding: 'utf8', maxBuffer: 64 << 20, ...options});
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${what} failed (${cmd} ${args.join(' ')}: exit ${r.status ?? r.signal}, ${seconds} s)\n${out}`);
  }
  console.log(`[consumer] ${what} (${seconds} s)`);
  return r.stdout ?? '';
}

/** README.md's install line: the ```sh line(s) `npm install tfjs-mla …`, continuations joined. */
function readmeInstallArgs(readme) {
  for (const block of codeBlocks(readme).filter((b) => b.lang === 'sh' || b.lang === 'bash')) {
    const joined = block.code.replace(/\\\n\s*/g, ' ');
    const line = joined.split('\n').find((l) => /^\s*npm (install|i) .*\btfjs-mla\b/.test(l));
    if (line) return line.trim().split(/\s+/).slice(2);
  }
  throw new Error('README.md has no ```sh block with `npm install tfjs-mla …`');
}

// ---- the CommonJS consumer (runs in the temp project) ---------------------------------------
const CJS_CHECK = String.raw`
'use strict';
const fs = require('node:fs');
const tf = require('@tensorflow/tfjs-core');
const tfl = require('@tensorflow/tfjs-layers');
require('@tensorflow/tfjs-backend-cpu');
const mla = require('tfjs-mla');
const mlaNode = require('tfjs-mla/node');
const mlaModels = require('tfjs-mla/models');

async function main() {
  await tf.setBackend('cpu');
  const S0 = JSON.parse(process.argv[2]);
  const lm = await mlaModels.loadCausalLM(S0.lmFixture, {dtype: 'float32'});
  const lmTokens = await lm.generate([S0.lmPrompt], {maxNewTokens: 12});
  lm.dispose();
  const report = {
    exports: ['LatentAttentionWithRope', 'latentAttentionWithRope', 'PagedKVCache', 'mlaLinear', 'registerMLAKernels']
        .filter((k) => typeof mla[k] === 'function'),
    nodeExports: ['initNodeWebGPU', 'releaseNodeWebGPU', 'rerunWithVulkanLoader'].filter((k) => typeof mlaNode[k] === 'function'),
    kernels: ['FusedRope', 'MLAPrefill', 'MLADecode'].flatMap((k) => ['cpu', 'webgpu'].map((b) => k + '/' + b))
        .filter((kb) => tf.getKernel(...kb.split('/')) !== undefined),
    classRegistered: tf.serialization.SerializationMap.getMap().classNameMap.LatentAttentionWithRope !== undefined,
    modelsExports: ['loadCausalLM', 'CausalLM', 'createTokenizer'].filter((k) => typeof mlaModels[k] === 'function'),
    lmTokens: lmTokens[0],
  };
  const S = S0;
  const rope = new mla.RotaryEmbedding({dim: S.rope, nHeads: S.heads, theta: 10000, maxSeqLen: 64});
  const input = tfl.input({shape: [null, S.hidden]});
  const attention = mla.latentAttentionWithRope({rope, numAttentionHeads: S.heads, numKeyValueHeads: S.heads,
    hiddenSize: S.hidden, kvParams: new mla.KVCacheParams({headDim: S.kvLoraRank + S.rope, pageSize: 16}),
    kvLoraRank: S.kvLoraRank, qkRopeHeadDim: S.rope, qkNopeHeadDim: S.nope, vHeadDim: S.v, name: 'mla'});
  const model = tfl.model({inputs: input, outputs: attention.apply(input)});
  const x = tf.randomNormal([2, S.seq, S.hidden], 0, 1, 'float32', 7);
  const y = model.predict(x);
  let artifacts;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a)};
  }));
  const weightData = Array.isArray(artifacts.weightData) ? tf.io.concatenateArrayBuffers(artifacts.weightData)
                                                         : artifacts.weightData;
  fs.mkdirSync('web/model', {recursive: true});
  fs.writeFileSync('web/model/model.json', JSON.stringify({
    modelTopology: artifacts.modelTopology, format: artifacts.format, generatedBy: artifacts.generatedBy,
    weightsManifest: [{paths: ['weights.bin'], weights: artifacts.weightSpecs}]}));
  fs.writeFileSync('web/model/weights.bin', Buffer.from(weightData));
  fs.writeFileSync('web/model/expected.json', JSON.stringify(
      {shape: x.shape, x: Array.from(await x.data()), y: Array.from(await y.data())}));
  report.savedWeights = artifacts.weightSpecs.map((s) => s.name);
  let backendError = '';
  const ones = tf.ones([2, 3]);
  tf.registerBackend('not-mla', () => new (class extends tf.KernelBackend { dispose() {} })(), -1);
  try {
    await tf.setBackend('not-mla');
    mla.mlaLinear(ones, ones);
  } catch (e) {
    backendError = e.message;
  }
  await tf.setBackend('cpu');
  tf.removeBackend('not-mla');
  report.backendError = backendError;
  console.log('REPORT ' + JSON.stringify(report));
}
main().catch((e) => { console.error(e); process.exit(1); });
`;

// ---- the bundled browser page (import 'tfjs-mla' only) --------------------------------------
const PAGE_ENTRY = String.raw`
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
import 'tfjs-mla';

async function predictOn(backend, source, expected) {
  await tf.setBackend(backend);
  const model = await tfl.loadLayersModel(source);   // weights on this backend
  const x = tf.tensor(expected.x, expected.shape);
  const y = model.predict(x);
  const values = Array.from(await y.data());
  tf.dispose([x, y]);
  return {model, values};
}

window.consumerChecks = async () => {
  const report = {
    kernels: ['FusedRope', 'MLAPrefill', 'MLADecode'].flatMap((k) => ['cpu', 'webgpu'].map((b) => k + '/' + b))
        .filter((kb) => tf.getKernel(...kb.split('/')) !== undefined),
    classRegistered: tf.serialization.SerializationMap.getMap().classNameMap.LatentAttentionWithRope !== undefined,
  };
  report.webgpuReady = await tf.setBackend('webgpu');
  report.backend = tf.getBackend();
  const expected = await (await fetch('model/expected.json')).json();
  const cpu = await predictOn('cpu', 'model/model.json', expected);
  report.cpu = cpu.values;
  const gpu = await predictOn('webgpu', 'model/model.json', expected);
  report.layerClass = gpu.model.layers.map((l) => l.getClassName());
  report.webgpu = gpu.values;
  let artifacts;
  await gpu.model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a)};
  }));
  report.roundTrip = (await predictOn('webgpu', tf.io.fromMemory(artifacts), expected)).values;
  report.expected = expected.y;
  return report;
};
`;

/** The page of the script-tag build: tfjs's own .min.js files, then tfjs-mla's unpkg file. */
function scriptTagPage(unpkg) {
  return `<!doctype html><meta charset="utf-8"><title>script tags</title>
<script src="/node_modules/@tensorflow/tfjs-core/dist/tf-core.min.js"></script>
<script src="/node_modules/@tensorflow/tfjs-layers/dist/tf-layers.min.js"></script>
<script src="/node_modules/@tensorflow/tfjs-backend-cpu/dist/tf-backend-cpu.min.js"></script>
<script src="/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js"></script>
<script src="/node_modules/tfjs-mla/${unpkg.replace(/^\.\//, '')}"></script>
<script>
window.consumerChecks = async () => {
  const report = {hasGlobal: typeof tfmla === 'object', layerClass: typeof tfmla.LatentAttentionWithRope,
                  factory: typeof tfmla.latentAttentionWithRope,
                  kernel: tf.getKernel('MLAPrefill', 'webgpu') !== undefined};
  report.webgpuReady = await tf.setBackend('webgpu');
  const expected = await (await fetch('/web/model/expected.json')).json();
  const model = await tf.loadLayersModel('/web/model/model.json');
  const y = model.predict(tf.tensor(expected.x, expected.shape));
  report.webgpu = Array.from(await y.data());
  report.expected = expected.y;
  return report;
};
</script>`;
}

function maxRelDiff(a, b) {
  if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length || a.length === 0) return Infinity;
  let diff = 0;
  let ref = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return ref > 0 && Number.isFinite(diff) ? diff / ref : Infinity;
}

function serve(folder) {
  const types = {'.html': 'text/html', '.js': 'text/javascript', '.json': 'application/json', '.map': 'application/json'};
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://localhost');
    const file = path.join(folder, decodeURIComponent(url.pathname));
    if (!file.startsWith(folder) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, {'content-type': types[path.extname(file)] ?? 'application/octet-stream'});
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () =>
    resolve({server, url: `http://127.0.0.1:${server.address().port}`})));
}

async function main() {
  const started = Date.now();
  const temp = mkdtempSync(path.join(tmpdir(), 'tfjs-mla-consumer-'));
  const app = path.join(temp, 'app');
  mkdirSync(app);
  try {
    // 1. pack (prepare → npm run build) and look inside.
    const packOut = sh(npm, ['pack', '--json', '--pack-destination', temp], root, 'npm pack (prepare builds dist/)');
    // stdout also has the build's own lines: the JSON report starts at the last line that is just "[".
    const packed = JSON.parse(packOut.slice(packOut.lastIndexOf('\n[\n') + 1))[0];
    const tarball = path.join(temp, packed.filename);
    const inside = new Set(packed.files.map((f) => f.path));
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
    for (const f of ['LICENSE', 'dist/index.js', 'dist/index.d.ts', 'dist/node.js', 'dist/cjs/index.js',
                     'dist/cjs/index.d.ts', 'dist/cjs/package.json', pkg.unpkg.replace(/^\.\//, '')]) {
      check(inside.has(f), `the tarball has ${f}`);
    }
    check(!inside.has('node_modules/webgpu/package.json'), 'the tarball bundles no dependencies');
    console.log(`[consumer] ${packed.filename}: ${packed.entryCount} files, ${(packed.size / 1024).toFixed(0)} KiB`);

    // 2. an empty project, the README's install line (tfjs-mla = the tarball).
    sh(npm, ['init', '-y'], app, 'npm init -y');
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const installArgs = readmeInstallArgs(readme).map((a) => (a === 'tfjs-mla' ? tarball : a));
    sh(npm, ['install', '--no-audit', '--no-fund', ...installArgs], app, `npm install ${installArgs.join(' ').replace(tarball, '<tarball>')}`);
    check(!existsSync(path.join(app, 'node_modules', 'webgpu')), 'the install did not fetch `webgpu` (an optional peer)');
    check(existsSync(path.join(app, 'node_modules', 'tfjs-mla', 'LICENSE')), 'the installed package has its LICENSE');

    // 3. CommonJS.
    const lmExpected = JSON.parse(readFileSync(path.join(root, 'test', 'fixtures', 'tiny_mla_lm', 'expected.json'), 'utf8'));
    const S = {hidden: 64, heads: 2, kvLoraRank: 32, rope: 8, nope: 16, v: 16, seq: 6,
               lmFixture: path.join(root, 'test', 'fixtures', 'tiny_mla_lm'), lmPrompt: lmExpected.prompts[0]};
    writeFileSync(path.join(app, 'check.cjs'), CJS_CHECK);
    const cjsOut = sh(process.execPath, ['check.cjs', JSON.stringify(S)], app, "require('tfjs-mla') from CommonJS");
    const cjs = JSON.parse(cjsOut.split('\n').find((l) => l.startsWith('REPORT ')).slice(7));
    check(cjs.exports.length === 5 && cjs.nodeExports.length === 3,
          `require() gets the exports (${cjs.exports.join(', ')}; tfjs-mla/node: ${cjs.nodeExports.join(', ')})`);
    check(cjs.modelsExports.length === 3, `require('tfjs-mla/models') gets ${cjs.modelsExports.join(', ')}`);
    check(JSON.stringify(cjs.lmTokens) === JSON.stringify(lmExpected.greedy[0]),
          `the LM fixture's greedy tokens through the CommonJS build (${JSON.stringify(cjs.lmTokens)})`);
    check(cjs.kernels.length === 6, `the kernels are registered for cpu and webgpu (${cjs.kernels.join(', ')})`);
    check(cjs.classRegistered, 'the layer class is registered for tf.loadLayersModel');
    check(cjs.savedWeights.length === 5 && cjs.savedWeights.every((n) => n.startsWith('mla/')),
          `the saved model has the layer's 5 weights (no q_lora_rank) as <layer>/<HF name> (${cjs.savedWeights.join(', ')})`);
    check(/the active tfjs backend is 'not-mla'/.test(cjs.backendError) && cjs.backendError.includes("await tf.setBackend('webgpu')"),
          `an unsupported backend gets the clear Error (${JSON.stringify(cjs.backendError.slice(0, 90))}…)`);

    // 4. TypeScript in the consumer project: node10 (typesVersions) and nodenext from CommonJS.
    writeFileSync(path.join(app, 'types.ts'), [
      "import * as tf from '@tensorflow/tfjs-core';",
      "import {LatentAttentionWithRope, latentAttentionWithRope, KVCacheParams, RotaryEmbedding} from 'tfjs-mla';",
      "import {initNodeWebGPU, NodeWebGPUInfo} from 'tfjs-mla/node';",
      "import {CausalLM, GenerateOptions, loadCausalLM} from 'tfjs-mla/models';",
      'const load: (source: string) => Promise<CausalLM> = loadCausalLM;',
      'const generateOptions: GenerateOptions = {maxNewTokens: 4, temperature: 0.7, topP: 0.9, seed: 1};',
      'const rope = new RotaryEmbedding({dim: 8, nHeads: 2, theta: 10000, maxSeqLen: 16});',
      'const layer: LatentAttentionWithRope = latentAttentionWithRope({rope, numAttentionHeads: 2, numKeyValueHeads: 2,',
      '  hiddenSize: 64, kvParams: new KVCacheParams({headDim: 40, pageSize: 16}), kvLoraRank: 32, qkRopeHeadDim: 8});',
      'const init: () => Promise<NodeWebGPUInfo> = initNodeWebGPU;',
      'const t: tf.Tensor = tf.zeros([1]);',
      'export {layer, init, t, load, generateOptions};', ''].join('\n'));
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    for (const [module, resolution] of [['commonjs', 'node10'], ['nodenext', 'nodenext']]) {
      const r = spawnSync(process.execPath, [tsc, '--strict', '--skipLibCheck', '--noEmit', '--module', module,
                                             '--moduleResolution', resolution, '--target', 'es2020', 'types.ts'],
                          {cwd: app, encoding: 'utf8'});
      const out = `${r.stdout}${r.stderr}`.trim();
      const status = r.status;
      check(status === 0, `TypeScript resolves 'tfjs-mla', 'tfjs-mla/node' and 'tfjs-mla/models' (module ${module}, moduleResolution ${resolution})` +
                          (status === 0 ? '' : `: ${out.split('\n').slice(0, 6).join(' | ')}`));
    }

    // 5. A production bundle of a page that only imports 'tfjs-mla' for its side effects.
    const web = path.join(app, 'web');
    writeFileSync(path.join(web, 'page.js'), PAGE_ENTRY);
    writeFileSync(path.join(web, 'index.html'),
                  '<!doctype html><meta charset="utf-8"><title>bundle</title><script src="bundle.js"></script>');
    const esbuild = await import(path.join(root, 'node_modules', 'esbuild', 'lib', 'main.js'));
    const built = await esbuild.build({
      absWorkingDir: app, entryPoints: [path.join(web, 'page.js')], outfile: path.join(web, 'bundle.js'),
      bundle: true, minify: true, format: 'iife', platform: 'browser', target: 'es2020', logLevel: 'warning',
      metafile: true,
    });
    // Files of the package with code in the output (metafile.inputs also lists tree-shaken files).
    const output = Object.values(built.metafile.outputs).find((o) => o.entryPoint !== undefined);
    const fromPackage = Object.entries(output.inputs)
      .filter(([f, info]) => f.includes('node_modules/tfjs-mla/') && info.bytesInOutput > 0).map(([f]) => f);
    check(fromPackage.length > 0 && fromPackage.every((f) => f.includes('/dist/') && !f.includes('/dist/cjs/')),
          `esbuild bundles the package's ESM build (${fromPackage.length} files)`);
    check(fromPackage.some((f) => f.endsWith('dist/layers/latent_attention_with_rope.js')),
          'the bundle keeps the file that registers the layer class (sideEffects)');

    // 6. Chromium: the bundled page, the script-tag page, README's ```html block.
    const pkgInstalled = JSON.parse(readFileSync(path.join(app, 'node_modules', 'tfjs-mla', 'package.json'), 'utf8'));
    writeFileSync(path.join(app, 'script-tags.html'), scriptTagPage(pkgInstalled.unpkg));
    const htmlBlock = codeBlocks(readme).find((b) => b.lang === 'html' && b.code.includes('tfjs-mla'));
    if (check(htmlBlock !== undefined, "README.md has a ```html block that loads tfjs-mla")) {
      writeFileSync(path.join(app, 'readme.html'), `<!doctype html><meta charset="utf-8"><body>\n${htmlBlock.code}</body>`);
      // Its CDN files: @tensorflow/tfjs (the umbrella) is not in the README's install line.
      sh(npm, ['install', '--no-audit', '--no-fund', `@tensorflow/tfjs@${TFJS_VERSION}`], app,
         `npm install @tensorflow/tfjs@${TFJS_VERSION} (for the README's <script> block)`);
    }
    await browserChecks(app, htmlBlock);
    console.log(`[consumer] done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    if (keep) console.log(`[consumer] kept ${temp}`);
    else rmSync(temp, {recursive: true, force: true});
  }
}

async function browserChecks(app, htmlBlock) {
  const executablePath = [process.env.CHROME_BIN, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find((c) => c && existsSync(c));
  if (!executablePath) throw new Error('no Chromium found (set CHROME_BIN, or apt-get install chromium)');
  const {chromium} = await import(path.join(root, 'node_modules', 'playwright-core', 'index.mjs'));
  const {server, url} = await serve(app);
  let browser;
  try {
    browser = await chromium.launch({executablePath, headless: true, args: CHROMIUM_ARGS});
    const open = async (page) => {
      const p = await browser.newPage();
      const errors = [];
      p.on('pageerror', (e) => errors.push(e.message));
      p.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      // README's CDN URLs → the installed packages (nothing outside this machine is reached).
      await p.route(/^https:\/\/cdn\.jsdelivr\.net\/npm\//, async (route) => {
        const m = /^https:\/\/cdn\.jsdelivr\.net\/npm\/((?:@[^/]+\/)?[^@/]+)(?:@[^/]+)?\/(.*)$/.exec(route.request().url());
        const file = m && path.join(app, 'node_modules', m[1], m[2]);
        if (file && existsSync(file)) await route.fulfill({path: file, contentType: 'text/javascript'});
        else await route.fulfill({status: 404, body: 'not installed'});
      });
      await p.goto(`${url}/${page}`);
      return {p, errors};
    };

    // The bundle.
    {
      const {p, errors} = await open('web/index.html');
      const r = await p.evaluate(() => window.consumerChecks());
      check(r.classRegistered, 'bundled page: the layer class is registered');
      check(r.kernels.length === 6, `bundled page: the kernels are registered (${r.kernels.join(', ')})`);
      check(r.webgpuReady && r.backend === 'webgpu', `bundled page: runs on webgpu (${r.backend})`);
      check(r.layerClass.includes('LatentAttentionWithRope'), `bundled page: tf.loadLayersModel restores the layer (${r.layerClass.join(', ')})`);
      const dGpu = maxRelDiff(r.webgpu, r.expected);
      const dCpu = maxRelDiff(r.cpu, r.expected);
      const dTrip = maxRelDiff(r.roundTrip, r.webgpu);
      check(dGpu < 1e-3, `bundled page: webgpu matches Node's cpu output (max |Δ| = ${dGpu.toExponential(2)} of max |y|)`);
      check(dCpu < 1e-5, `bundled page: browser cpu matches Node's cpu output (${dCpu.toExponential(2)})`);
      check(dTrip === 0, `bundled page: save/load round trip (withSaveHandler → fromMemory) predicts the same (${dTrip})`);
      check(errors.length === 0, `bundled page: no page errors${errors.length ? `: ${errors.slice(0, 3).join(' | ')}` : ''}`);
      await p.close();
    }
    // The script-tag build after tfjs's own .min.js files.
    {
      const {p, errors} = await open('script-tags.html');
      const r = await p.evaluate(() => window.consumerChecks());
      check(r.hasGlobal && r.layerClass === 'function' && r.factory === 'function',
            'script tags: the global tfmla exposes LatentAttentionWithRope and latentAttentionWithRope');
      check(r.kernel, 'script tags: the webgpu kernels are registered on the global tf');
      const d = maxRelDiff(r.webgpu, r.expected);
      check(r.webgpuReady && d < 1e-3, `script tags: tf.loadLayersModel on webgpu matches Node's cpu output (${d.toExponential(2)})`);
      check(errors.length === 0, `script tags: no page errors${errors.length ? `: ${errors.slice(0, 3).join(' | ')}` : ''}`);
      await p.close();
    }
    // README's <script> block as written; then the umbrella's default backend (webgl).
    if (htmlBlock !== undefined) {
      const {p, errors} = await open('readme.html');
      await p.waitForFunction(() => document.body.dataset.result !== undefined || window.__failed, null, {timeout: 120000})
        .catch(() => {});
      const result = await p.evaluate(() => document.body.dataset.result);
      const r = result ? JSON.parse(result) : {};
      check(r.backend === 'webgpu' && r.finite === true && Array.isArray(r.shape),
            `README <script> block runs (${result ?? 'no result'}${errors.length ? `; ${errors.slice(0, 2).join(' | ')}` : ''})`);
      const webgl = await p.evaluate(async () => {
        const ok = await tf.setBackend('webgl').catch(() => false);
        if (!ok) return {skipped: true};
        const layer = new tfmla.LatentAttentionWithRope({
          rope: new tfmla.RotaryEmbedding({dim: 8, nHeads: 2, theta: 10000, maxSeqLen: 16}),
          numAttentionHeads: 2, numKeyValueHeads: 2, hiddenSize: 32, kvLoraRank: 16, qkRopeHeadDim: 8,
          qkNopeHeadDim: 8, vHeadDim: 8, kvParams: new tfmla.KVCacheParams({headDim: 24, pageSize: 16})});
        try {
          layer.apply(tf.zeros([1, 3, 32]));
          return {message: ''};
        } catch (e) {
          return {message: e.message};
        }
      });
      if (webgl.skipped) {
        console.log('[consumer]   (this Chromium has no WebGL: the umbrella default-backend check was not run)');
      } else {
        check(/active tfjs backend is 'webgl'/.test(webgl.message) && webgl.message.includes("tf.setBackend('webgpu')"),
              `the umbrella package's default backend (webgl) gets the clear Error (${JSON.stringify(webgl.message.slice(0, 100))}…)`);
      }
      await p.close();
    }
  } finally {
    if (browser) await browser.close().catch(() => {});
    server.close();
  }
}

try {
  await main();
} catch (e) {
  failures.push(e.message.split('\n')[0]);
  console.log(`[consumer] ERROR: ${e.stack ?? e.message}`);
}
if (failures.length === 0) {
  console.log('[consumer] PASS the packed package in a fresh project (test/e2e/consumer.test.mjs)');
  process.exit(0);
}
console.log(`[consumer] FAIL the packed package in a fresh project: ${failures.length} check(s) failed: ${failures.join('; ')}`);
process.exit(1);
