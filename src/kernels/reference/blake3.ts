/**
 * A plain TypeScript BLAKE3-256 (default hash mode), written for reading rather than speed. Tests compare the
 * WebAssembly kernel in `../blake3.ts` against it.
 *
 * @module
 */

const CHUNK_LEN = 1024;
const BLOCK_LEN = 64;

const CHUNK_START = 1;
const CHUNK_END = 2;
const PARENT = 4;
const ROOT = 8;

/** The SHA-256 initial hash words, BLAKE3's IV. */
const IV = new Uint32Array([
  0x6a09e667,
  0xbb67ae85,
  0x3c6ef372,
  0xa54ff53a,
  0x510e527f,
  0x9b05688c,
  0x1f83d9ab,
  0x5be0cd19,
]);

/** The message words each round reads, in order: round r+1 reads round r's words through this permutation. */
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const SCHEDULE: number[][] = [[...Array(16).keys()]];
for (let r = 1; r < 7; r++) SCHEDULE.push(PERMUTATION.map((i) => SCHEDULE[r - 1]![i]!));

function rotr(x: number, n: number): number {
  return (x >>> n) | (x << (32 - n));
}

function g(v: Uint32Array, a: number, b: number, c: number, d: number, x: number, y: number): void {
  v[a] = v[a]! + v[b]! + x;
  v[d] = rotr(v[d]! ^ v[a]!, 16);
  v[c] = v[c]! + v[d]!;
  v[b] = rotr(v[b]! ^ v[c]!, 12);
  v[a] = v[a]! + v[b]! + y;
  v[d] = rotr(v[d]! ^ v[a]!, 8);
  v[c] = v[c]! + v[d]!;
  v[b] = rotr(v[b]! ^ v[c]!, 7);
}

/**
 * The compression function, truncated to the 8 words a chaining value (or a 32-byte root output) needs.
 * `counter` is the chunk index (0 for parents); it stays below 2^53, so its high word is a division.
 */
function compress(
  cv: Uint32Array,
  block: Uint32Array,
  counter: number,
  blockLen: number,
  flags: number,
): Uint32Array {
  const v = new Uint32Array(16);
  v.set(cv, 0);
  v.set(IV.subarray(0, 4), 8);
  v[12] = counter >>> 0;
  v[13] = Math.floor(counter / 2 ** 32);
  v[14] = blockLen;
  v[15] = flags;
  for (const s of SCHEDULE) {
    const m = (i: number) => block[s[i]!]!;
    g(v, 0, 4, 8, 12, m(0), m(1));
    g(v, 1, 5, 9, 13, m(2), m(3));
    g(v, 2, 6, 10, 14, m(4), m(5));
    g(v, 3, 7, 11, 15, m(6), m(7));
    g(v, 0, 5, 10, 15, m(8), m(9));
    g(v, 1, 6, 11, 12, m(10), m(11));
    g(v, 2, 7, 8, 13, m(12), m(13));
    g(v, 3, 4, 9, 14, m(14), m(15));
  }
  const out = new Uint32Array(8);
  for (let i = 0; i < 8; i++) out[i] = v[i]! ^ v[i + 8]!;
  return out;
}

/** Reads up to 64 bytes as 16 little-endian words, zero-padded. */
function blockWords(bytes: Uint8Array): Uint32Array {
  const words = new Uint32Array(16);
  for (let i = 0; i < bytes.length; i++) words[i >> 2]! |= bytes[i]! << (8 * (i & 3));
  return words;
}

/** The chaining value of one chunk (`root` set only when the whole input is this one chunk). */
function chunkCv(chunk: Uint8Array, index: number, root: boolean): Uint32Array {
  let cv: Uint32Array = IV;
  const blocks = Math.max(1, Math.ceil(chunk.length / BLOCK_LEN));
  for (let b = 0; b < blocks; b++) {
    const bytes = chunk.subarray(b * BLOCK_LEN, (b + 1) * BLOCK_LEN);
    let flags = 0;
    if (b === 0) flags |= CHUNK_START;
    if (b === blocks - 1) flags |= CHUNK_END | (root ? ROOT : 0);
    cv = compress(cv, blockWords(bytes), index, bytes.length, flags);
  }
  return cv;
}

function parentCv(left: Uint32Array, right: Uint32Array, root: boolean): Uint32Array {
  const block = new Uint32Array(16);
  block.set(left, 0);
  block.set(right, 8);
  return compress(IV, block, 0, BLOCK_LEN, PARENT | (root ? ROOT : 0));
}

/**
 * The root of the subtree over `input`, whose first chunk has index `first`. The left subtree holds the
 * largest power-of-two number of chunks that leaves at least one byte to the right, as the spec requires.
 */
function subtreeCv(input: Uint8Array, first: number, root: boolean): Uint32Array {
  if (input.length <= CHUNK_LEN) return chunkCv(input, first, root);
  let leftChunks = 1;
  while ((leftChunks * 2) * CHUNK_LEN < input.length) leftChunks *= 2;
  const split = leftChunks * CHUNK_LEN;
  const left = subtreeCv(input.subarray(0, split), first, false);
  const right = subtreeCv(input.subarray(split), first + leftChunks, false);
  return parentCv(left, right, root);
}

