// deno-fmt-ignore-file -- deno fmt drops AssemblyScript decorators such as @inline
// Keccak-256 (Ethereum's: original Keccak padding 0x01, not SHA-3's 0x06), in bulk, and the sorted-pair
// Merkle trees that OpenZeppelin's MerkleProof and Solady's MerkleProofLib verify.
//
// Keccak-f[1600] works on 25 64-bit lanes, which wasm holds natively. Independent messages of equal
// length (a batch of fixed-size receipts, the pairs within one tree level) are hashed two at a time: each
// v128 holds the same lane of two states, and the i64x2 ops run both permutations at once. A single
// message (or an odd one out) takes the scalar u64 path.
//
// Both permutations are unrolled two rounds per loop turn, from lanes a.. into e.. and back, so no lane is
// copied between rounds. Lane (x, y) is named a{x + 5y}. Each step of a round, as FIPS 202 names it:
//   theta  c[x] = xor of column x; d[x] = c[x-1] ^ rotl(c[x+1], 1); every lane ^= d[x]
//   rho+pi b(y, 2x+3y) = rotl(lane(x, y) ^ d[x], r(x, y)), built one output row at a time into b0..b4
//   chi    e(x, y) = b(x) ^ (~b(x+1) & b(x+2)) within the row
//   iota   e(0, 0) ^= the round constant
//
// Memory: static scratch lives in data segments (below); the JS wrapper lays out inputs and outputs
// from `base()` up. Nothing is allocated per call.

const RATE: usize = 136;

/** Keccak-f round constants. */
const RC = memory.data<u64>([
  0x0000000000000001,
  0x0000000000008082,
  0x800000000000808a,
  0x8000000080008000,
  0x000000000000808b,
  0x0000000080000001,
  0x8000000080008081,
  0x8000000000008009,
  0x000000000000008a,
  0x0000000000000088,
  0x0000000080008009,
  0x000000008000000a,
  0x000000008000808b,
  0x800000000000008b,
  0x8000000000008089,
  0x8000000000008003,
  0x8000000000008002,
  0x8000000000000080,
  0x000000000000800a,
  0x800000008000000a,
  0x8000000080008081,
  0x8000000000008080,
  0x0000000080000001,
  0x8000000080008008,
]);
/** The same constants, each in both lanes of a v128. */
const RC2 = memory.data(24 * 16, 16);
/** One scalar state (25 lanes) and one two-way state (25 v128s, message A in lane 0, B in lane 1). */
const STATE = memory.data(25 * 8, 16);
const STATE2 = memory.data(25 * 16, 16);
/** Last (padded) blocks of messages A and B. */
const PAD_A = memory.data(144, 16);
const PAD_B = memory.data(144, 16);

let ready = false;

function init(): void {
  if (ready) return;
  for (let i: usize = 0; i < 24; i++) {
    const rc = load<u64>(RC + (i << 3));
    store<u64>(RC2 + (i << 4), rc);
    store<u64>(RC2 + (i << 4), rc, 8);
  }
  ready = true;
}

/** First free byte above static data, 16-aligned: the JS wrapper lays out its regions from here. */
export function base(): usize {
  return (__heap_base + 15) & ~(<usize> 15);
}

@inline function rotl2(x: v128, n: i32): v128 {
  return v128.or(i64x2.shl(x, n), i64x2.shr_u(x, 64 - n));
}

// ---------------------------------------------------------------------------------------------------
// Scalar permutation
// ---------------------------------------------------------------------------------------------------

