// Karma config for the browser tests. Normally started by `npm test` (scripts/test.mjs), which
// first bundles test/helpers/setup.ts + test/**/*.spec.ts into .build/tests.js with esbuild.
// Standalone (after a bundle exists): `npx karma start karma.conf.cjs`.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

if (!process.env.CHROME_BIN) {
  const found = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find(p => fs.existsSync(p));
  if (found) process.env.CHROME_BIN = found;
}

const TEN_MINUTES = 10 * 60 * 1000;

module.exports = function (config) {
  config.set({
    basePath: __dirname,
    frameworks: ['jasmine'],
    plugins: [
      'karma-jasmine',
      'karma-chrome-launcher',
      'karma-sourcemap-loader',
      require('./scripts/karma-summary-reporter.cjs'),
      // test/fixtures/ under /fixtures/ (byte ranges, as scripts/lib/checkpoint_server.mjs serves them).
      require('./scripts/lib/karma_fixtures_middleware.cjs'),
    ],
    beforeMiddleware: ['fixtures'],
    files: [
      {pattern: '.build/tests.js', included: true, watched: false, served: true},
      {pattern: '.build/tests.js.map', included: false, watched: false, served: true},
    ],
    // Maps stack traces in failure messages back to test/*.ts and src/*.ts.
    preprocessors: {'.build/tests.js': ['sourcemap']},
    reporters: ['summary'],
    browsers: ['ChromeHeadlessWebGPU'],
    customLaunchers: {
      ChromeHeadlessWebGPU: {
        base: 'ChromeHeadless',
        // WebGPU on SwiftShader, offline-safe (shared with the demo-page test).
        flags: require('./scripts/chromium-webgpu-flags.json'),
      },
    },
    client: {
      captureConsole: true,
      clearContext: false,
      // `npm test -- --grep <pattern>` adds ['--grep', pattern] here; karma-jasmine filters.
      args: [],
      jasmine: {random: false},
    },
    browserConsoleLogOptions: {level: 'log', terminal: true},
    singleRun: true,
    autoWatch: false,
    failOnEmptyTestSuite: true,
    // SwiftShader WebGPU is slow: a single spec may compute for minutes without reporting.
    browserNoActivityTimeout: TEN_MINUTES,
    browserDisconnectTimeout: 60 * 1000,
    browserDisconnectTolerance: 0,
    captureTimeout: 5 * 60 * 1000,
    processKillTimeout: 10 * 1000,
    listenAddress: '127.0.0.1',
    hostname: '127.0.0.1',
    port: 9876,
    logLevel: config.LOG_WARN,
  });
};
