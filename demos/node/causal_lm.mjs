// `npm run demo -- --model DIR|URL …` (demos/node/demo.mjs hands over here): loads a Hugging Face
// checkpoint with tfjs-mla/models' loadCausalLM (a folder, or a base URL: only the byte ranges of
// the weights are fetched), generates from --prompt-ids or --prompt, and prints the new tokens
// (and their text when the checkpoint has a tokenizer), time to first token, prefill and decode
// tokens/s, and the latent cache's bytes against a standard K/V cache's.
import path from 'node:path';

/** A byte progress bar on stderr (a bar on a TTY; on a pipe, about ten lines). */
function byteProgress(isTTY, say) {
  const started = performance.now();
  let lastTenth = -1;
  return {
    update({loadedBytes, totalBytes, file}) {
      const seconds = (performance.now() - started) / 1000;
      const mbps = seconds > 0 ? loadedBytes / 1e6 / seconds : 0;
      const text = `${(loadedBytes / 1e6).toFixed(1)}/${(totalBytes / 1e6).toFixed(1)} MB, ${mbps.toFixed(1)} MB/s, ` +
                   `${path.basename(file)}`;
      const fraction = totalBytes > 0 ? loadedBytes / totalBytes : 0;
      if (isTTY) {
        const width = 28;
        const filled = Math.min(width, Math.round(width * fraction));
        const line = `loading            [${'█'.repeat(filled)}${'░'.repeat(width - filled)}] ${text}`;
        process.stderr.write(`\r\x1b[2K${line.slice(0, (process.stderr.columns || 120) - 1)}`);
      } else {
        const tenth = Math.floor(10 * fraction);
        if (tenth !== lastTenth) {
          lastTenth = tenth;
          say(`loading ${text}`);
        }
      }
    },
    done() {
      if (isTTY) process.stderr.write('\n');
      return (performance.now() - started) / 1000;
    },
  };
}

/**
 * Runs the checkpoint in options.model. `tools` are demo.mjs's: chooseBackend(wanted, kernels),
 * say(line), fmtBytes(n), fmtRate(tokens, ms), isTTY, kernels (the webgpu kernels a run needs).
 * Returns the exit code.
 */
