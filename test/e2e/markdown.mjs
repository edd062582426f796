// Fenced code blocks of a Markdown text (for the README tests in test/e2e).

/** The fenced code blocks of `markdown`: {lang, code, line} (line: 1-based, of the opening fence). */
export function codeBlocks(markdown) {
  const blocks = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```\s*([A-Za-z]*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !/^\s*```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    blocks.push({lang: open[2].toLowerCase(), code: body.join('\n') + '\n', line: start + 1});
  }
  return blocks;
}
