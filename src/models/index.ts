/**
 * `tfjs-mla/models`: MLA language models from Hugging Face checkpoints — Youtu-LLM (`youtu`)
 * and dense DeepSeek-V2/V3 (`deepseek_v2`, `deepseek_v3`) — on LatentAttentionWithRope with a
 * paged latent cache, in Node and in browsers.
 *
 * ```ts
 * import {loadCausalLM} from 'tfjs-mla/models';
 * const lm = await loadCausalLM('https://huggingface.co/tencent/Youtu-LLM-2B/resolve/main/',
 *                               {onProgress: (p) => console.log(p.loadedBytes / p.totalBytes)});
 * const ids = lm.tokenizer!.applyChatTemplate([{role: 'user', content: 'Hi!'}]);
 * const [reply] = await lm.generate([ids], {maxNewTokens: 64, onToken: (t) => console.log(t)});
 * console.log(lm.tokenizer!.decode(reply, {skipSpecialTokens: true}));
 * lm.dispose();
 * ```
 */
import '../register.js';
import {CausalLM, causalLMWeightShapes, ModelWeight, resolveOptions} from './causal_lm.js';
import {parseCausalLMConfig} from './config.js';
import {LoadStats, openCheckpointFolder, readCheckpointTensors} from './checkpoint.js';
import {decodeSafetensorsValues, SAFETENSORS_HALF_DTYPES, SupportedSafetensorsDtype} from '../io/safetensors.js';
import {packHalf} from '../precision/half.js';
import {PackedHalfTensor, packedWordsShape} from '../precision/packed.js';
import * as tf from '@tensorflow/tfjs-core';
import {createTokenizer} from './tokenizer.js';
import type {LoadCausalLMOptions, ModelWeightDtype} from './types.js';

export {CausalLM, causalLMWeightShapes, DEFAULT_MAX_SEQ_LEN, DEFAULT_PAGE_SIZE} from './causal_lm.js';
export type {CausalLMExtras, CausalLMOptions, ModelWeight} from './causal_lm.js';
export {parseCausalLMConfig, SUPPORTED_MODEL_TYPES} from './config.js';
export type {CausalLMConfig, CausalLMModelType} from './config.js';
export type {LoadStats} from './checkpoint.js';
export {RANGE_CHUNK_BYTES} from './checkpoint.js';
export {createTokenizer} from './tokenizer.js';
export * from './types.js';

/** The loaded model, with what its loading read. */
export type LoadedCausalLM = CausalLM&{readonly loadStats: LoadStats};

