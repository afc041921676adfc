/**
 * Reed–Solomon erasure coding over GF(2^8) on the `erasure` WebAssembly kernel. Parity is byte-identical to
 * the `reed-solomon-erasure` Rust crate (and Backblaze's and klauspost's): polynomial 0x11D, encoding
 * matrix = Vandermonde(k + m, k) times the inverse of its top k x k square.
 *
 * Shards are staged through a fixed window of wasm memory a block at a time (a few KiB of every shard), so
 * the copies in and out stay in cache beside the compute and memory does not grow with the shard size.
 * Where the engine has relaxed SIMD and `erasure.relaxed.wasm` is built, that build is used: the same
 * source with `i8x16.relaxed_swizzle`, exact here because every table index is in 0..15.
 *
 * @module
 */
import { ensureMemory, type KernelExports, loadKernel, loadKernelSync } from "./_load.ts";

/** The exports of `assembly/erasure.ts`. */
interface ErasureKernel extends KernelExports {
  freeBase(): number;
  solveRows(k: number, chosen: number, lost: number, n: number, out: number): number;
  mulMatrix(
    coef: number,
    rows: number,
    k: number,
    src: number,
    dst: number,
    stride: number,
    len: number,
  ): void;
}

/** Which build of the kernel a coder runs on. */
export type ErasureKernelName = "erasure" | "erasure.relaxed";

/** Counters of one coder: cache lookups served and solved anew, matrices held, and its kernel build. */
export interface RsStats {
  hits: number;
  misses: number;
  cached: number;
  kernel: ErasureKernelName;
}

/** rsEncode, rsReconstruct and rsStats over one kernel instance. */
export interface RsCoder {
  rsEncode(shards: Uint8Array[], k: number, m: number): void;
  rsReconstruct(shards: (Uint8Array | null)[], k: number, m: number): void;
  rsStats(): RsStats;
}

/** Most shards a stripe can have in GF(2^8). */
const MAX_SHARDS = 256;
/** Bytes of staged shards (inputs and outputs) per block: measured flat from 128 KiB to 1 MiB. */
const STAGE_BYTES = 256 * 1024;
/** Coefficient matrices kept, one per (k, m) and per (k, m, loss pattern); least recently used go first. */
const CACHE_SIZE = 48;

/** A module using one i8x16.relaxed_swizzle: valid only where the engine has relaxed SIMD. */
const RELAXED_PROBE = new Uint8Array([
  ...[0, 97, 115, 109, 1, 0, 0, 0], // "\0asm", version 1
  ...[1, 5, 1, 96, 0, 1, 123], // types: () -> v128
  ...[3, 2, 1, 0], // one function of type 0
  ...[10, 43, 1, 41, 0], // code: one 41-byte body, no locals
  ...[253, 12, ...new Array(16).fill(0)], // v128.const 0
  ...[253, 12, ...new Array(16).fill(0)], // v128.const 0
  ...[253, 128, 2, 11], // i8x16.relaxed_swizzle, end
]);

/**
 * A coder over a fresh instance of kernel build `name`. The module's own functions use the best build;
 * tests use this to check both.
 */
export async function createRsCoder(name: ErasureKernelName): Promise<RsCoder> {
  return coderOver(name, await loadKernel<ErasureKernel>(name));
}

