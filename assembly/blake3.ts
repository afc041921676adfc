// deno-fmt-ignore-file -- deno fmt drops AssemblyScript decorators such as @inline
// BLAKE3-256 in the default hash mode (no key, no derive-key), over one input in linear memory.
//
// Tree: the input is cut into 1 KiB chunks; each chunk is compressed block by block (64 bytes) into a
// chaining value (CV). CVs are then merged pairwise, level by level; an odd node at the end of a level
// moves up unchanged. That is the spec's rule (the left subtree holds the largest power of two of chunks),
// because every left subtree is then complete. The last compression (the root parent, or the only chunk's
// last block) carries ROOT and yields the digest. Chunk counters fit in 32 bits: a 4 GiB memory holds
// fewer than 2^22 chunks, so the counter's high word is always 0.
//
// Speed comes from `hash4`, the 4-lane design of the official hash_many: lane k of every v128 holds
// input k, so four chunks (or four parents) are compressed at once with no shuffling inside a round.
// Each block's 16 message words are loaded as four rows per input and transposed (4x4, with
// i32x4/i64x2 shuffles) into 16 vectors, one word of all four inputs each. The 7 rounds are unrolled
// with the message schedule resolved here in the source, and the four G functions of a step are
// interleaved so that independent work sits side by side. Rotations: 16 is a 16-bit-lane shuffle
// (pshuflw/pshufhw on x64), 8 a byte swizzle with a mask held in a local (V8 would rebuild a constant
// mask at every use), 12 and 7 shift-shift-or. Inputs that do not fill four lanes repeat their last
// lane and drop the extra results. The scalar `compress` handles single blocks: a partial last chunk,
// a lone chunk or parent, and the root.
//
// Memory layout (wasm is little-endian like BLAKE3's words, so words are plain loads):
//   static data   IV, the rot8 mask, OUT (32-byte digest), PAD (a zero-padded last block)
//   INPUT         the input, from the first 64-byte boundary past static data
//   cvs           from the next 64-byte boundary past the input: one 32-byte CV per chunk, merged in
//                 place level by level
//   PATH, EXPECT  (static) a proof's sibling CVs, deepest first; the root a proof is checked against
// Nothing is allocated: `workspace(len)` tells the JS wrapper how much memory a call needs.
//
// Proofs (bao's slices, for one chunk): `proof(len, index)` hashes as `hash` does and, before each level
// is merged, copies the sibling of the node over chunk `index` to PATH. A node's position at level L is
// index >> L, its sibling the other one of its pair; a level where the node is the odd last one has no
// sibling (it moves up). So a proof costs one hash plus a few 32-byte copies. `verify` walks the same
// positions bottom-up from the one chunk, 16 + depth scalar compressions.

const CHUNK_LEN: usize = 1024;
const BLOCK_LEN: usize = 64;
const CV_LEN: usize = 32;

const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;

const IV0: u32 = 0x6a09e667;
const IV1: u32 = 0xbb67ae85;
const IV2: u32 = 0x3c6ef372;
const IV3: u32 = 0xa54ff53a;
const IV4: u32 = 0x510e527f;
const IV5: u32 = 0x9b05688c;
const IV6: u32 = 0x1f83d9ab;
const IV7: u32 = 0x5be0cd19;

const IV = memory.data<u32>([IV0, IV1, IV2, IV3, IV4, IV5, IV6, IV7]);
/** Byte indices that rotate each 32-bit lane right by 8. */
const ROT8_MASK = memory.data<u8>([1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12]);
const OUT = memory.data(32, 16);
const PAD = memory.data(64, 16);
/** Room for 32 sibling CVs: a 4 GiB memory has fewer than 2^22 chunks, so a tree has at most 22 levels. */
const PATH = memory.data(1024, 16);
const EXPECT = memory.data(32, 16);
/** A parent block (left CV, right CV) that `verify` assembles. */
const PAIR = memory.data(64, 16);
const INPUT: usize = (__heap_base + 63) & ~(<usize>63);

@inline function align64(n: usize): usize {
  return (n + 63) & ~(<usize>63);
}

// ---------------------------------------------------------------------------------------------------
// Scalar: one block.

/**
 * Compresses the block at `block` into the CV at `cv`, writing the 8-word result to `out` (which may be
 * `cv` or `block`: everything is read first). The round body is written once; after each round the
 * message locals are permuted, which costs only register moves.
 */
