import {readFileSync} from 'node:fs';
import {createServer, get, Server} from 'node:http';
import {createRequire} from 'node:module';
import path from 'node:path';
import {CheckpointServer, parseRange, startCheckpointServer} from '../../scripts/lib/checkpoint_server.mjs';

// scripts/lib/checkpoint_server.mjs (the HTTP server the loader specs, the chat-page e2e test
// and karma's /fixtures/ middleware use): byte ranges, 416, 404, the no-range mode, HEAD,
// CORS and what it counts.

const FILE = Uint8Array.from({length: 1000}, (_, i) => (i * 7 + 3) & 0xff);
const OTHER = new TextEncoder().encode('{"hello": "world"}\n');

/** A GET with the path sent as written (fetch would normalize '..' and '%2e%2e' away): the status. */
function rawStatus(base: string, rawPath: string): Promise<number> {
  const url = new URL(base);
  return new Promise((resolve, reject) => {
    get({host: url.hostname, port: url.port, path: rawPath}, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
}

async function bodyOf(r: Response): Promise<Uint8Array> {
  return new Uint8Array(await r.arrayBuffer());
}

describe('checkpoint server', () => {
  let server: CheckpointServer;

  beforeEach(async () => {
    server = await startCheckpointServer({files: new Map([['model.safetensors', FILE], ['sub/config.json', OTHER]])});
  });

  afterEach(async () => {
    await server.close();
  });

  it('listens on 127.0.0.1 at a free port; GET sends the whole file with 200, lengths and CORS headers', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const r = await fetch(`${server.url}model.safetensors`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-length')).toBe('1000');
    expect(r.headers.get('accept-ranges')).toBe('bytes');
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-expose-headers')).toContain('Content-Range');
    expect(r.headers.get('access-control-expose-headers')).toContain('Content-Length');
    expect(r.headers.get('access-control-expose-headers')).toContain('Accept-Ranges');
    expect(await bodyOf(r)).toEqual(FILE);
    const json = await fetch(`${server.url}sub/config.json`);
    expect(json.headers.get('content-type')).toBe('application/json');
    expect(await json.json()).toEqual({hello: 'world'});
  });

  it('Range bytes=a-b, a-, -n → 206 with Content-Range; an end past the file is clipped', async () => {
    const cases: Array<[string, number, number]> = [
      ['bytes=0-7', 0, 7], ['bytes=100-199', 100, 199], ['bytes=990-', 990, 999], ['bytes=-8', 992, 999],
      ['bytes=995-5000', 995, 999], ['bytes=-5000', 0, 999], ['bytes=999-999', 999, 999],
    ];
    for (const [range, a, b] of cases) {
      const r = await fetch(`${server.url}model.safetensors`, {headers: {Range: range}});
      expect(r.status).withContext(range).toBe(206);
      expect(r.headers.get('content-range')).withContext(range).toBe(`bytes ${a}-${b}/1000`);
      expect(r.headers.get('content-length')).withContext(range).toBe(String(b - a + 1));
      expect(await bodyOf(r)).withContext(range).toEqual(FILE.subarray(a, b + 1));
    }
  });

  it('unsatisfiable ranges → 416 with Content-Range bytes */size; a malformed one is ignored (200)', async () => {
    for (const range of ['bytes=1000-', 'bytes=1000-1001', 'bytes=-0']) {
      const r = await fetch(`${server.url}model.safetensors`, {headers: {Range: range}});
      expect(r.status).withContext(range).toBe(416);
      expect(r.headers.get('content-range')).withContext(range).toBe('bytes */1000');
      expect((await bodyOf(r)).byteLength).toBe(0);
    }
    for (const range of ['bytes=5-3', 'items=0-3', 'bytes=0-3,8-9']) {
      const r = await fetch(`${server.url}model.safetensors`, {headers: {Range: range}});
      expect(r.status).withContext(range).toBe(200);
      expect((await bodyOf(r)).byteLength).toBe(1000);
    }
  });

  it('404 for a missing file, the root and a path escaping the root', async () => {
    for (const p of ['nope.json', '', 'sub/']) {
      const r = await fetch(`${server.url}${p}`);
      expect(r.status).withContext(p).toBe(404);
      await r.arrayBuffer();
    }
    for (const p of ['/../package.json', '/%2e%2e/package.json', '/sub/../../package.json', '/..%2fpackage.json']) {
      expect(await rawStatus(server.url, p)).withContext(p).toBe(404);
    }
    const ranged = await fetch(`${server.url}nope.safetensors`, {headers: {Range: 'bytes=0-7'}});
    expect(ranged.status).toBe(404);
    await ranged.arrayBuffer();
  });

  it('HEAD: the status and headers of GET, no body', async () => {
    const r = await fetch(`${server.url}model.safetensors`, {method: 'HEAD'});
    expect(r.status).toBe(200);
    expect(r.headers.get('content-length')).toBe('1000');
    expect((await bodyOf(r)).byteLength).toBe(0);
    const ranged = await fetch(`${server.url}model.safetensors`, {method: 'HEAD', headers: {Range: 'bytes=8-15'}});
    expect(ranged.status).toBe(206);
    expect(ranged.headers.get('content-range')).toBe('bytes 8-15/1000');
    expect(ranged.headers.get('content-length')).toBe('8');
    const missing = await fetch(`${server.url}missing`, {method: 'HEAD'});
    expect(missing.status).toBe(404);
  });

  it('OPTIONS preflight allows GET/HEAD and the Range header from any origin', async () => {
    const r = await fetch(`${server.url}model.safetensors`, {
      method: 'OPTIONS',
      headers: {'Origin': 'http://127.0.0.1:1', 'Access-Control-Request-Method': 'GET',
                'Access-Control-Request-Headers': 'range'},
    });
    expect(r.status).toBe(204);
    expect(r.headers.get('access-control-allow-origin')).toBe('*');
    expect(r.headers.get('access-control-allow-methods')).toContain('GET');
    expect(r.headers.get('access-control-allow-headers')!.toLowerCase()).toContain('range');
  });

  it('counts every request (method, path, range, status, body bytes) and the bytes sent', async () => {
    await (await fetch(`${server.url}model.safetensors`, {headers: {Range: 'bytes=0-7'}})).arrayBuffer();
    await (await fetch(`${server.url}model.safetensors`, {headers: {Range: 'bytes=-100'}})).arrayBuffer();
    await (await fetch(`${server.url}sub/config.json`)).arrayBuffer();
    await (await fetch(`${server.url}model.safetensors`, {method: 'HEAD'})).arrayBuffer();
    await (await fetch(`${server.url}model.safetensors`, {headers: {Range: 'bytes=2000-'}})).arrayBuffer();
    expect(server.stats.requests).toEqual([
      {method: 'GET', path: 'model.safetensors', range: 'bytes=0-7', status: 206, bytes: 8},
      {method: 'GET', path: 'model.safetensors', range: 'bytes=-100', status: 206, bytes: 100},
      {method: 'GET', path: 'sub/config.json', range: null, status: 200, bytes: OTHER.byteLength},
      {method: 'HEAD', path: 'model.safetensors', range: null, status: 200, bytes: 0},
      {method: 'GET', path: 'model.safetensors', range: 'bytes=2000-', status: 416, bytes: 0},
    ]);
    expect(server.stats.bytesSent).toBe(8 + 100 + OTHER.byteLength);
  });
});

describe('checkpoint server options', () => {
  it('supportRange false: Range is ignored, 200 with the whole file, Accept-Ranges none', async () => {
    const server = await startCheckpointServer({files: new Map([['a.bin', FILE]]), supportRange: false});
    try {
      const r = await fetch(`${server.url}a.bin`, {headers: {Range: 'bytes=0-7'}});
      expect(r.status).toBe(200);
      expect(r.headers.get('accept-ranges')).toBe('none');
      expect(r.headers.get('content-range')).toBeNull();
      expect(await bodyOf(r)).toEqual(FILE);
      const beyond = await fetch(`${server.url}a.bin`, {headers: {Range: 'bytes=5000-'}});
      expect(beyond.status).toBe(200);
      await beyond.arrayBuffer();
      expect(server.stats.bytesSent).toBe(2000);
    } finally {
      await server.close();
    }
  });

  it('root: serves a folder (tiny_mla_lm), in-memory files first', async () => {
    const root = path.resolve('test/fixtures/tiny_mla_lm');
    const override = new TextEncoder().encode('{}');
    const server = await startCheckpointServer({root, files: new Map([['config.json', override]])});
    try {
      const index = await fetch(`${server.url}model.safetensors.index.json`);
      expect(new Uint8Array(await index.arrayBuffer())).toEqual(new Uint8Array(readFileSync(path.join(root, 'model.safetensors.index.json'))));
      const shard = 'model-00002-of-00002.safetensors';
      const size = readFileSync(path.join(root, shard)).byteLength;
      const head = await fetch(`${server.url}${shard}`, {headers: {Range: 'bytes=0-7'}});
      expect(head.status).toBe(206);
      expect(head.headers.get('content-range')).toBe(`bytes 0-7/${size}`);
      const headerLength = new DataView(await head.arrayBuffer()).getUint32(0, true);
      expect(headerLength).toBe(1984);
      expect(await (await fetch(`${server.url}config.json`)).text()).toBe('{}');
      const missing = await fetch(`${server.url}README.nope`);
      expect(missing.status).toBe(404);
      await missing.arrayBuffer();
    } finally {
      await server.close();
    }
  });

  it('truncate: the file is announced in full but the body stops short', async () => {
    const server = await startCheckpointServer({files: new Map([['a.bin', FILE]]), truncate: {'a.bin': 100}});
    try {
      const r = await fetch(`${server.url}a.bin`);
      expect(r.headers.get('content-length')).toBe('1000');
      let got = -1;
      try {
        got = (await r.arrayBuffer()).byteLength;
      } catch (e) {
        got = -1;   // undici: "terminated" (the connection closed before Content-Length bytes)
      }
      expect(got).toBeLessThan(1000);
      expect(server.stats.requests[0].bytes).toBe(100);
      // A range of the file is cut short too (relative to the range's body).
      const ranged = await fetch(`${server.url}a.bin`, {headers: {Range: 'bytes=500-899'}});
      expect(ranged.headers.get('content-length')).toBe('400');
      await ranged.arrayBuffer().catch(() => undefined);
      expect(server.stats.requests[1].bytes).toBe(100);
    } finally {
      await server.close();
    }
  });

  it('parseRange', () => {
    expect(parseRange('bytes=0-0', 10)).toEqual([0, 0]);
    expect(parseRange('bytes=3-', 10)).toEqual([3, 9]);
    expect(parseRange('bytes=-3', 10)).toEqual([7, 9]);
    expect(parseRange('bytes=-30', 10)).toEqual([0, 9]);
    expect(parseRange('bytes=8-30', 10)).toEqual([8, 9]);
    expect(parseRange('bytes=10-', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-', 0)).toBe('unsatisfiable');
    expect(parseRange('bytes=4-2', 10)).toBeNull();
    expect(parseRange('bytes=-', 10)).toBeNull();
    expect(parseRange('bytes=0-1,3-4', 10)).toBeNull();
  });
});

describe('karma fixtures middleware', () => {
  it('serves test/fixtures/ under /fixtures/ with ranges, and passes other paths on', async () => {
    // Loaded at run time from its own folder (its paths are relative to scripts/lib/).
    const load = createRequire(path.resolve('package.json'));
    const plugin = load(path.resolve('scripts/lib/karma_fixtures_middleware.cjs')) as
      Record<string, ['factory', () => (req: unknown, res: unknown, next: (e?: unknown) => void) => void]>;
    const middleware = plugin['middleware:fixtures'][1]();
    const server: Server = createServer((req, res) => middleware(req, res, () => {
      res.writeHead(299, {'Content-Length': '0'});
      res.end();
    }));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    try {
      const file = path.resolve('test/fixtures/tiny_mla_lm/model-00001-of-00002.safetensors');
      const bytes = new Uint8Array(readFileSync(file));
      const r = await fetch(`${base}/fixtures/tiny_mla_lm/model-00001-of-00002.safetensors`,
                            {headers: {Range: 'bytes=8-39'}});
      expect(r.status).toBe(206);
      expect(r.headers.get('content-range')).toBe(`bytes 8-39/${bytes.byteLength}`);
      expect(r.headers.get('access-control-allow-origin')).toBe('*');
      expect(new Uint8Array(await r.arrayBuffer())).toEqual(bytes.subarray(8, 40));
      const config = await fetch(`${base}/fixtures/tiny_mla_lm/config.json`);
      expect(config.status).toBe(200);
      expect((await config.json()).model_type).toBe('youtu');
      const missing = await fetch(`${base}/fixtures/tiny_mla_lm/nope.json`);
      expect(missing.status).toBe(404);
      await missing.arrayBuffer();
      for (const p of ['/fixtures/../package.json', '/fixtures/%2e%2e/package.json', '/fixtures/..%2fpackage.json',
                       '/fixtures/tiny_mla_lm/../../../package.json']) {
        expect(await rawStatus(base, p)).withContext(p).toBe(404);
      }
      const other = await fetch(`${base}/base/.build/tests.js`);
      expect(other.status).toBe(299);
      await other.arrayBuffer();
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