/** Absorbs `blocks` full 136-byte blocks from `data` into the state at `state`. */
function absorb(state: usize, data: usize, blocks: usize): void {
  let a00 = load<u64>(state, 0);
  let a01 = load<u64>(state, 8);
  let a02 = load<u64>(state, 16);
  let a03 = load<u64>(state, 24);
  let a04 = load<u64>(state, 32);
  let a05 = load<u64>(state, 40);
  let a06 = load<u64>(state, 48);
  let a07 = load<u64>(state, 56);
  let a08 = load<u64>(state, 64);
  let a09 = load<u64>(state, 72);
  let a10 = load<u64>(state, 80);
  let a11 = load<u64>(state, 88);
  let a12 = load<u64>(state, 96);
  let a13 = load<u64>(state, 104);
  let a14 = load<u64>(state, 112);
  let a15 = load<u64>(state, 120);
  let a16 = load<u64>(state, 128);
  let a17 = load<u64>(state, 136);
  let a18 = load<u64>(state, 144);
  let a19 = load<u64>(state, 152);
  let a20 = load<u64>(state, 160);
  let a21 = load<u64>(state, 168);
  let a22 = load<u64>(state, 176);
  let a23 = load<u64>(state, 184);
  let a24 = load<u64>(state, 192);
  let c0: u64, c1: u64, c2: u64, c3: u64, c4: u64, d0: u64, d1: u64, d2: u64, d3: u64, d4: u64;
  let b0: u64, b1: u64, b2: u64, b3: u64, b4: u64;
  let e00: u64, e01: u64, e02: u64, e03: u64, e04: u64, e05: u64, e06: u64, e07: u64, e08: u64;
  let e09: u64, e10: u64, e11: u64, e12: u64, e13: u64, e14: u64, e15: u64, e16: u64, e17: u64;
  let e18: u64, e19: u64, e20: u64, e21: u64, e22: u64, e23: u64, e24: u64;
  for (; blocks > 0; blocks--, data += RATE) {
    a00 ^= load<u64>(data, 0);
    a01 ^= load<u64>(data, 8);
    a02 ^= load<u64>(data, 16);
    a03 ^= load<u64>(data, 24);
    a04 ^= load<u64>(data, 32);
    a05 ^= load<u64>(data, 40);
    a06 ^= load<u64>(data, 48);
    a07 ^= load<u64>(data, 56);
    a08 ^= load<u64>(data, 64);
    a09 ^= load<u64>(data, 72);
    a10 ^= load<u64>(data, 80);
    a11 ^= load<u64>(data, 88);
    a12 ^= load<u64>(data, 96);
    a13 ^= load<u64>(data, 104);
    a14 ^= load<u64>(data, 112);
    a15 ^= load<u64>(data, 120);
    a16 ^= load<u64>(data, 128);
    for (let r: usize = 0; r < 24; r += 2) {
      c0 = a00 ^ a05 ^ a10 ^ a15 ^ a20;
      c1 = a01 ^ a06 ^ a11 ^ a16 ^ a21;
      c2 = a02 ^ a07 ^ a12 ^ a17 ^ a22;
      c3 = a03 ^ a08 ^ a13 ^ a18 ^ a23;
      c4 = a04 ^ a09 ^ a14 ^ a19 ^ a24;
      d0 = c4 ^ rotl<u64>(c1, 1);
      d1 = c0 ^ rotl<u64>(c2, 1);
      d2 = c1 ^ rotl<u64>(c3, 1);
      d3 = c2 ^ rotl<u64>(c4, 1);
      d4 = c3 ^ rotl<u64>(c0, 1);
      b0 = a00 ^ d0;
      b1 = rotl<u64>(a06 ^ d1, 44);
      b2 = rotl<u64>(a12 ^ d2, 43);
      b3 = rotl<u64>(a18 ^ d3, 21);
      b4 = rotl<u64>(a24 ^ d4, 14);
      e00 = b0 ^ (~b1 & b2) ^ load<u64>(RC + (r << 3));
      e01 = b1 ^ (~b2 & b3);
      e02 = b2 ^ (~b3 & b4);
      e03 = b3 ^ (~b4 & b0);
      e04 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(a03 ^ d3, 28);
      b1 = rotl<u64>(a09 ^ d4, 20);
      b2 = rotl<u64>(a10 ^ d0, 3);
      b3 = rotl<u64>(a16 ^ d1, 45);
      b4 = rotl<u64>(a22 ^ d2, 61);
      e05 = b0 ^ (~b1 & b2);
      e06 = b1 ^ (~b2 & b3);
      e07 = b2 ^ (~b3 & b4);
      e08 = b3 ^ (~b4 & b0);
      e09 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(a01 ^ d1, 1);
      b1 = rotl<u64>(a07 ^ d2, 6);
      b2 = rotl<u64>(a13 ^ d3, 25);
      b3 = rotl<u64>(a19 ^ d4, 8);
      b4 = rotl<u64>(a20 ^ d0, 18);
      e10 = b0 ^ (~b1 & b2);
      e11 = b1 ^ (~b2 & b3);
      e12 = b2 ^ (~b3 & b4);
      e13 = b3 ^ (~b4 & b0);
      e14 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(a04 ^ d4, 27);
      b1 = rotl<u64>(a05 ^ d0, 36);
      b2 = rotl<u64>(a11 ^ d1, 10);
      b3 = rotl<u64>(a17 ^ d2, 15);
      b4 = rotl<u64>(a23 ^ d3, 56);
      e15 = b0 ^ (~b1 & b2);
      e16 = b1 ^ (~b2 & b3);
      e17 = b2 ^ (~b3 & b4);
      e18 = b3 ^ (~b4 & b0);
      e19 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(a02 ^ d2, 62);
      b1 = rotl<u64>(a08 ^ d3, 55);
      b2 = rotl<u64>(a14 ^ d4, 39);
      b3 = rotl<u64>(a15 ^ d0, 41);
      b4 = rotl<u64>(a21 ^ d1, 2);
      e20 = b0 ^ (~b1 & b2);
      e21 = b1 ^ (~b2 & b3);
      e22 = b2 ^ (~b3 & b4);
      e23 = b3 ^ (~b4 & b0);
      e24 = b4 ^ (~b0 & b1);
      c0 = e00 ^ e05 ^ e10 ^ e15 ^ e20;
      c1 = e01 ^ e06 ^ e11 ^ e16 ^ e21;
      c2 = e02 ^ e07 ^ e12 ^ e17 ^ e22;
      c3 = e03 ^ e08 ^ e13 ^ e18 ^ e23;
      c4 = e04 ^ e09 ^ e14 ^ e19 ^ e24;
      d0 = c4 ^ rotl<u64>(c1, 1);
      d1 = c0 ^ rotl<u64>(c2, 1);
      d2 = c1 ^ rotl<u64>(c3, 1);
      d3 = c2 ^ rotl<u64>(c4, 1);
      d4 = c3 ^ rotl<u64>(c0, 1);
      b0 = e00 ^ d0;
      b1 = rotl<u64>(e06 ^ d1, 44);
      b2 = rotl<u64>(e12 ^ d2, 43);
      b3 = rotl<u64>(e18 ^ d3, 21);
      b4 = rotl<u64>(e24 ^ d4, 14);
      a00 = b0 ^ (~b1 & b2) ^ load<u64>(RC + (r << 3), 8);
      a01 = b1 ^ (~b2 & b3);
      a02 = b2 ^ (~b3 & b4);
      a03 = b3 ^ (~b4 & b0);
      a04 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(e03 ^ d3, 28);
      b1 = rotl<u64>(e09 ^ d4, 20);
      b2 = rotl<u64>(e10 ^ d0, 3);
      b3 = rotl<u64>(e16 ^ d1, 45);
      b4 = rotl<u64>(e22 ^ d2, 61);
      a05 = b0 ^ (~b1 & b2);
      a06 = b1 ^ (~b2 & b3);
      a07 = b2 ^ (~b3 & b4);
      a08 = b3 ^ (~b4 & b0);
      a09 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(e01 ^ d1, 1);
      b1 = rotl<u64>(e07 ^ d2, 6);
      b2 = rotl<u64>(e13 ^ d3, 25);
      b3 = rotl<u64>(e19 ^ d4, 8);
      b4 = rotl<u64>(e20 ^ d0, 18);
      a10 = b0 ^ (~b1 & b2);
      a11 = b1 ^ (~b2 & b3);
      a12 = b2 ^ (~b3 & b4);
      a13 = b3 ^ (~b4 & b0);
      a14 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(e04 ^ d4, 27);
      b1 = rotl<u64>(e05 ^ d0, 36);
      b2 = rotl<u64>(e11 ^ d1, 10);
      b3 = rotl<u64>(e17 ^ d2, 15);
      b4 = rotl<u64>(e23 ^ d3, 56);
      a15 = b0 ^ (~b1 & b2);
      a16 = b1 ^ (~b2 & b3);
      a17 = b2 ^ (~b3 & b4);
      a18 = b3 ^ (~b4 & b0);
      a19 = b4 ^ (~b0 & b1);
      b0 = rotl<u64>(e02 ^ d2, 62);
      b1 = rotl<u64>(e08 ^ d3, 55);
      b2 = rotl<u64>(e14 ^ d4, 39);
      b3 = rotl<u64>(e15 ^ d0, 41);
      b4 = rotl<u64>(e21 ^ d1, 2);
      a20 = b0 ^ (~b1 & b2);
      a21 = b1 ^ (~b2 & b3);
      a22 = b2 ^ (~b3 & b4);
      a23 = b3 ^ (~b4 & b0);
      a24 = b4 ^ (~b0 & b1);
    }
  }
  store<u64>(state, a00, 0);
  store<u64>(state, a01, 8);
  store<u64>(state, a02, 16);
  store<u64>(state, a03, 24);
  store<u64>(state, a04, 32);
  store<u64>(state, a05, 40);
  store<u64>(state, a06, 48);
  store<u64>(state, a07, 56);
  store<u64>(state, a08, 64);
  store<u64>(state, a09, 72);
  store<u64>(state, a10, 80);
  store<u64>(state, a11, 88);
  store<u64>(state, a12, 96);
  store<u64>(state, a13, 104);
  store<u64>(state, a14, 112);
  store<u64>(state, a15, 120);
  store<u64>(state, a16, 128);
  store<u64>(state, a17, 136);
  store<u64>(state, a18, 144);
  store<u64>(state, a19, 152);
  store<u64>(state, a20, 160);
  store<u64>(state, a21, 168);
  store<u64>(state, a22, 176);
  store<u64>(state, a23, 184);
  store<u64>(state, a24, 192);
}