function compress(
  cv: usize,
  block: usize,
  counter: u32,
  blockLen: u32,
  flags: u32,
  out: usize,
): void {
  let m0 = load<u32>(block, 0);
  let m1 = load<u32>(block, 4);
  let m2 = load<u32>(block, 8);
  let m3 = load<u32>(block, 12);
  let m4 = load<u32>(block, 16);
  let m5 = load<u32>(block, 20);
  let m6 = load<u32>(block, 24);
  let m7 = load<u32>(block, 28);
  let m8 = load<u32>(block, 32);
  let m9 = load<u32>(block, 36);
  let m10 = load<u32>(block, 40);
  let m11 = load<u32>(block, 44);
  let m12 = load<u32>(block, 48);
  let m13 = load<u32>(block, 52);
  let m14 = load<u32>(block, 56);
  let m15 = load<u32>(block, 60);
  let s0 = load<u32>(cv, 0);
  let s1 = load<u32>(cv, 4);
  let s2 = load<u32>(cv, 8);
  let s3 = load<u32>(cv, 12);
  let s4 = load<u32>(cv, 16);
  let s5 = load<u32>(cv, 20);
  let s6 = load<u32>(cv, 24);
  let s7 = load<u32>(cv, 28);
  let s8 = IV0;
  let s9 = IV1;
  let s10 = IV2;
  let s11 = IV3;
  let s12 = counter;
  let s13: u32 = 0;
  let s14 = blockLen;
  let s15 = flags;
  for (let r = 0; r < 7; r++) {
    // Columns.
    s0 += s4 + m0;
    s12 = rotr<u32>(s12 ^ s0, 16);
    s8 += s12;
    s4 = rotr<u32>(s4 ^ s8, 12);
    s0 += s4 + m1;
    s12 = rotr<u32>(s12 ^ s0, 8);
    s8 += s12;
    s4 = rotr<u32>(s4 ^ s8, 7);
    s1 += s5 + m2;
    s13 = rotr<u32>(s13 ^ s1, 16);
    s9 += s13;
    s5 = rotr<u32>(s5 ^ s9, 12);
    s1 += s5 + m3;
    s13 = rotr<u32>(s13 ^ s1, 8);
    s9 += s13;
    s5 = rotr<u32>(s5 ^ s9, 7);
    s2 += s6 + m4;
    s14 = rotr<u32>(s14 ^ s2, 16);
    s10 += s14;
    s6 = rotr<u32>(s6 ^ s10, 12);
    s2 += s6 + m5;
    s14 = rotr<u32>(s14 ^ s2, 8);
    s10 += s14;
    s6 = rotr<u32>(s6 ^ s10, 7);
    s3 += s7 + m6;
    s15 = rotr<u32>(s15 ^ s3, 16);
    s11 += s15;
    s7 = rotr<u32>(s7 ^ s11, 12);
    s3 += s7 + m7;
    s15 = rotr<u32>(s15 ^ s3, 8);
    s11 += s15;
    s7 = rotr<u32>(s7 ^ s11, 7);
    // Diagonals.
    s0 += s5 + m8;
    s15 = rotr<u32>(s15 ^ s0, 16);
    s10 += s15;
    s5 = rotr<u32>(s5 ^ s10, 12);
    s0 += s5 + m9;
    s15 = rotr<u32>(s15 ^ s0, 8);
    s10 += s15;
    s5 = rotr<u32>(s5 ^ s10, 7);
    s1 += s6 + m10;
    s12 = rotr<u32>(s12 ^ s1, 16);
    s11 += s12;
    s6 = rotr<u32>(s6 ^ s11, 12);
    s1 += s6 + m11;
    s12 = rotr<u32>(s12 ^ s1, 8);
    s11 += s12;
    s6 = rotr<u32>(s6 ^ s11, 7);
    s2 += s7 + m12;
    s13 = rotr<u32>(s13 ^ s2, 16);
    s8 += s13;
    s7 = rotr<u32>(s7 ^ s8, 12);
    s2 += s7 + m13;
    s13 = rotr<u32>(s13 ^ s2, 8);
    s8 += s13;
    s7 = rotr<u32>(s7 ^ s8, 7);
    s3 += s4 + m14;
    s14 = rotr<u32>(s14 ^ s3, 16);
    s9 += s14;
    s4 = rotr<u32>(s4 ^ s9, 12);
    s3 += s4 + m15;
    s14 = rotr<u32>(s14 ^ s3, 8);
    s9 += s14;
    s4 = rotr<u32>(s4 ^ s9, 7);
    // Next round's word i is this round's word PERMUTATION[i] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12,
    // 5, 9, 14, 15, 8]: two cycles of eight.
    let t = m0;
    m0 = m2;
    m2 = m3;
    m3 = m10;
    m10 = m12;
    m12 = m9;
    m9 = m11;
    m11 = m5;
    m5 = t;
    t = m1;
    m1 = m6;
    m6 = m4;
    m4 = m7;
    m7 = m13;
    m13 = m14;
    m14 = m15;
    m15 = m8;
    m8 = t;
  }
  store<u32>(out, s0 ^ s8, 0);
  store<u32>(out, s1 ^ s9, 4);
  store<u32>(out, s2 ^ s10, 8);
  store<u32>(out, s3 ^ s11, 12);
  store<u32>(out, s4 ^ s12, 16);
  store<u32>(out, s5 ^ s13, 20);
  store<u32>(out, s6 ^ s14, 24);
  store<u32>(out, s7 ^ s15, 28);
}

/** The CV of the chunk of `len` (1..1024, or 0 for empty input) bytes at `ptr`, written to `out`. */
function chunkCv(ptr: usize, len: usize, index: u32, rootFlag: u32, out: usize): void {
  memory.copy(out, IV, CV_LEN);
  let flags = CHUNK_START;
  while (len > BLOCK_LEN) {
    compress(out, ptr, index, <u32>BLOCK_LEN, flags, out);
    ptr += BLOCK_LEN;
    len -= BLOCK_LEN;
    flags = 0;
  }
  // The last block is zero-padded; copying it keeps reads inside the input.
  memory.fill(PAD, 0, BLOCK_LEN);
  memory.copy(PAD, ptr, len);
  compress(out, PAD, index, <u32>len, flags | CHUNK_END | rootFlag, out);
}

// ---------------------------------------------------------------------------------------------------
// SIMD: four inputs at once.

