/**
 * A 16-bit tensor held the way 16-bit layers store their weights: an int32 tensor of words, two
 * values per word (value 2i in the low 16 bits, value 2i + 1 in the high 16 bits; see half.ts).
 * `loadSafetensors(source, {keepHalf: true})` returns BF16/F16 checkpoint entries as these, and
 * `LatentAttentionWithRope.loadStateDict` writes them into a layer of the same dtype as they are
 * (no rounding, no float32 copy).
 *
 * On webgpu, tfjs's own ops (slice, concat, gather, cast, …) must not run on the words: some of
 * its int32 kernels pass data through float32 and round words past 2^24. Read them with this
 * package's kernels (`mlaUnpackHalf` widens them to float32 exactly).
 */
import * as tf from '@tensorflow/tfjs-core';
import {HalfDtype, isHalfDtype} from './half.js';

export class PackedHalfTensor {
  /** int32 [...shape[:-1], shape[last] / 2]: the 16-bit values two per word. */
  readonly words: tf.Tensor;
  readonly dtype: HalfDtype;
  /** The logical shape: the values' shape (the last dim even). */
  readonly shape: number[];

  /**
   * Takes ownership of `words` (dispose() disposes it). Throws unless `words` is a live int32
   * tensor of shape [...shape[:-1], shape[last] / 2] and the last dim of `shape` is even.
   */
  constructor(words: tf.Tensor, dtype: HalfDtype, shape: readonly number[]) {
    if (!isHalfDtype(dtype)) {
      throw new Error(`PackedHalfTensor dtype: expected 'bfloat16' or 'float16', got '${String(dtype)}'`);
    }
    if (!Array.isArray(shape) || shape.length === 0 ||
        !shape.every((d) => Number.isSafeInteger(d) && d >= 0) || shape[shape.length - 1] % 2 !== 0) {
      throw new Error(`PackedHalfTensor shape: expected integers ≥ 0 with an even last dim, got ` +
                      `${JSON.stringify(shape)}`);
    }
    const expected = packedWordsShape(shape);
    if (!(words instanceof tf.Tensor) || words.isDisposed || words.dtype !== 'int32' ||
        !tf.util.arraysEqual(words.shape, expected)) {
      const got = words instanceof tf.Tensor ?
          `${words.isDisposed ? 'a disposed ' : ''}${words.dtype} [${words.shape.join(', ')}]` : String(words);
      throw new Error(`PackedHalfTensor words: expected a live int32 tensor of shape ` +
                      `[${expected.join(', ')}] for ${dtype} values of shape [${shape.join(', ')}], got ${got}`);
    }
    this.words = words;
    this.dtype = dtype;
    this.shape = [...shape];
  }

  /**
   * A PackedHalfTensor from raw 16-bit data: `bits` holds the values' bit patterns as
   * little-endian uint16 (the safetensors layout), any byte alignment. The words are uploaded
   * with tf.tensor (int32); no conversion runs on the device.
   */
  static fromLittleEndianBits(bits: Uint8Array, dtype: HalfDtype, shape: readonly number[]): PackedHalfTensor {
    const count = shape.reduce((a, b) => a * b, 1);
    if (bits.byteLength !== 2 * count) {
      throw new Error(`PackedHalfTensor.fromLittleEndianBits: shape [${shape.join(', ')}] needs ` +
                      `${2 * count} bytes, got ${bits.byteLength}`);
    }
    if (shape.length === 0 || shape[shape.length - 1] % 2 !== 0) {
      throw new Error(`PackedHalfTensor.fromLittleEndianBits: expected an even last dim, got ` +
                      `shape [${shape.join(', ')}]`);
    }
    return new PackedHalfTensor(tf.tensor(wordsFromLittleEndianBits(bits), packedWordsShape(shape), 'int32'),
                                dtype, shape);
  }

  /** Element count of the logical shape. */
  get size(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  get isDisposed(): boolean {
    return this.words.isDisposed;
  }

  dispose(): void {
    this.words.dispose();
  }
}

/** The words' shape for values of `shape` (last dim even): [...shape[:-1], last / 2]. */
export function packedWordsShape(shape: readonly number[]): number[] {
  return [...shape.slice(0, -1), shape[shape.length - 1] / 2];
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Little-endian uint16 pairs → int32 words (value 2i in the low half of word i; an odd tail's
 * high half is 0). A fresh array; `bits` may have any alignment.
 */
export function wordsFromLittleEndianBits(bits: Uint8Array): Int32Array {
  const out = new Int32Array(Math.ceil(bits.byteLength / 4));
  if (LITTLE_ENDIAN) {
    new Uint8Array(out.buffer).set(bits);  // the same bytes: the host reads them as LE words
  } else {
    const view = new DataView(bits.buffer, bits.byteOffset, bits.byteLength);
    for (let i = 0; i + 1 < bits.byteLength; i += 2) {
      out[i >> 2] |= view.getUint16(i, true) << (i & 2 ? 16 : 0);
    }
  }
  return out;
}

export function isPackedHalfTensor(x: unknown): x is PackedHalfTensor {
  return x instanceof PackedHalfTensor;
}
