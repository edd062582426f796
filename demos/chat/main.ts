// The chat page (demos/chat/index.html): loads a Hugging Face checkpoint of an MLA model with
// tfjs-mla/models' loadCausalLM (over HTTP: the safetensors headers and the byte ranges of the
// weights), then chats with it on WebGPU (cpu fallback), streaming the reply token by token.
// Bundled by esbuild into demos/chat/dist/main.js (`npm run demo:chat`).
//
// For automation (test/e2e/chat_page.test.mjs): `?model=…&dtype=float32&prompt_ids=1,4,214&
// max_new_tokens=12&autorun=1` loads, runs once and writes JSON into <pre id="result"> (every
// run writes it, a chat turn too: hidden unless autorun); the body carries data-state = idle |
// loading | ready | generating | done | error.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-webgpu';
import {FUSED_ROPE, MLA_DECODE, MLA_PREFILL, type KVCacheDtype} from '../../src/index.js';
import {loadCausalLM} from '../../src/models/index.js';
import type {ChatMessage, GenerateOptions, LMSession, LoadProgress, ModelWeightDtype} from '../../src/models/types.js';

type CausalLM = Awaited<ReturnType<typeof loadCausalLM>>;

const DEFAULT_MODEL = 'https://huggingface.co/tencent/Youtu-LLM-2B/resolve/main/';

// ---- URL parameters ------------------------------------------------------------------------------

interface PageParams {
  model: string;
  dtype: ModelWeightDtype;
  /** null: the same as dtype (the package's default). */
  cacheDtype: KVCacheDtype|null;
  backend: 'webgpu'|'cpu';
  /** Prompts as token ids (`prompt_ids`, several separated by ';'), or null. */
  promptIds: number[][]|null;
  /** A prompt as text (`prompt`; needs a tokenizer), or null. */
  prompt: string|null;
  maxNewTokens: number|null;
  temperature: number|null;
  topP: number|null;
  topK: number|null;
  seed: number|null;
  maxSeqLen: number|null;
  warmup: boolean;
  autorun: boolean;
}

const WEIGHT_DTYPES: readonly string[] = ['float32', 'bfloat16', 'float16'];
const CACHE_DTYPES: readonly string[] = ['float32', 'bfloat16', 'float16', 'float8_e4m3fn'];
const DTYPE_ALIASES: Record<string, string> = {f32: 'float32', fp32: 'float32', bf16: 'bfloat16', f16: 'float16',
                                               fp16: 'float16', fp8: 'float8_e4m3fn'};

function parseIds(text: string, what: string): number[] {
  const ids = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (ids.length === 0 || ids.some((s) => !/^\d+$/.test(s))) {
    throw new Error(`${what}: expected token ids separated by commas, like 1,4,214; got ${JSON.stringify(text)}`);
  }
  return ids.map(Number);
}

function readParams(search: string): PageParams {
  const q = new URLSearchParams(search);
  const number = (key: string, min: number, integer: boolean): number|null => {
    const text = q.get(key);
    if (text === null || text === '') return null;
    const n = Number(text);
    if (!Number.isFinite(n) || n < min || (integer && !Number.isInteger(n))) {
      throw new Error(`URL parameter ${key}: expected ${integer ? 'an integer' : 'a number'} ≥ ${min}, got ${JSON.stringify(text)}`);
    }
    return n;
  };
  const dtypeParam = (key: string, allowed: readonly string[]): string|null => {
    const text = q.get(key);
    if (text === null || text === '') return null;
    const name = DTYPE_ALIASES[text.toLowerCase()] ?? text;
    if (!allowed.includes(name)) throw new Error(`URL parameter ${key}: expected one of ${allowed.join(', ')}, got ${JSON.stringify(text)}`);
    return name;
  };
  const backend = q.get('backend') ?? 'webgpu';
  if (backend !== 'webgpu' && backend !== 'cpu') {
    throw new Error(`URL parameter backend: expected webgpu or cpu, got ${JSON.stringify(backend)}`);
  }
  const idsText = q.get('prompt_ids');
  return {
    model: q.get('model') || DEFAULT_MODEL,
    dtype: (dtypeParam('dtype', WEIGHT_DTYPES) ?? 'bfloat16') as ModelWeightDtype,
    cacheDtype: dtypeParam('cache_dtype', CACHE_DTYPES) as KVCacheDtype|null,
    backend,
    promptIds: idsText === null || idsText === '' ? null :
      idsText.split(';').map((part, i) => parseIds(part, `URL parameter prompt_ids (prompt ${i + 1})`)),
    prompt: q.get('prompt'),
    maxNewTokens: number('max_new_tokens', 1, true),
    temperature: number('temperature', 0, false),
    topP: number('top_p', 0, false),
    topK: number('top_k', 1, true),
    seed: number('seed', 0, true),
    maxSeqLen: number('max_seq_len', 1, true),
    warmup: q.get('warmup') !== '0',
    autorun: q.get('autorun') === '1',
  };
}