function parseJson(text: string, file: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`loadCausalLM: ${where}${where.endsWith('/') ? '' : '/'}${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Loads an HF checkpoint — config.json, model.safetensors or model.safetensors.index.json and
 * its shards, optional tokenizer.json / tokenizer_config.json / generation_config.json — from a
 * folder (Node) or a base URL (anywhere fetch exists). Over HTTP only each shard's header and
 * the byte ranges of the needed tensors are read; each tensor is stored in `dtype` as it
 * arrives (bf16 values of a bf16 checkpoint as they are). Errors name the file and tensor.
 */
export async function loadCausalLM(source: string|URL, options: LoadCausalLMOptions = {}): Promise<LoadedCausalLM> {
  const {onProgress, fetch: fetchFn, ...modelOptions} = options ?? {};
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw new Error(`loadCausalLM options.onProgress: expected a function, got ${typeof onProgress}`);
  }
  const folder = await openCheckpointFolder(source, fetchFn);
  const configText = await folder.readText('config.json', false);
  const hfConfig = parseJson(configText!, 'config.json', folder.where) as object;
  const expected = causalLMWeightShapes(hfConfig);  // checks the architecture first
  // Every option is checked before a weight is read.
  const {dtype} = resolveOptions(modelOptions, parseCausalLMConfig(hfConfig), 'loadCausalLM');
  const [tokenizerText, tokenizerConfigText, generationText] = await Promise.all([
    folder.readText('tokenizer.json', true), folder.readText('tokenizer_config.json', true),
    folder.readText('generation_config.json', true)]);
  let tokenizer = null;
  if (tokenizerText !== null) {
    const tokenizerConfig = tokenizerConfigText === null ? {} :
        parseJson(tokenizerConfigText, 'tokenizer_config.json', folder.where) as Record<string, unknown>;
    // Newer checkpoints keep the chat template in its own file.
    if (tokenizerConfig !== null && typeof tokenizerConfig === 'object' && tokenizerConfig.chat_template === undefined) {
      const template = await folder.readText('chat_template.jinja', true);
      if (template !== null) tokenizerConfig.chat_template = template;
    }
    tokenizer = createTokenizer(parseJson(tokenizerText, 'tokenizer.json', folder.where), tokenizerConfig);
  }
  const weights: Record<string, ModelWeight> = {};
  try {
    await readCheckpointTensors(folder, expected, (tensor, bytes) => {
      const weight = toWeight(bytes, tensor.entry.dtype as SupportedSafetensorsDtype, tensor.entry.shape, dtype);
      weights[tensor.name] = weight;
      uploadNow(weight instanceof PackedHalfTensor ? weight.words : weight);
    }, (loadedBytes, totalBytes, file) => {
      submitUploads();
      onProgress?.({loadedBytes, totalBytes, file});
    });
    const lm = CausalLM.fromStateDict(hfConfig, weights, modelOptions, {
      tokenizer, stopTokens: stopTokensOf(generationText, folder.where),
    });
    return Object.assign(lm, {loadStats: folder.stats});
  } finally {
    Object.values(weights).forEach((w) => w.dispose());
  }
}

/**
 * A tensor's bytes as the model stores it: 16-bit values of the storage dtype kept as they are
 * (two per word), anything else converted on the host and uploaded once.
 */
function toWeight(bytes: Uint8Array, fileDtype: SupportedSafetensorsDtype, shape: number[],
                  dtype: ModelWeightDtype): ModelWeight {
  const count = shape.reduce((a, b) => a * b, 1);
  const packable = shape.length > 1 && shape[shape.length - 1] % 2 === 0;
  if (dtype === 'float32' || !packable) {
    return tf.tensor(decodeSafetensorsValues(bytes, fileDtype, count), shape, 'float32');
  }
  if (fileDtype !== 'F32' && SAFETENSORS_HALF_DTYPES[fileDtype] === dtype) {
    return PackedHalfTensor.fromLittleEndianBits(bytes, dtype, shape);  // the file's words
  }
  const words = packHalf(decodeSafetensorsValues(bytes, fileDtype, count), dtype);
  return new PackedHalfTensor(tf.tensor(words, packedWordsShape(shape), 'int32'), dtype, shape);
}

/**
 * On webgpu, copies the tensor's values to the GPU now: tfjs keeps a new tensor's values on the
 * host until a kernel first reads it, which would hold a second, host copy of the whole model
 * until the first step (gigabytes in a tab). Once uploaded, tfjs drops the host values.
 */
function uploadNow(tensor: tf.Tensor): void {
  if (tf.getBackend() !== 'webgpu') return;
  (tf.backend() as unknown as WebGPUUploads).uploadToGPU?.(tensor.dataId);
}

/** Submits the recorded uploads, so staging buffers (reused GPU buffers) are freed per read. */
function submitUploads(): void {
  if (tf.getBackend() !== 'webgpu') return;
  const backend = tf.backend() as unknown as WebGPUUploads;
  if (backend.commandEncoder != null) backend.submitQueue?.();  // null: nothing recorded
}

/** The parts of tfjs's WebGPUBackend the loader uses (not in its public types). */
interface WebGPUUploads {
  uploadToGPU?: (dataId: object) => void;
  submitQueue?: () => void;
  commandEncoder?: object|null;
}

/** generation_config.json's eos_token_id (a number or a list), when present. */
function stopTokensOf(text: string|null, where: string): number[]|undefined {
  if (text === null) return undefined;
  const eos = (parseJson(text, 'generation_config.json', where) as {eos_token_id?: unknown})?.eos_token_id;
  const ids = Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos];
  if (!ids.every((id) => Number.isInteger(id))) {
    throw new Error(`loadCausalLM: ${where}generation_config.json eos_token_id: expected a token id or a list, ` +
                    `got ${JSON.stringify(eos)}`);
  }
  return ids.length > 0 ? ids as number[] : undefined;
}
