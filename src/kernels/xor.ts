/**
 * The k IDs nearest to a target by XOR distance (Kademlia's metric), over a packed table of 32-byte IDs.
 *
 * `xorClosest` is the one-shot form: it copies the table into the kernel on every call. `XorTable` copies
 * once and answers many queries; it also keeps an 8-byte prefix per ID so a query reads a quarter of the
 * bytes. The kernel's memory holds one table at a time: the table queried last (or a one-shot call) takes
 * the place, and a table that lost it copies itself back in on its next query.
 *
 * @module
 */
import { ensureMemory, type KernelExports, lazyKernel } from "./_load.ts";

interface XorKernel extends KernelExports {
  base(): number;
  buildPrefixes(ids: number, n: number, prefixes: number): void;
  closestPrefixed(
    ids: number,
    prefixes: number,
    n: number,
    target: number,
    k: number,
    keys: number,
    idx: number,
  ): number;
  closestPlain(
    ids: number,
    n: number,
    target: number,
    k: number,
    keys: number,
    idx: number,
  ): number;
}

// Regions above `base`: the target, then the IDs, then (tables only) the prefixes, then the heap scratch.
const xor = /* @__PURE__ */ lazyKernel("xor", (kernel: XorKernel) => {
  const TARGET = kernel.base();
  return { kernel, TARGET, IDS: TARGET + 32 };
});
const MAX_BYTES = 2 ** 32;

/** The table whose IDs (and prefixes) are in kernel memory now, if any. */
let resident: XorTable | null = null;

function checkIds(ids: Uint8Array): number {
  if (!(ids instanceof Uint8Array)) throw new TypeError("Expected ids to be a Uint8Array");
  if (ids.length % 32 !== 0) {
    throw new RangeError(
      `Expected ids to be a multiple of 32 bytes long, got "${ids.length}" bytes`,
    );
  }
  return ids.length / 32;
}

function checkQuery(target: Uint8Array, k: number): void {
  if (!(target instanceof Uint8Array)) throw new TypeError("Expected target to be a Uint8Array");
  if (target.length !== 32) {
    throw new RangeError(`Expected target to be 32 bytes long, got "${target.length}" bytes`);
  }
  if (!Number.isSafeInteger(k) || k < 0) {
    throw new RangeError(`Expected k to be a non-negative integer, got "${k}"`);
  }
}

/** Grows memory for `end` bytes, or fails clearly when that is past what 32-bit wasm can address. */
function reserve(end: number): void {
  if (end > MAX_BYTES) {
    throw new RangeError(
      `The ID table is too large for the kernel: "${end}" bytes of memory needed`,
    );
  }
  ensureMemory(xor().kernel.memory, end);
}

/** Runs the query once the IDs are in place; `prefixes` is 0 when there is no prefix table. */
function query(n: number, prefixes: number, scratch: number, target: Uint8Array, k: number) {
  const { kernel, TARGET, IDS } = xor();
  const m = Math.min(k, n);
  const keys = scratch;
  const idx = keys + m * 8;
  reserve(idx + m * 4);
  new Uint8Array(kernel.memory.buffer, TARGET, 32).set(target);
  const got = prefixes
    ? kernel.closestPrefixed(IDS, prefixes, n, TARGET, m, keys, idx)
    : kernel.closestPlain(IDS, n, TARGET, m, keys, idx);
  return new Uint32Array(kernel.memory.buffer, idx, got).slice();
}

/**
 * Indices of the `min(k, N)` IDs nearest to `target` by XOR distance, nearest first; equal distances
 * (identical IDs) list the lower index first.
 *
 * @param ids N packed 32-byte IDs.
 * @param target The 32-byte key to measure from.
 * @param k How many to return.
 * @throws {RangeError} When `ids` is not a multiple of 32 bytes, `target` is not 32 bytes, or `k` is not
 *   a non-negative integer.
 * @example
 * ```ts
 * const nearest = xorClosest(peerKeys, chunkKey, 20); // Uint32Array of indices into peerKeys
 * ```
 */
export function xorClosest(ids: Uint8Array, target: Uint8Array, k: number): Uint32Array {
  const n = checkIds(ids);
  checkQuery(target, k);
  if (n === 0 || k === 0) return new Uint32Array(0);
  const { kernel, IDS } = xor();
  const scratch = IDS + ids.length;
  reserve(scratch);
  resident = null;
  new Uint8Array(kernel.memory.buffer, IDS, ids.length).set(ids);
  return query(n, 0, scratch, target, k);
}

/**
 * A fixed set of IDs for repeated `closest` queries: the IDs are copied into the kernel once, not on
 * every query. The table keeps its own copy, so later changes to the caller's array do not affect it.
 *
 * @example
 * ```ts
 * const table = new XorTable(peerKeys);
 * const forChunkA = table.closest(keyA, 20);
 * const forChunkB = table.closest(keyB, 20);
 * ```
 */
export class XorTable {
  /** Number of IDs in the table. */
  readonly size: number;
  readonly #ids: Uint8Array;

  /**
   * @param ids N packed 32-byte IDs.
   * @throws {RangeError} When `ids` is not a multiple of 32 bytes long.
   */
  constructor(ids: Uint8Array) {
    this.size = checkIds(ids);
    this.#ids = ids.slice();
    this.#upload();
  }

  #upload(): void {
    const { kernel, IDS } = xor();
    const prefixes = IDS + this.#ids.length;
    reserve(prefixes + this.size * 8);
    new Uint8Array(kernel.memory.buffer, IDS, this.#ids.length).set(this.#ids);
    kernel.buildPrefixes(IDS, this.size, prefixes);
    resident = this;
  }

  /**
   * Indices of the `min(k, size)` IDs nearest to `target`, nearest first; see `xorClosest`.
   *
   * @throws {RangeError} When `target` is not 32 bytes or `k` is not a non-negative integer.
   */
  closest(target: Uint8Array, k: number): Uint32Array {
    checkQuery(target, k);
    if (this.size === 0 || k === 0) return new Uint32Array(0);
    if (resident !== this) this.#upload();
    const prefixes = xor().IDS + this.#ids.length;
    return query(this.size, prefixes, prefixes + this.size * 8, target, k);
  }
}