// ---- page elements -------------------------------------------------------------------------------

function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page has no #${id}`);
  return element as T;
}

type PageState = 'idle'|'loading'|'ready'|'generating'|'done'|'error';

function setState(state: PageState): void {
  document.body.dataset.state = state;
}

function setStatus(text: string): void {
  byId('status').textContent = text;
}

function setStat(id: string, text: string, value?: number|string): void {
  const cell = byId(id);
  cell.textContent = text;
  if (value !== undefined) cell.dataset.value = String(value);
}

/** Shows an error on the page and marks it for automation. */
function showError(e: unknown): void {
  const message = e instanceof Error ? e.message : String(e);
  console.error(e);
  setStatus(`Error: ${message}`);
  document.body.dataset.error = message;
  setState('error');
}

const fmtInt = (n: number) => n.toLocaleString('en-US');

function fmtBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(2)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

function fmtRate(tokens: number, ms: number): string {
  const rate = tokens / (ms / 1000);
  return `${rate >= 100 ? rate.toFixed(0) : rate >= 10 ? rate.toFixed(1) : rate.toFixed(2)} tokens/s`;
}

/** Lets the browser paint before the next chunk of work. */
const nextFrame = () => new Promise<void>((resolve) => requestAnimationFrame(() => resolve()));

// ---- backend -------------------------------------------------------------------------------------

/** webgpu when it works and this build has the package's kernels for it; cpu otherwise, saying why. */
async function chooseBackend(wanted: 'webgpu'|'cpu'): Promise<{backend: string, note: string}> {
  if (wanted === 'cpu') {
    await tf.setBackend('cpu');
    return {backend: 'cpu', note: 'Running on cpu (asked for with ?backend=cpu): slow for anything but tiny models.'};
  }
  let why = '';
  if (!(navigator as {gpu?: unknown}).gpu) {
    why = 'this browser has no WebGPU (navigator.gpu is missing; try a recent Chrome or Edge)';
  } else {
    try {
      if (!(await tf.setBackend('webgpu'))) why = 'no WebGPU adapter could be created';
    } catch (e) {
      why = `WebGPU failed to start: ${e instanceof Error ? e.message : String(e)}`;
    }
    const missing = [FUSED_ROPE, MLA_DECODE, MLA_PREFILL].filter((k) => tf.getKernel(k, 'webgpu') === undefined);
    if (why === '' && missing.length > 0) why = `this build has no webgpu kernel for ${missing.join(', ')}`;
  }
  if (why === '') return {backend: 'webgpu', note: ''};
  await tf.setBackend('cpu');
  return {backend: 'cpu', note: `WebGPU unavailable: ${why}. Fell back to the cpu backend (much slower).`};
}

// ---- fetching, with readable errors ----------------------------------------------------------

/**
 * The fetch handed to loadCausalLM: the browser's, but a request that fails outright (a
 * TypeError: server unreachable, or a cross-origin response without CORS headers, which the
 * browser hides from the page) becomes an Error saying so, with the URL.
 */