@inline function rot16(x: v128): v128 {
  return i8x16.shuffle(x, x, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
}

@inline function rot12(x: v128): v128 {
  return v128.or(i32x4.shr_u(x, 12), i32x4.shl(x, 20));
}

@inline function rot8(x: v128, mask: v128): v128 {
  return i8x16.swizzle(x, mask);
}

@inline function rot7(x: v128): v128 {
  return v128.or(i32x4.shr_u(x, 7), i32x4.shl(x, 25));
}

/** Interleaves words 0, 1 of `a` and `b`: a0 b0 a1 b1. */
@inline function lo32(a: v128, b: v128): v128 {
  return i32x4.shuffle(a, b, 0, 4, 1, 5);
}

/** Interleaves words 2, 3 of `a` and `b`: a2 b2 a3 b3. */
@inline function hi32(a: v128, b: v128): v128 {
  return i32x4.shuffle(a, b, 2, 6, 3, 7);
}

@inline function lo64(a: v128, b: v128): v128 {
  return i64x2.shuffle(a, b, 0, 2);
}

@inline function hi64(a: v128, b: v128): v128 {
  return i64x2.shuffle(a, b, 1, 3);
}

/**
 * Hashes `lanes` (1..4) inputs of `blocks` blocks each, input k at `ptr + k * stride`, into CVs at
 * `out + 32 * k`. Input k's counter is `counter + k * counterStep`. The first block adds `flagsStart`,
 * the last `flagsEnd`, every block `flags`. Missing lanes repeat the last input; their results are
 * dropped. All input is read before anything is written, so parents can be merged in place.
 */
function hash4(
  ptr: usize,
  stride: usize,
  lanes: usize,
  blocks: u32,
  counter: u32,
  counterStep: u32,
  flags: u32,
  flagsStart: u32,
  flagsEnd: u32,
  out: usize,
): void {
  const last = ptr + (lanes - 1) * stride;
  const in0 = ptr;
  const in1 = min(in0 + stride, last);
  const in2 = min(in1 + stride, last);
  const in3 = min(in2 + stride, last);
  const counters = i32x4.add(
    i32x4.splat(counter),
    i32x4.mul(i32x4.splat(counterStep), i32x4(0, 1, 2, 3)),
  );
  const rot8Mask = v128.load(ROT8_MASK);
  let h0 = i32x4.splat(IV0);
  let h1 = i32x4.splat(IV1);
  let h2 = i32x4.splat(IV2);
  let h3 = i32x4.splat(IV3);
  let h4 = i32x4.splat(IV4);
  let h5 = i32x4.splat(IV5);
  let h6 = i32x4.splat(IV6);
  let h7 = i32x4.splat(IV7);
  let blockFlags = flags | flagsStart;
  for (let b: u32 = 0; b < blocks; b++) {
    if (b + 1 == blocks) blockFlags |= flagsEnd;
    const at = <usize>b * BLOCK_LEN;
    // Words 4q..4q+3 of the four inputs, transposed: m(4q+j) holds word 4q+j of inputs 0..3.
    let r0 = v128.load(in0 + at);
    let r1 = v128.load(in1 + at);
    let r2 = v128.load(in2 + at);
    let r3 = v128.load(in3 + at);
    const m0 = lo64(lo32(r0, r1), lo32(r2, r3));
    const m1 = hi64(lo32(r0, r1), lo32(r2, r3));
    const m2 = lo64(hi32(r0, r1), hi32(r2, r3));
    const m3 = hi64(hi32(r0, r1), hi32(r2, r3));
    r0 = v128.load(in0 + at, 16);
    r1 = v128.load(in1 + at, 16);
    r2 = v128.load(in2 + at, 16);
    r3 = v128.load(in3 + at, 16);
    const m4 = lo64(lo32(r0, r1), lo32(r2, r3));
    const m5 = hi64(lo32(r0, r1), lo32(r2, r3));
    const m6 = lo64(hi32(r0, r1), hi32(r2, r3));
    const m7 = hi64(hi32(r0, r1), hi32(r2, r3));
    r0 = v128.load(in0 + at, 32);
    r1 = v128.load(in1 + at, 32);
    r2 = v128.load(in2 + at, 32);
    r3 = v128.load(in3 + at, 32);
    const m8 = lo64(lo32(r0, r1), lo32(r2, r3));
    const m9 = hi64(lo32(r0, r1), lo32(r2, r3));
    const m10 = lo64(hi32(r0, r1), hi32(r2, r3));
    const m11 = hi64(hi32(r0, r1), hi32(r2, r3));
    r0 = v128.load(in0 + at, 48);
    r1 = v128.load(in1 + at, 48);
    r2 = v128.load(in2 + at, 48);
    r3 = v128.load(in3 + at, 48);
    const m12 = lo64(lo32(r0, r1), lo32(r2, r3));
    const m13 = hi64(lo32(r0, r1), lo32(r2, r3));
    const m14 = lo64(hi32(r0, r1), hi32(r2, r3));
    const m15 = hi64(hi32(r0, r1), hi32(r2, r3));

    let s0 = h0;
    let s1 = h1;
    let s2 = h2;
    let s3 = h3;
    let s4 = h4;
    let s5 = h5;
    let s6 = h6;
    let s7 = h7;
    let s8 = i32x4.splat(IV0);
    let s9 = i32x4.splat(IV1);
    let s10 = i32x4.splat(IV2);
    let s11 = i32x4.splat(IV3);
    let s12 = counters;
    let s13 = i32x4.splat(0);
    let s14 = i32x4.splat(<i32>BLOCK_LEN);
    let s15 = i32x4.splat(blockFlags);

    // Each round: G on the columns (0 4 8 12, 1 5 9 13, 2 6 10 14, 3 7 11 15), then on the diagonals
    // (0 5 10 15, 1 6 11 12, 2 7 8 13, 3 4 9 14), G number g taking message words 2g and 2g + 1 of the
    // round's schedule; each line is one step of one G, the four Gs in step.
    // Round 1: message words 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15.
    s0 = i32x4.add(i32x4.add(s0, s4), m0);
    s1 = i32x4.add(i32x4.add(s1, s5), m2);
    s2 = i32x4.add(i32x4.add(s2, s6), m4);
    s3 = i32x4.add(i32x4.add(s3, s7), m6);
    s12 = rot16(v128.xor(s12, s0));
    s13 = rot16(v128.xor(s13, s1));
    s14 = rot16(v128.xor(s14, s2));
    s15 = rot16(v128.xor(s15, s3));
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot12(v128.xor(s4, s8));
    s5 = rot12(v128.xor(s5, s9));
    s6 = rot12(v128.xor(s6, s10));
    s7 = rot12(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s4), m1);
    s1 = i32x4.add(i32x4.add(s1, s5), m3);
    s2 = i32x4.add(i32x4.add(s2, s6), m5);
    s3 = i32x4.add(i32x4.add(s3, s7), m7);
    s12 = rot8(v128.xor(s12, s0), rot8Mask);
    s13 = rot8(v128.xor(s13, s1), rot8Mask);
    s14 = rot8(v128.xor(s14, s2), rot8Mask);
    s15 = rot8(v128.xor(s15, s3), rot8Mask);
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot7(v128.xor(s4, s8));
    s5 = rot7(v128.xor(s5, s9));
    s6 = rot7(v128.xor(s6, s10));
    s7 = rot7(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s5), m8);
    s1 = i32x4.add(i32x4.add(s1, s6), m10);
    s2 = i32x4.add(i32x4.add(s2, s7), m12);
    s3 = i32x4.add(i32x4.add(s3, s4), m14);
    s15 = rot16(v128.xor(s15, s0));
    s12 = rot16(v128.xor(s12, s1));
    s13 = rot16(v128.xor(s13, s2));
    s14 = rot16(v128.xor(s14, s3));
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot12(v128.xor(s5, s10));
    s6 = rot12(v128.xor(s6, s11));
    s7 = rot12(v128.xor(s7, s8));
    s4 = rot12(v128.xor(s4, s9));
    s0 = i32x4.add(i32x4.add(s0, s5), m9);
    s1 = i32x4.add(i32x4.add(s1, s6), m11);
    s2 = i32x4.add(i32x4.add(s2, s7), m13);
    s3 = i32x4.add(i32x4.add(s3, s4), m15);
    s15 = rot8(v128.xor(s15, s0), rot8Mask);
    s12 = rot8(v128.xor(s12, s1), rot8Mask);
    s13 = rot8(v128.xor(s13, s2), rot8Mask);
    s14 = rot8(v128.xor(s14, s3), rot8Mask);
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot7(v128.xor(s5, s10));
    s6 = rot7(v128.xor(s6, s11));
    s7 = rot7(v128.xor(s7, s8));
    s4 = rot7(v128.xor(s4, s9));
    // Round 2: message words 2 6 3 10 7 0 4 13 1 11 12 5 9 14 15 8.
    s0 = i32x4.add(i32x4.add(s0, s4), m2);
    s1 = i32x4.add(i32x4.add(s1, s5), m3);
    s2 = i32x4.add(i32x4.add(s2, s6), m7);
    s3 = i32x4.add(i32x4.add(s3, s7), m4);
    s12 = rot16(v128.xor(s12, s0));
    s13 = rot16(v128.xor(s13, s1));
    s14 = rot16(v128.xor(s14, s2));
    s15 = rot16(v128.xor(s15, s3));
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot12(v128.xor(s4, s8));
    s5 = rot12(v128.xor(s5, s9));
    s6 = rot12(v128.xor(s6, s10));
    s7 = rot12(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s4), m6);
    s1 = i32x4.add(i32x4.add(s1, s5), m10);
    s2 = i32x4.add(i32x4.add(s2, s6), m0);
    s3 = i32x4.add(i32x4.add(s3, s7), m13);
    s12 = rot8(v128.xor(s12, s0), rot8Mask);
    s13 = rot8(v128.xor(s13, s1), rot8Mask);
    s14 = rot8(v128.xor(s14, s2), rot8Mask);
    s15 = rot8(v128.xor(s15, s3), rot8Mask);
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot7(v128.xor(s4, s8));
    s5 = rot7(v128.xor(s5, s9));
    s6 = rot7(v128.xor(s6, s10));
    s7 = rot7(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s5), m1);
    s1 = i32x4.add(i32x4.add(s1, s6), m12);
    s2 = i32x4.add(i32x4.add(s2, s7), m9);
    s3 = i32x4.add(i32x4.add(s3, s4), m15);
    s15 = rot16(v128.xor(s15, s0));
    s12 = rot16(v128.xor(s12, s1));
    s13 = rot16(v128.xor(s13, s2));
    s14 = rot16(v128.xor(s14, s3));
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot12(v128.xor(s5, s10));
    s6 = rot12(v128.xor(s6, s11));
    s7 = rot12(v128.xor(s7, s8));
    s4 = rot12(v128.xor(s4, s9));
    s0 = i32x4.add(i32x4.add(s0, s5), m11);
    s1 = i32x4.add(i32x4.add(s1, s6), m5);
    s2 = i32x4.add(i32x4.add(s2, s7), m14);
    s3 = i32x4.add(i32x4.add(s3, s4), m8);
    s15 = rot8(v128.xor(s15, s0), rot8Mask);
    s12 = rot8(v128.xor(s12, s1), rot8Mask);
    s13 = rot8(v128.xor(s13, s2), rot8Mask);
    s14 = rot8(v128.xor(s14, s3), rot8Mask);
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot7(v128.xor(s5, s10));
    s6 = rot7(v128.xor(s6, s11));
    s7 = rot7(v128.xor(s7, s8));
    s4 = rot7(v128.xor(s4, s9));
    // Round 3: message words 3 4 10 12 13 2 7 14 6 5 9 0 11 15 8 1.
    s0 = i32x4.add(i32x4.add(s0, s4), m3);
    s1 = i32x4.add(i32x4.add(s1, s5), m10);
    s2 = i32x4.add(i32x4.add(s2, s6), m13);
    s3 = i32x4.add(i32x4.add(s3, s7), m7);
    s12 = rot16(v128.xor(s12, s0));
    s13 = rot16(v128.xor(s13, s1));
    s14 = rot16(v128.xor(s14, s2));
    s15 = rot16(v128.xor(s15, s3));
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot12(v128.xor(s4, s8));
    s5 = rot12(v128.xor(s5, s9));
    s6 = rot12(v128.xor(s6, s10));
    s7 = rot12(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s4), m4);
    s1 = i32x4.add(i32x4.add(s1, s5), m12);
    s2 = i32x4.add(i32x4.add(s2, s6), m2);
    s3 = i32x4.add(i32x4.add(s3, s7), m14);
    s12 = rot8(v128.xor(s12, s0), rot8Mask);
    s13 = rot8(v128.xor(s13, s1), rot8Mask);
    s14 = rot8(v128.xor(s14, s2), rot8Mask);
    s15 = rot8(v128.xor(s15, s3), rot8Mask);
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot7(v128.xor(s4, s8));
    s5 = rot7(v128.xor(s5, s9));
    s6 = rot7(v128.xor(s6, s10));
    s7 = rot7(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s5), m6);
    s1 = i32x4.add(i32x4.add(s1, s6), m9);
    s2 = i32x4.add(i32x4.add(s2, s7), m11);
    s3 = i32x4.add(i32x4.add(s3, s4), m8);
    s15 = rot16(v128.xor(s15, s0));
    s12 = rot16(v128.xor(s12, s1));
    s13 = rot16(v128.xor(s13, s2));
    s14 = rot16(v128.xor(s14, s3));
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot12(v128.xor(s5, s10));
    s6 = rot12(v128.xor(s6, s11));
    s7 = rot12(v128.xor(s7, s8));
    s4 = rot12(v128.xor(s4, s9));
    s0 = i32x4.add(i32x4.add(s0, s5), m5);
    s1 = i32x4.add(i32x4.add(s1, s6), m0);
    s2 = i32x4.add(i32x4.add(s2, s7), m15);
    s3 = i32x4.add(i32x4.add(s3, s4), m1);
    s15 = rot8(v128.xor(s15, s0), rot8Mask);
    s12 = rot8(v128.xor(s12, s1), rot8Mask);
    s13 = rot8(v128.xor(s13, s2), rot8Mask);
    s14 = rot8(v128.xor(s14, s3), rot8Mask);
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot7(v128.xor(s5, s10));
    s6 = rot7(v128.xor(s6, s11));
    s7 = rot7(v128.xor(s7, s8));
    s4 = rot7(v128.xor(s4, s9));
    // Round 4: message words 10 7 12 9 14 3 13 15 4 0 11 2 5 8 1 6.
    s0 = i32x4.add(i32x4.add(s0, s4), m10);
    s1 = i32x4.add(i32x4.add(s1, s5), m12);
    s2 = i32x4.add(i32x4.add(s2, s6), m14);
    s3 = i32x4.add(i32x4.add(s3, s7), m13);
    s12 = rot16(v128.xor(s12, s0));
    s13 = rot16(v128.xor(s13, s1));
    s14 = rot16(v128.xor(s14, s2));
    s15 = rot16(v128.xor(s15, s3));
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot12(v128.xor(s4, s8));
    s5 = rot12(v128.xor(s5, s9));
    s6 = rot12(v128.xor(s6, s10));
    s7 = rot12(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s4), m7);
    s1 = i32x4.add(i32x4.add(s1, s5), m9);
    s2 = i32x4.add(i32x4.add(s2, s6), m3);
    s3 = i32x4.add(i32x4.add(s3, s7), m15);
    s12 = rot8(v128.xor(s12, s0), rot8Mask);
    s13 = rot8(v128.xor(s13, s1), rot8Mask);
    s14 = rot8(v128.xor(s14, s2), rot8Mask);
    s15 = rot8(v128.xor(s15, s3), rot8Mask);
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot7(v128.xor(s4, s8));
    s5 = rot7(v128.xor(s5, s9));
    s6 = rot7(v128.xor(s6, s10));
    s7 = rot7(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s5), m4);
    s1 = i32x4.add(i32x4.add(s1, s6), m11);
    s2 = i32x4.add(i32x4.add(s2, s7), m5);
    s3 = i32x4.add(i32x4.add(s3, s4), m1);
    s15 = rot16(v128.xor(s15, s0));
    s12 = rot16(v128.xor(s12, s1));
    s13 = rot16(v128.xor(s13, s2));
    s14 = rot16(v128.xor(s14, s3));
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot12(v128.xor(s5, s10));
    s6 = rot12(v128.xor(s6, s11));
    s7 = rot12(v128.xor(s7, s8));
    s4 = rot12(v128.xor(s4, s9));
    s0 = i32x4.add(i32x4.add(s0, s5), m0);
    s1 = i32x4.add(i32x4.add(s1, s6), m2);
    s2 = i32x4.add(i32x4.add(s2, s7), m8);
    s3 = i32x4.add(i32x4.add(s3, s4), m6);
    s15 = rot8(v128.xor(s15, s0), rot8Mask);
    s12 = rot8(v128.xor(s12, s1), rot8Mask);
    s13 = rot8(v128.xor(s13, s2), rot8Mask);
    s14 = rot8(v128.xor(s14, s3), rot8Mask);
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot7(v128.xor(s5, s10));
    s6 = rot7(v128.xor(s6, s11));
    s7 = rot7(v128.xor(s7, s8));
    s4 = rot7(v128.xor(s4, s9));
    // Round 5: message words 12 13 9 11 15 10 14 8 7 2 5 3 0 1 6 4.
    s0 = i32x4.add(i32x4.add(s0, s4), m12);
    s1 = i32x4.add(i32x4.add(s1, s5), m9);
    s2 = i32x4.add(i32x4.add(s2, s6), m15);
    s3 = i32x4.add(i32x4.add(s3, s7), m14);
    s12 = rot16(v128.xor(s12, s0));
    s13 = rot16(v128.xor(s13, s1));
    s14 = rot16(v128.xor(s14, s2));
    s15 = rot16(v128.xor(s15, s3));
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot12(v128.xor(s4, s8));
    s5 = rot12(v128.xor(s5, s9));
    s6 = rot12(v128.xor(s6, s10));
    s7 = rot12(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s4), m13);
    s1 = i32x4.add(i32x4.add(s1, s5), m11);
    s2 = i32x4.add(i32x4.add(s2, s6), m10);
    s3 = i32x4.add(i32x4.add(s3, s7), m8);
    s12 = rot8(v128.xor(s12, s0), rot8Mask);
    s13 = rot8(v128.xor(s13, s1), rot8Mask);
    s14 = rot8(v128.xor(s14, s2), rot8Mask);
    s15 = rot8(v128.xor(s15, s3), rot8Mask);
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot7(v128.xor(s4, s8));
    s5 = rot7(v128.xor(s5, s9));
    s6 = rot7(v128.xor(s6, s10));
    s7 = rot7(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s5), m7);
    s1 = i32x4.add(i32x4.add(s1, s6), m5);
    s2 = i32x4.add(i32x4.add(s2, s7), m0);
    s3 = i32x4.add(i32x4.add(s3, s4), m6);
    s15 = rot16(v128.xor(s15, s0));
    s12 = rot16(v128.xor(s12, s1));
    s13 = rot16(v128.xor(s13, s2));
    s14 = rot16(v128.xor(s14, s3));
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot12(v128.xor(s5, s10));
    s6 = rot12(v128.xor(s6, s11));
    s7 = rot12(v128.xor(s7, s8));
    s4 = rot12(v128.xor(s4, s9));
    s0 = i32x4.add(i32x4.add(s0, s5), m2);
    s1 = i32x4.add(i32x4.add(s1, s6), m3);
    s2 = i32x4.add(i32x4.add(s2, s7), m1);
    s3 = i32x4.add(i32x4.add(s3, s4), m4);
    s15 = rot8(v128.xor(s15, s0), rot8Mask);
    s12 = rot8(v128.xor(s12, s1), rot8Mask);
    s13 = rot8(v128.xor(s13, s2), rot8Mask);
    s14 = rot8(v128.xor(s14, s3), rot8Mask);
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot7(v128.xor(s5, s10));
    s6 = rot7(v128.xor(s6, s11));
    s7 = rot7(v128.xor(s7, s8));
    s4 = rot7(v128.xor(s4, s9));
    // Round 6: message words 9 14 11 5 8 12 15 1 13 3 0 10 2 6 4 7.
    s0 = i32x4.add(i32x4.add(s0, s4), m9);
    s1 = i32x4.add(i32x4.add(s1, s5), m11);
    s2 = i32x4.add(i32x4.add(s2, s6), m8);
    s3 = i32x4.add(i32x4.add(s3, s7), m15);
    s12 = rot16(v128.xor(s12, s0));
    s13 = rot16(v128.xor(s13, s1));
    s14 = rot16(v128.xor(s14, s2));
    s15 = rot16(v128.xor(s15, s3));
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot12(v128.xor(s4, s8));
    s5 = rot12(v128.xor(s5, s9));
    s6 = rot12(v128.xor(s6, s10));
    s7 = rot12(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s4), m14);
    s1 = i32x4.add(i32x4.add(s1, s5), m5);
    s2 = i32x4.add(i32x4.add(s2, s6), m12);
    s3 = i32x4.add(i32x4.add(s3, s7), m1);
    s12 = rot8(v128.xor(s12, s0), rot8Mask);
    s13 = rot8(v128.xor(s13, s1), rot8Mask);
    s14 = rot8(v128.xor(s14, s2), rot8Mask);
    s15 = rot8(v128.xor(s15, s3), rot8Mask);
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot7(v128.xor(s4, s8));
    s5 = rot7(v128.xor(s5, s9));
    s6 = rot7(v128.xor(s6, s10));
    s7 = rot7(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s5), m13);
    s1 = i32x4.add(i32x4.add(s1, s6), m0);
    s2 = i32x4.add(i32x4.add(s2, s7), m2);
    s3 = i32x4.add(i32x4.add(s3, s4), m4);
    s15 = rot16(v128.xor(s15, s0));
    s12 = rot16(v128.xor(s12, s1));
    s13 = rot16(v128.xor(s13, s2));
    s14 = rot16(v128.xor(s14, s3));
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot12(v128.xor(s5, s10));
    s6 = rot12(v128.xor(s6, s11));
    s7 = rot12(v128.xor(s7, s8));
    s4 = rot12(v128.xor(s4, s9));
    s0 = i32x4.add(i32x4.add(s0, s5), m3);
    s1 = i32x4.add(i32x4.add(s1, s6), m10);
    s2 = i32x4.add(i32x4.add(s2, s7), m6);
    s3 = i32x4.add(i32x4.add(s3, s4), m7);
    s15 = rot8(v128.xor(s15, s0), rot8Mask);
    s12 = rot8(v128.xor(s12, s1), rot8Mask);
    s13 = rot8(v128.xor(s13, s2), rot8Mask);
    s14 = rot8(v128.xor(s14, s3), rot8Mask);
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot7(v128.xor(s5, s10));
    s6 = rot7(v128.xor(s6, s11));
    s7 = rot7(v128.xor(s7, s8));
    s4 = rot7(v128.xor(s4, s9));
    // Round 7: message words 11 15 5 0 1 9 8 6 14 10 2 12 3 4 7 13.
    s0 = i32x4.add(i32x4.add(s0, s4), m11);
    s1 = i32x4.add(i32x4.add(s1, s5), m5);
    s2 = i32x4.add(i32x4.add(s2, s6), m1);
    s3 = i32x4.add(i32x4.add(s3, s7), m8);
    s12 = rot16(v128.xor(s12, s0));
    s13 = rot16(v128.xor(s13, s1));
    s14 = rot16(v128.xor(s14, s2));
    s15 = rot16(v128.xor(s15, s3));
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot12(v128.xor(s4, s8));
    s5 = rot12(v128.xor(s5, s9));
    s6 = rot12(v128.xor(s6, s10));
    s7 = rot12(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s4), m15);
    s1 = i32x4.add(i32x4.add(s1, s5), m0);
    s2 = i32x4.add(i32x4.add(s2, s6), m9);
    s3 = i32x4.add(i32x4.add(s3, s7), m6);
    s12 = rot8(v128.xor(s12, s0), rot8Mask);
    s13 = rot8(v128.xor(s13, s1), rot8Mask);
    s14 = rot8(v128.xor(s14, s2), rot8Mask);
    s15 = rot8(v128.xor(s15, s3), rot8Mask);
    s8 = i32x4.add(s8, s12);
    s9 = i32x4.add(s9, s13);
    s10 = i32x4.add(s10, s14);
    s11 = i32x4.add(s11, s15);
    s4 = rot7(v128.xor(s4, s8));
    s5 = rot7(v128.xor(s5, s9));
    s6 = rot7(v128.xor(s6, s10));
    s7 = rot7(v128.xor(s7, s11));
    s0 = i32x4.add(i32x4.add(s0, s5), m14);
    s1 = i32x4.add(i32x4.add(s1, s6), m2);
    s2 = i32x4.add(i32x4.add(s2, s7), m3);
    s3 = i32x4.add(i32x4.add(s3, s4), m7);
    s15 = rot16(v128.xor(s15, s0));
    s12 = rot16(v128.xor(s12, s1));
    s13 = rot16(v128.xor(s13, s2));
    s14 = rot16(v128.xor(s14, s3));
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot12(v128.xor(s5, s10));
    s6 = rot12(v128.xor(s6, s11));
    s7 = rot12(v128.xor(s7, s8));
    s4 = rot12(v128.xor(s4, s9));
    s0 = i32x4.add(i32x4.add(s0, s5), m10);
    s1 = i32x4.add(i32x4.add(s1, s6), m12);
    s2 = i32x4.add(i32x4.add(s2, s7), m4);
    s3 = i32x4.add(i32x4.add(s3, s4), m13);
    s15 = rot8(v128.xor(s15, s0), rot8Mask);
    s12 = rot8(v128.xor(s12, s1), rot8Mask);
    s13 = rot8(v128.xor(s13, s2), rot8Mask);
    s14 = rot8(v128.xor(s14, s3), rot8Mask);
    s10 = i32x4.add(s10, s15);
    s11 = i32x4.add(s11, s12);
    s8 = i32x4.add(s8, s13);
    s9 = i32x4.add(s9, s14);
    s5 = rot7(v128.xor(s5, s10));
    s6 = rot7(v128.xor(s6, s11));
    s7 = rot7(v128.xor(s7, s8));
    s4 = rot7(v128.xor(s4, s9));

    h0 = v128.xor(s0, s8);
    h1 = v128.xor(s1, s9);
    h2 = v128.xor(s2, s10);
    h3 = v128.xor(s3, s11);
    h4 = v128.xor(s4, s12);
    h5 = v128.xor(s5, s13);
    h6 = v128.xor(s6, s14);
    h7 = v128.xor(s7, s15);
    blockFlags = flags;
  }
  // Back to one CV per input: words 0-3 of input k from h0..h3, words 4-7 from h4..h7.
  const a0 = lo64(lo32(h0, h1), lo32(h2, h3));
  const a1 = hi64(lo32(h0, h1), lo32(h2, h3));
  const a2 = lo64(hi32(h0, h1), hi32(h2, h3));
  const a3 = hi64(hi32(h0, h1), hi32(h2, h3));
  const b0 = lo64(lo32(h4, h5), lo32(h6, h7));
  const b1 = hi64(lo32(h4, h5), lo32(h6, h7));
  const b2 = lo64(hi32(h4, h5), hi32(h6, h7));
  const b3 = hi64(hi32(h4, h5), hi32(h6, h7));
  v128.store(out, a0, 0);
  v128.store(out, b0, 16);
  if (lanes > 1) {
    v128.store(out, a1, 32);
    v128.store(out, b1, 48);
  }
  if (lanes > 2) {
    v128.store(out, a2, 64);
    v128.store(out, b2, 80);
  }
  if (lanes > 3) {
    v128.store(out, a3, 96);
    v128.store(out, b3, 112);
  }
}

