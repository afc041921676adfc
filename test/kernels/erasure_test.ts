import assert from "node:assert/strict";
import { ReedSolomonErasure } from "@digitaldefiance/reed-solomon-erasure.wasm";
import {
  createRsCoder,
  type RsCoder,
  rsEncode,
  rsReconstruct,
  rsStats,
} from "../../src/kernels/erasure.ts";
import * as reference from "../../src/kernels/reference/erasure.ts";
import { seeded } from "../_util.ts";

// The oracle: the `reed-solomon-erasure` crate built to wasm. Its own loaders do not work under Deno (it
// takes Deno for a browser because `self` exists, and fetches a relative URL), so read its `./wasm` export,
// which resolves to a file in node_modules, and instantiate that.
const oracle = ReedSolomonErasure.fromBytes(
  await Deno.readFile(
    new URL(import.meta.resolve("@digitaldefiance/reed-solomon-erasure.wasm/wasm")),
  ),
);
const portable = await createRsCoder("erasure");
const relaxed = await createRsCoder("erasure.relaxed").catch(() => null);

const POOL = new Uint8Array(3 << 20);
{
  const words = new Uint32Array(POOL.buffer);
  const next = seeded(0xc0ffee);
  for (let i = 0; i < words.length; i++) words[i] = next() * 4294967296;
}

/** k data shards of `size` random bytes (copies of the pool at random offsets) and m zeroed ones. */
function stripe(k: number, m: number, size: number, rand: () => number): Uint8Array[] {
  return Array.from({ length: k + m }, (_, i) => {
    if (i >= k) return new Uint8Array(size);
    const at = Math.floor(rand() * (POOL.length - size));
    return POOL.slice(at, at + size);
  });
}

function oracleParity(shards: Uint8Array[], k: number, m: number): Uint8Array[] {
  const size = shards[0]!.length;
  const flat = new Uint8Array((k + m) * size);
  for (let i = 0; i < k; i++) flat.set(shards[i]!, i * size);
  assert.equal(oracle.encode(flat, k, m), ReedSolomonErasure.RESULT_OK);
  return Array.from({ length: m }, (_, j) => flat.subarray((k + j) * size, (k + j + 1) * size));
}

