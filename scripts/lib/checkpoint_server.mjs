// An HTTP server for checkpoints (Node builtins only): serves a folder and/or in-memory files
// with GET/HEAD, single byte ranges (206 + Content-Range), 416 for unsatisfiable ranges, 404
// for missing files, and CORS headers so a page on another origin can read from it (preflight
// allowing Range; Content-Range, Content-Length and Accept-Ranges exposed). Used by the Node
// specs (test/node/checkpoint_server.spec.ts, the model loader's), the chat-page e2e test and,
// through the same range logic (serveFile), karma's /fixtures/ middleware
// (scripts/lib/karma_fixtures_middleware.cjs).
//
//   const server = await startCheckpointServer({root: 'test/fixtures/tiny_mla_lm'});
//   server.url            // 'http://127.0.0.1:PORT/'
//   server.stats          // {requests: [{method, path, range, status, bytes}], bytesSent}
//   await server.close();
//
// Options: root (a folder), files (Map name → Uint8Array; looked up before root), supportRange
// (default true; false ignores Range and always sends the whole file with 200), host
// ('127.0.0.1'), port (0: any free port), truncate ({name: bytes}: that file is announced
// with its full Content-Length / Content-Range but only the first `bytes` bytes of the
// response body are sent before the connection is closed — a broken transfer for error tests),
// latencyMs (a delay before each response).
import {createServer} from 'node:http';
import {promises as fs} from 'node:fs';
import path from 'node:path';

const CORS = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Expose-Headers': 'Content-Range, Content-Length, Accept-Ranges, Content-Type',
};

/**
 * A single `bytes=` range against a file of `size` bytes: [first, last] (inclusive, clipped to
 * the file), 'unsatisfiable', or null when the header is not one range understood here (then
 * the whole file is sent with 200, as RFC 9110 allows a server to ignore Range).
 */
export function parseRange(header, size) {
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/.exec(header);
  if (m === null || (m[1] === '' && m[2] === '')) return null;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return [Math.max(0, size - n), size - 1];
  }
  const a = Number(m[1]);
  if (m[2] !== '' && Number(m[2]) < a) return null;
  if (a >= size) return 'unsatisfiable';
  const b = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  return [a, b];
}

function contentType(name) {
  if (name.endsWith('.json')) return 'application/json';
  if (name.endsWith('.txt') || name.endsWith('.md')) return 'text/plain; charset=utf-8';
  return 'application/octet-stream';
}

/**
 * Answers one request for a file whose bytes `bytes` are known (null: missing). Writes the
 * response to `res` and returns {status, bytes} (body bytes sent). Shared with the karma
 * middleware.
 *   opts: {supportRange = true, truncateTo?: number, cors = true}
 */
