/**
 * A plain TypeScript Keccak-256 and sorted-pair Merkle tree, written for reading rather than speed. Tests
 * compare the WebAssembly kernel in `../receipts.ts` against it.
 *
 * Keccak-f[1600] follows FIPS 202 step by step, each 64-bit lane held as two 32-bit halves (no BigInt).
 * The round constants and rotation offsets are derived from their definitions, not copied as tables.
 *
 * @module
 */

const RATE = 136;

/** rc(t) of FIPS 202 §3.2.5: the output of an 8-bit LFSR with polynomial x^8 + x^6 + x^5 + x^4 + 1. */
function rcBit(t: number): number {
  let r = 1;
  for (let i = 0; i < t % 255; i++) {
    r <<= 1;
    if (r & 0x100) r ^= 0x171;
  }
  return r & 1;
}

/** Round constants as [lo, hi] 32-bit halves: bit 2^j - 1 of round i is rc(j + 7i). */
const ROUND_CONSTANTS: [number, number][] = Array.from({ length: 24 }, (_, i) => {
  let lo = 0;
  let hi = 0;
  for (let j = 0; j <= 6; j++) {
    const bit = 2 ** j - 1;
    if (rcBit(j + 7 * i)) {
      if (bit < 32) lo |= 1 << bit;
      else hi |= 1 << (bit - 32);
    }
  }
  return [lo >>> 0, hi >>> 0];
});

/** Rho offsets by lane index x + 5y: walk (x, y) from (1, 0) with (y, 2x + 3y), offset (t+1)(t+2)/2. */
const RHO = new Array<number>(25).fill(0);
for (let t = 0, x = 1, y = 0; t < 24; t++) {
  RHO[x + 5 * y] = (((t + 1) * (t + 2)) / 2) % 64;
  [x, y] = [y, (2 * x + 3 * y) % 5];
}

/** Rotates the lane (lo, hi) left by n bits. */
function rotl(lo: number, hi: number, n: number): [number, number] {
  if (n >= 32) [lo, hi, n] = [hi, lo, n - 32];
  if (n === 0) return [lo, hi];
  return [((lo << n) | (hi >>> (32 - n))) >>> 0, ((hi << n) | (lo >>> (32 - n))) >>> 0];
}

/** Keccak-f[1600] on 25 lanes, lane i at (state[2i], state[2i + 1]) = (lo, hi). */
function keccakF(state: Uint32Array): void {
  const lo = (i: number) => state[2 * i]!;
  const hi = (i: number) => state[2 * i + 1]!;
  for (let round = 0; round < 24; round++) {
    // theta
    const c: [number, number][] = [];
    for (let x = 0; x < 5; x++) {
      let cl = 0;
      let ch = 0;
      for (let y = 0; y < 5; y++) {
        cl ^= lo(x + 5 * y);
        ch ^= hi(x + 5 * y);
      }
      c.push([cl, ch]);
    }
    for (let x = 0; x < 5; x++) {
      const [rl, rh] = rotl(c[(x + 1) % 5]![0], c[(x + 1) % 5]![1], 1);
      const dl = c[(x + 4) % 5]![0] ^ rl;
      const dh = c[(x + 4) % 5]![1] ^ rh;
      for (let y = 0; y < 5; y++) {
        state[2 * (x + 5 * y)] ^= dl;
        state[2 * (x + 5 * y) + 1] ^= dh;
      }
    }
    // rho and pi: lane (x, y) moves to (y, 2x + 3y), rotated
    const b = new Uint32Array(50);
    for (let x = 0; x < 5; x++) {
      for (let y = 0; y < 5; y++) {
        const [l, h] = rotl(lo(x + 5 * y), hi(x + 5 * y), RHO[x + 5 * y]!);
        const to = y + 5 * ((2 * x + 3 * y) % 5);
        b[2 * to] = l;
        b[2 * to + 1] = h;
      }
    }
    // chi
    for (let y = 0; y < 5; y++) {
      for (let x = 0; x < 5; x++) {
        const i = x + 5 * y;
        const i1 = ((x + 1) % 5) + 5 * y;
        const i2 = ((x + 2) % 5) + 5 * y;
        state[2 * i] = b[2 * i]! ^ (~b[2 * i1]! & b[2 * i2]!);
        state[2 * i + 1] = b[2 * i + 1]! ^ (~b[2 * i1 + 1]! & b[2 * i2 + 1]!);
      }
    }
    // iota
    state[0] ^= ROUND_CONSTANTS[round]![0];
    state[1] ^= ROUND_CONSTANTS[round]![1];
  }
}

