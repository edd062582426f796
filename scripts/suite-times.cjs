// Per-suite times for the test summary, shared by the Node lane (scripts/node-lane.mjs), the
// karma reporter (scripts/karma-summary-reporter.cjs) and scripts/test.mjs.
//
// A suite record is {name, specs, skipped, ms}: a top-level describe, the specs of it that ran
// (passed or failed), those skipped by pending() (not those left out by --grep or xit), and its
// time in milliseconds: in Node the suite's wall time (hooks included), in the browser the sum
// of its specs' times (beforeAll/afterAll not included).
'use strict';

/** Adds one spec's outcome to the record of its top-level suite `name` (made on first use). */
function addSpec(suites, name, {ran, skipped, ms}) {
  let suite = suites.get(name);
  if (suite === undefined) {
    suite = {name, specs: 0, skipped: 0, ms: 0};
    suites.set(name, suite);
  }
  if (ran) suite.specs++;
  if (skipped) suite.skipped++;
  suite.ms += ms;
  return suite;
}

/**
 * Lines of a table of the suites that ran a spec, slowest first:
 * `  12.34 s   4 specs  reliability [webgpu]`. `title` heads it with the lane's totals.
 */
function formatSuiteTimes(title, suites) {
  const shown = [...suites].filter((s) => s.specs > 0 || s.skipped > 0).sort((a, b) => b.ms - a.ms);
  const specs = shown.reduce((n, s) => n + s.specs, 0);
  const ms = shown.reduce((n, s) => n + s.ms, 0);
  const lines = [`${title}: ${shown.length} suite(s), ${specs} spec(s), ${(ms / 1000).toFixed(2)} s` +
                 (shown.length > 0 ? ', slowest first:' : '')];
  for (const s of shown) {
    const count = `${s.specs} spec${s.specs === 1 ? ' ' : 's'}`;
    const skipped = s.skipped > 0 ? ` (${s.skipped} skipped)` : '';
    lines.push(`  ${(s.ms / 1000).toFixed(2).padStart(8)} s  ${count.padStart(9)}  ${s.name}${skipped}`);
  }
  return lines;
}

module.exports = {addSpec, formatSuiteTimes};
