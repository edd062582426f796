/**
 * A fetch over files held in memory, with HTTP's Range semantics (206 + Content-Range, 416,
 * 404), for loading checkpoints "over HTTP" in specs without a server. Options make it a
 * server that ignores Range (200 with the whole file) or one that cuts a file short.
 */
export interface MemoryFetchOptions {
  /** false: Range headers are ignored (200, the whole file). Default true. */
  supportRange?: boolean;
  /** file name → bytes actually served (Content-Range still claims the full size). */
  truncate?: Map<string, number>;
}

export interface MemoryFetch {
  fetch: typeof fetch;
  /** The base URL the files live under. */
  base: string;
  /** Every request: the file, its Range header (or null) and the response status. */
  requests: Array<{file: string, range: string|null, status: number}>;
  /** Body bytes sent. */
  bytesSent(): number;
}

export const MEMORY_BASE = 'http://checkpoint.test/model/';

export function memoryFetch(files: Map<string, Uint8Array>, options: MemoryFetchOptions = {}): MemoryFetch {
  const supportRange = options.supportRange ?? true;
  const requests: MemoryFetch['requests'] = [];
  let sent = 0;
  const respond = (file: string, range: string|null, status: number, body: Uint8Array|null,
                   headers: Record<string, string> = {}): Response => {
    requests.push({file, range, status});
    sent += body?.byteLength ?? 0;
    return new Response(body as unknown as BodyInit|null, {status, headers});
  };
  const fetchFn = async (input: string|URL|Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const file = url.startsWith(MEMORY_BASE) ? url.slice(MEMORY_BASE.length) : url;
    const range = new Headers(init?.headers).get('Range');
    const bytes = files.get(file);
    if (bytes === undefined) return respond(file, range, 404, null);
    const served = bytes.subarray(0, options.truncate?.get(file) ?? bytes.byteLength);
    const match = range === null || !supportRange ? null : /^bytes=(\d+)-(\d+)$/.exec(range);
    if (match === null) return respond(file, range, 200, served.slice());
    const begin = Number(match[1]);
    const end = Math.min(Number(match[2]), bytes.byteLength - 1);
    if (begin >= bytes.byteLength) {
      return respond(file, range, 416, null, {'Content-Range': `bytes */${bytes.byteLength}`});
    }
    return respond(file, range, 206, served.slice(begin, end + 1),
                   {'Content-Range': `bytes ${begin}-${end}/${bytes.byteLength}`});
  };
  return {fetch: fetchFn as typeof fetch, base: MEMORY_BASE, requests, bytesSent: () => sent};
}
