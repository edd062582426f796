/**
 * A page table for kernel specs: each batch row gets ceil(context / pageSize) pages handed out
 * in a scrambled order (plus two spare pages), so a kernel that ignores the page table or
 * reads another sequence's rows shows up.
 */
export interface PagedLayout {
  maxPages: number;
  totalPages: number;
  /** [B, maxPages] row-major. */
  lookup: Int32Array;
  /** Flat cache row of token k of batch row b. */
  rowOf(b: number, k: number): number;
}

/** `random` returns numbers in [0, 1). */
export function scrambledPagedLayout(contexts: number[], pageSize: number,
                                     random: () => number): PagedLayout {
  const pagesOf = contexts.map((n) => Math.ceil(n / pageSize));
  const maxPages = Math.max(1, ...pagesOf);
  const totalPages = pagesOf.reduce((a, b) => a + b, 0) + 2;
  const order = Array.from({length: totalPages}, (_, i) => i);
  for (let i = totalPages - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const lookup = new Int32Array(contexts.length * maxPages);
  let next = 0;
  pagesOf.forEach((pages, b) => {
    for (let k = 0; k < pages; k++) lookup[b * maxPages + k] = order[next++];
  });
  const rowOf = (b: number, k: number) =>
      lookup[b * maxPages + Math.floor(k / pageSize)] * pageSize + k % pageSize;
  return {maxPages, totalPages, lookup, rowOf};
}
