// Reed–Solomon erasure coding over GF(2^8), polynomial 0x11D, generator 2: the field and matrix of the
// `reed-solomon-erasure` Rust crate (galois_8), Backblaze and klauspost. Shard bytes are multiplied with
// SIMD split-nibble table lookups (i8x16.swizzle); matrix set-up runs once per shape and the JS side
// caches it. Built with `--enable relaxed-simd`, the lookups become i8x16.relaxed_swizzle (see lookup()).
//
// Memory layout (all offsets from HEAP, the first 64-byte boundary past __heap_base):
//   EXP   512 B   EXP[i] = 2^i, doubled so EXP[LOG[a] + LOG[b]] needs no modulo
//   LOG   256 B   LOG[a], a != 0
//   NIB   8 KiB   per coefficient c: 16 B of c*x (low nibble x), then 16 B of c*(x << 4) (high nibble x)
//   AUG   128 KiB Gauss–Jordan work: 256 rows of 512 B, [matrix | inverse]
//   TMP   64 KiB  product rows before they are packed into the caller's buffer
//   FREE  ...     the caller's area (freeBase()): coefficients, shard indices, staged shards
// Nothing is allocated per call, so the stub runtime never runs out.

const HEAP: usize = (__heap_base + 63) & ~(<usize>63);
const EXP: usize = HEAP;
const LOG: usize = EXP + 512;
const NIB: usize = LOG + 256;
const AUG: usize = NIB + 8192;
const AUG_ROW: usize = 512;
const TMP: usize = AUG + 256 * AUG_ROW;
const FREE: usize = TMP + 65536;

/**
 * Bytes of every shard processed per pass over the inputs, so the (up to 4) outputs being summed stay in
 * L1. Measured flat from 1 KiB to 64 KiB on the 10+4 shape: the loop is bound by lookups, not memory.
 */
const BLOCK: usize = 4096;

// ---- set-up (runs once, at instantiation) ------------------------------------------------------------

const needPages = <i32>((FREE + 65535) >>> 16) - memory.size();
if (needPages > 0) memory.grow(needPages);

