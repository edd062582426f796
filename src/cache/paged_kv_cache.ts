import * as tf from '@tensorflow/tfjs-core';
import {checkInteger} from '../ops/check.js';
import {KVCacheParams} from './kv_cache_params.js';
import {StepPlan} from './step_plan.js';
import {packHalf, unpackHalf} from '../precision/half.js';
import {decodeFp8Row, encodeFp8Row} from '../precision/fp8.js';

interface SequenceState {
  /** Committed tokens (advanced by step). */
  length: number;
  /** Pages owned, in token order. */
  pages: number[];
}

/**
 * One step's view of the cache, returned by `PagedKVCache.fetch`: the sequences of the batch,
 * their cached lengths before the step, their page tables and the storage. Host-side metadata
 * is plain JS numbers, so a step never reads GPU data back.
 */
export class KVCollection {
  readonly seqIds: readonly number[];
  readonly numNewTokens: readonly number[];
  /** Tokens cached before this step, per batch row. */
  readonly cacheLengths: readonly number[];
  /** Page table per batch row, covering cached + new tokens. */
  readonly lookupTable: ReadonlyArray<readonly number[]>;
  /** Pages this fetch took from the free list, per batch row (returned by `cache.rollback`). */
  readonly reservedPages: ReadonlyArray<readonly number[]>;
  readonly params: KVCacheParams;
  readonly cache: PagedKVCache;
  private stepPlan: StepPlan|null = null;

  constructor(cache: PagedKVCache, seqIds: number[], numNewTokens: number[],
              cacheLengths: number[], lookupTable: number[][], reservedPages: number[][]) {
    this.cache = cache;
    this.params = cache.params;
    this.seqIds = Object.freeze([...seqIds]);
    this.numNewTokens = Object.freeze([...numNewTokens]);
    this.cacheLengths = Object.freeze([...cacheLengths]);
    this.lookupTable = Object.freeze(lookupTable.map((row) => Object.freeze([...row])));
    this.reservedPages = Object.freeze(reservedPages.map((row) => Object.freeze([...row])));
  }

  get batchSize(): number {
    return this.seqIds.length;
  }

  get pageSize(): number {
    return this.params.pageSize;
  }

  /** Widest page table of the batch (at least 1). */
  get maxPagesPerSeq(): number {
    return Math.max(1, ...this.lookupTable.map((row) => row.length));
  }

  /** Longest context (cached + new) of the batch. */
  get maxContextLength(): number {
    return Math.max(0, ...this.cacheLengths.map((c, b) => c + this.numNewTokens[b]));
  }

  /** The page table padded with page 0 to [B, maxPagesPerSeq], row-major. */
  lookupValues(): Int32Array {
    const width = this.maxPagesPerSeq;
    const values = new Int32Array(this.batchSize * width);
    this.lookupTable.forEach((row, b) => values.set(row, b * width));
    return values;
  }

  /** Flat cache row (page · pageSize + row in page) of token k of batch row b. */
  slotOf(b: number, k: number): number {
    const pageSize = this.params.pageSize;
    return this.lookupTable[b][Math.floor(k / pageSize)] * pageSize + (k % pageSize);
  }

  /** The storage of one layer, [totalNumPages, pageSize, headDim]. */
  storage(layerIdx = 0): tf.Tensor3D {
    return this.cache.storage(layerIdx);
  }

  /**
   * This step's plan (token info, page table, prefill chunks and their device tensors), made
   * on first use and shared by every layer of the step; freed by the cache at `step`,
   * `rollback`, `release` or `dispose`, after which it throws.
   */
  get plan(): StepPlan {
    if (this.stepPlan === null) {
      this.stepPlan = new StepPlan(this);
      this.cache.trackPlan(this);
    }
    return this.stepPlan;
  }

  /** Frees the plan's device tensors (the cache calls this when the step ends). */
  disposePlan(): void {
    this.stepPlan?.dispose();
  }