function sameBytes(actual: Uint8Array | null, expected: Uint8Array, what: string): void {
  assert.ok(actual instanceof Uint8Array, `${what}: missing`);
  assert.equal(actual.length, expected.length, `${what}: length`);
  // Buffer.compare-style fast path; assert.deepEqual on MiB arrays is slow and prints megabytes.
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      assert.fail(`${what}: byte ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** Drops `lost` shards, rebuilds them with `coder`, and checks every shard against the original. */
function roundTrip(
  coder: RsCoder,
  full: Uint8Array[],
  k: number,
  m: number,
  lost: number[],
  what: string,
) {
  const shards: (Uint8Array | null)[] = full.slice();
  for (const j of lost) shards[j] = null;
  coder.rsReconstruct(shards, k, m);
  shards.forEach((s, i) => {
    if (!lost.includes(i)) assert.equal(s, full[i], `${what}: present shard ${i} was replaced`);
    else sameBytes(s, full[i]!, `${what}: rebuilt shard ${i} of lost ${lost}`);
  });
}

function pick(rand: () => number, n: number, count: number): number[] {
  const all = Array.from({ length: n }, (_, i) => i);
  for (let i = 0; i < count; i++) {
    const j = i + Math.floor(rand() * (n - i));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  return all.slice(0, count).sort((a, b) => a - b);
}

const ODD_SIZES = [1, 2, 3, 15, 16, 17, 31, 32, 33, 63, 64, 65, 255, 257, 1000, 4095, 4096, 4097];

/** Random (k, m, size), mostly small to medium stripes, with the total bytes kept in check. */
function randomCase(rand: () => number): [number, number, number] {
  const r = rand();
  const k = r < 0.75
    ? 1 + Math.floor(rand() * 16)
    : r < 0.96
    ? 17 + Math.floor(rand() * 48)
    : 65 + Math.floor(rand() * 190);
  const room = 256 - k;
  const s = rand();
  const m = s < 0.03
    ? 0
    : Math.min(room, s < 0.9 ? 1 + Math.floor(rand() * 8) : 1 + Math.floor(rand() * room));
  let size = rand() < 0.5
    ? ODD_SIZES[Math.floor(rand() * ODD_SIZES.length)]!
    : 1 + Math.floor(rand() * 20000);
  while ((k + m) * size > 1 << 18) size = Math.max(1, size >> 1);
  return [k, m, size];
}

// Few but large: MiB shards, sizes one past a power of two, the widest stripes.
const LARGE: [number, number, number][] = [
  [10, 4, 1 << 20],
  [3, 2, (1 << 20) + 1],
  [40, 6, 65537],
  [200, 56, 4097],
  [1, 255, 333],
  [255, 1, 1025],
];

Deno.test("rsEncode() matches the reed-solomon-erasure crate and the reference on 1,000 random stripes", () => {
  const rand = seeded(1);
  const cases = [...LARGE, ...Array.from({ length: 1000 }, () => randomCase(rand))];
  cases.forEach(([k, m, size], n) => {
    const what = `case ${n} (${k}+${m} x ${size} B)`;
    const shards = stripe(k, m, size, rand);
    const data = shards.slice(0, k).map((s) => s.slice());
    const twin = shards.map((s) => s.slice());
    rsEncode(shards, k, m);
    reference.rsEncode(twin, k, m);
    shards.slice(0, k).forEach((s, i) =>
      sameBytes(s, data[i]!, `${what}: data shard ${i} changed`)
    );
    const expected = m > 0 ? oracleParity(shards, k, m) : [];
    for (let j = 0; j < m; j++) {
      sameBytes(shards[k + j]!, expected[j]!, `${what}: parity ${j} vs the crate`);
      sameBytes(twin[k + j]!, expected[j]!, `${what}: reference parity ${j} vs the crate`);
    }
    const lost = pick(rand, k + m, Math.floor(rand() * (m + 1)));
    roundTrip({ rsReconstruct } as RsCoder, shards, k, m, lost, what);
  });
});

Deno.test("rsReconstruct() recovers every loss pattern of up to m shards in small stripes", () => {
  const rand = seeded(2);
  for (const [k, m] of [[1, 1], [2, 2], [4, 2], [5, 3], [6, 3], [3, 5], [1, 4]] as const) {
    for (const size of [1, 37, 100]) {
      const full = stripe(k, m, size, rand);
      rsEncode(full, k, m);
      let patterns = 0;
      for (let mask = 1; mask < 1 << (k + m); mask++) {
        const lost = Array.from({ length: k + m }, (_, i) => i).filter((i) => mask & (1 << i));
        if (lost.length > m) continue;
        roundTrip({ rsReconstruct } as RsCoder, full, k, m, lost, `${k}+${m} x ${size}`);
        const twin: (Uint8Array | null)[] = full.map((s, i) => lost.includes(i) ? null : s);
        reference.rsReconstruct(twin, k, m);
        lost.forEach((j) => sameBytes(twin[j]!, full[j]!, `reference ${k}+${m} lost ${lost}`));
        patterns++;
      }
      const expected = Array.from({ length: m }, (_, c) => binomial(k + m, c + 1)).reduce((a, b) =>
        a + b
      );
      assert.equal(patterns, expected);
    }
  }
});

function binomial(n: number, r: number): number {
  let x = 1;
  for (let i = 0; i < r; i++) x = (x * (n - i)) / (i + 1);
  return x;
}

Deno.test("rsReconstruct() recovers random loss patterns in wide stripes (40+6, 200+56)", () => {
  const rand = seeded(3);
  for (const [k, m, size, tries] of [[40, 6, 4097, 40], [200, 56, 1031, 12], [128, 128, 64, 6]]) {
    const full = stripe(k, m, size, rand);
    rsEncode(full, k, m);
    for (let t = 0; t < tries; t++) {
      const count = t % 3 === 0 ? m : 1 + Math.floor(rand() * m);
      roundTrip({ rsReconstruct } as RsCoder, full, k, m, pick(rand, k + m, count), `${k}+${m}`);
    }
    // The reference and the crate agree on the hardest case: m data shards lost.
    const lost = pick(rand, k, Math.min(m, k));
    const twin: (Uint8Array | null)[] = full.map((s, i) => lost.includes(i) ? null : s);
    reference.rsReconstruct(twin, k, m);
    lost.forEach((j) => sameBytes(twin[j]!, full[j]!, `reference ${k}+${m}`));
    const flat = new Uint8Array((k + m) * size);
    full.forEach((s, i) => flat.set(s, i * size));
    lost.forEach((j) => flat.fill(0, j * size, (j + 1) * size));
    const present = full.map((_, i) => !lost.includes(i));
    assert.equal(oracle.reconstruct(flat, k, m, present), ReedSolomonErasure.RESULT_OK);
    lost.forEach((j) =>
      sameBytes(flat.subarray(j * size, (j + 1) * size), full[j]!, `crate ${k}+${m}`)
    );
  }
});

Deno.test("the portable kernel and the relaxed-SIMD build (when built) agree with the reference", () => {
  const rand = seeded(4);
  const coders = relaxed ? [portable, relaxed] : [portable];
  for (let n = 0; n < 200; n++) {
    const [k, m, size] = randomCase(rand);
    const full = stripe(k, m, size, rand);
    reference.rsEncode(full, k, m);
    const lost = pick(rand, k + m, Math.floor(rand() * (m + 1)));
    for (const coder of coders) {
      const name = coder.rsStats().kernel;
      const shards = full.map((s, i) => i < k ? s : new Uint8Array(size));
      coder.rsEncode(shards, k, m);
      for (let j = k; j < k + m; j++) {
        sameBytes(shards[j]!, full[j]!, `${name} case ${n}: parity ${j}`);
      }
      roundTrip(coder, full, k, m, lost, `${name} case ${n}`);
    }
  }
});

Deno.test("rsReconstruct() solves each loss pattern once and serves repeats from the cache", async () => {
  const coder = await createRsCoder("erasure");
  const rand = seeded(5);
  const full = stripe(10, 4, 999, rand);
  coder.rsEncode(full, 10, 4);
  coder.rsEncode(full.map((s, i) => i < 10 ? s : new Uint8Array(999)), 10, 4);
  assert.deepEqual(coder.rsStats(), { hits: 1, misses: 1, cached: 1, kernel: "erasure" });
  for (let t = 0; t < 3; t++) roundTrip(coder, full, 10, 4, [0, 3, 7, 12], "repeat");
  assert.deepEqual(coder.rsStats(), { hits: 3, misses: 2, cached: 2, kernel: "erasure" });
  // 60 more patterns overflow the cache; the oldest is solved anew, and still right.
  const seen = new Set(["0,3,7,12"]);
  while (seen.size < 61) {
    const lost = pick(rand, 14, 1 + Math.floor(rand() * 4));
    if (seen.has(`${lost}`)) continue;
    seen.add(`${lost}`);
    roundTrip(coder, full, 10, 4, lost, "fill");
  }
  const { misses, cached } = coder.rsStats();
  assert.ok(cached <= 48, `cache holds ${cached} matrices`);
  roundTrip(coder, full, 10, 4, [0, 3, 7, 12], "evicted");
  assert.equal(coder.rsStats().misses, misses + 1);
  // The module's own coder counts too.
  const before = rsStats().hits;
  rsEncode(stripe(2, 1, 8, rand), 2, 1);
  rsEncode(stripe(2, 1, 8, rand), 2, 1);
  assert.ok(rsStats().hits > before);
});

Deno.test("rsEncode() with m = 0 and rsReconstruct() with nothing missing change nothing", () => {
  const a = new Uint8Array([1, 2, 3]);
  const b = new Uint8Array([4, 5, 6]);
  const shards = [a, b];
  rsEncode(shards, 2, 0);
  rsReconstruct(shards, 2, 0);
  assert.deepEqual(shards, [new Uint8Array([1, 2, 3]), new Uint8Array([4, 5, 6])]);
  assert.equal(shards[0], a);
  const full = stripe(3, 2, 50, seeded(6));
  rsEncode(full, 3, 2);
  const copy = full.slice();
  rsReconstruct(copy, 3, 2);
  copy.forEach((s, i) => assert.equal(s, full[i]));
});

Deno.test("rsEncode() and rsReconstruct() reject bad arguments with clear errors, changing nothing", () => {
  const s = (n: number, size = 8) => Array.from({ length: n }, () => new Uint8Array(size));
  const cases: [string, () => void, ErrorConstructor, RegExp][] = [
    [
      "k = 0",
      () => rsEncode(s(2), 0, 2),
      RangeError,
      /^Data shard count k must be an integer of at least 1, got "0"$/,
    ],
    ["k = 1.5", () => rsEncode(s(3), 1.5, 2), RangeError, /k must be an integer .*"1\.5"/],
    [
      "m < 0",
      () => rsReconstruct(s(3), 4, -1),
      RangeError,
      /^Parity shard count m must be an integer of at least 0, got "-1"$/,
    ],
    [
      "k not a number",
      () => rsEncode(s(6), "4" as unknown as number, 2),
      TypeError,
      /^Shard counts k and m must be numbers, got "string" and "number"$/,
    ],
    [
      "k + m > 256",
      () => rsEncode(s(257), 200, 57),
      RangeError,
      /^Shard count k \+ m must be at most 256, got "257"$/,
    ],
    [
      "k + m > 256 (reconstruct)",
      () => rsReconstruct(s(300), 250, 50),
      RangeError,
      /at most 256, got "300"/,
    ],
    [
      "too few shards",
      () => rsEncode(s(5), 4, 2),
      RangeError,
      /^Expected k \+ m = 6 shards, got "5"$/,
    ],
    [
      "too many shards",
      () => rsReconstruct(s(7), 4, 2),
      RangeError,
      /^Expected k \+ m = 6 shards, got "7"$/,
    ],
    [
      "not an array",
      () => rsEncode(new Uint8Array(6) as unknown as Uint8Array[], 4, 2),
      TypeError,
      /^Shards must be an array, got "Uint8Array"$/,
    ],
    [
      "unequal sizes",
      () => rsEncode([...s(3), new Uint8Array(9), ...s(2)], 4, 2),
      RangeError,
      /^Shards must have equal sizes, got "9" bytes for shard 3 and "8" for shard 0$/,
    ],
    [
      "unequal sizes (reconstruct)",
      () => rsReconstruct([null, ...s(4), new Uint8Array(7)], 4, 2),
      RangeError,
      /got "7" bytes for shard 5 and "8" for shard 1/,
    ],
    [
      "empty shards",
      () => rsEncode(s(6, 0), 4, 2),
      RangeError,
      /^Shards must not be empty, got size "0" for shard 0$/,
    ],
    [
      "empty shards (reconstruct)",
      () => rsReconstruct([null, ...s(5, 0)], 4, 2),
      RangeError,
      /must not be empty, got size "0" for shard 1/,
    ],
    [
      "data shard missing",
      () => rsEncode([new Uint8Array(8), null as unknown as Uint8Array, ...s(4)], 4, 2),
      TypeError,
      /^Data shard 1 must be a Uint8Array, got "null"$/,
    ],
    [
      "parity shard missing",
      () => rsEncode([...s(5), null as unknown as Uint8Array], 4, 2),
      TypeError,
      /^Parity shard 5 must be a Uint8Array, got "null"$/,
    ],
    [
      "wrong typed array",
      () => rsEncode([...s(5), new Uint16Array(8) as unknown as Uint8Array], 4, 2),
      TypeError,
      /got "Uint16Array"/,
    ],
    [
      "undefined shard",
      () => rsReconstruct([...s(2), undefined as unknown as null, ...s(3)], 4, 2),
      TypeError,
      /^Shard 2 must be a Uint8Array or null, got "undefined"$/,
    ],
    [
      "too many missing",
      () => rsReconstruct([null, null, null, ...s(3)], 4, 2),
      RangeError,
      /^Too many shards missing to reconstruct: "3" of 6, at most m = 2$/,
    ],
    ["all missing", () => rsReconstruct([null, null], 1, 1), RangeError, /"2" of 2, at most m = 1/],
    [
      "missing with m = 0",
      () => rsReconstruct([null, ...s(2)], 3, 0),
      RangeError,
      /"1" of 3, at most m = 0/,
    ],
  ];
  for (const [what, fn, type, message] of cases) {
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof type, `${what}: ${e} is not a ${type.name}`);
      assert.match((e as Error).message, message, what);
      return true;
    });
  }
  const shards: (Uint8Array | null)[] = [null, null, null, ...s(3)];
  assert.throws(() => rsReconstruct(shards, 4, 2), RangeError);
  assert.deepEqual(shards.slice(0, 3), [null, null, null]);
});
