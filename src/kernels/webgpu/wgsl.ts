/**
 * The one way this package generates WGSL: each program's getUserCode() is a template literal
 * over its params object, and the unrolled parts (per register, per head, per key …) are made
 * with these helpers inside it.
 *
 * Indentation only affects how the generated code reads: a helper's `indent` goes before every
 * line but the first, whose indentation is the template's own.
 */

/** A piece of generated WGSL: one or more lines, or nothing (false, null, undefined or ''). */
export type WGSLPart = string|false|null|undefined;

/** 0, 1, …, count − 1. */
export function range(count: number): number[] {
  return Array.from({length: count}, (_, i) => i);
}

/** The parts that are not nothing, one after the other on their own lines. */
export function joinLines(parts: readonly WGSLPart[], indent = ''): string {
  return parts.filter((part): part is string => typeof part === 'string' && part !== '')
      .join(`\n${indent}`);
}

/**
 * An unrolled loop: `body(i)` for i = 0 … count − 1, joined as by joinLines (a body may give
 * several parts, or nothing).
 */
export function unroll(count: number, body: (i: number) => WGSLPart|readonly WGSLPart[],
                       indent = ''): string {
  return joinLines(range(count).flatMap((i) => {
    const part = body(i);
    return Array.isArray(part) ? part : [part as WGSLPart];
  }), indent);
}

/** WGSL for `terms` summed left to right (a 0.0 literal when there are none). */
export function sum(terms: readonly string[]): string {
  return terms.length === 0 ? '0.0' : terms.join(' + ');
}
