// Karma reporter 'summary' (inline plugin, used by karma.conf.cjs / scripts/test.mjs).
// Prints failures as they happen, then: each failed spec with its messages, the specs slower
// than SLOW_MS with their duration, each top-level suite with its spec count and seconds
// (slowest first) and a closing line `N passed, N failed, N skipped` that CI counts. The
// counts and suites are also kept on module.exports.totals / .suites for scripts/test.mjs,
// which prints the suites and the line at the end of the whole run instead.
'use strict';

const {addSpec, formatSuiteTimes} = require('./suite-times.cjs');

const SLOW_MS = 5000;
const totals = {passed: 0, failed: 0, skipped: 0};
/** Top-level suites in run order: {name, specs, skipped, ms} (see suite-times.cjs). */
const suites = [];

function SummaryReporter(baseReporterDecorator, formatError) {
  baseReporterDecorator(this);
  const failures = [];
  const slow = [];
  const errors = [];
  const suiteByName = new Map();
  let started = Date.now();

  const fullName = result => [...result.suite, result.description].join(' > ');
  const seconds = ms => `${(ms / 1000).toFixed(1)} s`;
  const indent = (text, pad) => String(text).replace(/\s+$/, '').split('\n').map(l => pad + l).join('\n');

  this.onRunStart = () => {
    totals.passed = totals.failed = totals.skipped = 0;
    failures.length = slow.length = errors.length = suites.length = 0;
    suiteByName.clear();
    started = Date.now();
  };

  this.onBrowserStart = browser => {
    this.write(`[karma] ${browser.name} started; running specs…\n`);
  };

  this.onSpecComplete = (browser, result) => {
    const name = fullName(result);
    // A suite's time is the sum of its specs' times as the browser measured them (each with
    // its beforeEach/afterEach; beforeAll/afterAll not included). Not the time between reports:
    // karma's client batches them until its socket is upgraded.
    const ms = result.time || 0;
    const top = result.suite.length > 0 ? result.suite[0] : '(top level)';
    // Specs left out by --grep ('excluded', reported as disabled) are no suite's.
    const excluded = Boolean(result.skipped && result.disabled && !result.pending);
    if (!excluded || suiteByName.has(top)) {
      const isNew = !suiteByName.has(top);
      const suite = addSpec(suiteByName, top, {ran: !result.skipped, skipped: result.skipped && !excluded, ms});
      if (isNew) suites.push(suite);
    }
    if (result.skipped) {
      totals.skipped++;
      return;
    }
    const messages = (result.log || []).map(l => formatError(l));
    if (result.success) {
      totals.passed++;
    } else {
      totals.failed++;
      failures.push({name, messages});
      this.write(`\n✗ FAILED ${name} (${seconds(result.time)})\n${indent(messages.join('\n'), '    ')}\n`);
    }
    if (result.time >= SLOW_MS) {
      slow.push({name, time: result.time});
      this.write(`  slow: ${name} (${seconds(result.time)})\n`);
    }
  };

  // An error outside any spec (a throwing afterAll, a bundle that does not load, a crash).
  this.onBrowserError = (browser, error) => {
    totals.failed++;
    const message = formatError(error && error.message !== undefined ? error.message : error);
    errors.push(message);
    this.write(`\n✗ ERROR in ${browser.name} (outside a spec):\n${indent(message, '    ')}\n`);
  };

  this.onRunComplete = (browsers, results) => {
    const out = [];
    out.push('');
    out.push(`[karma] ${totals.passed + totals.failed + totals.skipped} specs in ${seconds(Date.now() - started)}`);
    if (slow.length > 0) {
      out.push(`Slow specs (≥ ${SLOW_MS / 1000} s):`);
      for (const s of slow.sort((a, b) => b.time - a.time)) out.push(`  ${seconds(s.time).padStart(7)}  ${s.name}`);
    }
    if (failures.length > 0 || errors.length > 0) {
      out.push(`Failed (${failures.length + errors.length}):`);
      for (const f of failures) {
        out.push(`  ✗ ${f.name}`);
        out.push(indent(f.messages.join('\n'), '      '));
      }
      for (const e of errors) {
        out.push('  ✗ error outside a spec:');
        out.push(indent(e, '      '));
      }
    }
    if (results && results.disconnected) out.push('The browser disconnected.');
    this.write(out.join('\n') + '\n');
    // The suites and the closing `N passed, N failed, N skipped` line are printed by
    // scripts/test.mjs after karma exits (with the Node lane's); print them here only when
    // karma was started some other way.
    if (!process.env.TFJS_MLA_TEST_RUNNER) {
      this.write(formatSuiteTimes('Browser lane suites (karma)', suites).join('\n') + '\n');
      this.write(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
    }
  };
}

SummaryReporter.$inject = ['baseReporterDecorator', 'formatError'];

module.exports = {
  'reporter:summary': ['type', SummaryReporter],
  totals,
  suites,
};