// ---------------------------------------------------------------------------------------------------
// Two-way permutation
// ---------------------------------------------------------------------------------------------------

/** Absorbs `blocks` full blocks of message A (from `a`) and of B (from `b`) into the two-way state. */
function absorb2(a: usize, b: usize, blocks: usize): void {
  let a00 = v128.load(STATE2, 0);
  let a01 = v128.load(STATE2, 16);
  let a02 = v128.load(STATE2, 32);
  let a03 = v128.load(STATE2, 48);
  let a04 = v128.load(STATE2, 64);
  let a05 = v128.load(STATE2, 80);
  let a06 = v128.load(STATE2, 96);
  let a07 = v128.load(STATE2, 112);
  let a08 = v128.load(STATE2, 128);
  let a09 = v128.load(STATE2, 144);
  let a10 = v128.load(STATE2, 160);
  let a11 = v128.load(STATE2, 176);
  let a12 = v128.load(STATE2, 192);
  let a13 = v128.load(STATE2, 208);
  let a14 = v128.load(STATE2, 224);
  let a15 = v128.load(STATE2, 240);
  let a16 = v128.load(STATE2, 256);
  let a17 = v128.load(STATE2, 272);
  let a18 = v128.load(STATE2, 288);
  let a19 = v128.load(STATE2, 304);
  let a20 = v128.load(STATE2, 320);
  let a21 = v128.load(STATE2, 336);
  let a22 = v128.load(STATE2, 352);
  let a23 = v128.load(STATE2, 368);
  let a24 = v128.load(STATE2, 384);
  let c0: v128,
    c1: v128,
    c2: v128,
    c3: v128,
    c4: v128,
    d0: v128,
    d1: v128,
    d2: v128,
    d3: v128,
    d4: v128;
  let b0: v128, b1: v128, b2: v128, b3: v128, b4: v128;
  let e00: v128,
    e01: v128,
    e02: v128,
    e03: v128,
    e04: v128,
    e05: v128,
    e06: v128,
    e07: v128,
    e08: v128;
  let e09: v128,
    e10: v128,
    e11: v128,
    e12: v128,
    e13: v128,
    e14: v128,
    e15: v128,
    e16: v128,
    e17: v128;
  let e18: v128, e19: v128, e20: v128, e21: v128, e22: v128, e23: v128, e24: v128;
  for (; blocks > 0; blocks--, a += RATE, b += RATE) {
    a00 = v128.xor(a00, v128.load64_lane(b, v128.load64_zero(a, 0), 1, 0));
    a01 = v128.xor(a01, v128.load64_lane(b, v128.load64_zero(a, 8), 1, 8));
    a02 = v128.xor(a02, v128.load64_lane(b, v128.load64_zero(a, 16), 1, 16));
    a03 = v128.xor(a03, v128.load64_lane(b, v128.load64_zero(a, 24), 1, 24));
    a04 = v128.xor(a04, v128.load64_lane(b, v128.load64_zero(a, 32), 1, 32));
    a05 = v128.xor(a05, v128.load64_lane(b, v128.load64_zero(a, 40), 1, 40));
    a06 = v128.xor(a06, v128.load64_lane(b, v128.load64_zero(a, 48), 1, 48));
    a07 = v128.xor(a07, v128.load64_lane(b, v128.load64_zero(a, 56), 1, 56));
    a08 = v128.xor(a08, v128.load64_lane(b, v128.load64_zero(a, 64), 1, 64));
    a09 = v128.xor(a09, v128.load64_lane(b, v128.load64_zero(a, 72), 1, 72));
    a10 = v128.xor(a10, v128.load64_lane(b, v128.load64_zero(a, 80), 1, 80));
    a11 = v128.xor(a11, v128.load64_lane(b, v128.load64_zero(a, 88), 1, 88));
    a12 = v128.xor(a12, v128.load64_lane(b, v128.load64_zero(a, 96), 1, 96));
    a13 = v128.xor(a13, v128.load64_lane(b, v128.load64_zero(a, 104), 1, 104));
    a14 = v128.xor(a14, v128.load64_lane(b, v128.load64_zero(a, 112), 1, 112));
    a15 = v128.xor(a15, v128.load64_lane(b, v128.load64_zero(a, 120), 1, 120));
    a16 = v128.xor(a16, v128.load64_lane(b, v128.load64_zero(a, 128), 1, 128));
    for (let r: usize = 0; r < 24; r += 2) {
      c0 = v128.xor(v128.xor(v128.xor(v128.xor(a00, a05), a10), a15), a20);
      c1 = v128.xor(v128.xor(v128.xor(v128.xor(a01, a06), a11), a16), a21);
      c2 = v128.xor(v128.xor(v128.xor(v128.xor(a02, a07), a12), a17), a22);
      c3 = v128.xor(v128.xor(v128.xor(v128.xor(a03, a08), a13), a18), a23);
      c4 = v128.xor(v128.xor(v128.xor(v128.xor(a04, a09), a14), a19), a24);
      d0 = v128.xor(c4, rotl2(c1, 1));
      d1 = v128.xor(c0, rotl2(c2, 1));
      d2 = v128.xor(c1, rotl2(c3, 1));
      d3 = v128.xor(c2, rotl2(c4, 1));
      d4 = v128.xor(c3, rotl2(c0, 1));
      b0 = v128.xor(a00, d0);
      b1 = rotl2(v128.xor(a06, d1), 44);
      b2 = rotl2(v128.xor(a12, d2), 43);
      b3 = rotl2(v128.xor(a18, d3), 21);
      b4 = rotl2(v128.xor(a24, d4), 14);
      e00 = v128.xor(v128.xor(b0, v128.andnot(b2, b1)), v128.load(RC2 + (r << 4)));
      e01 = v128.xor(b1, v128.andnot(b3, b2));
      e02 = v128.xor(b2, v128.andnot(b4, b3));
      e03 = v128.xor(b3, v128.andnot(b0, b4));
      e04 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(a03, d3), 28);
      b1 = rotl2(v128.xor(a09, d4), 20);
      b2 = rotl2(v128.xor(a10, d0), 3);
      b3 = rotl2(v128.xor(a16, d1), 45);
      b4 = rotl2(v128.xor(a22, d2), 61);
      e05 = v128.xor(b0, v128.andnot(b2, b1));
      e06 = v128.xor(b1, v128.andnot(b3, b2));
      e07 = v128.xor(b2, v128.andnot(b4, b3));
      e08 = v128.xor(b3, v128.andnot(b0, b4));
      e09 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(a01, d1), 1);
      b1 = rotl2(v128.xor(a07, d2), 6);
      b2 = rotl2(v128.xor(a13, d3), 25);
      b3 = rotl2(v128.xor(a19, d4), 8);
      b4 = rotl2(v128.xor(a20, d0), 18);
      e10 = v128.xor(b0, v128.andnot(b2, b1));
      e11 = v128.xor(b1, v128.andnot(b3, b2));
      e12 = v128.xor(b2, v128.andnot(b4, b3));
      e13 = v128.xor(b3, v128.andnot(b0, b4));
      e14 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(a04, d4), 27);
      b1 = rotl2(v128.xor(a05, d0), 36);
      b2 = rotl2(v128.xor(a11, d1), 10);
      b3 = rotl2(v128.xor(a17, d2), 15);
      b4 = rotl2(v128.xor(a23, d3), 56);
      e15 = v128.xor(b0, v128.andnot(b2, b1));
      e16 = v128.xor(b1, v128.andnot(b3, b2));
      e17 = v128.xor(b2, v128.andnot(b4, b3));
      e18 = v128.xor(b3, v128.andnot(b0, b4));
      e19 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(a02, d2), 62);
      b1 = rotl2(v128.xor(a08, d3), 55);
      b2 = rotl2(v128.xor(a14, d4), 39);
      b3 = rotl2(v128.xor(a15, d0), 41);
      b4 = rotl2(v128.xor(a21, d1), 2);
      e20 = v128.xor(b0, v128.andnot(b2, b1));
      e21 = v128.xor(b1, v128.andnot(b3, b2));
      e22 = v128.xor(b2, v128.andnot(b4, b3));
      e23 = v128.xor(b3, v128.andnot(b0, b4));
      e24 = v128.xor(b4, v128.andnot(b1, b0));
      c0 = v128.xor(v128.xor(v128.xor(v128.xor(e00, e05), e10), e15), e20);
      c1 = v128.xor(v128.xor(v128.xor(v128.xor(e01, e06), e11), e16), e21);
      c2 = v128.xor(v128.xor(v128.xor(v128.xor(e02, e07), e12), e17), e22);
      c3 = v128.xor(v128.xor(v128.xor(v128.xor(e03, e08), e13), e18), e23);
      c4 = v128.xor(v128.xor(v128.xor(v128.xor(e04, e09), e14), e19), e24);
      d0 = v128.xor(c4, rotl2(c1, 1));
      d1 = v128.xor(c0, rotl2(c2, 1));
      d2 = v128.xor(c1, rotl2(c3, 1));
      d3 = v128.xor(c2, rotl2(c4, 1));
      d4 = v128.xor(c3, rotl2(c0, 1));
      b0 = v128.xor(e00, d0);
      b1 = rotl2(v128.xor(e06, d1), 44);
      b2 = rotl2(v128.xor(e12, d2), 43);
      b3 = rotl2(v128.xor(e18, d3), 21);
      b4 = rotl2(v128.xor(e24, d4), 14);
      a00 = v128.xor(v128.xor(b0, v128.andnot(b2, b1)), v128.load(RC2 + (r << 4), 16));
      a01 = v128.xor(b1, v128.andnot(b3, b2));
      a02 = v128.xor(b2, v128.andnot(b4, b3));
      a03 = v128.xor(b3, v128.andnot(b0, b4));
      a04 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(e03, d3), 28);
      b1 = rotl2(v128.xor(e09, d4), 20);
      b2 = rotl2(v128.xor(e10, d0), 3);
      b3 = rotl2(v128.xor(e16, d1), 45);
      b4 = rotl2(v128.xor(e22, d2), 61);
      a05 = v128.xor(b0, v128.andnot(b2, b1));
      a06 = v128.xor(b1, v128.andnot(b3, b2));
      a07 = v128.xor(b2, v128.andnot(b4, b3));
      a08 = v128.xor(b3, v128.andnot(b0, b4));
      a09 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(e01, d1), 1);
      b1 = rotl2(v128.xor(e07, d2), 6);
      b2 = rotl2(v128.xor(e13, d3), 25);
      b3 = rotl2(v128.xor(e19, d4), 8);
      b4 = rotl2(v128.xor(e20, d0), 18);
      a10 = v128.xor(b0, v128.andnot(b2, b1));
      a11 = v128.xor(b1, v128.andnot(b3, b2));
      a12 = v128.xor(b2, v128.andnot(b4, b3));
      a13 = v128.xor(b3, v128.andnot(b0, b4));
      a14 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(e04, d4), 27);
      b1 = rotl2(v128.xor(e05, d0), 36);
      b2 = rotl2(v128.xor(e11, d1), 10);
      b3 = rotl2(v128.xor(e17, d2), 15);
      b4 = rotl2(v128.xor(e23, d3), 56);
      a15 = v128.xor(b0, v128.andnot(b2, b1));
      a16 = v128.xor(b1, v128.andnot(b3, b2));
      a17 = v128.xor(b2, v128.andnot(b4, b3));
      a18 = v128.xor(b3, v128.andnot(b0, b4));
      a19 = v128.xor(b4, v128.andnot(b1, b0));
      b0 = rotl2(v128.xor(e02, d2), 62);
      b1 = rotl2(v128.xor(e08, d3), 55);
      b2 = rotl2(v128.xor(e14, d4), 39);
      b3 = rotl2(v128.xor(e15, d0), 41);
      b4 = rotl2(v128.xor(e21, d1), 2);
      a20 = v128.xor(b0, v128.andnot(b2, b1));
      a21 = v128.xor(b1, v128.andnot(b3, b2));
      a22 = v128.xor(b2, v128.andnot(b4, b3));
      a23 = v128.xor(b3, v128.andnot(b0, b4));
      a24 = v128.xor(b4, v128.andnot(b1, b0));
    }
  }
  v128.store(STATE2, a00, 0);
  v128.store(STATE2, a01, 16);
  v128.store(STATE2, a02, 32);
  v128.store(STATE2, a03, 48);
  v128.store(STATE2, a04, 64);
  v128.store(STATE2, a05, 80);
  v128.store(STATE2, a06, 96);
  v128.store(STATE2, a07, 112);
  v128.store(STATE2, a08, 128);
  v128.store(STATE2, a09, 144);
  v128.store(STATE2, a10, 160);
  v128.store(STATE2, a11, 176);
  v128.store(STATE2, a12, 192);
  v128.store(STATE2, a13, 208);
  v128.store(STATE2, a14, 224);
  v128.store(STATE2, a15, 240);
  v128.store(STATE2, a16, 256);
  v128.store(STATE2, a17, 272);
  v128.store(STATE2, a18, 288);
  v128.store(STATE2, a19, 304);
  v128.store(STATE2, a20, 320);
  v128.store(STATE2, a21, 336);
  v128.store(STATE2, a22, 352);
  v128.store(STATE2, a23, 368);
  v128.store(STATE2, a24, 384);
}

