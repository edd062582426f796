// Karma plugin: serves test/fixtures/ under /fixtures/ on karma's own origin, with the range
// logic of checkpoint_server.mjs (GET/HEAD, Range → 206 + Content-Range, 416, 404, CORS), so
// browser specs can load checkpoints over HTTP: fetch('/fixtures/tiny_mla_lm/config.json').
// karma.conf.cjs lists it in `plugins` and `beforeMiddleware: ['fixtures']`.
'use strict';
const path = require('node:path');
const {pathToFileURL} = require('node:url');

const PREFIX = '/fixtures/';
const ROOT = path.resolve(__dirname, '..', '..', 'test', 'fixtures');

let server;   // checkpoint_server.mjs (ESM), imported on the first request
function loadServer() {
  server ??= import(pathToFileURL(path.join(__dirname, 'checkpoint_server.mjs')).href);
  return server;
}

function createFixturesMiddleware() {
  return function fixturesMiddleware(req, res, next) {
    const url = req.url ?? '';
    if (!url.startsWith(PREFIX)) {
      next();
      return;
    }
    loadServer().then(async ({requestName, readUnder, serveFile}) => {
      const name = requestName(url.slice(PREFIX.length - 1));
      const bytes = name === null || name === '' ? null : await readUnder(ROOT, name);
      serveFile(req, res, name ?? url, bytes, {supportRange: true});
    }).catch(next);
  };
}

module.exports = {'middleware:fixtures': ['factory', createFixturesMiddleware]};