function coderOver(name: ErasureKernelName, kernel: ErasureKernel): RsCoder {
  // The caller's area of wasm memory: coefficients (rows x k <= 128 x 128), two index lists, staged shards.
  const COEF = kernel.freeBase();
  const CHOSEN = COEF + 128 * 128;
  const LOST = CHOSEN + MAX_SHARDS;
  const STAGE = LOST + MAX_SHARDS;

  let view = new Uint8Array(kernel.memory.buffer);
  const memory = (): Uint8Array => {
    if (view.buffer !== kernel.memory.buffer) view = new Uint8Array(kernel.memory.buffer);
    return view;
  };

  const cache = new Map<string, Uint8Array>();
  const stats = { hits: 0, misses: 0 };

  /** The lost.length x k coefficients that rebuild shards `lost` from shards `chosen`. */
  function coefficients(key: string, chosen: number[], lost: number[]): Uint8Array {
    const hit = cache.get(key);
    if (hit) {
      stats.hits++;
      cache.delete(key);
      cache.set(key, hit);
      return hit;
    }
    stats.misses++;
    const mem = memory();
    mem.set(chosen, CHOSEN);
    mem.set(lost, LOST);
    const k = chosen.length;
    if (kernel.solveRows(k, CHOSEN, LOST, lost.length, COEF) !== 0) {
      throw new Error(`Decode matrix for shards "${chosen.join(",")}" is singular`);
    }
    const coef = mem.slice(COEF, COEF + lost.length * k);
    if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
    cache.set(key, coef);
    return coef;
  }

  /** outputs[r] = sum over i of coef[r * k + i] * inputs[i], staged through wasm memory by blocks. */
  function multiply(inputs: Uint8Array[], outputs: Uint8Array[], coef: Uint8Array, size: number) {
    const k = inputs.length;
    const rows = outputs.length;
    const fit = Math.max(64, Math.floor(STAGE_BYTES / (k + rows) / 64) * 64);
    const stride = Math.min(fit, Math.ceil(size / 64) * 64);
    ensureMemory(kernel.memory, STAGE + (k + rows) * stride);
    const mem = memory();
    mem.set(coef, COEF);
    const dst = STAGE + k * stride;
    for (let off = 0; off < size; off += stride) {
      const n = Math.min(stride, size - off);
      const whole = n === size;
      for (let i = 0; i < k; i++) {
        mem.set(whole ? inputs[i]! : inputs[i]!.subarray(off, off + n), STAGE + i * stride);
      }
      kernel.mulMatrix(COEF, rows, k, STAGE, dst, stride, n);
      for (let r = 0; r < rows; r++) {
        const at = dst + r * stride;
        outputs[r]!.set(mem.subarray(at, at + n), off);
      }
    }
  }

  return {
    rsEncode(shards, k, m) {
      checkCounts(shards, k, m);
      for (let i = 0; i < shards.length; i++) {
        const s: unknown = shards[i];
        if (!(s instanceof Uint8Array)) {
          throw new TypeError(
            `${i < k ? "Data" : "Parity"} shard ${i} must be a Uint8Array, got "${describe(s)}"`,
          );
        }
      }
      const size = checkSizes(shards);
      if (m === 0) return;
      const chosen = Array.from({ length: k }, (_, i) => i);
      const lost = Array.from({ length: m }, (_, i) => k + i);
      multiply(shards.slice(0, k), shards.slice(k), coefficients(`${k}+${m}`, chosen, lost), size);
    },

    rsReconstruct(shards, k, m) {
      checkCounts(shards, k, m);
      const chosen: number[] = [];
      const lost: number[] = [];
      for (let i = 0; i < shards.length; i++) {
        const s: unknown = shards[i];
        if (s === null) lost.push(i);
        else if (!(s instanceof Uint8Array)) {
          throw new TypeError(`Shard ${i} must be a Uint8Array or null, got "${describe(s)}"`);
        } else if (chosen.length < k) chosen.push(i);
      }
      if (lost.length > m) {
        throw new RangeError(
          `Too many shards missing to reconstruct: "${lost.length}" of ${k + m}, at most m = ${m}`,
        );
      }
      const size = checkSizes(shards);
      if (lost.length === 0) return;
      const outputs = lost.map(() => new Uint8Array(size));
      const coef = coefficients(`${k}+${m}-${lost.join(",")}`, chosen, lost);
      multiply(chosen.map((i) => shards[i]!), outputs, coef, size);
      lost.forEach((j, r) => shards[j] = outputs[r]!);
    },

    rsStats: () => ({ ...stats, cached: cache.size, kernel: name }),
  };
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}