  /** Whether this collection's step is over (its plan was disposed). */
  get isStepOver(): boolean {
    return this.stepPlan !== null && this.stepPlan.isDisposed;
  }
}

/**
 * A paged latent KV cache: pages from a free list, a page table per sequence, one storage
 * tensor [totalNumPages, pageSize, headDim] per layer. Kernels write the rows of new tokens
 * into the storage in place; a step never copies the cache.
 */
export class PagedKVCache {
  readonly params: KVCacheParams;
  readonly totalNumPages: number;
  private readonly storages: tf.Tensor3D[];
  private readonly freePages: number[];
  private readonly sequences = new Map<number, SequenceState>();
  /** Collections whose step plan holds device tensors. */
  private readonly plannedCollections = new Set<KVCollection>();
  private disposed = false;

  /**
   * `fillValue` (default 0) is what every row holds before a token is written into it: NaN
   * makes any read outside a sequence's context show up in the results (a debugging aid).
   */
  constructor(params: KVCacheParams, options: {totalNumPages: number, fillValue?: number}) {
    if (!(params instanceof KVCacheParams)) {
      throw new Error('PagedKVCache params: expected a KVCacheParams, got ' + typeof params);
    }
    checkInteger('PagedKVCache totalNumPages', options?.totalNumPages, 1);
    const fillValue = options.fillValue ?? 0;
    if (typeof fillValue !== 'number') {
      throw new Error(`PagedKVCache fillValue: expected a number, got ${typeof fillValue}`);
    }
    this.params = params;
    this.totalNumPages = options.totalNumPages;
    this.storages = [];
    for (let layer = 0; layer < params.numLayers; layer++) {
      const shape: [number, number, number] = [this.totalNumPages, params.pageSize, params.storedRowWidth];
      const half = params.halfDtype;
      // 16-bit rows: every word holds fillValue twice (rounded like any stored value), made on
      // the host (tfjs's webgpu fill passes its value as a float32, which rounds such words).
      const fp8 = params.fp8Layout;
      const row = new Int32Array(params.storedRowWidth);
      if (fp8 !== null) encodeFp8Row(new Float32Array(params.rowWidth).fill(fillValue), fp8, row, 0);
      else if (half !== null) row.fill(packHalf([fillValue, fillValue], half)[0]);
      let storage: tf.Tensor3D;
      if (fp8 === null && half === null) {
        storage = tf.fill(shape, fillValue, 'float32') as tf.Tensor3D;
      } else if (row.every((word) => word === 0)) {
        storage = tf.zeros(shape, 'int32') as tf.Tensor3D;
      } else {
        const words = new Int32Array(shape[0] * shape[1] * shape[2]);
        for (let r = 0; r < shape[0] * shape[1]; r++) words.set(row, r * row.length);
        storage = tf.tensor3d(words, shape, 'int32');
      }
      this.storages.push(tf.keep(storage));
    }
    // Lowest page first, so a fresh cache fills pages in order.
    this.freePages = [];
    for (let page = this.totalNumPages - 1; page >= 0; page--) this.freePages.push(page);
  }

  /** Starts a new, empty sequence. */
  claim(seqId: number): void {
    this.assertLive();
    checkInteger('claim seqId', seqId, 0, Number.MAX_SAFE_INTEGER);
    if (this.sequences.has(seqId)) {
      throw new Error(`claim seqId: sequence ${seqId} is already claimed`);
    }
    this.sequences.set(seqId, {length: 0, pages: []});
  }

  /** Ends a sequence and returns its pages to the free list. */
  release(seqId: number): void {
    this.assertLive();
    const state = this.sequenceState('release seqId', seqId);
    this.endPlansOf([seqId]);
    for (let i = state.pages.length - 1; i >= 0; i--) this.freePages.push(state.pages[i]);
    this.sequences.delete(seqId);
  }

  /** Registers a collection whose plan holds device tensors (KVCollection.plan calls this). */
  trackPlan(collection: KVCollection): void {
    this.plannedCollections.add(collection);
  }