// ---------------------------------------------------------------------------------------------------
// Padding and output
// ---------------------------------------------------------------------------------------------------

/** Copies the `len` (< 136) trailing bytes at `tail` into `pad` with Keccak's 0x01 ... 0x80 padding. */
@inline function padBlock(pad: usize, tail: usize, len: usize): void {
  memory.copy(pad, tail, len);
  memory.fill(pad + len, 0, RATE - len);
  store<u8>(pad + len, load<u8>(pad + len) ^ 0x01);
  store<u8>(pad + RATE - 1, load<u8>(pad + RATE - 1) ^ 0x80);
}

/** Keccak-256 of the `len` bytes at `data`, into `out` (scalar path). */
function hashOne(data: usize, len: usize, out: usize): void {
  memory.fill(STATE, 0, 200);
  const blocks = len / RATE;
  absorb(STATE, data, blocks);
  padBlock(PAD_A, data + blocks * RATE, len - blocks * RATE);
  absorb(STATE, PAD_A, 1);
  memory.copy(out, STATE, 32);
}

/** Keccak-256 of `len` bytes at `a` and `len` bytes at `b`, into `outA` and `outB` (two-way path). */
function hashTwo(a: usize, b: usize, len: usize, outA: usize, outB: usize): void {
  memory.fill(STATE2, 0, 400);
  const blocks = len / RATE;
  absorb2(a, b, blocks);
  const tail = blocks * RATE;
  padBlock(PAD_A, a + tail, len - tail);
  padBlock(PAD_B, b + tail, len - tail);
  absorb2(PAD_A, PAD_B, 1);
  for (let i: usize = 0; i < 4; i++) {
    store<u64>(outA + (i << 3), load<u64>(STATE2 + (i << 4)));
    store<u64>(outB + (i << 3), load<u64>(STATE2 + (i << 4), 8));
  }
}

