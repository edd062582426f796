import {KVCacheParams, PagedKVCache} from '../../src/index.js';

// The cache's bookkeeping (claim, fetch, step, rollback, release, the free list and its
// errors) on the cpu backend. Writing rows through a layer is checked on every backend in the
// browser lane (test/cache.spec.ts).

describe('PagedKVCache bookkeeping [cpu]', () => {
  it('hands out pages from the free list, keeps a page table per sequence and reuses released pages', () => {
    const cache = new PagedKVCache(new KVCacheParams({headDim: 6, pageSize: 4, numLayers: 2}), {totalNumPages: 5});
    expect(cache.storage(0).shape).toEqual([5, 4, 6]);
    expect(cache.storage(1).shape).toEqual([5, 4, 6]);
    cache.claim(7);
    cache.claim(3);
    const first = cache.fetch([7, 3], [5, 1]);
    expect(first.cacheLengths).toEqual([0, 0]);
    expect(first.lookupTable).toEqual([[0, 1], [2]]);
    expect(first.slotOf(0, 4)).toBe(4);
    expect(first.slotOf(1, 0)).toBe(8);
    cache.step([7, 3], [5, 1]);
    expect(cache.cacheLength(7)).toBe(5);
    expect(cache.numFreePages).toBe(2);
    const second = cache.fetch([3], [4]);
    expect(second.cacheLengths).toEqual([1]);
    expect(second.lookupTable).toEqual([[2, 3]]);
    cache.step([3], [4]);
    cache.release(7);
    expect(cache.numFreePages).toBe(3);
    for (let i = 0; i < 20; i++) {  // claim/release in a loop: no growth, pages come back
      cache.claim(100 + i);
      cache.fetch([100 + i], [12]);
      cache.step([100 + i], [12]);
      cache.release(100 + i);
      expect(cache.numFreePages).toBe(3);
    }
    cache.dispose();
    expect(() => cache.claim(1)).toThrowError(/disposed/);
  });

  it('names the argument, the expectation and the value in its errors, and changes nothing on error', () => {
    const cache = new PagedKVCache(new KVCacheParams({headDim: 6, pageSize: 4}), {totalNumPages: 2});
    cache.claim(1);
    expect(() => cache.claim(1)).toThrowError('claim seqId: sequence 1 is already claimed');
    expect(() => cache.fetch([2], [1])).toThrowError(/fetch seqIds\[0\]: sequence 2 is not claimed/);
    expect(() => cache.fetch([1], [1, 2])).toThrowError(/fetch numNewTokens: expected one count per sequence \(1\), got 2/);
    expect(() => cache.fetch([1], [-1])).toThrowError(/fetch numNewTokens\[0\]: expected an integer ≥ 0, got -1/);
    expect(() => cache.fetch([1], [9])).toThrowError(/no free page left: the step needs 3 new pages of 4 tokens, 2 are free/);
    expect(cache.numFreePages).toBe(2);
    expect(cache.pagesOf(1)).toEqual([]);
    expect(() => cache.step([1], [1])).toThrowError(/step numNewTokens\[0\]: sequence 1 has 0 reserved rows, got 1 tokens/);
    expect(cache.cacheLength(1)).toBe(0);
    cache.release(1);
    expect(() => cache.release(1)).toThrowError(/release seqId: sequence 1 is not claimed/);
    expect(() => cache.cacheLength(1)).toThrowError(/cacheLength seqId: sequence 1 is not claimed/);
    expect(() => new KVCacheParams({headDim: 0})).toThrowError(/KVCacheParams headDim: expected an integer ≥ 1, got 0/);
    expect(() => new PagedKVCache(new KVCacheParams({headDim: 4}), {totalNumPages: 0}))
        .toThrowError(/PagedKVCache totalNumPages: expected an integer ≥ 1, got 0/);
    cache.dispose();
  });

  it('rollback returns the pages a fetch reserved, keeps committed ones and never frees a page twice', () => {
    const cache = new PagedKVCache(new KVCacheParams({headDim: 3, pageSize: 4}), {totalNumPages: 6});
    cache.claim(0);
    cache.claim(1);
    cache.fetch([0, 1], [5, 2]);
    cache.step([0, 1], [5, 2]);
    expect([cache.pagesOf(0), cache.pagesOf(1), cache.numFreePages]).toEqual([[0, 1], [2], 3]);

    const failed = cache.fetch([0, 1], [4, 1]);  // 9 tokens need a third page; 3 still fit in one
    expect(failed.reservedPages).toEqual([[3], []]);
    expect(cache.numFreePages).toBe(2);
    cache.rollback(failed);
    expect([cache.pagesOf(0), cache.pagesOf(1), cache.numFreePages]).toEqual([[0, 1], [2], 3]);
    expect([cache.cacheLength(0), cache.cacheLength(1)]).toEqual([5, 2]);

    // A rollback after the step committed its tokens keeps the pages.
    const committed = cache.fetch([0], [4]);
    cache.step([0], [4]);
    cache.rollback(committed);
    expect([cache.pagesOf(0), cache.cacheLength(0), cache.numFreePages]).toEqual([[0, 1, 3], 9, 2]);

    // The pages of a released sequence are back already: no second return.
    cache.claim(2);
    const orphan = cache.fetch([2], [1]);
    expect(cache.numFreePages).toBe(1);
    cache.release(2);
    expect(cache.numFreePages).toBe(2);
    cache.rollback(orphan);
    expect(cache.numFreePages).toBe(2);

    const other = new PagedKVCache(new KVCacheParams({headDim: 3, pageSize: 4}), {totalNumPages: 1});
    other.claim(0);
    const foreign = other.fetch([0], [1]);
    expect(() => cache.rollback(foreign)).toThrowError(/rollback collection: expected a KVCollection fetched from this cache/);
    expect(cache.numFreePages).toBe(2);
    other.dispose();
    cache.dispose();
  });

  it('a fetch that fails for one sequence reserves nothing for the others', () => {
    const cache = new PagedKVCache(new KVCacheParams({headDim: 3, pageSize: 2}), {totalNumPages: 4});
    cache.claim(0);
    cache.claim(1);
    expect(() => cache.fetch([0, 1], [2, 9])).toThrowError(/the step needs 6 new pages of 2 tokens, 4 are free/);
    expect(() => cache.fetch([0, 0], [1, 1])).toThrowError(/fetch seqIds\[1\]: sequence 0 appears twice/);
    expect(() => cache.fetch([0, 7], [1, 1])).toThrowError(/fetch seqIds\[1\]: sequence 7 is not claimed \(claimed: \[0, 1\]\)/);
    expect([cache.pagesOf(0), cache.pagesOf(1), cache.numFreePages]).toEqual([[], [], 4]);
    const ok = cache.fetch([0, 1], [2, 3]);
    expect(ok.lookupTable).toEqual([[0], [1, 2]]);
    expect(ok.cacheLengths).toEqual([0, 0]);
    cache.dispose();
  });
});
