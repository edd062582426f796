#!/usr/bin/env node
// `npm run demo:chat`: installs the dependencies if needed, bundles the chat page
// (demos/chat/main.ts → demos/chat/dist/main.js, esbuild) and serves demos/ on 127.0.0.1.
//
//   npm run demo:chat                           http://127.0.0.1:8080/chat/ (the model: a URL on the page)
//   npm run demo:chat -- --checkpoint DIR       also serve a local checkpoint folder (Range + CORS, another
//                                               port) and print the page URL with ?model= pointing at it
//   npm run demo:chat -- --port 9000            another port (0: any free one)
//   npm run demo:chat -- --no-build             serve the existing bundle
//
// Also a module: `buildChatDemo()` is used by the page test (test/e2e/chat_page.test.mjs).
// The server, the bundling and the command line's helpers are scripts/serve-demo.mjs's.
// Only Node builtins are imported at the top level.
import {existsSync, statSync} from 'node:fs';
import path from 'node:path';
import {bundleDemo, listenDemoServer, portArg, prepareBundle, runIfMain, stopOnSignals} from './serve-demo.mjs';

/**
 * Bundles demos/chat/main.ts into demos/chat/dist/main.js (+ .map). Node builtins that the
 * package's Node-only paths import (reading a checkpoint from a folder) stay out of the bundle.
 */
export function buildChatDemo({minify = false} = {}) {
  return bundleDemo('chat', {minify, external: ['node:*']});
}

const HELP = `usage: npm run demo:chat [-- options]

Bundles demos/chat/main.ts with esbuild and serves demos/ on 127.0.0.1; open /chat/.
The page loads a Hugging Face checkpoint of an MLA model (youtu, dense deepseek_v2/v3) from its
URL (default https://huggingface.co/tencent/Youtu-LLM-2B/resolve/main/) and chats with it on
WebGPU (cpu fallback, said on the page).

options:
  --port N              port of the page (default 8080; 0 = any free port)
  --checkpoint DIR      also serve the checkpoint folder DIR (config.json, *.safetensors, tokenizer
                        files) on another port with Range and CORS, and print the page URL for it
  --checkpoint-port N   that server's port (default 0 = any free port)
  --no-build            serve the existing bundle
  --help                this text

Page URL parameters: model, dtype (float32|bfloat16|float16), cache_dtype, backend (webgpu|cpu),
prompt or prompt_ids (1,4,214; several prompts: 1,4;1,5,6), max_new_tokens, temperature, top_p,
top_k, seed, max_seq_len, warmup=0, autorun=1 (load, run once, JSON in <pre id="result">).`;

async function main() {
  const argv = process.argv.slice(2);
  let port = 8080;
  let build = true;
  let checkpoint = null;
  let checkpointPort = 0;
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let value;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      value = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const next = () => value ?? argv[++i];
    if (a === '--port') port = portArg('--port', next());
    else if (a === '--checkpoint-port') checkpointPort = portArg('--checkpoint-port', next());
    else if (a === '--checkpoint') {
      checkpoint = next();
      if (checkpoint === undefined || !existsSync(checkpoint) || !statSync(checkpoint).isDirectory()) {
        throw new Error(`--checkpoint expects a folder, got ${JSON.stringify(checkpoint)}`);
      }
      if (!existsSync(path.join(checkpoint, 'config.json'))) {
        throw new Error(`--checkpoint ${checkpoint}: no config.json there (a Hugging Face checkpoint folder?)`);
      }
    } else if (a === '--no-build') build = false;
    else if (a === '--help' || a === '-h') {
      console.log(HELP);
      return;
    } else throw new Error(`unknown argument ${JSON.stringify(argv[i])} (see --help)`);
  }
  await prepareBundle('chat', build, buildChatDemo, 'demo:chat');
  const started = await listenDemoServer(port);
  const pageUrl = `http://127.0.0.1:${started.port}/chat/`;
  let checkpointServer = null;
  if (checkpoint !== null) {
    const {startCheckpointServer} = await import('./lib/checkpoint_server.mjs');
    checkpointServer = await startCheckpointServer({root: path.resolve(checkpoint), port: checkpointPort});
    console.log(`[demo:chat] serving the checkpoint ${checkpoint} at ${checkpointServer.url} (Range, CORS)`);
    console.log(`[demo:chat] open ${pageUrl}?model=${encodeURIComponent(checkpointServer.url)}`);
  } else {
    console.log(`[demo:chat] open ${pageUrl}  (WebGPU: a recent Chrome/Edge; elsewhere it falls back to cpu)`);
  }
  stopOnSignals('demo:chat', () => {
    checkpointServer?.close();
    started.server.close(() => process.exit(0));
  });
}

runIfMain(import.meta.url, main, 'demo:chat');