  /** Disposes the plans of the collections that hold any of `seqIds`: their step is over. */
  private endPlansOf(seqIds: readonly number[]): void {
    for (const collection of [...this.plannedCollections]) {
      if (collection.seqIds.some((seqId) => seqIds.includes(seqId))) {
        collection.disposePlan();
        this.plannedCollections.delete(collection);
      }
    }
  }

  /** Whether `seqId` is claimed. */
  contains(seqId: number): boolean {
    return this.sequences.has(seqId);
  }

  /** Tokens committed for `seqId`. */
  cacheLength(seqId: number): number {
    return this.sequenceState('cacheLength seqId', seqId).length;
  }

  get numFreePages(): number {
    return this.freePages.length;
  }

  /** The pages owned by a sequence, in token order. */
  pagesOf(seqId: number): number[] {
    return [...this.sequenceState('pagesOf seqId', seqId).pages];
  }

  /**
   * Reserves pages for this step's new tokens and returns the step's view. Either every
   * sequence gets its pages or, on an error, nothing changes.
   */
  fetch(seqIds: number[], numNewTokens: number[]): KVCollection {
    this.assertLive();
    this.checkBatch('fetch', seqIds, numNewTokens);
    const pageSize = this.params.pageSize;
    const pagesNeeded = seqIds.map((seqId, b) => {
      const state = this.sequences.get(seqId)!;
      const total = Math.ceil((state.length + numNewTokens[b]) / pageSize);
      return Math.max(0, total - state.pages.length);
    });
    const totalNeeded = pagesNeeded.reduce((a, b) => a + b, 0);
    if (totalNeeded > this.freePages.length) {
      throw new Error(`fetch numNewTokens: the cache has no free page left: the step needs ` +
                      `${totalNeeded} new pages of ${pageSize} tokens, ${this.freePages.length} ` +
                      `are free (totalNumPages ${this.totalNumPages})`);
    }
    const reservedPages = seqIds.map((seqId, b) => {
      const state = this.sequences.get(seqId)!;
      const taken: number[] = [];
      for (let i = 0; i < pagesNeeded[b]; i++) taken.push(this.freePages.pop()!);
      state.pages.push(...taken);
      return taken;
    });
    const cacheLengths = seqIds.map((seqId) => this.sequences.get(seqId)!.length);
    const lookupTable = seqIds.map((seqId) => [...this.sequences.get(seqId)!.pages]);
    return new KVCollection(this, seqIds, numNewTokens, cacheLengths, lookupTable, reservedPages);
  }

  /**
   * Undoes a fetch whose step failed: the pages it reserved go back to the free list, so the
   * cache (lengths, pages, committed rows) is as before the fetch. Pages that meanwhile hold
   * committed tokens are kept. The collection must not be used afterwards: fetch again.
   */
  rollback(collection: KVCollection): void {
    this.assertLive();
    if (!(collection instanceof KVCollection) || collection.cache !== this) {
      throw new Error('rollback collection: expected a KVCollection fetched from this cache');
    }
    this.endPlansOf(collection.seqIds);
    collection.seqIds.forEach((seqId, b) => {
      const state = this.sequences.get(seqId);
      const reserved = collection.reservedPages[b];
      if (state === undefined || reserved.length === 0) return;
      const committedPages = Math.ceil(state.length / this.params.pageSize);
      // Only the reserved pages still at the tail of the sequence and past its committed rows.
      const tail = state.pages.slice(state.pages.length - reserved.length);
      const stillTail = tail.every((page, i) => page === reserved[i]);
      if (!stillTail || state.pages.length - reserved.length < committedPages) return;
      state.pages.length -= reserved.length;
      for (let i = reserved.length - 1; i >= 0; i--) this.freePages.push(reserved[i]);
    });
  }