export async function runCausalLM(options, {chooseBackend, say, fmtBytes, fmtRate, isTTY, kernels}) {
  let models;
  try {
    models = await import('../../dist/models/index.js');
  } catch (e) {
    throw new Error(`--model needs tfjs-mla/models built (dist/models/index.js; npm run build): ${e.message}`);
  }
  const source = /^https?:\/\//i.test(options.model) ? options.model : path.resolve(options.model);

  const chosen = await chooseBackend(options.backend, kernels);
  if (chosen.note) say(chosen.note);
  say(`backend: ${chosen.device}`);

  const dtype = options.given.has('--dtype') ? options.dtype : undefined;
  const cacheDtype = options.given.has('--cache-dtype') ? options.cacheDtype : undefined;
  say(`loading ${source} (weights ${dtype ?? 'bfloat16 (default)'}, latent cache ${cacheDtype ?? 'as the weights'})`);
  const progress = byteProgress(isTTY, say);
  let loadedBytes = 0;
  const lm = await models.loadCausalLM(source, {
    ...(dtype ? {dtype} : {}), ...(cacheDtype ? {cacheDtype} : {}),
    onProgress: (p) => {
      loadedBytes = p.loadedBytes;
      progress.update(p);
    },
  });
  const loadSeconds = progress.done();
  try {
    const c = lm.config;
    const tokenizer = lm.tokenizer;
    say(`model: ${c.modelType}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocab ${c.vocabSize}; ` +
        `${tokenizer ? `tokenizer${tokenizer.hasChatTemplate ? ' with a chat template' : ''}` : 'no tokenizer'}`);

    // The prompt.
    let prompt;
    let promptNote;
    if (options.promptIds !== null) {
      prompt = options.promptIds;
      promptNote = 'token ids';
    } else {
      if (!tokenizer) {
        throw new Error(`--prompt needs a tokenizer (tokenizer.json) and ${options.model} has none: use --prompt-ids`);
      }
      if (tokenizer.hasChatTemplate) {
        prompt = tokenizer.applyChatTemplate([{role: 'user', content: options.prompt}]);
        promptNote = 'the chat template applied to --prompt';
      } else {
        prompt = tokenizer.encode(options.prompt);
        promptNote = '--prompt, encoded (no chat template)';
      }
    }
    // generate's default stop tokens (generation_config.json's or config.json's eos) and the tokenizer's eos.
    const stops = new Set(lm.defaultStopTokens ?? c.eosTokenIds);
    if (tokenizer && tokenizer.eosTokenId !== null) stops.add(tokenizer.eosTokenId);
    const stopTokens = [...stops];

    let warmupMs = null;
    if (options.warmup && chosen.backend === 'webgpu') {
      // WebGPU compiles each program on first use: a short untimed generate (a prompt long
      // enough for the prefill path, two new tokens) compiles the prefill and decode programs.
      say('compiling the WebGPU shaders (a short untimed run; --no-warmup to time it too)');
      const t = performance.now();
      await lm.generate([new Array(16).fill(c.bosTokenId ?? 0)], {maxNewTokens: 2, stopTokens: []});
      warmupMs = performance.now() - t;
    }

    say(`generating up to ${options.maxNewTokens} tokens after a ${prompt.length}-token prompt ` +
        `(${options.temperature === 0 ? 'greedy' : `temperature ${options.temperature}`})`);
    // Text streams to stdout as it comes (held back while it ends inside a multi-byte character).
    let streamed = '';
    const newTokens = [];
    let firstTokenAt = 0;
    const started = performance.now();
    const tokens = (await lm.generate([prompt], {
      maxNewTokens: options.maxNewTokens, temperature: options.temperature, stopTokens,
      ...(options.topP !== null ? {topP: options.topP} : {}),
      ...(options.topK !== null ? {topK: options.topK} : {}),
      ...(options.given.has('--seed') ? {seed: options.seed} : {}),
      onToken: (token) => {
        if (firstTokenAt === 0) firstTokenAt = performance.now();
        newTokens.push(token);
        if (tokenizer) {
          const text = tokenizer.decode(newTokens, {skipSpecialTokens: true});
          if (!text.endsWith('\uFFFD') && text.startsWith(streamed)) {
            process.stdout.write(text.slice(streamed.length));
            streamed = text;
          }
        }
      },
    }))[0];
    const ended = performance.now();
    if (tokenizer) process.stdout.write('\n');

    const ttft = (firstTokenAt || ended) - started;
    const decodeTokens = tokens.length - 1;
    const decodeMs = ended - (firstTokenAt || ended);
    const held = prompt.length + tokens.length;
    const latent = held * lm.cacheBytesPerToken;
    const standard = held * lm.standardCacheBytesPerToken;
    const shortIds = (ids) => ids.length <= 64 ? ids.join(',') : `${ids.slice(0, 64).join(',')},… (${ids.length})`;
    const rows = [
      ['backend', chosen.device + (chosen.note ? '  [fallback]' : '')],
      ['model', `${options.model}: ${c.modelType}, ${c.numLayers} layers, hidden ${c.hiddenSize}, vocab ${c.vocabSize}`],
      ['dtypes', `weights ${dtype ?? 'bfloat16'}, latent cache ${cacheDtype ?? dtype ?? 'bfloat16'}`],
      ['weights held', fmtBytes(lm.weightBytes)],
      ["load", `${loadSeconds.toFixed(loadSeconds < 10 ? 2 : 1)} s` + (loadedBytes > 0 ?
        `, ${(loadedBytes / 1e6).toFixed(1)} MB read, ${(loadedBytes / 1e6 / loadSeconds).toFixed(1)} MB/s` : '')],
      ...(warmupMs === null ? [] : [['shader compilation (untimed)', `${(warmupMs / 1000).toFixed(1)} s before the run`]]),
      ['prompt', `${prompt.length} tokens (${promptNote}): ${shortIds(prompt)}`],
      ['new tokens', `${tokens.length}: ${shortIds(tokens)}` +
                     (stops.has(tokens[tokens.length - 1]) ? ' (ended at a stop token)' : '')],
      ...(tokenizer ? [['text', JSON.stringify(tokenizer.decode(tokens, {skipSpecialTokens: true}))]] : []),
      ['time to first token', `${ttft.toFixed(0)} ms`],
      [`prefill (${prompt.length} tokens)`, fmtRate(prompt.length, ttft)],
      [`decode (${decodeTokens} tokens)`, decodeTokens > 0 && decodeMs > 0 ?
        `${fmtRate(decodeTokens, decodeMs)}  (${(decodeMs / decodeTokens).toFixed(0)} ms/token)` : 'n/a (one new token)'],
      ['cache bytes per token', `${lm.cacheBytesPerToken.toLocaleString('en-US')} B latent (all ${c.numLayers} layers) vs ` +
                                `${lm.standardCacheBytesPerToken.toLocaleString('en-US')} B standard K/V`],
      [`cache for ${held} tokens`, `MLA latent ${fmtBytes(latent)}  vs  standard ${fmtBytes(standard)}  ` +
                                   `(${(standard / latent).toFixed(2)}× smaller with MLA)`],
    ];
    const w = Math.max(...rows.map(([k]) => k.length));
    console.log(['', `tfjs-mla demo: ${c.modelType} (Multi-head Latent Attention) on ${chosen.backend}`,
                 `${'metric'.padEnd(w)}  value`, `${'-'.repeat(w)}  ${'-'.repeat(Math.max(...rows.map(([, v]) => v.length)))}`,
                 ...rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`)].join('\n'));
    if (chosen.note) console.log(`\nnote: ${chosen.note}`);
    return 0;
  } finally {
    lm.dispose();
  }
}
