/**
 * How each sequence's whole context (cached + new tokens, rounded up to the page size) is laid
 * into decompression buffers of `bufferSize` rows, as MAX's `create_mla_prefill_metadata`.
 * Host-side numbers (the layer never reads GPU data back).
 */
export interface MLAPrefillMetadata {
  /** [chunks, B + 1]: where sequence b's rows start in chunk c's buffer; column B is the chunk's end. */
  bufferRowOffsets: number[][];
  /** [chunks, B + 1]: tokens of sequence b placed in earlier chunks (the first token of chunk c); column B unused (0). */
  cacheOffsets: number[][];
  /** [chunks]: rows used in each chunk, −1 for an unused chunk. */
  bufferLengths: number[];
}

/** MAX's default plan height: at least this many chunk rows. */
export const MIN_PREFILL_CHUNKS = 16;

const clamp = (value: number, low: number, high: number) => Math.min(Math.max(value, low), high);

/**
 * The plan for contexts `contextLengths[b]` (cached + new) with pages of `pageSize` tokens and
 * buffers of `bufferSize` rows. Sequence b occupies rows [start_b, start_b + align(len_b)) of
 * the concatenated buffer space; chunk c covers rows [c·bufferSize, (c+1)·bufferSize).
 */
export function planPrefillChunks(
    contextLengths: readonly number[], pageSize: number, bufferSize: number): MLAPrefillMetadata {
  const aligned = contextLengths.map((len) => Math.ceil(len / pageSize) * pageSize);
  const starts: number[] = [];
  let total = 0;
  for (const len of aligned) {
    starts.push(total);
    total += len;
  }
  const numChunks = Math.max(MIN_PREFILL_CHUNKS, Math.ceil(total / bufferSize));
  const bufferRowOffsets: number[][] = [];
  const cacheOffsets: number[][] = [];
  const bufferLengths: number[] = [];
  for (let c = 0; c < numChunks; c++) {
    const chunkStart = c * bufferSize;
    bufferRowOffsets.push([
      ...starts.map((start) => clamp(start - chunkStart, 0, bufferSize)),
      clamp(total - chunkStart, 0, bufferSize),
    ]);
    cacheOffsets.push([...starts.map((start, b) => clamp(chunkStart - start, 0, aligned[b])), 0]);
    bufferLengths.push(total > chunkStart ? Math.min(bufferSize, total - chunkStart) : -1);
  }
  return {bufferRowOffsets, cacheOffsets, bufferLengths};
}

/** One chunk's rows, compacted to the tokens that exist (padding rows of a page are skipped). */
export interface PrefillChunk {
  /** Flat cache rows to gather, in buffer order. */
  slots: number[];
  /** [B, 3] row-major: (bufferStart, firstToken, numRows) per batch row. */
  chunkInfo: Int32Array;
}

/**
 * Turns the plan into the chunks the layer runs; chunks with no real token are dropped.
 * `contexts[b]` is the context length (cached + new) of batch row b, `slotOf(b, k)` the flat
 * cache row of its token k.
 */
export function prefillChunks(metadata: MLAPrefillMetadata, contexts: readonly number[],
                              slotOf: (b: number, k: number) => number): PrefillChunk[] {
  const numSeqs = contexts.length;
  const chunks: PrefillChunk[] = [];
  metadata.bufferLengths.forEach((length, c) => {
    if (length <= 0) return;
    const slots: number[] = [];
    const chunkInfo = new Int32Array(numSeqs * 3);
    for (let b = 0; b < numSeqs; b++) {
      const rowsInChunk = metadata.bufferRowOffsets[c][b + 1] - metadata.bufferRowOffsets[c][b];
      const firstToken = metadata.cacheOffsets[c][b];
      const numRows = clamp(contexts[b] - firstToken, 0, rowsInChunk);
      chunkInfo.set([slots.length, firstToken, numRows], b * 3);
      for (let j = 0; j < numRows; j++) slots.push(slotOf(b, firstToken + j));
    }
    if (slots.length > 0) chunks.push({slots, chunkInfo});
  });
  return chunks;
}
