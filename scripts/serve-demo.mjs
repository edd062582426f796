#!/usr/bin/env node
// `npm run demo:web`: installs the dependencies if needed, bundles the browser demo
// (demos/web/main.ts → demos/web/dist/main.js, esbuild) and serves demos/ on 127.0.0.1.
//
//   npm run demo:web                    http://127.0.0.1:8080/web/
//   npm run demo:web -- --port 9000     another port (0: any free one)
//   npm run demo:web -- --no-build      serve the existing bundle
//
// Also a module: `buildWebDemo()` and `startDemoServer({port})` are used by the page test
// (test/e2e/demo_page.test.mjs); scripts/serve-chat.mjs serves the chat page with the same
// server and the helpers of its command line (bundleDemo, prepareBundle, portArg,
// listenDemoServer, stopOnSignals, runIfMain). Only Node builtins are imported at the top level.
import {spawnSync} from 'node:child_process';
import {existsSync, statSync, createReadStream} from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const demosDir = path.join(root, 'demos');

/** Runs `npm ci` (or `npm install` without a lock file) when node_modules lacks what we need. */
export function ensureDependencies(marker = 'esbuild') {
  if (existsSync(path.join(root, 'node_modules', marker, 'package.json'))) return;
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const args = existsSync(path.join(root, 'package-lock.json')) ?
    ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'];
  console.error(`[demo:web] node_modules missing: npm ${args[0]}`);
  const r = spawnSync(npm, args, {stdio: 'inherit', cwd: root});
  if (r.status !== 0) throw new Error(`npm ${args[0]} failed (exit ${r.status ?? r.signal})`);
}

/**
 * Bundles demos/<name>/main.ts into demos/<name>/dist/main.js (+ .map) for the browser;
 * `external`: imports left out of the bundle (esbuild's option).
 */
export async function bundleDemo(name, {minify = false, external = []} = {}) {
  const esbuild = await import('esbuild');
  const outfile = path.join(demosDir, name, 'dist', 'main.js');
  const result = await esbuild.build({
    entryPoints: [path.join(demosDir, name, 'main.ts')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    sourcemap: true,
    minify,
    outfile,
    external,
    logLevel: 'warning',
  });
  if (result.errors.length > 0) throw new Error(`esbuild failed to bundle demos/${name}/main.ts`);
  return outfile;
}

/** Bundles demos/web/main.ts into demos/web/dist/main.js (+ .map). */
export function buildWebDemo({minify = false} = {}) {
  return bundleDemo('web', {minify});
}

/**
 * The build step of a serve script: with `build`, installs the dependencies if needed and runs
 * `bundle()` (which writes demos/<name>/dist/main.js); without, checks that bundle is there.
 * `tag` prefixes the log line ('demo:web').
 */
export async function prepareBundle(name, build, bundle, tag) {
  const bundlePath = `demos/${name}/dist/main.js`;
  if (build) {
    ensureDependencies();
    console.error(`[${tag}] bundling demos/${name}/main.ts → ${bundlePath}`);
    await bundle();
  } else if (!existsSync(path.join(demosDir, name, 'dist', 'main.js'))) {
    throw new Error(`--no-build: ${bundlePath} does not exist yet`);
  }
}

/** The value of a port option (`name`: '--port'): a whole number 0–65535, or throws. */
export function portArg(name, text) {
  if (text === undefined || !/^\d+$/.test(text) || Number(text) > 65535) {
    throw new Error(`${name} expects a port number 0–65535, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.ts': 'text/plain; charset=utf-8',
};

/**
 * Serves demos/ (read-only, GET/HEAD) on host:port. Resolves to {server, url, port} once
 * listening; `url` is the page (…/web/). port 0 picks a free port.
 */
export function startDemoServer({port = 8080, host = '127.0.0.1'} = {}) {
  const server = http.createServer((req, res) => {
    const send = (status, text) => {
      res.writeHead(status, {'content-type': 'text/plain; charset=utf-8'});
      res.end(text);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(405, 'method not allowed\n');
    let pathname;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://localhost').pathname);
    } catch {
      return send(400, 'bad request\n');
    }
    if (pathname === '/' || pathname === '/web') {
      res.writeHead(302, {location: '/web/'});
      return res.end();
    }
    let file = path.normalize(path.join(demosDir, pathname));
    if (file !== demosDir && !file.startsWith(demosDir + path.sep)) return send(403, 'forbidden\n');
    if (existsSync(file) && statSync(file).isDirectory()) file = path.join(file, 'index.html');
    if (!existsSync(file) || !statSync(file).isFile()) return send(404, `not found: ${pathname}\n`);
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'content-length': statSync(file).size,
      'cache-control': 'no-store',
    });
    if (req.method === 'HEAD') return res.end();
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const actual = server.address().port;
      resolve({server, port: actual, url: `http://${host}:${actual}/web/`});
    });
  });
}

/** startDemoServer({port}) for a serve script: a port in use is said as such (pick another with --port). */
export async function listenDemoServer(port) {
  try {
    return await startDemoServer({port});
  } catch (e) {
    if (e.code === 'EADDRINUSE') throw new Error(`port ${port} is in use: pick another with --port N`);
    throw e;
  }
}

/** Prints `[tag] Ctrl+C to stop` and runs `stop` on SIGINT and SIGTERM. */
export function stopOnSignals(tag, stop) {
  console.log(`[${tag}] Ctrl+C to stop`);
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

/**
 * Runs `main` when the module at `moduleUrl` (its import.meta.url) is the script node was
 * started with; an error is printed as `[tag] ERROR: …` with exit code 1.
 */
export function runIfMain(moduleUrl, main, tag) {
  if (process.argv[1] && pathToFileURL(path.resolve(process.argv[1])).href === moduleUrl) {
    main().catch((e) => {
      console.error(`[${tag}] ERROR: ${e.message}`);
      process.exit(1);
    });
  }
}

async function main() {
  const argv = process.argv.slice(2);
  let port = 8080;
  let build = true;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port' || a.startsWith('--port=')) {
      port = portArg('--port', a.includes('=') ? a.slice('--port='.length) : argv[++i]);
    } else if (a === '--no-build') {
      build = false;
    } else if (a === '--help' || a === '-h') {
      console.log('usage: npm run demo:web [-- --port N (default 8080; 0 = any free port)] [-- --no-build]\n' +
                  'Bundles demos/web/main.ts with esbuild and serves demos/ on 127.0.0.1.\n' +
                  'Page options as URL parameters: hidden, heads, kvLoraRank, nope, rope, v, prompts,\n' +
                  'steps, seed, pageSize, backend (webgpu|cpu), check=0, warmup=0, cacheDtype and dtype\n' +
                  '(float32|bfloat16|float16: the latent cache\'s and the layer weights\' storage).');
      return;
    } else {
      throw new Error(`unknown argument ${JSON.stringify(a)} (see --help)`);
    }
  }
  await prepareBundle('web', build, buildWebDemo, 'demo:web');
  const started = await listenDemoServer(port);
  console.log(`[demo:web] serving ${path.relative(process.cwd(), demosDir) || '.'}/ at http://127.0.0.1:${started.port}/`);
  console.log(`[demo:web] open ${started.url}  (WebGPU: a recent Chrome/Edge; elsewhere it falls back to cpu)`);
  stopOnSignals('demo:web', () => started.server.close(() => process.exit(0)));
}

runIfMain(import.meta.url, main, 'demo:web');
