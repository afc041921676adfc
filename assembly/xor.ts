// deno-fmt-ignore-file -- deno fmt drops AssemblyScript decorators such as @inline
// k closest 32-byte IDs to a target by XOR distance (Kademlia's metric), over a packed table of IDs.
//
// Distances are 256-bit big-endian numbers. Almost every comparison is settled by the first 64 bits, so
// the scan reduces each ID to a u64 key (its first 8 distance bytes, byte-swapped to a native number)
// and keeps the best k in a bounded max-heap whose root is the farthest kept ID. After the heap fills,
// an ID can only enter if its key is <= the root's key: a SIMD filter tests 8 IDs per step against that
// threshold and only the rare survivors get the exact comparison (key, then the other 24 distance bytes,
// then the lower index). A final heapsort leaves the indices nearest first.
//
// Wasm SIMD has only signed i64x2 compares, so keys are compared with their top bit flipped (`SIGN`):
// for unsigned x, y: x <= y exactly when (x ^ SIGN) <= (y ^ SIGN) as signed numbers.
//
// Memory layout is chosen by the JS wrapper above `base()`; each call names its regions:
//   target  32 bytes            the ID to measure from
//   ids     n * 32 bytes        the packed IDs
//   prefix  n * 8 bytes         optional (`buildPrefixes`): first 8 bytes of each ID as a native u64,
//                               so a repeated query scans 8 bytes per ID instead of a 32-byte stride
//   keys    k * 8, idx  k * 4   heap scratch; on return idx[0..m) holds the answer, nearest first

const SIGN: u64 = 0x8000000000000000;

// Per-call state, set by the exported entry points.
let ids: usize = 0;
let target: usize = 0;
let keys: usize = 0;
let idx: usize = 0;

/** First free byte above static data, 16-aligned: the JS wrapper lays out its regions from here. */
export function base(): usize {
  return (__heap_base + 15) & ~(<usize> 15);
}

/** Fills `prefixes[i]` with the first 8 bytes of ID `i` as a big-endian number. */
export function buildPrefixes(idsPtr: usize, n: u32, prefixes: usize): void {
  let i: u32 = 0;
  for (; i + 2 <= n; i += 2) {
    // The first 8 bytes of two IDs, each byte-swapped into a u64 lane, in one shuffle.
    const p = idsPtr + (<usize> i << 5);
    v128.store(
      prefixes + (<usize> i << 3),
      i8x16.shuffle(v128.load(p), v128.load(p, 32), 7, 6, 5, 4, 3, 2, 1, 0, 23, 22, 21, 20, 19, 18, 17, 16),
    );
  }
  if (i < n) store<u64>(prefixes + (<usize> i << 3), bswap<u64>(load<u64>(idsPtr + (<usize> i << 5))));
}

/** Bytes 8..31 of the distance of ID `i` against those of ID `j`: -1, 0 or 1. */
@inline function compareTail(i: u32, j: u32): i32 {
  const a = ids + (<usize> i << 5);
  const b = ids + (<usize> j << 5);
  for (let off: usize = 8; off < 32; off += 8) {
    const t = load<u64>(target + off);
    const da = bswap<u64>(load<u64>(a + off) ^ t);
    const db = bswap<u64>(load<u64>(b + off) ^ t);
    if (da != db) return da < db ? -1 : 1;
  }
  return 0;
}

/** True when entry (ka, ia) is strictly nearer than entry (kb, ib); equal distances go to the lower index. */
@inline function nearer(ka: u64, ia: u32, kb: u64, ib: u32): bool {
  if (ka != kb) return ka < kb;
  const c = compareTail(ia, ib);
  return c != 0 ? c < 0 : ia < ib;
}

/** Restores the max-heap (farthest at the root) below `pos` in a heap of `size` entries. */
function siftDown(pos: u32, size: u32): void {
  const k = load<u64>(keys + (<usize> pos << 3));
  const i = load<u32>(idx + (<usize> pos << 2));
  for (;;) {
    let child = (pos << 1) + 1;
    if (child >= size) break;
    let ck = load<u64>(keys + (<usize> child << 3));
    let ci = load<u32>(idx + (<usize> child << 2));
    const right = child + 1;
    if (right < size) {
      const rk = load<u64>(keys + (<usize> right << 3));
      const ri = load<u32>(idx + (<usize> right << 2));
      if (nearer(ck, ci, rk, ri)) {
        child = right;
        ck = rk;
        ci = ri;
      }
    }
    if (!nearer(k, i, ck, ci)) break;
    store<u64>(keys + (<usize> pos << 3), ck);
    store<u32>(idx + (<usize> pos << 2), ci);
    pos = child;
  }
  store<u64>(keys + (<usize> pos << 3), k);
  store<u32>(idx + (<usize> pos << 2), i);
}

/** Replaces the root with ID `i` (key `key`) when `i` is nearer than it. */
@inline function offer(i: u32, key: u64, m: u32): void {
  const rk = load<u64>(keys);
  if (key > rk) return;
  if (!nearer(key, i, rk, load<u32>(idx))) return;
  store<u64>(keys, key);
  store<u32>(idx, i);
  siftDown(0, m);
}

/** Heapifies the first `m` IDs, whose keys the caller stored. */
function heapify(m: u32): void {
  for (let i: i32 = (<i32> m >> 1) - 1; i >= 0; i--) siftDown(<u32> i, m);
}