// ---------------------------------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------------------------------

/** Starts a streamed hash: `keccakUpdate` for whole blocks, then `keccakFinal` for the rest. */
export function keccakStart(): void {
  init();
  memory.fill(STATE, 0, 200);
}

/** Absorbs `blocks` whole 136-byte blocks at `data` into the streamed hash. */
export function keccakUpdate(data: usize, blocks: usize): void {
  absorb(STATE, data, blocks);
}

/** Absorbs the last `len` (< 136) bytes at `data`, pads, and writes the 32-byte digest to `out`. */
export function keccakFinal(data: usize, len: usize, out: usize): void {
  padBlock(PAD_A, data, len);
  absorb(STATE, PAD_A, 1);
  memory.copy(out, STATE, 32);
}

/** Keccak-256 of each of the `n` records of `size` bytes at `data`, packed into `out` (n * 32 bytes). */
export function keccakMany(data: usize, n: u32, size: usize, out: usize): void {
  init();
  let i: u32 = 0;
  for (; i + 2 <= n; i += 2) {
    const a = data + <usize> i * size;
    hashTwo(a, a + size, size, out + (<usize> i << 5), out + (<usize> (i + 1) << 5));
  }
  if (i < n) hashOne(data + <usize> i * size, size, out + (<usize> i << 5));
}