function fetchWithHints(): typeof fetch {
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    try {
      return await fetch(input, init);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new Error(`could not fetch ${url} (${why}): the server cannot be reached, or it sends no CORS ` +
                      'headers for this page (Access-Control-Allow-Origin, the Range header allowed; Hugging Face ' +
                      'sends them; a local folder: `npm run demo:chat -- --checkpoint DIR`)');
    }
  };
}

/** Adds a hint to the loader's errors that a plain message would leave cryptic. */
function explainLoadError(e: unknown, model: string): Error {
  const message = e instanceof Error ? e.message : String(e);
  let hint = '';
  if (/\b404\b|not found/i.test(message)) {
    hint = ` — is ${model} the base URL of a checkpoint folder (on Hugging Face: https://huggingface.co/ORG/NAME/resolve/main/)?`;
  } else if (/\b(401|403)\b/.test(message)) {
    hint = ' — the server refused access (a gated or private repository needs a token; this page sends none)';
  }
  return new Error(`loading ${model} failed: ${message}${hint}`);
}

// ---- the page ------------------------------------------------------------------------------------

interface RunResult {
  /** New tokens per prompt (stop tokens included, as generate returns them). */
  tokens: number[][];
  /** The text of each prompt's new tokens (special tokens skipped), when there is a tokenizer. */
  text: string[]|null;
  backend: string;
  /** The tokens fed per prompt (a session turn: what the conversation adds to the session's tokens). */
  promptTokens: number[];
  /** The stop tokens generate was given. */
  stopTokens: number[];
  /** Tokens already in the cache before this run (a session's earlier turns); 0 without a session. */
  cachedTokens: number;
  /** The session's tokens after this run (the whole conversation); null without a session. */
  sequence: number[]|null;
  timeToFirstTokenMs: number;
  tokensPerSecond: {prefill: number, decode: number|null};
  cacheBytes: {latent: number, standard: number};
}

class ChatPage {
  private lm: CausalLM|null = null;
  private backend = '';
  /** The conversation so far (with a tokenizer). */
  private messages: ChatMessage[] = [];
  /** The conversation's tokens in the model's cache (with a chat template): each turn feeds only what is new. */
  private session: LMSession|null = null;
  private busy = false;

  constructor(private readonly params: PageParams) {}

