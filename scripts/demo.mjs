#!/usr/bin/env node
// `npm run demo`: install (if needed) → tsc build of dist/ → demos/node/demo.mjs.
//
//   npm run demo                               the default run (webgpu, cpu fallback)
//   npm run demo -- --backend cpu --steps 4    options go to the demo (see -- --help)
//   npm run demo -- --cache-dtype bfloat16 --dtype float32   storage dtypes of the cache and the weights
//   npm run demo -- --skip-build               use the dist/ already built
//
// Only Node builtins are used here, so it works on a fresh clone before `npm ci`.
import {spawnSync} from 'node:child_process';
import {existsSync} from 'node:fs';
import {createRequire} from 'node:module';
import path from 'node:path';
import {fileURLToPath} from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(root, 'package.json'));

function die(message) {
  console.error(`[demo] ERROR: ${message}`);
  process.exit(1);
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, {stdio: 'inherit', cwd: root});
  if (r.error) die(`${what}: could not run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) die(`${what} failed (exit ${r.status ?? r.signal})`);
}

const argv = process.argv.slice(2);
const skipBuild = argv.includes('--skip-build');
const demoArgs = argv.filter((a) => a !== '--skip-build');
const helpOnly = demoArgs.includes('--help') || demoArgs.includes('-h');

// a. dependencies
const needed = ['typescript', '@tensorflow/tfjs-core', '@tensorflow/tfjs-backend-cpu', '@tensorflow/tfjs-layers'];
if (needed.some((p) => !existsSync(path.join(root, 'node_modules', p, 'package.json')))) {
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const args = existsSync(path.join(root, 'package-lock.json')) ?
    ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'];
  console.error(`[demo] node_modules missing: npm ${args[0]}`);
  run(npm, args, `npm ${args[0]}`);
}

// b. build dist/
if (!skipBuild && !helpOnly) {
  console.error('[demo] building dist/ (tsc -p tsconfig.json)');
  run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], 'build (tsc -p tsconfig.json)');
} else if (!existsSync(path.join(root, 'dist', 'index.js')) || !existsSync(path.join(root, 'dist', 'node.js'))) {
  if (!helpOnly) die('--skip-build: dist/ is not built yet (run without --skip-build)');
  run(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], 'build (tsc -p tsconfig.json)');
}

// c. the demo (it sets up the Vulkan loader path for WebGPU itself)
const r = spawnSync(process.execPath, [path.join(root, 'demos', 'node', 'demo.mjs'), ...demoArgs],
                    {stdio: 'inherit', cwd: root});
if (r.error) die(`could not start the demo: ${r.error.message}`);
process.exit(r.status ?? 1);