/** True when the 32-byte value at `x` is below the one at `y`, read as big-endian numbers. */
@inline function below(x: usize, y: usize): bool {
  for (let off: usize = 0; off < 32; off += 8) {
    const a = bswap<u64>(load<u64>(x + off));
    const b = bswap<u64>(load<u64>(y + off));
    if (a != b) return a < b;
  }
  return false;
}

/** Writes the sorted pair (x, y) into the first 64 bytes of `pad`, whose padding is already in place. */
@inline function sortedPair(pad: usize, x: usize, y: usize): void {
  if (below(y, x)) {
    const t = x;
    x = y;
    y = t;
  }
  memory.copy(pad, x, 32);
  memory.copy(pad + 32, y, 32);
}

/**
 * Reduces the `n` (>= 1) packed 32-byte leaves at `nodes` to their Merkle root, in place: the root ends in
 * the first 32 bytes. Level by level, nodes (2i, 2i+1) become keccak256(min || max); an odd last node
 * moves up unchanged. When `index` < n, the sibling of that leaf's node at each level (where it has one)
 * is written to `proof`, bottom-up, and the count of proof elements is returned.
 */
export function merkle(nodes: usize, n: u32, index: u32, proof: usize): u32 {
  init();
  // Every pair is 64 bytes: one block whose padding never changes.
  memory.fill(PAD_A, 0, RATE);
  memory.fill(PAD_B, 0, RATE);
  store<u8>(PAD_A + 64, 0x01);
  store<u8>(PAD_B + 64, 0x01);
  store<u8>(PAD_A + RATE - 1, 0x80);
  store<u8>(PAD_B + RATE - 1, 0x80);
  let count = n;
  let steps: u32 = 0;
  const proving = index < n;
  while (count > 1) {
    if (proving) {
      const sibling = index ^ 1;
      if (sibling < count) {
        memory.copy(proof + (<usize> steps << 5), nodes + (<usize> sibling << 5), 32);
        steps++;
      }
      index >>= 1;
    }
    // Output i is written only after inputs 2i and 2i+1 are read, so the level shrinks in place.
    const pairs = count >> 1;
    let i: u32 = 0;
    for (; i + 2 <= pairs; i += 2) {
      const src = nodes + (<usize> i << 6);
      sortedPair(PAD_A, src, src + 32);
      sortedPair(PAD_B, src + 64, src + 96);
      memory.fill(STATE2, 0, 400);
      absorb2(PAD_A, PAD_B, 1);
      const dst = nodes + (<usize> i << 5);
      for (let l: usize = 0; l < 4; l++) {
        store<u64>(dst + (l << 3), load<u64>(STATE2 + (l << 4)));
        store<u64>(dst + 32 + (l << 3), load<u64>(STATE2 + (l << 4), 8));
      }
    }
    if (i < pairs) {
      const src = nodes + (<usize> i << 6);
      sortedPair(PAD_A, src, src + 32);
      memory.fill(STATE, 0, 200);
      absorb(STATE, PAD_A, 1);
      memory.copy(nodes + (<usize> i << 5), STATE, 32);
    }
    if (count & 1) {
      memory.copy(nodes + (<usize> pairs << 5), nodes + (<usize> (count - 1) << 5), 32);
    }
    count = pairs + (count & 1);
  }
  return steps;
}