  init(): void {
    const {params} = this;
    byId<HTMLInputElement>('model-url').value = params.model;
    byId<HTMLSelectElement>('dtype').value = params.dtype;
    byId<HTMLSelectElement>('cache-dtype').value = params.cacheDtype ?? '';
    if (params.maxNewTokens !== null) byId<HTMLInputElement>('max-new-tokens').value = String(params.maxNewTokens);
    if (params.temperature !== null) byId<HTMLInputElement>('temperature').value = String(params.temperature);
    if (params.topP !== null) byId<HTMLInputElement>('top-p').value = String(params.topP);
    byId('load-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.load().catch(showError);
    });
    byId('chat-form').addEventListener('submit', (event) => {
      event.preventDefault();
      this.send().catch(showError);
    });
    byId<HTMLTextAreaElement>('input').addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        this.send().catch(showError);
      }
    });
    byId('clear-button').addEventListener('click', () => {
      this.messages = [];
      this.endSession();
      byId('messages').replaceChildren();
    });
  }

  /** Loads the checkpoint named in the form (disposing of any model loaded before). */
  async load(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    byId<HTMLButtonElement>('load-button').disabled = true;
    try {
      await this.loadModel();
    } finally {
      this.busy = false;
      byId<HTMLButtonElement>('load-button').disabled = false;
    }
  }

  private async loadModel(): Promise<void> {
    const raw = byId<HTMLInputElement>('model-url').value.trim();
    if (raw === '') throw new Error('enter the URL of a checkpoint folder');
    // A relative URL (e.g. /ckpt/) is resolved against the page; a folder URL needs its slash.
    let model = new URL(raw, location.href).href;
    if (!model.endsWith('/')) model += '/';
    const dtype = byId<HTMLSelectElement>('dtype').value as ModelWeightDtype;
    const cacheDtype = (byId<HTMLSelectElement>('cache-dtype').value || null) as KVCacheDtype|null;

    setState('loading');
    delete document.body.dataset.error;
    this.lm?.dispose();
    this.lm = null;
    byId('chat').hidden = true;

    const chosen = await chooseBackend(this.params.backend);
    this.backend = chosen.backend;
    document.body.dataset.backend = chosen.backend;
    byId('backend-note').textContent = chosen.note;
    setStat('stat-backend', chosen.backend === 'webgpu' ? 'webgpu' : `cpu${chosen.note ? ' (fallback)' : ''}`,
            chosen.backend);

    setStatus(`Loading ${model} (weights ${dtype}, cache ${cacheDtype ?? dtype}) on ${chosen.backend}…`);
    const bar = byId<HTMLProgressElement>('load-progress');
    byId('progress-row').hidden = false;
    bar.value = 0;
    const started = performance.now();
    const onProgress = ({loadedBytes, totalBytes, file}: LoadProgress) => {
      const seconds = (performance.now() - started) / 1000;
      const mbps = seconds > 0 ? loadedBytes / 1e6 / seconds : 0;
      bar.max = Math.max(1, totalBytes);
      bar.value = loadedBytes;
      byId('progress-text').textContent = `${(loadedBytes / 1e6).toFixed(1)} / ${(totalBytes / 1e6).toFixed(1)} MB, ` +
          `${mbps.toFixed(1)} MB/s — ${file.split('/').pop()}`;
    };
    let lm: CausalLM;
    try {
      lm = await loadCausalLM(model, {
        dtype, ...(cacheDtype ? {cacheDtype} : {}),
        ...(this.params.maxSeqLen !== null ? {maxSeqLen: this.params.maxSeqLen} : {}),
        onProgress, fetch: fetchWithHints(),
      });
    } catch (e) {
      throw explainLoadError(e, model);
    }
    this.lm = lm;
    const loadSeconds = (performance.now() - started) / 1000;
    const c = lm.config;
    byId('model-info').textContent =
        `${c.modelType}: ${c.numLayers} layers, hidden ${fmtInt(c.hiddenSize)}, vocab ${fmtInt(c.vocabSize)}; ` +
        `weights ${fmtBytes(lm.weightBytes)} (${dtype}); cache ${fmtInt(lm.cacheBytesPerToken)} B per token (latent, all layers) ` +
        `vs ${fmtInt(lm.standardCacheBytesPerToken)} B for a standard K/V cache; ` +
        (lm.tokenizer ? `tokenizer${lm.tokenizer.hasChatTemplate ? ' with a chat template' : ' (no chat template)'}` :
                        'no tokenizer: prompts are token ids') +
        `; loaded in ${loadSeconds.toFixed(1)} s.`;
    document.body.dataset.loadSeconds = loadSeconds.toFixed(2);

    if (this.params.warmup && this.backend === 'webgpu') {
      // WebGPU compiles each program's pipeline on first use (seconds each on a slow adapter):
      // a short untimed generate with a prompt long enough for the prefill path and two new
      // tokens compiles the prefill and the decode programs before the first message.
      setStatus('Compiling the WebGPU shaders (a short untimed run)…');
      await nextFrame();
      const t = performance.now();
      const filler = c.bosTokenId ?? 0;
      await lm.generate([new Array<number>(16).fill(filler)], {maxNewTokens: 2, stopTokens: []});
      document.body.dataset.warmupMs = String(Math.round(performance.now() - t));
    }

    this.setupChat();
    byId('stats').hidden = false;
    setStatus(`Ready on ${this.backend}: ${c.modelType}, ${c.numLayers} layers, loaded in ${loadSeconds.toFixed(1)} s.`);
    setState('ready');
  }

  /** The composer for this model: text with a tokenizer, token ids without. */
  private setupChat(): void {
    const lm = this.lm!;
    this.messages = [];
    this.endSession();
    byId('messages').replaceChildren();
    const input = byId<HTMLTextAreaElement>('input');
    if (lm.tokenizer) {
      input.placeholder = 'Message (Enter to send, Shift+Enter for a new line)';
      byId('mode-note').textContent = lm.tokenizer.hasChatTemplate ? '' :
          'no chat template: each message is a plain completion prompt';
    } else {
      input.placeholder = 'Token ids, comma separated (this checkpoint has no tokenizer), e.g. 1,4,214';
      byId('mode-note').textContent = 'no tokenizer: each message is a fresh prompt of token ids; replies show ids';
    }
    byId('chat').hidden = false;
  }

  /** Frees the conversation's cache pages. */
  private endSession(): void {
    this.session?.dispose();
    this.session = null;
  }

  private stopTokens(): number[] {
    const lm = this.lm!;
    // generation_config.json's eos ids when the checkpoint has one, else config.json's; and the
    // tokenizer's eos (chat models often end a turn with it).
    const stops = new Set<number>(lm.defaultStopTokens ?? lm.config.eosTokenIds);
    const eos = lm.tokenizer?.eosTokenId;
    if (eos !== null && eos !== undefined) stops.add(eos);
    return [...stops];
  }

  private generateOptions(): Omit<GenerateOptions, 'onToken'> {
    const value = (id: string) => Number(byId<HTMLInputElement>(id).value);
    const maxNewTokens = value('max-new-tokens');
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1) throw new Error('max new tokens: expected an integer ≥ 1');
    const temperature = value('temperature');
    if (!(temperature >= 0)) throw new Error('temperature: expected a number ≥ 0');
    const topP = value('top-p');
    if (!(topP > 0 && topP <= 1)) throw new Error('top-p: expected a number in (0, 1]');
    return {
      maxNewTokens, temperature, topP, stopTokens: this.stopTokens(),
      ...(this.params.topK !== null ? {topK: this.params.topK} : {}),
      ...(this.params.seed !== null ? {seed: this.params.seed} : {}),
    };
  }

  private addMessage(role: string, text: string, ids = false): HTMLElement {
    const div = document.createElement('div');
    div.className = `message ${role}${ids ? ' ids' : ''}`;
    const label = document.createElement('span');
    label.className = 'role';
    label.textContent = role;
    const body = document.createElement('span');
    body.className = 'content';
    body.textContent = text;
    div.append(label, body);
    const list = byId('messages');
    list.append(div);
    list.scrollTop = list.scrollHeight;
    return body;
  }

  /** Sends the composer's message: the conversation through the chat template, or raw ids. */
  async send(): Promise<void> {
    if (this.busy || this.lm === null) return;
    const input = byId<HTMLTextAreaElement>('input');
    const text = input.value.trim();
    if (text === '') return;
    const lm = this.lm;
    let prompt: number[];
    if (lm.tokenizer) {
      const pending: ChatMessage[] = [...this.messages, {role: 'user', content: text}];
      prompt = lm.tokenizer.hasChatTemplate ? lm.tokenizer.applyChatTemplate(pending) : lm.tokenizer.encode(text);
      input.value = '';
      this.addMessage('user', text);
      let session: LMSession|null = null;
      if (lm.tokenizer.hasChatTemplate) {
        // The rendered conversation normally extends what the cache holds; when it does not (the
        // reply re-tokenizes differently), start over with the whole conversation.
        const held = this.session?.tokens ?? [];
        if (this.session === null || held.length > prompt.length || held.some((t, i) => t !== prompt[i])) {
          this.endSession();
          this.session = lm.createSession();
        } else {
          prompt = prompt.slice(held.length);
        }
        session = this.session;
      }
      const result = await this.run([prompt], this.generateOptions(), session);
      const reply = result.text?.[0] ?? '';
      this.messages = lm.tokenizer.hasChatTemplate ? [...pending, {role: 'assistant', content: reply}] : [];
    } else {
      prompt = parseIds(text, 'prompt');
      input.value = '';
      this.addMessage('user', prompt.join(', '), true);
      await this.run([prompt], this.generateOptions());
    }
  }

  /**
   * One generate call over `prompts` (one ragged batch), streaming each prompt's reply into a
   * message, timing prefill (to the first token) and decode, and showing the cache bytes.
   */
  async run(prompts: number[][], options: Omit<GenerateOptions, 'onToken'>, session: LMSession|null = null):
      Promise<RunResult> {
    const lm = this.lm!;
    const tokenizer = lm.tokenizer;
    this.busy = true;
    byId<HTMLButtonElement>('send-button').disabled = true;
    setState('generating');
    const promptTokens = prompts.map((p) => p.length);
    // A session holds its tokens but the last generated one, which its next call feeds first.
    const cachedTokens = Math.max(0, (session?.tokens.length ?? 0) - 1);
    const prefillTokens = promptTokens.reduce((a, b) => a + b, 0);
    setStatus(`Generating: ${prompts.length > 1 ? `${prompts.length} prompts, ` : ''}${fmtInt(prefillTokens)} prompt tokens…`);
    const bodies = prompts.map(() => this.addMessage('assistant', '…', tokenizer === null));
    const tokens: number[][] = prompts.map(() => []);
    const shown = prompts.map(() => '');
    let firstTokenAt = 0;
    let generated = 0;
    // Text shown so far: the decoded ids, held back while they end inside a multi-byte character.
    const show = (b: number) => {
      if (tokenizer === null) {
        bodies[b].textContent = tokens[b].join(', ');
        return;
      }
      const text = tokenizer.decode(tokens[b], {skipSpecialTokens: true});
      if (!text.endsWith('\uFFFD') && text !== shown[b]) {
        shown[b] = text;
        bodies[b].textContent = text;
      }
    };
    await nextFrame();
    const started = performance.now();
    let out: number[][];
    try {
      const onToken = (token: number, b: number) => {
        if (firstTokenAt === 0) firstTokenAt = performance.now();
        tokens[b].push(token);
        generated++;
        show(b);
        const ms = performance.now() - firstTokenAt;
        if (generated > prompts.length && ms > 0) {
          setStatus(`Generating: ${fmtInt(generated)} tokens, ${fmtRate(generated - prompts.length, ms)} decode`);
        }
      };
      out = session !== null ? [await session.generate(prompts[0], {...options, onToken})] :
                               await lm.generate(prompts, {...options, onToken});
    } catch (e) {
      if (session !== null) this.endSession();  // a failed session refuses further turns
      throw e;
    } finally {
      this.busy = false;
      byId<HTMLButtonElement>('send-button').disabled = false;
    }
    const ended = performance.now();
    // The tokens generate returns are the record (onToken streams the same ones).
    out.forEach((t, b) => {
      tokens[b] = [...t];
      shown[b] = '';
      show(b);
      if (tokenizer !== null && bodies[b].textContent === '') bodies[b].textContent = '(empty reply)';
    });

    const ttft = (firstTokenAt || ended) - started;
    const decodeTokens = generated - prompts.length;
    const decodeMs = ended - (firstTokenAt || ended);
    const prefillTps = prefillTokens / (ttft / 1000);
    const decodeTps = decodeTokens > 0 && decodeMs > 0 ? decodeTokens / (decodeMs / 1000) : null;
    // The conversation's tokens: the prompts and the new tokens (the cache holds them all but
    // the last of each sequence, which is chosen and never fed back).
    const held = session !== null ? session.tokens.length : prefillTokens + out.reduce((s, t) => s + t.length, 0);
    const latent = held * lm.cacheBytesPerToken;
    const standard = held * lm.standardCacheBytesPerToken;
    setStat('stat-prefill', `${fmtRate(prefillTokens, ttft)} (${fmtInt(prefillTokens)} prompt tokens)`, prefillTps);
    setStat('stat-ttft', `${ttft.toFixed(0)} ms`, ttft);
    setStat('stat-decode', decodeTps === null ? 'n/a (one token per prompt)' :
            `${decodeTps.toFixed(decodeTps >= 10 ? 1 : 2)} tokens/s (${fmtInt(decodeTokens)} tokens in ${(decodeMs / 1000).toFixed(2)} s)`,
            decodeTps ?? '');
    setStat('stat-tokens', fmtInt(held), held);
    const ratio = standard / latent;
    const barWidth = (bytes: number) => `${Math.max(1, Math.round(200 * bytes / Math.max(standard, 1)))}px`;
    const cacheCell = (id: string, bytes: number, perToken: number, color: string, note: string) => {
      const cell = byId(id);
      cell.replaceChildren();
      const bar = document.createElement('span');
      bar.className = 'bar';
      bar.style.width = barWidth(bytes);
      bar.style.background = color;
      cell.append(bar, ` ${fmtBytes(bytes)} (${fmtInt(perToken)} B per token${note})`);
      cell.dataset.value = String(bytes);
    };
    cacheCell('stat-latent', latent, lm.cacheBytesPerToken, 'var(--mla)', `; ${ratio.toFixed(1)}× smaller`);
    cacheCell('stat-standard', standard, lm.standardCacheBytesPerToken, 'var(--mha)', '');

    const result: RunResult = {
      tokens: out.map((t) => [...t]),
      text: tokenizer ? out.map((t) => tokenizer.decode(t, {skipSpecialTokens: true})) : null,
      backend: this.backend,
      promptTokens,
      stopTokens: [...options.stopTokens ?? []],
      cachedTokens,
      sequence: session !== null ? session.tokens : null,
      timeToFirstTokenMs: ttft,
      tokensPerSecond: {prefill: prefillTps, decode: decodeTps},
      cacheBytes: {latent, standard},
    };
    const pre = byId('result');
    pre.textContent = JSON.stringify(result);
    setStatus(`Done on ${this.backend}: time to first token ${ttft.toFixed(0)} ms, prefill ${fmtRate(prefillTokens, ttft)}` +
              (decodeTps === null ? '' : `, decode ${decodeTps.toFixed(1)} tokens/s`) +
              `; cache ${fmtBytes(latent)} latent vs ${fmtBytes(standard)} standard (${ratio.toFixed(1)}×).`);
    setState('done');
    return result;
  }

  /** `autorun=1`: load, run the URL's prompt once, show the result (in #result too). */
  async autorun(): Promise<void> {
    const {params} = this;
    await this.load();
    const lm = this.lm!;
    let prompts: number[][];
    if (params.promptIds !== null) {
      prompts = params.promptIds;
    } else if (params.prompt !== null) {
      if (!lm.tokenizer) throw new Error('URL parameter prompt needs a tokenizer; this checkpoint has none (use prompt_ids)');
      const messages: ChatMessage[] = [{role: 'user', content: params.prompt}];
      prompts = [lm.tokenizer.hasChatTemplate ? lm.tokenizer.applyChatTemplate(messages) : lm.tokenizer.encode(params.prompt)];
      this.addMessage('user', params.prompt);
    } else {
      throw new Error('autorun=1 needs prompt_ids=… or prompt=…');
    }
    if (params.promptIds !== null) prompts.forEach((p) => this.addMessage('user', p.join(', '), true));
    const options = this.generateOptions();
    // Automation is greedy unless the URL asks for sampling.
    if (params.temperature === null) options.temperature = 0;
    if (params.maxNewTokens === null) options.maxNewTokens = 32;
    await this.run(prompts, options);
    byId('result').hidden = false;
  }
}

function main(): void {
  let params: PageParams;
  try {
    params = readParams(location.search);
  } catch (e) {
    showError(e);
    return;
  }
  const page = new ChatPage(params);
  page.init();
  if (params.autorun) page.autorun().catch(showError);
}

main();
