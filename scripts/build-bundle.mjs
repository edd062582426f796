#!/usr/bin/env node
// The package's non-ESM builds, made from tsc's ESM output in dist/ (run after `tsc -p tsconfig.json`;
// `npm run build` runs both):
//
//   dist/cjs/**       CommonJS: every dist/**/*.js converted to CommonJS (one file per module, so
//                     `tfjs-mla` and `tfjs-mla/node` share one copy of each), its .d.ts files, and a
//                     package.json {"type": "commonjs"}. `require('tfjs-mla')` loads dist/cjs/index.js.
//   dist/tfjs-mla.min.js   the <script> build: an IIFE that uses the global `tf` of tfjs's own
//                     .min.js files (`@tensorflow/tfjs-*` imports map to it) and defines the global
//                     `tfmla` (= the package root's exports). package.json's unpkg/jsdelivr point here.
//
//   node scripts/build-bundle.mjs
import {copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import * as esbuild from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const cjsDir = path.join(dist, 'cjs');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
export const GLOBAL_NAME = 'tfmla';
export const SCRIPT_BUILD = 'dist/tfjs-mla.min.js';

if (!existsSync(path.join(dist, 'index.js'))) {
  console.error('[build-bundle] dist/index.js is missing: run `tsc -p tsconfig.json` first (or `npm run build`)');
  process.exit(1);
}

/** dist/**\/*<ext> relative to dist/, without dist/cjs and the script build. */
function distFiles(ext) {
  return readdirSync(dist, {recursive: true})
    .map((f) => String(f).split(path.sep).join('/'))
    .filter((f) => f.endsWith(ext) && !f.startsWith('cjs/') && !f.endsWith('.min.js') &&
                   statSync(path.join(dist, f)).isFile());
}

// ---- CommonJS ------------------------------------------------------------------------------
rmSync(cjsDir, {recursive: true, force: true});
const modules = distFiles('.js');
await esbuild.build({
  entryPoints: modules.map((f) => path.join(dist, f)),
  outbase: dist,
  outdir: cjsDir,
  bundle: false,
  format: 'cjs',
  platform: 'node',
  target: 'es2020',
  sourcemap: true,
  logLevel: 'warning',
});
for (const f of distFiles('.d.ts')) {
  mkdirSync(path.dirname(path.join(cjsDir, f)), {recursive: true});
  copyFileSync(path.join(dist, f), path.join(cjsDir, f));
}
writeFileSync(path.join(cjsDir, 'package.json'), JSON.stringify({type: 'commonjs'}, null, 2) + '\n');
// tsc's ESM output loads optional Node-only packages (`webgpu`, node:fs) with import(): in
// CommonJS they must stay import() (`webgpu` is ESM-only), and nothing but tfjs and the package's
// own modules and the tokenizer packages (`@huggingface/*`, with CommonJS builds) may be require()d
// at load time.
for (const f of modules) {
  const text = readFileSync(path.join(cjsDir, f), 'utf8');
  const bad = [...text.matchAll(/\brequire\("([^"]*)"\)/g)].map((m) => m[1])
    .filter((s) => !s.startsWith('@tensorflow/') && !s.startsWith('@huggingface/') && !s.startsWith('.'));
  if (bad.length > 0) {
    console.error(`[build-bundle] dist/cjs/${f} require()s ${bad.join(', ')} at load time`);
    process.exit(1);
  }
}

// ---- <script> build ------------------------------------------------------------------------
// `@tensorflow/tfjs-core`, `-layers`, `-backend-cpu` and `-backend-webgpu` all map to the one
// global `tf` (tfjs's UMD builds add their exports to it, as the umbrella tf.min.js does).
const tfGlobal = {
  name: 'tf-global',
  setup(build) {
    build.onResolve({filter: /^@tensorflow\/tfjs-[a-z-]+$/}, (args) => ({path: args.path, namespace: 'tf-global'}));
    build.onLoad({filter: /.*/, namespace: 'tf-global'}, (args) => {
      const needsLayers = args.path === '@tensorflow/tfjs-layers';
      return {
        loader: 'js',
        contents: `
var tf = typeof globalThis !== 'undefined' ? globalThis.tf : undefined;
if (tf === undefined || typeof tf.registerKernel !== 'function') {
  throw new Error('tfjs-mla.min.js needs TensorFlow.js loaded first: a <script> of ' +
    '@tensorflow/tfjs@4.22.0/dist/tf.min.js (or tf-core.min.js + tf-layers.min.js) before it.');
}
${needsLayers ? `if (tf.layers === undefined || typeof tf.layers.Layer !== 'function') {
  throw new Error('tfjs-mla.min.js needs tf.layers: load @tensorflow/tfjs-layers@4.22.0/dist/tf-layers.min.js ' +
    '(or the umbrella @tensorflow/tfjs tf.min.js) before it.');
}` : ''}
module.exports = tf;`,
      };
    });
  },
};
const banner = `/**
 * @license
 * ${pkg.name} ${pkg.version} (${pkg.license}): Multi-head Latent Attention for TensorFlow.js.
 * <script> build: load TensorFlow.js 4.22 first (the global \`tf\`); defines the global \`${GLOBAL_NAME}\`.
 */`;
const result = await esbuild.build({
  entryPoints: [path.join(dist, 'index.js')],
  outfile: path.join(root, SCRIPT_BUILD),
  bundle: true,
  format: 'iife',
  globalName: GLOBAL_NAME,
  platform: 'browser',
  target: 'es2017',
  minify: true,
  sourcemap: true,
  legalComments: 'none',
  banner: {js: banner},
  plugins: [tfGlobal],
  metafile: true,
  logLevel: 'warning',
});
const leaked = Object.keys(result.metafile.inputs).filter((f) => f.includes('node_modules'));
if (leaked.length > 0) {
  console.error(`[build-bundle] the script build must not bundle dependencies, found: ${leaked.join(', ')}`);
  process.exit(1);
}
const bytes = statSync(path.join(root, SCRIPT_BUILD)).size;
console.log(`[build-bundle] dist/cjs: ${modules.length} CommonJS modules; ${SCRIPT_BUILD}: ${(bytes / 1024).toFixed(1)} KiB (global ${GLOBAL_NAME})`);
