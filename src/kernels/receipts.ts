/**
 * Keccak-256 (Ethereum's) and Merkle trees over receipt hashes, as the pay layer signs and the chain
 * verifies them.
 *
 * Tree shape, the one `merkleRoot`, `merkleProof` and `verifyMerkleProof` agree on: the leaves are level 0;
 * each level pairs nodes (2i, 2i+1) into `keccak256(min(a, b) || max(a, b))` (sorted as big-endian
 * numbers, as OpenZeppelin's `MerkleProof` and Solady's `MerkleProofLib` hash pairs); an odd last node
 * moves up to the next level unchanged and adds nothing to proofs; the single node left is the root, so
 * one leaf is its own root. Proofs list sibling hashes bottom-up and pass `MerkleProof.verify(proof, root,
 * leaf)` on chain.
 *
 * @module
 */
import { ensureMemory, type KernelExports, lazyKernel } from "./_load.ts";

interface ReceiptsKernel extends KernelExports {
  base(): number;
  keccakStart(): void;
  keccakUpdate(data: number, blocks: number): void;
  keccakFinal(data: number, len: number, out: number): void;
  keccakMany(data: number, n: number, size: number, out: number): void;
  merkle(nodes: number, n: number, index: number, proof: number): number;
}

const RATE = 136;
/** Input is fed to the kernel in pieces of this many bytes (a whole number of blocks), bounding memory. */
const PIECE = RATE * 7710;
// Regions above `base`: a digest, a proof (at most 32 levels of 32 bytes), then the input.
const receipts = /* @__PURE__ */ lazyKernel("receipts", (kernel: ReceiptsKernel) => {
  const OUT = kernel.base();
  const PROOF = OUT + 64;
  return { kernel, OUT, PROOF, DATA: PROOF + 33 * 32 };
});
const NO_INDEX = 0xffffffff;
const MAX_BYTES = 2 ** 32;

function reserve(end: number): void {
  if (end > MAX_BYTES) {
    throw new RangeError(`The input is too large for the kernel: "${end}" bytes of memory needed`);
  }
  ensureMemory(receipts().kernel.memory, end);
}

function put(at: number, bytes: Uint8Array): void {
  new Uint8Array(receipts().kernel.memory.buffer, at, bytes.length).set(bytes);
}

function checkBytes(name: string, value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) throw new TypeError(`Expected ${name} to be a Uint8Array`);
}

/**
 * Keccak-256 of `data`, as Ethereum's `keccak256` (original Keccak padding, not SHA3-256).
 *
 * @returns The 32-byte digest.
 * @example
 * ```ts
 * keccak256(new Uint8Array(0)); // c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470
 * ```
 */
export function keccak256(data: Uint8Array): Uint8Array {
  checkBytes("data", data);
  const { kernel, OUT, DATA } = receipts();
  const whole = data.length - (data.length % RATE);
  reserve(DATA + Math.min(data.length, PIECE));
  kernel.keccakStart();
  for (let off = 0; off < whole; off += PIECE) {
    const piece = data.subarray(off, Math.min(whole, off + PIECE));
    put(DATA, piece);
    kernel.keccakUpdate(DATA, piece.length / RATE);
  }
  put(DATA, data.subarray(whole));
  kernel.keccakFinal(DATA, data.length - whole, OUT);
  return new Uint8Array(kernel.memory.buffer, OUT, 32).slice();
}

/**
 * Keccak-256 of each of the N consecutive `size`-byte records in `data` (such as ABI-encoded receipts),
 * two records per pass of the kernel.
 *
 * @returns N packed 32-byte digests, record i's at bytes [32i, 32i + 32).
 * @throws {RangeError} When `size` is not a positive integer or `data` is not a multiple of `size` long.
 */
