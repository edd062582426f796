/**
 * The public types of `tfjs-mla/models` (see spec/API.md, "Models").
 */
import type {KVCacheDtype} from '../cache/kv_cache_params.js';

/** Storage of the model's weights. */
export type ModelWeightDtype = 'float32'|'bfloat16'|'float16';

/** What `onProgress` reports while a checkpoint loads. */
export interface LoadProgress {
  /** Tensor bytes read so far (all files). */
  loadedBytes: number;
  /** Tensor bytes the model needs (all files), known once every header is read. */
  totalBytes: number;
  /** The file the last bytes came from. */
  file: string;
}

export interface LoadCausalLMOptions {
  /** Weight storage, default 'bfloat16' (16-bit values packed two per int32 word). */
  dtype?: ModelWeightDtype;
  /** Latent cache storage, default: `dtype`. */
  cacheDtype?: KVCacheDtype;
  /** Longest sequence (prompt + generated tokens): rows of the rope table. Default min(max_position_embeddings, 4096). */
  maxSeqLen?: number;
  /** Tokens per cache page, default 64. */
  pageSize?: number;
  /** Pages of the cache, shared by all sequences; default enough for one sequence of maxSeqLen tokens. */
  totalNumPages?: number;
  onProgress?: (progress: LoadProgress) => void;
  /** The fetch used for URLs (default globalThis.fetch), e.g. to add headers. */
  fetch?: typeof fetch;
}

export interface GenerateOptions {
  /** New tokens per prompt, at most (≥ 1). */
  maxNewTokens: number;
  /** 0 (default): greedy (argmax, the lowest id on a tie). > 0: sampling from softmax(logits / temperature). */
  temperature?: number;
  /** Sampling keeps only the topK most likely tokens (default: all). */
  topK?: number;
  /** Sampling keeps the smallest set of most likely tokens whose probability reaches topP (default 1). */
  topP?: number;
  /** Seed of the sampler (default: random). The same seed, prompts and options give the same tokens. */
  seed?: number;
  /** A sequence ends after producing one of these (it is included in its output). Default: the config's eos_token_id(s). */
  stopTokens?: number[];
  /** Called for every new token as soon as it is chosen: `sequence` is the prompt's index. */
  onToken?: (token: number, sequence: number) => void;
}

/**
 * A sequence kept in the model's cache across generate calls (`lm.createSession()`): a
 * conversation whose earlier turns are not prefilled again.
 */
export interface LMSession {
  /** The sequence so far: every input and generated token, in order. */
  readonly tokens: number[];
  /**
   * Appends `input` (after the tokens generated last time) and generates, as CausalLM.generate
   * does for one prompt (onToken's sequence index is 0); the new tokens become part of the
   * session. `input` may be empty to continue. One call at a time; after a failed call the
   * session refuses further calls (dispose it).
   */
  generate(input: number[], options: GenerateOptions): Promise<number[]>;
  /** Frees the session's cache pages. */
  dispose(): void;
}

/** A chat message for `tokenizer.applyChatTemplate`. */
export interface ChatMessage {
  role: 'system'|'user'|'assistant'|string;
  content: string;
}

/** The tokenizer of a checkpoint (tokenizer.json + tokenizer_config.json). */
export interface LMTokenizer {
  /** Token ids of `text`; with `addSpecialTokens` (default true) as the tokenizer's post-processor adds them (e.g. bos). */
  encode(text: string, options?: {addSpecialTokens?: boolean}): number[];
  /** Text of `ids`; `skipSpecialTokens` (default false) drops special tokens. */
  decode(ids: number[], options?: {skipSpecialTokens?: boolean}): string;
  /**
   * The checkpoint's chat template (tokenizer_config.json `chat_template`, rendered with
   * @huggingface/jinja) applied to `messages`: token ids (default), or the text with `tokenize: false`.
   * `addGenerationPrompt` (default true) ends with the assistant's turn opening.
   */
  applyChatTemplate(messages: ChatMessage[], options?: {addGenerationPrompt?: boolean, tokenize?: true}): number[];
  applyChatTemplate(messages: ChatMessage[], options: {addGenerationPrompt?: boolean, tokenize: false}): string;
  /** Whether tokenizer_config.json has a chat template. */
  readonly hasChatTemplate: boolean;
  /** bos / eos ids from tokenizer_config.json's bos_token / eos_token (null when absent). */
  readonly bosTokenId: number|null;
  readonly eosTokenId: number|null;
}