/** Sorts the heap's `m` entries nearest first. */
function heapsort(m: u32): void {
  for (let end = m - 1; end > 0; end--) {
    const k = load<u64>(keys + (<usize> end << 3));
    const i = load<u32>(idx + (<usize> end << 2));
    store<u64>(keys + (<usize> end << 3), load<u64>(keys));
    store<u32>(idx + (<usize> end << 2), load<u32>(idx));
    store<u64>(keys, k);
    store<u32>(idx, i);
    siftDown(0, end);
  }
}

function setup(idsPtr: usize, targetPtr: usize, keysPtr: usize, idxPtr: usize): void {
  ids = idsPtr;
  target = targetPtr;
  keys = keysPtr;
  idx = idxPtr;
}

/**
 * The `min(k, n)` nearest IDs, using the prefix table from `buildPrefixes`. Writes their indices, nearest
 * first, to `idxPtr` and returns how many.
 */
export function closestPrefixed(
  idsPtr: usize,
  prefixes: usize,
  n: u32,
  targetPtr: usize,
  k: u32,
  keysPtr: usize,
  idxPtr: usize,
): u32 {
  setup(idsPtr, targetPtr, keysPtr, idxPtr);
  const m = k < n ? k : n;
  if (m == 0) return 0;
  const t = bswap<u64>(load<u64>(targetPtr));
  for (let i: u32 = 0; i < m; i++) {
    store<u64>(keys + (<usize> i << 3), load<u64>(prefixes + (<usize> i << 3)) ^ t);
    store<u32>(idx + (<usize> i << 2), i);
  }
  heapify(m);
  const ts = i64x2.splat(<i64> (t ^ SIGN));
  let thr = i64x2.splat(<i64> (load<u64>(keys) ^ SIGN));
  let i = m;
  while (i + 8 <= n) {
    const p = prefixes + (<usize> i << 3);
    const m0 = i64x2.le_s(v128.xor(v128.load(p), ts), thr);
    const m1 = i64x2.le_s(v128.xor(v128.load(p, 16), ts), thr);
    const m2 = i64x2.le_s(v128.xor(v128.load(p, 32), ts), thr);
    const m3 = i64x2.le_s(v128.xor(v128.load(p, 48), ts), thr);
    if (v128.any_true(v128.or(v128.or(m0, m1), v128.or(m2, m3)))) {
      for (let j: u32 = 0; j < 8; j++) offer(i + j, load<u64>(p + (<usize> j << 3)) ^ t, m);
      thr = i64x2.splat(<i64> (load<u64>(keys) ^ SIGN));
    }
    i += 8;
  }
  for (; i < n; i++) offer(i, load<u64>(prefixes + (<usize> i << 3)) ^ t, m);
  heapsort(m);
  return m;
}

/**
 * The `min(k, n)` nearest IDs, read straight from the packed IDs (one-shot queries: no prefix table).
 * Writes their indices, nearest first, to `idxPtr` and returns how many.
 */
export function closestPlain(
  idsPtr: usize,
  n: u32,
  targetPtr: usize,
  k: u32,
  keysPtr: usize,
  idxPtr: usize,
): u32 {
  setup(idsPtr, targetPtr, keysPtr, idxPtr);
  const m = k < n ? k : n;
  if (m == 0) return 0;
  const traw = load<u64>(targetPtr);
  for (let i: u32 = 0; i < m; i++) {
    store<u64>(keys + (<usize> i << 3), bswap<u64>(load<u64>(ids + (<usize> i << 5)) ^ traw));
    store<u32>(idx + (<usize> i << 2), i);
  }
  heapify(m);
  // One shuffle takes the first 8 bytes of two IDs and byte-swaps them into two u64 lanes.
  const tv = i64x2.splat(<i64> traw);
  const ts = v128.xor(
    i8x16.shuffle(tv, tv, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8),
    i64x2.splat(<i64> SIGN),
  );
  let thr = i64x2.splat(<i64> (load<u64>(keys) ^ SIGN));
  let i = m;
  while (i + 4 <= n) {
    const p = ids + (<usize> i << 5);
    const a = i8x16.shuffle(
      v128.load(p),
      v128.load(p, 32),
      7,
      6,
      5,
      4,
      3,
      2,
      1,
      0,
      23,
      22,
      21,
      20,
      19,
      18,
      17,
      16,
    );
    const b = i8x16.shuffle(
      v128.load(p, 64),
      v128.load(p, 96),
      7,
      6,
      5,
      4,
      3,
      2,
      1,
      0,
      23,
      22,
      21,
      20,
      19,
      18,
      17,
      16,
    );
    const m0 = i64x2.le_s(v128.xor(a, ts), thr);
    const m1 = i64x2.le_s(v128.xor(b, ts), thr);
    if (v128.any_true(v128.or(m0, m1))) {
      for (let j: u32 = 0; j < 4; j++) {
        offer(i + j, bswap<u64>(load<u64>(p + (<usize> j << 5)) ^ traw), m);
      }
      thr = i64x2.splat(<i64> (load<u64>(keys) ^ SIGN));
    }
    i += 4;
  }
  for (; i < n; i++) offer(i, bswap<u64>(load<u64>(ids + (<usize> i << 5)) ^ traw), m);
  heapsort(m);
  return m;
}