// ---------------------------------------------------------------------------------------------------
// Entry points.

/** Where the JS wrapper writes the input. */
export function input(): usize {
  return INPUT;
}

/** Bytes of memory that hashing `len` input bytes needs (as f64: the sum may pass 2^32). */
export function workspace(len: usize): f64 {
  const chunks = Math.ceil(<f64>len / <f64>CHUNK_LEN);
  return <f64>INPUT + <f64>len + 64 + chunks * <f64>CV_LEN;
}

/** Hashes `len` bytes at `input()`; returns the address of the 32-byte digest. */
export function hash(len: usize): usize {
  if (len <= CHUNK_LEN) {
    chunkCv(INPUT, len, 0, ROOT, OUT);
    return OUT;
  }
  tree(len, 0, false);
  return OUT;
}

/**
 * The root of the `len` (> 1024) bytes at INPUT, into OUT. With `path`, also the proof of chunk
 * `index`: the sibling CVs along its path to PATH, deepest first. Returns how many were written.
 */
@inline function tree(len: usize, index: usize, path: bool): usize {
  const cvs = align64(INPUT + len);
  const chunks = (len + CHUNK_LEN - 1) / CHUNK_LEN;
  const full = len / CHUNK_LEN;

  // Chunk CVs. A lone full chunk is cheaper in scalar than in a 4-lane pass; the partial last chunk
  // (if any) always is scalar.
  let i: usize = 0;
  while (i < full) {
    const lanes = ASC_FEATURE_SIMD ? min<usize>(4, full - i) : 1;
    const at = INPUT + i * CHUNK_LEN;
    const cv = cvs + i * CV_LEN;
    if (lanes > 1) hash4(at, CHUNK_LEN, lanes, 16, <u32>i, 1, 0, CHUNK_START, CHUNK_END, cv);
    else chunkCv(at, CHUNK_LEN, <u32>i, 0, cv);
    i += lanes;
  }
  if (i < chunks) chunkCv(INPUT + i * CHUNK_LEN, len - i * CHUNK_LEN, <u32>i, 0, cvs + i * CV_LEN);

  // Merge level by level, in place: parent j of a level reads CVs 2j, 2j + 1 (a contiguous 64-byte
  // block) and is written to CV j, which no later parent of the level reads.
  let nodes = chunks;
  let depth: usize = 0;
  let pos = index;
  while (nodes > 2) {
    if (path) {
      const sibling = pos ^ 1;
      if (sibling < nodes) {
        memory.copy(PATH + depth * CV_LEN, cvs + sibling * CV_LEN, CV_LEN);
        depth++;
      }
      pos >>= 1;
    }
    const pairs = nodes >> 1;
    let j: usize = 0;
    while (j < pairs) {
      const lanes = ASC_FEATURE_SIMD ? min<usize>(4, pairs - j) : 1;
      const at = cvs + j * BLOCK_LEN;
      const cv = cvs + j * CV_LEN;
      if (lanes > 1) hash4(at, BLOCK_LEN, lanes, 1, 0, 0, PARENT, 0, 0, cv);
      else compress(IV, at, 0, <u32>BLOCK_LEN, PARENT, cv);
      j += lanes;
    }
    if (nodes & 1) memory.copy(cvs + pairs * CV_LEN, cvs + (nodes - 1) * CV_LEN, CV_LEN);
    nodes = pairs + (nodes & 1);
  }
  // Two nodes left: the node on the path is one of them, its sibling the other.
  if (path) {
    memory.copy(PATH + depth * CV_LEN, cvs + (pos ^ 1) * CV_LEN, CV_LEN);
    depth++;
  }
  compress(IV, cvs, 0, <u32>BLOCK_LEN, PARENT | ROOT, OUT);
  return depth;
}

