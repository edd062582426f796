import type {Tensor} from '@tensorflow/tfjs-core';

/** Throws an Error naming `what`, the expected shape and the actual one. */
export function checkShape(
    what: string, tensor: Tensor, expected: Array<number|null>, dtype?: 'float32'|'int32'): void {
  const actual = tensor.shape;
  const matches = actual.length === expected.length &&
      expected.every((dim, i) => dim === null || dim === actual[i]);
  if (!matches) {
    const show = (s: Array<number|null>) => `[${s.map((d) => d === null ? '?' : d).join(', ')}]`;
    throw new Error(`${what}: expected shape ${show(expected)}, got ${show(actual)}`);
  }
  if (dtype !== undefined && tensor.dtype !== dtype) {
    throw new Error(`${what}: expected dtype ${dtype}, got ${tensor.dtype}`);
  }
}

/** Throws an Error naming `what` unless `value` is an integer in [min, max]. */
export function checkInteger(what: string, value: number, min: number, max = Infinity): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    const range = max === Infinity ? `an integer ≥ ${min}` : `an integer in [${min}, ${max}]`;
    throw new Error(`${what}: expected ${range}, got ${value}`);
  }
}