{
  let x: u32 = 1;
  for (let i: u32 = 0; i < 255; i++) {
    store<u8>(EXP + i, <u8>x);
    store<u8>(EXP + i + 255, <u8>x);
    store<u8>(LOG + x, <u8>i);
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
  store<u8>(EXP + 510, load<u8>(EXP));
  store<u8>(EXP + 511, load<u8>(EXP + 1));
  for (let c: u32 = 0; c < 256; c++) {
    for (let x: u32 = 0; x < 16; x++) {
      store<u8>(NIB + (c << 5) + x, gfMul(c, x));
      store<u8>(NIB + (c << 5) + 16 + x, gfMul(c, x << 4));
    }
  }
}

/**
 * t[i] for each byte i of `i`, all in 0..15. With relaxed SIMD this is a bare pshufb on x64; the plain
 * i8x16.swizzle must also zero out-of-range lanes, which costs V8 an extra saturating add per lookup.
 */
@inline
function lookup(t: v128, i: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i8x16.relaxed_swizzle(t, i);
  return v128.swizzle(t, i);
}

@inline
function gfMul(a: u32, b: u32): u8 {
  if (a == 0 || b == 0) return 0;
  return load<u8>(EXP + <usize>load<u8>(LOG + a) + <usize>load<u8>(LOG + b));
}

@inline
function gfInv(a: u32): u32 {
  return load<u8>(EXP + 255 - <usize>load<u8>(LOG + a));
}

/** a^n with 0^0 = 1: the Vandermonde entry of row a, column n. */
@inline
function gfPow(a: u32, n: u32): u32 {
  if (n == 0) return 1;
  if (a == 0) return 0;
  return load<u8>(EXP + (<usize>load<u8>(LOG + a) * n) % 255);
}

/** dst[0..n) = c * src[0..n) (or ^= when `xor`); n is a multiple of 16. */
@inline
function rowMul(dst: usize, src: usize, c: u32, n: usize, xor: bool): void {
  const lt = v128.load(NIB + (<usize>c << 5));
  const ht = v128.load(NIB + (<usize>c << 5), 16);
  const mask = i8x16.splat(0x0f);
  for (let p: usize = 0; p < n; p += 16) {
    const x = v128.load(src + p);
    let y = v128.xor(lookup(lt, v128.and(x, mask)), lookup(ht, i8x16.shr_u(x, 4)));
    if (xor) y = v128.xor(y, v128.load(dst + p));
    v128.store(dst + p, y);
  }
}

// ---- matrices ----------------------------------------------------------------------------------------

/** The first free byte of memory: the caller lays out its own buffers from here. */
export function freeBase(): usize {
  return FREE;
}

/**
 * Writes the n x k matrix V[lost] * inverse(V[chosen]) to `out` (row-major, k bytes a row), where V is the
 * 256 x k Vandermonde matrix V[r][c] = r^c and `chosen`, `lost` are byte lists of k and n row indices.
 * With chosen = 0..k-1 and lost = k..k+m-1 these are the parity rows of the systematic encoding matrix
 * V * inverse(V[0..k)); with chosen = any k surviving shards they rebuild the lost shards from them
 * (the encoding matrix's rows for chosen and lost differ from V's by the same right factor, which cancels).
 * Returns 0, or 1 if V[chosen] is singular (repeated indices).
 */
export function solveRows(k: i32, chosen: usize, lost: usize, n: i32, out: usize): i32 {
  const w: usize = (<usize>k + 15) & ~(<usize>15);
  // [V[chosen] | I]
  for (let r = 0; r < k; r++) {
    const row = AUG + <usize>r * AUG_ROW;
    memory.fill(row, 0, AUG_ROW);
    const a = <u32>load<u8>(chosen + r);
    for (let c = 0; c < k; c++) store<u8>(row + c, <u8>gfPow(a, c));
    store<u8>(row + 256 + r, 1);
  }
  // Gauss–Jordan: the left half becomes I, the right half the inverse.
  for (let col = 0; col < k; col++) {
    let piv = col;
    while (piv < k && load<u8>(AUG + <usize>piv * AUG_ROW + col) == 0) piv++;
    if (piv == k) return 1;
    const prow = AUG + <usize>col * AUG_ROW;
    if (piv != col) {
      const other = AUG + <usize>piv * AUG_ROW;
      for (let p: usize = 0; p < AUG_ROW; p += 16) {
        const t = v128.load(prow + p);
        v128.store(prow + p, v128.load(other + p));
        v128.store(other + p, t);
      }
    }
    const s = gfInv(load<u8>(prow + col));
    rowMul(prow, prow, s, w, false);
    rowMul(prow + 256, prow + 256, s, w, false);
    for (let r = 0; r < k; r++) {
      if (r == col) continue;
      const row = AUG + <usize>r * AUG_ROW;
      const f = <u32>load<u8>(row + col);
      if (f == 0) continue;
      rowMul(row, prow, f, w, true);
      rowMul(row + 256, prow + 256, f, w, true);
    }
  }
  // out[i] = sum over t of V[lost[i]][t] * inverse[t]
  for (let i = 0; i < n; i++) {
    const a = <u32>load<u8>(lost + i);
    const acc = TMP + (<usize>i << 8);
    memory.fill(acc, 0, w);
    for (let t = 0; t < k; t++) {
      const v = gfPow(a, t);
      if (v != 0) rowMul(acc, AUG + <usize>t * AUG_ROW + 256, v, w, true);
    }
    memory.copy(out + <usize>i * k, acc, k);
  }
  return 0;
}

// ---- the shard multiply --------------------------------------------------------------------------------

/**
 * Adds (or, when `first`, stores) c_j * in to g consecutive outputs (g = 1..4, a constant after inlining),
 * over n bytes (a multiple of 32, two vectors a step: about 5% faster than one). The 2g nibble tables
 * stay in v128 locals for the whole loop; 4 outputs is what x64's 16 xmm registers hold without spills.
 */
@inline
function pass(
  g: i32,
  first: bool,
  inp: usize,
  out: usize,
  stride: usize,
  n: usize,
  c0: usize,
  c1: usize,
  c2: usize,
  c3: usize,
): void {
  const mask = i8x16.splat(0x0f);
  const l0 = v128.load(c0);
  const h0 = v128.load(c0, 16);
  const l1 = g > 1 ? v128.load(c1) : l0;
  const h1 = g > 1 ? v128.load(c1, 16) : h0;
  const l2 = g > 2 ? v128.load(c2) : l0;
  const h2 = g > 2 ? v128.load(c2, 16) : h0;
  const l3 = g > 3 ? v128.load(c3) : l0;
  const h3 = g > 3 ? v128.load(c3, 16) : h0;
  const o1 = out + stride;
  const o2 = o1 + stride;
  const o3 = o2 + stride;
  for (let p: usize = 0; p < n; p += 32) {
    const x = v128.load(inp + p);
    const xb = v128.load(inp + p, 16);
    const lo = v128.and(x, mask);
    const hi = i8x16.shr_u(x, 4);
    const lob = v128.and(xb, mask);
    const hib = i8x16.shr_u(xb, 4);
    let y = v128.xor(lookup(l0, lo), lookup(h0, hi));
    let yb = v128.xor(lookup(l0, lob), lookup(h0, hib));
    v128.store(out + p, first ? y : v128.xor(y, v128.load(out + p)));
    v128.store(out + p, first ? yb : v128.xor(yb, v128.load(out + p, 16)), 16);
    if (g > 1) {
      y = v128.xor(lookup(l1, lo), lookup(h1, hi));
      yb = v128.xor(lookup(l1, lob), lookup(h1, hib));
      v128.store(o1 + p, first ? y : v128.xor(y, v128.load(o1 + p)));
      v128.store(o1 + p, first ? yb : v128.xor(yb, v128.load(o1 + p, 16)), 16);
    }
    if (g > 2) {
      y = v128.xor(lookup(l2, lo), lookup(h2, hi));
      yb = v128.xor(lookup(l2, lob), lookup(h2, hib));
      v128.store(o2 + p, first ? y : v128.xor(y, v128.load(o2 + p)));
      v128.store(o2 + p, first ? yb : v128.xor(yb, v128.load(o2 + p, 16)), 16);
    }
    if (g > 3) {
      y = v128.xor(lookup(l3, lo), lookup(h3, hi));
      yb = v128.xor(lookup(l3, lob), lookup(h3, hib));
      v128.store(o3 + p, first ? y : v128.xor(y, v128.load(o3 + p)));
      v128.store(o3 + p, first ? yb : v128.xor(yb, v128.load(o3 + p, 16)), 16);
    }
  }
}

/**
 * out[r] = sum over i < k of coef[r * k + i] * in[i], for r < rows, over `len` bytes.
 * Shard i is at src + i * stride, output r at dst + r * stride; stride is a multiple of 32 and at least
 * len rounded up to 32: the tail is computed on the padding, whose output bytes the caller ignores.
 */
export function mulMatrix(
  coef: usize,
  rows: i32,
  k: i32,
  src: usize,
  dst: usize,
  stride: usize,
  len: usize,
): void {
  const total: usize = (len + 31) & ~(<usize>31);
  for (let b: usize = 0; b < total; b += BLOCK) {
    const n = min<usize>(BLOCK, total - b);
    // Rows in passes of at most 4, split evenly (6 = 3 + 3 beats 4 + 2 by a few percent).
    const passes = (rows + 3) >> 2;
    for (let r = 0, q = 0; r < rows; q++) {
      const g = (rows - r + passes - q - 1) / (passes - q);
      const out = dst + <usize>r * stride + b;
      const crow = coef + <usize>r * k;
      for (let i = 0; i < k; i++) {
        const inp = src + <usize>i * stride + b;
        const cp = crow + i;
        const c0 = NIB + (<usize>load<u8>(cp) << 5);
        const c1 = g > 1 ? NIB + (<usize>load<u8>(cp + k) << 5) : c0;
        const c2 = g > 2 ? NIB + (<usize>load<u8>(cp + 2 * k) << 5) : c0;
        const c3 = g > 3 ? NIB + (<usize>load<u8>(cp + 3 * k) << 5) : c0;
        if (i == 0) {
          if (g == 4) pass(4, true, inp, out, stride, n, c0, c1, c2, c3);
          else if (g == 3) pass(3, true, inp, out, stride, n, c0, c1, c2, c3);
          else if (g == 2) pass(2, true, inp, out, stride, n, c0, c1, c2, c3);
          else pass(1, true, inp, out, stride, n, c0, c1, c2, c3);
        } else {
          if (g == 4) pass(4, false, inp, out, stride, n, c0, c1, c2, c3);
          else if (g == 3) pass(3, false, inp, out, stride, n, c0, c1, c2, c3);
          else if (g == 2) pass(2, false, inp, out, stride, n, c0, c1, c2, c3);
          else pass(1, false, inp, out, stride, n, c0, c1, c2, c3);
        }
      }
      r += g;
    }
  }
}
