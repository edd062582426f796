#!/usr/bin/env node
// Every ```ts / ```typescript / ```js / ```javascript block of README.md, as a user would run it:
// each block is one complete program. The blocks are written to .build/readme/, type-checked
// together with strict tsc (skipLibCheck, NodeNext: `import 'tfjs-mla'` resolves to this package's
// dist/ through its own `exports`, as in a project that installed it), transpiled with esbuild and
// run one by one with Node (in that folder, where the "Real weights" block finds the tiny
// config.json and model.safetensors this test writes). ```html blocks run in
// test/e2e/consumer.test.mjs.
//
//   node test/e2e/readme_blocks.test.mjs [--no-build]
//
// Needs dist/ (built first unless --no-build). Run by `npm test` after the demo page test (one test;
// skipped with --skip-e2e or --grep). Exit code 0 = pass; prints `[readme] PASS …` or `[readme] FAIL …`.
import {spawnSync} from 'node:child_process';
import {cpSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import {codeBlocks} from './markdown.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(path.join(root, 'package.json'));
const work = path.join(root, '.build', 'readme');
const build = !process.argv.includes('--no-build');
const BLOCK_TIMEOUT_S = 300;

const failures = [];
function check(condition, what) {
  if (!condition) failures.push(what);
  console.log(`[readme]   ${condition ? 'ok  ' : 'FAIL'} ${what}`);
}

/**
 * What each kind of block must print (beyond exiting with 0), keyed by a line it contains.
 * A README block not listed here only has to run without an error.
 */
const EXPECTED_OUTPUT = [
  {when: 'cache.step([0, 1], [1, 1])', stdout: /\[ 8, 128 \] \[ 2, 128 \] 6 4/, what: 'shapes [8,128] [2,128], cache lengths 6 and 4'},
  {when: 'tfl.loadLayersModel(tf.io.fromMemory(saved))', stdout: /max \|difference\| 0\n/, what: 'the loaded model predicts exactly what the saved one did'},
  {when: "loadSafetensors('model.safetensors'", stdout: /'q_a_proj\.weight'[\s\S]*'o_proj\.weight'/, what: 'the state dict lists the loaded HF weights'},
  {when: "loadCausalLM('tiny_mla_lm'", stdout: /^3584 286 319 463 115 208 109 109 109 109 109 109 109\n480 latent cache bytes per token vs 1920 standard/m,
   what: 'the tiny LM gives every position\'s logits and the reference greedy tokens'},
  {when: 'initNodeWebGPU()', stdout: /^(webgpu|cpu) Float32Array\(8\) \[(\s*8,?){8}\s*\]/m, what: 'x·wᵀ of ones is 8 on the active backend'},
];

// ---- tiny checkpoint for the "Real weights and configs" block ------------------------------
const CONFIG = {
  model_type: 'deepseek_v2', hidden_size: 64, num_attention_heads: 2, num_key_value_heads: 2,
  q_lora_rank: 24, kv_lora_rank: 32, qk_nope_head_dim: 16, qk_rope_head_dim: 8, v_head_dim: 16,
  rope_theta: 10000, max_position_embeddings: 4096, rms_norm_eps: 1e-6, attention_bias: false,
  rope_scaling: {type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32,
                 beta_slow: 1, mscale: 0.707, mscale_all_dim: 0.707},
};

/** A safetensors file (F32) of `tensors` {name: {shape, values?}}; values default to a ramp. */
function safetensorsBytes(tensors) {
  const header = {};
  const chunks = [];
  let offset = 0;
  for (const [name, {shape}] of Object.entries(tensors)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n).map((_, i) => Math.sin(i * 0.37 + name.length) * 0.05);
    header[name] = {dtype: 'F32', shape, data_offsets: [offset, offset + n * 4]};
    chunks.push(new Uint8Array(data.buffer));
    offset += n * 4;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(new TextEncoder().encode(json), 8);
  let at = 8 + json.length;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function writeCheckpoint(folder) {
  const c = CONFIG;
  const H = c.num_attention_heads;
  const prefix = 'model.layers.0.self_attn.';
  const shapes = {
    'q_a_proj.weight': [c.q_lora_rank, c.hidden_size],
    'q_a_layernorm.weight': [c.q_lora_rank],
    'q_b_proj.weight': [H * (c.qk_nope_head_dim + c.qk_rope_head_dim), c.q_lora_rank],
    'kv_a_proj_with_mqa.weight': [c.kv_lora_rank + c.qk_rope_head_dim, c.hidden_size],
    'kv_a_layernorm.weight': [c.kv_lora_rank],
    'kv_b_proj.weight': [H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank],
    'o_proj.weight': [c.hidden_size, H * c.v_head_dim],
  };
  const tensors = Object.fromEntries(Object.entries(shapes).map(([k, shape]) => [prefix + k, {shape}]));
  tensors['model.embed_tokens.weight'] = {shape: [10, c.hidden_size]};   // filtered out by the prefix
  writeFileSync(path.join(folder, 'config.json'), JSON.stringify(CONFIG, null, 2));
  writeFileSync(path.join(folder, 'model.safetensors'), safetensorsBytes(tensors));
}

function run(cmd, args, options = {}) {
  return spawnSync(cmd, args, {cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, ...options});
}

async function main() {
  const started = Date.now();
  const tsc = require.resolve('typescript/bin/tsc');
  if (build) {
    console.log('[readme] building dist/ (tsc -p tsconfig.json)');
    const r = run(process.execPath, [tsc, '-p', 'tsconfig.json'], {stdio: 'inherit'});
    if (r.status !== 0) throw new Error('tsc -p tsconfig.json failed');
  }
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const blocks = codeBlocks(readme).filter((b) => ['ts', 'typescript', 'js', 'javascript'].includes(b.lang));
  check(blocks.length >= 4, `README.md has TypeScript/JavaScript blocks to run (${blocks.length})`);

  rmSync(work, {recursive: true, force: true});
  mkdirSync(work, {recursive: true});
  const files = blocks.map((b, i) => {
    const ts = b.lang === 'ts' || b.lang === 'typescript';
    const name = `block${String(i + 1).padStart(2, '0')}_line${b.line}.${ts ? 'ts' : 'mjs'}`;
    // `export {}` makes each file a module even without imports (top-level await needs one).
    writeFileSync(path.join(work, name), `${b.code}\nexport {};\n`);
    return {...b, name, ts};
  });
  writeCheckpoint(work);
  // The "A language model" block loads the LM fixture from ./tiny_mla_lm.
  cpSync(path.join(root, 'test', 'fixtures', 'tiny_mla_lm'), path.join(work, 'tiny_mla_lm'), {recursive: true});

  // Type-check the TypeScript blocks as a user's strict project would (skipLibCheck, as the
  // README says), against the built .d.ts files.
  const tsFiles = files.filter((f) => f.ts).map((f) => f.name);
  writeFileSync(path.join(work, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'],
      strict: true, skipLibCheck: true, noEmit: true, types: ['node'],
      typeRoots: [path.join(root, 'node_modules', '@types')],
    },
    files: tsFiles,
  }, null, 2));
  console.log(`[readme] tsc --strict (skipLibCheck) on ${tsFiles.length} TypeScript block(s)`);
  const typecheck = run(process.execPath, [tsc, '-p', path.join(work, 'tsconfig.json')]);
  const tscOut = (typecheck.stdout + typecheck.stderr).trim();
  if (tscOut) console.log(tscOut.split('\n').map((l) => `[readme]     ${l}`).join('\n'));
  check(typecheck.status === 0, `the TypeScript blocks pass strict tsc${typecheck.status === 0 ? '' : ' (errors above)'}`);

  const esbuild = await import('esbuild');
  for (const f of files) {
    const label = `README.md:${f.line} (${f.lang})`;
    const js = f.ts ? (await esbuild.transform(readFileSync(path.join(work, f.name), 'utf8'),
                                               {loader: 'ts', format: 'esm', target: 'es2022'})).code
                    : readFileSync(path.join(work, f.name), 'utf8');
    const runnable = path.join(work, f.name.replace(/\.(ts|mjs)$/, '.run.mjs'));
    writeFileSync(runnable, js);
    const t0 = Date.now();
    const r = run(process.execPath, [runnable], {cwd: work, timeout: BLOCK_TIMEOUT_S * 1000,
                                                 env: {...process.env, TF_CPP_MIN_LOG_LEVEL: '2'}});
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    const out = (r.stdout ?? '') + (r.stderr ?? '');
    const ok = r.status === 0;
    if (!ok) console.log(out.trim().split('\n').slice(-25).map((l) => `[readme]     ${l}`).join('\n'));
    check(ok, `${label} runs in Node (${seconds} s${r.signal ? `, killed by ${r.signal}` : ''}` +
              `${ok ? '' : `, exit ${r.status}`})`);
    for (const e of EXPECTED_OUTPUT.filter((e) => f.code.includes(e.when))) {
      check(e.stdout.test(r.stdout ?? ''), `${label} prints: ${e.what}` +
            (e.stdout.test(r.stdout ?? '') ? '' : ` (stdout: ${JSON.stringify((r.stdout ?? '').slice(-300))})`));
    }
  }
  const unmatched = EXPECTED_OUTPUT.filter((e) => !files.some((f) => f.code.includes(e.when)));
  check(unmatched.length === 0, `every expected README example is present${unmatched.length ?
        `: missing ${unmatched.map((e) => JSON.stringify(e.when)).join(', ')}` : ''}`);
  console.log(`[readme] ${files.length} block(s) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

try {
  await main();
} catch (e) {
  failures.push(e.message);
  console.log(`[readme] ERROR: ${e.stack ?? e.message}`);
}
if (failures.length === 0) {
  console.log('[readme] PASS README code blocks (test/e2e/readme_blocks.test.mjs)');
  process.exit(0);
}
console.log(`[readme] FAIL README code blocks: ${failures.length} check(s) failed: ${failures.join('; ')}`);
process.exit(1);