function checkCounts(shards: unknown, k: number, m: number): void {
  if (typeof k !== "number" || typeof m !== "number") {
    throw new TypeError(
      `Shard counts k and m must be numbers, got "${typeof k}" and "${typeof m}"`,
    );
  }
  if (!Number.isInteger(k) || k < 1) {
    throw new RangeError(`Data shard count k must be an integer of at least 1, got "${k}"`);
  }
  if (!Number.isInteger(m) || m < 0) {
    throw new RangeError(`Parity shard count m must be an integer of at least 0, got "${m}"`);
  }
  if (k + m > MAX_SHARDS) {
    throw new RangeError(`Shard count k + m must be at most ${MAX_SHARDS}, got "${k + m}"`);
  }
  if (!Array.isArray(shards)) {
    throw new TypeError(`Shards must be an array, got "${describe(shards)}"`);
  }
  if (shards.length !== k + m) {
    throw new RangeError(`Expected k + m = ${k + m} shards, got "${shards.length}"`);
  }
}

/** Checks that every present shard has one non-zero size, and returns it. */
function checkSizes(shards: readonly (Uint8Array | null)[]): number {
  let size = -1;
  let first = -1;
  for (let i = 0; i < shards.length; i++) {
    const s = shards[i];
    if (!s) continue;
    if (first < 0) {
      size = s.length;
      first = i;
      if (size === 0) throw new RangeError(`Shards must not be empty, got size "0" for shard ${i}`);
    } else if (s.length !== size) {
      throw new RangeError(
        `Shards must have equal sizes, got "${s.length}" bytes for shard ${i} and "${size}" for shard ${first}`,
      );
    }
  }
  return size;
}

function bestCoder(): RsCoder {
  if (WebAssembly.validate(RELAXED_PROBE)) {
    try {
      return coderOver("erasure.relaxed", loadKernelSync<ErasureKernel>("erasure.relaxed"));
    } catch {
      // Not built (or not loadable here): the portable build does the same work.
    }
  }
  return coderOver("erasure", loadKernelSync<ErasureKernel>("erasure"));
}

/** The module's coder, made on the first call. */
let best: RsCoder | undefined;
const coder = (): RsCoder => best ??= bestCoder();

/**
 * Fills the parity shards `shards[k..k+m)` in place from the data shards `shards[0..k)`, byte-identical
 * to the `reed-solomon-erasure` crate. All k + m shards must be Uint8Arrays of one non-zero size.
 * `m = 0` is allowed and does nothing (a stripe without redundancy).
 *
 * @example
 * ```ts
 * const shards = [new Uint8Array([1, 2]), new Uint8Array([3, 4]), new Uint8Array(2)];
 * rsEncode(shards, 2, 1); // shards[2] now holds the parity
 * ```
 *
 * @param shards k data shards followed by m parity shards (overwritten)
 * @param k number of data shards, 1 or more
 * @param m number of parity shards, 0 or more, with k + m <= 256
 * @throws {TypeError} if a shard is not a Uint8Array
 * @throws {RangeError} if k, m, the number of shards or their sizes are wrong
 */
export function rsEncode(shards: Uint8Array[], k: number, m: number): void {
  coder().rsEncode(shards, k, m);
}

/**
 * Rebuilds the missing (`null`) shards in place, data and parity alike, from any k present ones: each
 * null entry is replaced by a new Uint8Array; present shards are left as they are. Does nothing when no
 * shard is missing.
 *
 * @param shards k data shards followed by m parity shards, missing ones `null`
 * @param k number of data shards, 1 or more
 * @param m number of parity shards, 0 or more, with k + m <= 256
 * @throws {TypeError} if a shard is neither a Uint8Array nor null
 * @throws {RangeError} if k, m, the number of shards or their sizes are wrong, or more than m are missing
 */
export function rsReconstruct(shards: (Uint8Array | null)[], k: number, m: number): void {
  coder().rsReconstruct(shards, k, m);
}

/** Counters of the module's coder (matrix cache hits and misses, matrices held, kernel build in use). */
export function rsStats(): RsStats {
  return coder().rsStats();
}
