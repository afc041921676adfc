/**
 * BLAKE3-256 over the WebAssembly kernel (`assembly/blake3.ts`): four chunks per pass in SIMD lanes.
 *
 * Each call copies the input into kernel memory with one `set`, hashes it there and copies the 32-byte
 * digest out. Memory grows to the largest input seen and is reused; the kernel allocates nothing.
 *
 * Proofs ({@link blake3Proof}, {@link blake3VerifyProof}) show that one 1 KiB block (a BLAKE3 chunk)
 * belongs to the input under a given root without the rest of it, as bao's slices do. The tree is
 * BLAKE3's own: a left-balanced binary tree over the 1 KiB blocks, so the root is the input's ordinary
 * BLAKE3 digest (a CID's digest). A proof is the chaining values (32 bytes each) of the siblings along the
 * block's path, concatenated deepest first: one per level where the path's node has a sibling, so
 * ceil(log2(blocks)) or fewer. A 256 KiB input's proof is 8 CVs (256 bytes), a 1 MiB input's 10
 * (320 bytes); with the block, an answer is at most 1,344 bytes for a 1 MiB chunk.
 *
 * @module
 */
import { ensureMemory, type KernelExports, lazyKernel } from "./_load.ts";

interface Blake3Kernel extends KernelExports {
  /** Where the input goes. */
  input(): number;
  /** Bytes of memory that hashing `len` bytes needs. */
  workspace(len: number): number;
  /** Hashes `len` bytes at `input()`; returns the digest's address. */
  hash(len: number): number;
  /** Where a proof's sibling CVs are written and read. */
  proofPath(): number;
  /** Where `verify` reads the root it checks against. */
  expected(): number;
  /** Like `hash`, and writes the proof of block `index` to `proofPath()`; returns its CV count. */
  proof(len: number, index: number): number;
  /** 1 when the block at `input()` and the proof at `proofPath()` hash to the root at `expected()`. */
  verify(len: number, index: number, blockLen: number, proofLen: number): number;
}

/** Bytes of one BLAKE3 chunk: the unit a proof covers. */
export const BLAKE3_BLOCK_LEN = 1024;
/** BLAKE3 chaining values (the siblings in a proof) are 32 bytes. */
const CV_LEN = 32;
/** Room the kernel keeps for sibling CVs (a 4 GiB input has 22 levels). */
const MAX_PROOF = 32 * CV_LEN;
/** Proofs take lengths in 32 bits, as the kernel's chunk counters are. */
const MAX_PROOF_INPUT = 2 ** 32 - 1;
/** 32-bit wasm addresses at most 4 GiB. */
const MAX_BYTES = 2 ** 32;

/** The kernel instance, its fixed addresses, and the memory it is sized for; made on the first call. */
const state = /* @__PURE__ */ lazyKernel("blake3", (kernel: Blake3Kernel) => ({
  kernel,
  INPUT: kernel.input(),
  PATH: kernel.proofPath(),
  EXPECT: kernel.expected(),
  /** The digest's address (`hash` always returns the same one). */
  OUT: kernel.hash(0),
  heap: new Uint8Array(kernel.memory.buffer),
  /** The largest input length the memory is already sized for. */
  capacity: -1,
}));
type State = ReturnType<typeof state>;

function reserve(s: State, len: number): void {
  const need = s.kernel.workspace(len);
  if (need > MAX_BYTES) {
    throw new RangeError(`The input is too large for the kernel: "${len}" bytes`);
  }
  ensureMemory(s.kernel.memory, need);
  // Growing detaches the old buffer.
  s.heap = new Uint8Array(s.kernel.memory.buffer);
  s.capacity = len;
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
  const s = state();
  const len = data.length;
  if (len > s.capacity) reserve(s, len);
  s.heap.set(data, s.INPUT);
  const out = s.kernel.hash(len);
  return s.heap.slice(out, out + 32);
}

/** An answer to an audit of one block: the block itself and its path to the root. */
export interface Blake3Proof {
  /** Bytes [1024 i, 1024 i + 1024) of the input (shorter for a short last block); a copy. */
  block: Uint8Array;
  /** The sibling CVs along the block's path, 32 bytes each, deepest first. */
  proof: Uint8Array;
  /** The input's BLAKE3 digest, computed on the way (what the proof checks against). */
  root: Uint8Array;
}

/**
 * How many 1 KiB blocks a `length`-byte input has: ceil(length / 1024), and 1 for the empty input (its
 * one empty chunk). Block indexes of proofs run from 0 to this minus one.
 *
 * @throws {RangeError} When `length` is not an integer in [0, 2^32).
 */