/** BLAKE3-256 digest (32 bytes) of `data`, in the default hash mode. */
export function blake3(data: Uint8Array): Uint8Array {
  const words = subtreeCv(data, 0, true);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = words[i >> 2]! >>> (8 * (i & 3));
  return out;
}

function toBytes(words: Uint32Array): Uint8Array {
  const out = new Uint8Array(words.length * 4);
  for (let i = 0; i < out.length; i++) out[i] = words[i >> 2]! >>> (8 * (i & 3));
  return out;
}

function toWords(bytes: Uint8Array): Uint32Array {
  const words = new Uint32Array(bytes.length / 4);
  for (let i = 0; i < bytes.length; i++) words[i >> 2]! |= bytes[i]! << (8 * (i & 3));
  return words;
}

/** Chunks in the largest power-of-two left subtree of `chunks` (> 1) chunks, as `subtreeCv` splits. */
function leftChunksOf(chunks: number): number {
  let left = 1;
  while (left * 2 < chunks) left *= 2;
  return left;
}

/**
 * Like `subtreeCv`, and pushes onto `siblings` the CV of each subtree beside the path to chunk `target`
 * (an index relative to the whole input): deeper ones first, since they are pushed on the way back up.
 */
function subtreeProof(
  input: Uint8Array,
  first: number,
  root: boolean,
  target: number,
  siblings: Uint32Array[],
): Uint32Array {
  if (input.length <= CHUNK_LEN) return chunkCv(input, first, root);
  const leftChunks = leftChunksOf(Math.ceil(input.length / CHUNK_LEN));
  const split = leftChunks * CHUNK_LEN;
  const mid = first + leftChunks;
  let left: Uint32Array, right: Uint32Array;
  if (target < mid) {
    left = subtreeProof(input.subarray(0, split), first, false, target, siblings);
    right = subtreeCv(input.subarray(split), mid, false);
    siblings.push(right);
  } else {
    left = subtreeCv(input.subarray(0, split), first, false);
    right = subtreeProof(input.subarray(split), mid, false, target, siblings);
    siblings.push(left);
  }
  return parentCv(left, right, root);
}

/**
 * The proof of 1 KiB block `blockIndex` of `data`: the block, the sibling CVs along its path, 32 bytes each,
 * deepest first, and the root. A top-down walk of the tree, which the kernel builds bottom-up.
 */
export function blake3Proof(
  data: Uint8Array,
  blockIndex: number,
): { block: Uint8Array; proof: Uint8Array; root: Uint8Array } {
  const blocks = Math.max(1, Math.ceil(data.length / CHUNK_LEN));
  if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= blocks) {
    throw new RangeError(`Expected blockIndex to be in [0, ${blocks}): "${blockIndex}"`);
  }
  const siblings: Uint32Array[] = [];
  const root = subtreeProof(data, 0, true, blockIndex, siblings);
  const proof = new Uint8Array(siblings.length * 32);
  siblings.forEach((cv, i) => proof.set(toBytes(cv), i * 32));
  return {
    block: data.slice(blockIndex * CHUNK_LEN, (blockIndex + 1) * CHUNK_LEN),
    proof,
    root: toBytes(root),
  };
}

/**
 * True when `block` and `proof` hash up to `root` as block `blockIndex` of a `length`-byte input. Walks the
 * tree's shape top-down (which side the block is on at each split), then hashes bottom-up.
 */
export function blake3VerifyProof(
  root: Uint8Array,
  length: number,
  blockIndex: number,
  block: Uint8Array,
  proof: Uint8Array,
): boolean {
  const blocks = Math.max(1, Math.ceil(length / CHUNK_LEN));
  if (root.length !== 32) throw new RangeError(`Expected root to be 32 bytes: "${root.length}"`);
  if (!Number.isInteger(blockIndex) || blockIndex < 0 || blockIndex >= blocks) {
    throw new RangeError(`Expected blockIndex to be in [0, ${blocks}): "${blockIndex}"`);
  }
  const expectedLen = blockIndex < blocks - 1 ? CHUNK_LEN : length - blockIndex * CHUNK_LEN;
  if (block.length !== expectedLen) return false;
  // The sides from the top: true where the block is in the left subtree.
  const inLeft: boolean[] = [];
  let first = 0;
  let size = blocks;
  while (size > 1) {
    const left = leftChunksOf(size);
    if (blockIndex < first + left) {
      inLeft.push(true);
      size = left;
    } else {
      inLeft.push(false);
      first += left;
      size -= left;
    }
  }
  if (proof.length !== inLeft.length * 32) return false;
  let cv = chunkCv(block, blockIndex, blocks === 1);
  for (let level = 0; level < inLeft.length; level++) {
    const sibling = toWords(proof.subarray(level * 32, level * 32 + 32));
    const top = level === inLeft.length - 1;
    const left = inLeft[inLeft.length - 1 - level]!;
    cv = left ? parentCv(cv, sibling, top) : parentCv(sibling, cv, top);
  }
  const got = toBytes(cv);
  return got.every((b, i) => b === root[i]);
}
