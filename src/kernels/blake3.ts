/**
 * BLAKE3-256 over the WebAssembly kernel (`assembly/blake3.ts`): four chunks per pass in SIMD lanes.
 *
 * Each call copies the input into kernel memory with one `set`, hashes it there and copies the 32-byte
 * digest out. Memory grows to the largest input seen and is reused; the kernel allocates nothing.
 *
 * @module
 */
import { ensureMemory, type KernelExports, loadKernel } from "./_load.ts";

interface Blake3Kernel extends KernelExports {
  /** Where the input goes. */
  input(): number;
  /** Bytes of memory that hashing `len` bytes needs. */
  workspace(len: number): number;
  /** Hashes `len` bytes at `input()`; returns the digest's address. */
  hash(len: number): number;
}

const kernel = await loadKernel<Blake3Kernel>("blake3");
const INPUT = kernel.input();
/** 32-bit wasm addresses at most 4 GiB. */
const MAX_BYTES = 2 ** 32;

let heap = new Uint8Array(kernel.memory.buffer);
/** The largest input length the memory is already sized for. */
let capacity = -1;

function reserve(len: number): void {
  const need = kernel.workspace(len);
  if (need > MAX_BYTES) {
    throw new RangeError(`The input is too large for the kernel: "${len}" bytes`);
  }
  ensureMemory(kernel.memory, need);
  // Growing detaches the old buffer.
  heap = new Uint8Array(kernel.memory.buffer);
  capacity = len;
}

/**
 * BLAKE3-256 digest of `data` in the default hash mode (no key).
 *
 * @param data The bytes to hash; any view, of any length that fits 32-bit wasm memory.
 * @returns A new 32-byte array.
 * @example
 * ```ts
 * blake3(new Uint8Array(0)); // af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262
 * ```
 */
export function blake3(data: Uint8Array): Uint8Array {
  if (!(data instanceof Uint8Array)) throw new TypeError("Expected data to be a Uint8Array");
  const len = data.length;
  if (len > capacity) reserve(len);
  heap.set(data, INPUT);
  const out = kernel.hash(len);
  return heap.slice(out, out + 32);
}