export function blake3BlockCount(length: number): number {
  if (!Number.isInteger(length) || length < 0 || length > MAX_PROOF_INPUT) {
    throw new RangeError(`Expected length to be an integer in [0, 2^32): "${length}"`);
  }
  return Math.max(1, Math.ceil(length / BLAKE3_BLOCK_LEN));
}

function checkIndex(length: number, blockIndex: number): void {
  const blocks = blake3BlockCount(length);
  if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= blocks) {
    throw new RangeError(
      `Expected blockIndex to be an integer in [0, ${blocks}) for a ${length}-byte input: "${blockIndex}"`,
    );
  }
}

/**
 * Builds the proof that block `blockIndex` (bytes [1024 i, 1024 i + 1024)) belongs to `data`. It hashes
 * all of `data` (every chaining value is needed), at the speed of {@link blake3}.
 *
 * @param data The whole input (a chunk, up to what fits the kernel).
 * @param blockIndex Which 1 KiB block, from 0 to `blake3BlockCount(data.length) - 1`.
 * @returns The block, its proof and the root.
 * @throws {TypeError} When `data` is not a Uint8Array.
 * @throws {RangeError} When `blockIndex` is not a block of `data`.
 * @example
 * ```ts
 * const { block, proof, root } = blake3Proof(chunk, 7);
 * blake3VerifyProof(root, chunk.length, 7, block, proof); // true
 * ```
 */
export function blake3Proof(data: Uint8Array, blockIndex: number): Blake3Proof {
  if (!(data instanceof Uint8Array)) throw new TypeError("Expected data to be a Uint8Array");
  const len = data.length;
  if (len > MAX_PROOF_INPUT) {
    throw new RangeError(`The input is too large for a proof: "${len}" bytes`);
  }
  checkIndex(len, blockIndex);
  const s = state();
  if (len > s.capacity) reserve(s, len);
  s.heap.set(data, s.INPUT);
  const depth = s.kernel.proof(len, blockIndex);
  const start = blockIndex * BLAKE3_BLOCK_LEN;
  return {
    block: data.slice(start, start + BLAKE3_BLOCK_LEN),
    proof: s.heap.slice(s.PATH, s.PATH + depth * CV_LEN),
    root: s.heap.slice(s.OUT, s.OUT + 32),
  };
}

/**
 * Checks an audit answer: true when `block` is block `blockIndex` of the `length`-byte input whose BLAKE3
 * digest is `root`, as `proof` shows. Any answer that does not check is a plain false: a changed bit in
 * the block or any sibling, a block or proof of the wrong size, a proof for another block, input or
 * length. `length` and `blockIndex` are the auditor's own (from the CID's record and the challenge), so
 * values outside the input throw. The length enters only through the shape of the block's path and the
 * block's size, so a proof also checks under another length that gives the block the same path (as in
 * bao, where only the last chunk pins the length); the answer still proves those bytes are that block of
 * the input under `root`.
 *
 * @param root The 32-byte BLAKE3 root (a CID's digest).
 * @param length The input's length in bytes.
 * @param blockIndex The block the challenge named.
 * @param block The answer's block: 1024 bytes, or the rest of the input for the last block.
 * @param proof The answer's sibling CVs, 32 bytes each, deepest first (as {@link blake3Proof} gives).
 * @throws {TypeError} When an argument that should be bytes is not a Uint8Array.
 * @throws {RangeError} When `root` is not 32 bytes, or `length` or `blockIndex` is out of range.
 */
export function blake3VerifyProof(
  root: Uint8Array,
  length: number,
  blockIndex: number,
  block: Uint8Array,
  proof: Uint8Array,
): boolean {
  if (!(root instanceof Uint8Array)) throw new TypeError("Expected root to be a Uint8Array");
  if (!(block instanceof Uint8Array)) throw new TypeError("Expected block to be a Uint8Array");
  if (!(proof instanceof Uint8Array)) throw new TypeError("Expected proof to be a Uint8Array");
  if (root.length !== 32) {
    throw new RangeError(`Expected root to be 32 bytes: "${root.length}" bytes`);
  }
  checkIndex(length, blockIndex);
  // Too long to be right for any shape: refused before it is copied.
  if (block.length > BLAKE3_BLOCK_LEN || proof.length > MAX_PROOF) return false;
  const s = state();
  if (s.capacity < BLAKE3_BLOCK_LEN) reserve(s, BLAKE3_BLOCK_LEN);
  s.heap.set(root, s.EXPECT);
  s.heap.set(block, s.INPUT);
  s.heap.set(proof, s.PATH);
  return s.kernel.verify(length, blockIndex, block.length, proof.length) === 1;
}