  /** Commits this step's tokens: each sequence's length advances by its new-token count. */
  step(seqIds: number[], numNewTokens: number[]): void {
    this.assertLive();
    this.checkBatch('step', seqIds, numNewTokens);
    seqIds.forEach((seqId, b) => {
      const state = this.sequences.get(seqId)!;
      const reserved = state.pages.length * this.params.pageSize;
      if (state.length + numNewTokens[b] > reserved) {
        throw new Error(`step numNewTokens[${b}]: sequence ${seqId} has ${reserved - state.length} ` +
                        `reserved rows, got ${numNewTokens[b]} tokens (call fetch first)`);
      }
    });
    this.endPlansOf(seqIds);
    seqIds.forEach((seqId, b) => {
      this.sequences.get(seqId)!.length += numNewTokens[b];
    });
  }

  /**
   * The storage of one layer, owned by the cache: float32 [totalNumPages, pageSize, headDim], or
   * with a 16-bit dtype int32 [totalNumPages, pageSize, headDim / 2] (two values a word).
   */
  storage(layerIdx = 0): tf.Tensor3D {
    this.assertLive();
    checkInteger('layerIdx', layerIdx, 0, this.params.numLayers - 1);
    return this.storages[layerIdx];
  }

  /**
   * The committed rows of a sequence in one layer, [cacheLength, headDim], widened to float32
   * (the stored values exactly). Async: no GPU stall.
   */
  async readSequence(seqId: number, layerIdx = 0): Promise<Float32Array> {
    const state = this.sequenceState('readSequence seqId', seqId);
    const all = await this.storage(layerIdx).data() as Float32Array|Int32Array;
    const width = this.params.rowWidth;
    const stored = this.params.storedRowWidth;
    const half = this.params.halfDtype;
    const pageSize = this.params.pageSize;
    const out = new Float32Array(state.length * width);
    for (let k = 0; k < state.length; k++) {
      const row = state.pages[Math.floor(k / pageSize)] * pageSize + (k % pageSize);
      const fp8 = this.params.fp8Layout;
      if (fp8 !== null) {
        decodeFp8Row(all, row * stored, fp8, out.subarray(k * width, (k + 1) * width));
      } else if (half === null) {
        out.set(all.subarray(row * width, (row + 1) * width), k * width);
      } else {
        unpackHalf(all, half, width, row * 2 * stored, out.subarray(k * width, (k + 1) * width));
      }
    }
    return out;
  }

  /** Frees the storage of every layer. The cache cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.plannedCollections.forEach((collection) => collection.disposePlan());
    this.plannedCollections.clear();
    this.storages.forEach((s) => s.dispose());
    this.sequences.clear();
    this.disposed = true;
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  private assertLive(): void {
    if (this.disposed) throw new Error('PagedKVCache: the cache has been disposed');
  }

  private sequenceState(what: string, seqId: number): SequenceState {
    const state = this.sequences.get(seqId);
    if (state === undefined) {
      throw new Error(`${what}: sequence ${seqId} is not claimed (claimed: ` +
                      `[${[...this.sequences.keys()].join(', ')}])`);
    }
    return state;
  }

  private checkBatch(what: string, seqIds: number[], numNewTokens: number[]): void {
    if (!Array.isArray(seqIds) || !Array.isArray(numNewTokens)) {
      throw new Error(`${what}: expected arrays seqIds and numNewTokens, got ${typeof seqIds} and ` +
                      `${typeof numNewTokens}`);
    }
    if (seqIds.length !== numNewTokens.length) {
      throw new Error(`${what} numNewTokens: expected one count per sequence (${seqIds.length}), ` +
                      `got ${numNewTokens.length}`);
    }
    const seen = new Set<number>();
    seqIds.forEach((seqId, b) => {
      this.sequenceState(`${what} seqIds[${b}]`, seqId);
      if (seen.has(seqId)) throw new Error(`${what} seqIds[${b}]: sequence ${seqId} appears twice`);
      seen.add(seqId);
      checkInteger(`${what} numNewTokens[${b}]`, numNewTokens[b], 0);
    });
  }
}
