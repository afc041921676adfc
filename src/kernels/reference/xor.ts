/**
 * A plain TypeScript `xorClosest`, written for reading rather than speed: it measures every ID and sorts
 * them all. Tests compare the WebAssembly kernel in `../xor.ts` against it.
 *
 * @module
 */

/** -1, 0 or 1 as the XOR distance of `a` to `target` is below, equal to or above that of `b`. */
function compareDistance(a: Uint8Array, b: Uint8Array, target: Uint8Array): number {
  for (let i = 0; i < target.length; i++) {
    const da = a[i]! ^ target[i]!;
    const db = b[i]! ^ target[i]!;
    if (da !== db) return da < db ? -1 : 1;
  }
  return 0;
}

/**
 * Indices of the `min(k, N)` IDs nearest to `target` by XOR distance, nearest first; equal distances
 * list the lower index first.
 */
export function xorClosest(ids: Uint8Array, target: Uint8Array, k: number): Uint32Array {
  if (ids.length % 32 !== 0) {
    throw new RangeError(
      `Expected ids to be a multiple of 32 bytes long, got "${ids.length}" bytes`,
    );
  }
  if (target.length !== 32) {
    throw new RangeError(`Expected target to be 32 bytes long, got "${target.length}" bytes`);
  }
  if (!Number.isSafeInteger(k) || k < 0) {
    throw new RangeError(`Expected k to be a non-negative integer, got "${k}"`);
  }
  const n = ids.length / 32;
  const id = (i: number) => ids.subarray(i * 32, i * 32 + 32);
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((a, b) => compareDistance(id(a), id(b), target) || a - b);
  return Uint32Array.from(order.slice(0, k));
}