export function serveFile(req, res, name, bytes, opts = {}) {
  const supportRange = opts.supportRange ?? true;
  const cors = opts.cors ?? true;
  const method = (req.method ?? 'GET').toUpperCase();
  const base = cors ? {...CORS} : {};
  if (method === 'OPTIONS') {
    res.writeHead(204, {
      ...base,
      'Access-Control-Allow-Methods': 'GET, HEAD, OPTIONS',
      'Access-Control-Allow-Headers': req.headers['access-control-request-headers'] ?? 'Range',
      'Access-Control-Max-Age': '600',
      'Content-Length': '0',
    });
    res.end();
    return {status: 204, bytes: 0};
  }
  if (method !== 'GET' && method !== 'HEAD') {
    res.writeHead(405, {...base, Allow: 'GET, HEAD, OPTIONS', 'Content-Length': '0'});
    res.end();
    return {status: 405, bytes: 0};
  }
  if (bytes === null) {
    const body = Buffer.from(`not found: ${name}\n`);
    res.writeHead(404, {...base, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': String(body.length)});
    if (method === 'HEAD') {
      res.end();
      return {status: 404, bytes: 0};
    }
    res.end(body);
    return {status: 404, bytes: body.length};
  }
  const size = bytes.byteLength;
  const headers = {
    ...base,
    'Content-Type': contentType(name),
    'Accept-Ranges': supportRange ? 'bytes' : 'none',
    'Cache-Control': 'no-store',
  };
  const rangeHeader = req.headers.range;
  const parsed = supportRange && typeof rangeHeader === 'string' ? parseRange(rangeHeader, size) : null;
  if (parsed === 'unsatisfiable') {
    res.writeHead(416, {...headers, 'Content-Range': `bytes */${size}`, 'Content-Length': '0'});
    res.end();
    return {status: 416, bytes: 0};
  }
  let status = 200;
  let body = bytes;
  if (parsed !== null) {
    const [a, b] = parsed;
    status = 206;
    body = bytes.subarray(a, b + 1);
    headers['Content-Range'] = `bytes ${a}-${b}/${size}`;
  }
  headers['Content-Length'] = String(body.byteLength);
  res.writeHead(status, headers);
  if (method === 'HEAD') {
    res.end();
    return {status, bytes: 0};
  }
  const truncateTo = opts.truncateTo;
  if (truncateTo !== undefined && truncateTo < body.byteLength) {
    // Fewer bytes than announced, then the connection is cut: the client sees an incomplete body.
    const part = body.subarray(0, Math.max(0, truncateTo));
    res.write(Buffer.from(part.buffer, part.byteOffset, part.byteLength), () => {
      res.destroy();
    });
    return {status, bytes: part.byteLength};
  }
  res.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
  return {status, bytes: body.byteLength};
}

/** The request path as a file name relative to the served root ('' for '/'), or null if it escapes. */
export function requestName(url) {
  let pathname;
  try {
    pathname = decodeURIComponent(new URL(url ?? '/', 'http://x/').pathname);
  } catch {
    return null;
  }
  const name = path.posix.normalize(pathname).replace(/^\/+/, '');
  if (name.startsWith('..') || name.includes('\0')) return null;
  return name;
}

/** The bytes of `name` under `root` (a regular file), or null. */
export async function readUnder(root, name) {
  const resolvedRoot = path.resolve(root);
  const file = path.resolve(resolvedRoot, name);
  if (file !== resolvedRoot && !file.startsWith(resolvedRoot + path.sep)) return null;
  try {
    const stat = await fs.stat(file);
    if (!stat.isFile()) return null;
    return new Uint8Array(await fs.readFile(file));
  } catch {
    return null;
  }
}

/**
 * Starts the server. Resolves to {url, port, stats, close()}; close() resolves when the server
 * has stopped (open connections are closed).
 */
export async function startCheckpointServer(options = {}) {
  const {root, files, supportRange = true, host = '127.0.0.1', port = 0, truncate = {}, latencyMs = 0} = options;
  const stats = {requests: [], bytesSent: 0};
  const sockets = new Set();
  const server = createServer(async (req, res) => {
    const name = requestName(req.url);
    let bytes = null;
    if (name !== null && name !== '') {
      const mem = files?.get(name);
      if (mem !== undefined) bytes = mem;
      else if (root !== undefined) bytes = await readUnder(root, name);
    }
    if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
    const truncateTo = name !== null && Object.prototype.hasOwnProperty.call(truncate, name) ? truncate[name] : undefined;
    const result = serveFile(req, res, name ?? String(req.url), bytes, {supportRange, truncateTo});
    const range = typeof req.headers.range === 'string' ? req.headers.range : null;
    stats.requests.push({method: (req.method ?? 'GET').toUpperCase(), path: name ?? String(req.url), range,
                         status: result.status, bytes: result.bytes});
    stats.bytesSent += result.bytes;
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  const actualPort = typeof address === 'object' && address !== null ? address.port : port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${actualPort}/`,
    port: actualPort,
    stats,
    close() {
      return new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      });
    },
  };
}