/** Keccak-256 of `data`: rate 136 bytes, padding 0x01 ... 0x80, the first 32 bytes of the state. */
export function keccak256(data: Uint8Array): Uint8Array {
  const padded = new Uint8Array((Math.floor(data.length / RATE) + 1) * RATE);
  padded.set(data);
  padded[data.length] ^= 0x01;
  padded[padded.length - 1] ^= 0x80;
  const state = new Uint32Array(50);
  const view = new DataView(padded.buffer);
  for (let off = 0; off < padded.length; off += RATE) {
    for (let i = 0; i < RATE / 4; i++) state[i] ^= view.getUint32(off + 4 * i, true);
    keccakF(state);
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) outView.setUint32(4 * i, state[i]!, true);
  return out;
}

/** Keccak-256 of each `size`-byte record of `data`, packed. */
export function keccak256Many(data: Uint8Array, size: number): Uint8Array {
  if (!Number.isSafeInteger(size) || size < 1 || data.length % size !== 0) {
    throw new RangeError(`Expected data to be a multiple of size "${size}" bytes long`);
  }
  const n = data.length / size;
  const out = new Uint8Array(n * 32);
  for (let i = 0; i < n; i++) out.set(keccak256(data.subarray(i * size, (i + 1) * size)), i * 32);
  return out;
}

function hashPair(a: Uint8Array, b: Uint8Array): Uint8Array {
  let swap = false;
  for (let i = 0; i < 32; i++) {
    if (a[i] !== b[i]) {
      swap = a[i]! > b[i]!;
      break;
    }
  }
  const pair = new Uint8Array(64);
  pair.set(swap ? b : a, 0);
  pair.set(swap ? a : b, 32);
  return keccak256(pair);
}

/** Every level of the tree, leaves first, root last: pairs (2i, 2i+1), an odd last node moves up. */
function levels(leaves: Uint8Array): Uint8Array[][] {
  if (leaves.length === 0 || leaves.length % 32 !== 0) {
    throw new RangeError(
      `Expected a non-zero multiple of 32 bytes of leaves, got "${leaves.length}"`,
    );
  }
  let level: Uint8Array[] = Array.from(
    { length: leaves.length / 32 },
    (_, i) => leaves.slice(i * 32, i * 32 + 32),
  );
  const all: Uint8Array[][] = [level];
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(hashPair(level[i]!, level[i + 1]!));
    if (level.length % 2 === 1) next.push(level[level.length - 1]!);
    all.push(next);
    level = next;
  }
  return all;
}

/** The Merkle root of N packed 32-byte leaves. */
export function merkleRoot(leaves: Uint8Array): Uint8Array {
  const all = levels(leaves);
  return all[all.length - 1]![0]!;
}

/** Sibling hashes of leaf `index`, bottom-up. */
export function merkleProof(leaves: Uint8Array, index: number): Uint8Array[] {
  const all = levels(leaves);
  if (!Number.isSafeInteger(index) || index < 0 || index >= all[0]!.length) {
    throw new RangeError(`Expected index to be a leaf index, got "${index}"`);
  }
  const proof: Uint8Array[] = [];
  for (const level of all.slice(0, -1)) {
    const sibling = index ^ 1;
    if (sibling < level.length) proof.push(level[sibling]!);
    index >>= 1;
  }
  return proof;
}