/** Where a proof's sibling CVs are: written by `proof`, read by `verify`. */
export function proofPath(): usize {
  return PATH;
}

/** Where `verify` reads the 32-byte root to check against. */
export function expected(): usize {
  return EXPECT;
}

/**
 * Hashes `len` bytes at `input()` into the digest at `hash`'s address and writes the proof of chunk
 * `index` (< the chunk count: the wrapper checks) to `proofPath()`. Returns the number of sibling CVs.
 */
export function proof(len: usize, index: usize): usize {
  if (len <= CHUNK_LEN) {
    chunkCv(INPUT, len, 0, ROOT, OUT);
    return 0;
  }
  return tree(len, index, true);
}

/**
 * True when chunk `index` of a `len`-byte input, `blockLen` bytes at `input()`, and `proofLen` bytes of
 * sibling CVs at `proofPath()` hash up to the root at `expected()`. The lengths must be exactly what the
 * tree's shape asks for: the chunk 1024 bytes unless it is the last, one CV per level that has a sibling.
 */
export function verify(len: usize, index: usize, blockLen: usize, proofLen: usize): bool {
  const chunks: usize = len <= CHUNK_LEN ? 1 : (len + CHUNK_LEN - 1) / CHUNK_LEN;
  if (index >= chunks) return false;
  if (blockLen != (index + 1 < chunks ? CHUNK_LEN : len - index * CHUNK_LEN)) return false;
  let depth: usize = 0;
  let nodes = chunks;
  let at = index;
  while (nodes > 1) {
    if ((at ^ 1) < nodes) depth++;
    at >>= 1;
    nodes = (nodes + 1) >> 1;
  }
  if (proofLen != depth * CV_LEN) return false;

  chunkCv(INPUT, blockLen, <u32>index, chunks == 1 ? ROOT : 0, OUT);
  nodes = chunks;
  at = index;
  let sibling = PATH;
  while (nodes > 1) {
    if ((at ^ 1) < nodes) {
      // Even positions are left children.
      const left = at & 1 ? sibling : OUT;
      const right = at & 1 ? OUT : sibling;
      memory.copy(PAIR, left, CV_LEN);
      memory.copy(PAIR + CV_LEN, right, CV_LEN);
      compress(IV, PAIR, 0, <u32>BLOCK_LEN, nodes == 2 ? PARENT | ROOT : PARENT, OUT);
      sibling += CV_LEN;
    }
    at >>= 1;
    nodes = (nodes + 1) >> 1;
  }
  return (
    ((load<u64>(OUT) ^ load<u64>(EXPECT)) |
      (load<u64>(OUT, 8) ^ load<u64>(EXPECT, 8)) |
      (load<u64>(OUT, 16) ^ load<u64>(EXPECT, 16)) |
      (load<u64>(OUT, 24) ^ load<u64>(EXPECT, 24))) == 0
  );
}