export function keccak256Many(data: Uint8Array, size: number): Uint8Array {
  checkBytes("data", data);
  if (!Number.isSafeInteger(size) || size < 1) {
    throw new RangeError(`Expected size to be a positive integer, got "${size}"`);
  }
  if (data.length % size !== 0) {
    throw new RangeError(
      `Expected data to be a multiple of size "${size}" bytes long, got "${data.length}" bytes`,
    );
  }
  const { kernel, DATA } = receipts();
  const n = data.length / size;
  const out = new Uint8Array(n * 32);
  const batch = Math.max(1, Math.floor(PIECE / size));
  for (let i = 0; i < n; i += batch) {
    const count = Math.min(batch, n - i);
    const digests = DATA + Math.ceil((count * size) / 16) * 16;
    reserve(digests + count * 32);
    put(DATA, data.subarray(i * size, (i + count) * size));
    kernel.keccakMany(DATA, count, size, digests);
    out.set(new Uint8Array(kernel.memory.buffer, digests, count * 32), i * 32);
  }
  return out;
}

function checkLeaves(leaves: Uint8Array): number {
  checkBytes("leaves", leaves);
  if (leaves.length === 0) throw new RangeError("Expected at least one leaf, got none");
  if (leaves.length % 32 !== 0) {
    throw new RangeError(
      `Expected leaves to be a multiple of 32 bytes long, got "${leaves.length}" bytes`,
    );
  }
  return leaves.length / 32;
}

function loadLeaves(leaves: Uint8Array): void {
  const { DATA } = receipts();
  reserve(DATA + leaves.length);
  put(DATA, leaves);
}

/**
 * The Merkle root of N packed 32-byte leaves (see the module doc for the tree shape).
 *
 * @throws {RangeError} When there are no leaves or `leaves` is not a multiple of 32 bytes long.
 */
export function merkleRoot(leaves: Uint8Array): Uint8Array {
  const n = checkLeaves(leaves);
  loadLeaves(leaves);
  const { kernel, DATA, PROOF } = receipts();
  kernel.merkle(DATA, n, NO_INDEX, PROOF);
  return new Uint8Array(kernel.memory.buffer, DATA, 32).slice();
}

/**
 * The proof for leaf `index` of N packed 32-byte leaves: its sibling hashes, bottom-up, as
 * OpenZeppelin's `MerkleProof.verify(proof, root, leaf)` and `verifyMerkleProof` take them.
 *
 * @throws {RangeError} When `index` is not a leaf's index, or the leaves are bad as for `merkleRoot`.
 */
export function merkleProof(leaves: Uint8Array, index: number): Uint8Array[] {
  const n = checkLeaves(leaves);
  if (!Number.isSafeInteger(index) || index < 0 || index >= n) {
    throw new RangeError(`Expected index to be a leaf index below "${n}", got "${index}"`);
  }
  loadLeaves(leaves);
  const { kernel, DATA, PROOF } = receipts();
  const steps = kernel.merkle(DATA, n, index, PROOF);
  const proof: Uint8Array[] = [];
  for (let i = 0; i < steps; i++) {
    proof.push(new Uint8Array(kernel.memory.buffer, PROOF + i * 32, 32).slice());
  }
  return proof;
}

/** -1, 0 or 1 comparing two 32-byte values as big-endian numbers. */
function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < 32; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

/**
 * True when `proof` leads from `leaf` to `root` by sorted-pair hashing, exactly as OpenZeppelin's
 * `MerkleProof.verify`.
 *
 * @throws {RangeError} When `root`, `leaf` or a proof element is not 32 bytes long.
 */
export function verifyMerkleProof(
  root: Uint8Array,
  leaf: Uint8Array,
  proof: Uint8Array[],
): boolean {
  const check = (name: string, v: unknown) => {
    checkBytes(name, v);
    if (v.length !== 32) {
      throw new RangeError(`Expected ${name} to be 32 bytes long, got "${v.length}" bytes`);
    }
  };
  check("root", root);
  check("leaf", leaf);
  if (!Array.isArray(proof)) throw new TypeError("Expected proof to be an array of Uint8Arrays");
  const pair = new Uint8Array(64);
  let node = leaf;
  for (const [i, sibling] of proof.entries()) {
    check(`proof[${i}]`, sibling);
    const [lo, hi] = compare(node, sibling) <= 0 ? [node, sibling] : [sibling, node];
    pair.set(lo, 0);
    pair.set(hi, 32);
    node = keccak256(pair);
  }
  return compare(node, root) === 0;
}
