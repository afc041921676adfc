/**
 * Plain-TypeScript Reed–Solomon over GF(2^8), the twin of `../erasure.ts` for tests and the "plain-js
 * tables" benchmark: log/exp tables, a full 256 x 256 product table, and the textbook systematic code of
 * the `reed-solomon-erasure` crate (Vandermonde(k + m, k) times the inverse of its top square). It
 * reconstructs as that crate does: invert the rows of k surviving shards, rebuild the data, re-encode the
 * lost parity.
 *
 * @module
 */

const EXP = new Uint8Array(510);
const LOG = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = EXP[i + 255] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= 0x11d;
  }
}

function mul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a]! + LOG[b]!]!;
}

/** PRODUCT[(a << 8) | b] = a * b: one 256-byte row per coefficient for the byte loops. */
const PRODUCT = new Uint8Array(65536);
for (let a = 0; a < 256; a++) for (let b = 0; b < 256; b++) PRODUCT[(a << 8) | b] = mul(a, b);

type Matrix = Uint8Array[];

/** a^n, with 0^0 = 1. */
function pow(a: number, n: number): number {
  if (n === 0) return 1;
  if (a === 0) return 0;
  return EXP[(LOG[a]! * n) % 255]!;
}

function multiplyMatrices(a: Matrix, b: Matrix): Matrix {
  return a.map((row) => {
    const out = new Uint8Array(b[0]!.length);
    for (let t = 0; t < row.length; t++) addScaledRow(out, b[t]!, row[t]!);
    return out;
  });
}

/** dst ^= c * src, byte by byte through the product table. */
function addScaled(dst: Uint8Array, src: Uint8Array, c: number): void {
  if (c === 0) return;
  const product = PRODUCT.subarray(c << 8, (c + 1) << 8);
  for (let j = 0, n = dst.length; j < n; j++) dst[j]! ^= product[src[j]!]!;
}

/**
 * addScaled for matrix rows. A separate copy on purpose: fed both small (on-heap) rows and large
 * (off-heap) shards, V8's optimizing tier compiled the shared loop about 2x slower than for shards alone.
 */
function addScaledRow(dst: Uint8Array, src: Uint8Array, c: number): void {
  if (c === 0) return;
  const row = c << 8;
  for (let j = 0, n = dst.length; j < n; j++) dst[j]! ^= PRODUCT[row | src[j]!]!;
}

/** Gauss–Jordan inverse of a square matrix. */
function invert(matrix: Matrix): Matrix {
  const n = matrix.length;
  const a = matrix.map((row) => row.slice());
  const inv = matrix.map((_, r) => {
    const row = new Uint8Array(n);
    row[r] = 1;
    return row;
  });
  for (let col = 0; col < n; col++) {
    let piv = col;
    while (piv < n && a[piv]![col] === 0) piv++;
    if (piv === n) throw new Error("Matrix is singular");
    [a[col], a[piv]] = [a[piv]!, a[col]!];
    [inv[col], inv[piv]] = [inv[piv]!, inv[col]!];
    const s = EXP[255 - LOG[a[col]![col]!]!]!;
    for (let c = 0; c < n; c++) {
      a[col]![c] = mul(a[col]![c]!, s);
      inv[col]![c] = mul(inv[col]![c]!, s);
    }
    for (let r = 0; r < n; r++) {
      const f = a[r]![col]!;
      if (r === col || f === 0) continue;
      addScaledRow(a[r]!, a[col]!, f);
      addScaledRow(inv[r]!, inv[col]!, f);
    }
  }
  return inv;
}

const encodingMatrices = new Map<string, Matrix>();

/** The (k + m) x k systematic encoding matrix, whose top k rows are the identity. */
function encodingMatrix(k: number, m: number): Matrix {
  const key = `${k}+${m}`;
  let matrix = encodingMatrices.get(key);
  if (!matrix) {
    const vandermonde = Array.from(
      { length: k + m },
      (_, r) => Uint8Array.from({ length: k }, (_, c) => pow(r, c)),
    );
    matrix = multiplyMatrices(vandermonde, invert(vandermonde.slice(0, k)));
    encodingMatrices.set(key, matrix);
  }
  return matrix;
}

/** out = sum over i of coefficients[i] * inputs[i]. */
function combine(coefficients: Uint8Array, inputs: Uint8Array[], out: Uint8Array): void {
  out.fill(0);
  for (let i = 0; i < inputs.length; i++) addScaled(out, inputs[i]!, coefficients[i]!);
}

function check(shards: readonly (Uint8Array | null)[], k: number, m: number): number {
  if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > 256) {
    throw new RangeError(`Shard counts must satisfy 1 <= k, 0 <= m, k + m <= 256, got "${k}+${m}"`);
  }
  if (shards.length !== k + m) {
    throw new RangeError(`Expected k + m = ${k + m} shards, got "${shards.length}"`);
  }
  const sizes = new Set(shards.filter((s) => s !== null).map((s) => s.length));
  if (sizes.size !== 1 || sizes.has(0)) {
    throw new RangeError(`Shards must have one non-zero size, got "${[...sizes].join(",")}"`);
  }
  return sizes.values().next().value!;
}

/** Fills `shards[k..k+m)` with parity from `shards[0..k)`, in place. */
export function rsEncode(shards: Uint8Array[], k: number, m: number): void {
  check(shards, k, m);
  const matrix = encodingMatrix(k, m);
  const data = shards.slice(0, k);
  for (let r = k; r < k + m; r++) combine(matrix[r]!, data, shards[r]!);
}

/** Rebuilds the `null` shards in place from any k present ones. */
export function rsReconstruct(shards: (Uint8Array | null)[], k: number, m: number): void {
  const size = check(shards, k, m);
  const lost = shards.flatMap((s, i) => s === null ? [i] : []);
  if (lost.length === 0) return;
  if (lost.length > m) {
    throw new RangeError(`Too many shards missing to reconstruct: "${lost.length}", at most ${m}`);
  }
  const matrix = encodingMatrix(k, m);
  const chosen = shards.flatMap((s, i) => s === null ? [] : [i]).slice(0, k);
  const decode = invert(chosen.map((i) => matrix[i]!));
  const inputs = chosen.map((i) => shards[i]!);
  for (const j of lost) {
    if (j < k) combine(decode[j]!, inputs, shards[j] = new Uint8Array(size));
  }
  const data = shards.slice(0, k) as Uint8Array[];
  for (const j of lost) {
    if (j >= k) combine(matrix[j]!, data, shards[j] = new Uint8Array(size));
  }
}
