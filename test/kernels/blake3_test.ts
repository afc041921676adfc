import assert from "node:assert/strict";
import { blake3 as nobleBlake3 } from "@noble/hashes/blake3.js";
import { blake3 as hashWasmBlake3, createBLAKE3 } from "hash-wasm";
import { blake3 } from "../../src/kernels/blake3.ts";
import { blake3 as referenceBlake3 } from "../../src/kernels/reference/blake3.ts";
import { seeded } from "../_util.ts";

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/** The official test-vector input: byte i is i mod 251. */
function vectorInput(len: number): Uint8Array {
  const bytes = new Uint8Array(len);
  for (let i = 0; i < len; i++) bytes[i] = i % 251;
  return bytes;
}

/** Input lengths of BLAKE3's official test vectors (BLAKE3-team/BLAKE3 test_vectors/test_vectors.json). */
const VECTOR_LENGTHS = [
  0,
  1,
  1023,
  1024,
  1025,
  2048,
  2049,
  3072,
  3073,
  4096,
  4097,
  5120,
  5121,
  6144,
  6145,
  7168,
  7169,
  8192,
  8193,
  16384,
  31744,
  102400,
];

/** The first 32 bytes of some of those vectors' `hash` outputs, copied from the same file. */
const KNOWN: [number, string][] = [
  [0, "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"],
  [1, "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213"],
  [1023, "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11"],
  [1024, "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7"],
  [1025, "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444"],
  [5121, "628bd2cb2004694adaab7bbd778a25df25c47b9d4155a55f8fbd79f2fe154cff"],
  [8193, "bab6c09cb8ce8cf459261398d2e7aef35700bf488116ceb94a36d0f5f1b7bc3b"],
  [31744, "62b6960e1a44bcc1eb1a611a8d6235b6b4b78f32e7abc4fb4c6cdcce94895c47"],
  [102400, "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085"],
];

/** 6 MiB of seeded random bytes (fixed seed) that inputs are cut from. */
const POOL = (() => {
  const rand = seeded(0x5eed);
  const words = new Uint32Array((6 << 20) / 4);
  for (let i = 0; i < words.length; i++) words[i] = rand() * 2 ** 32;
  return new Uint8Array(words.buffer);
})();

/** A copy of `len` pool bytes from a random offset (so that contents and alignments vary). */
function randomBytes(len: number, rand: () => number): Uint8Array {
  const offset = Math.floor(rand() * (POOL.length - len));
  return POOL.slice(offset, offset + len);
}

/**
 * Lengths up to ~300 KiB, half of them on or next to a block, chunk or 4-chunk boundary (where the
 * scalar tail, lane padding and odd tree nodes change).
 */
function randomLength(rand: () => number): number {
  const r = rand();
  if (r < 0.5) return Math.floor(rand() * 300 * 1024);
  const unit = [64, 1024, 4096, 16384][Math.floor(rand() * 4)]!;
  const base = unit * Math.floor(rand() * ((300 * 1024) / unit));
  return Math.max(0, base + Math.floor(rand() * 3) - 1);
}

Deno.test({
  name: "blake3() gives the official test vectors' digests",
  fn() {
    for (const [len, expected] of KNOWN) {
      assert.equal(hex(blake3(vectorInput(len))), expected, `kernel, length ${len}`);
      assert.equal(hex(referenceBlake3(vectorInput(len))), expected, `reference, length ${len}`);
    }
  },
});

Deno.test({
  name:
    "blake3() and the reference agree with @noble/hashes and hash-wasm on the test-vector lengths",
  async fn() {
    const hasher = await createBLAKE3();
    for (const len of VECTOR_LENGTHS) {
      const input = vectorInput(len);
      const expected = hex(nobleBlake3(input));
      hasher.init();
      hasher.update(input);
      assert.equal(hex(hasher.digest("binary")), expected, `hash-wasm vs noble, length ${len}`);
      assert.equal(await hashWasmBlake3(input), expected, `hash-wasm blake3(), length ${len}`);
      assert.equal(hex(blake3(input)), expected, `kernel, length ${len}`);
      assert.equal(hex(referenceBlake3(input)), expected, `reference, length ${len}`);
    }
  },
});

Deno.test({
  name: "blake3() matches @noble/hashes on 1,000 random inputs",
  fn() {
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rand = seeded(seed);
    const lengths = Array.from({ length: 990 }, () => randomLength(rand));
    // A few chunk-sized inputs, as the content layer hashes them, and their neighbours.
    lengths.push(1 << 20, (1 << 20) - 1, (1 << 20) + 1, (1 << 20) - 1024, (1 << 20) + 1024);
    lengths.push(
      ...Array.from({ length: 5 }, () => (1 << 20) + Math.floor(rand() * 65536) - 32768),
    );
    for (const len of lengths) {
      const input = randomBytes(len, rand);
      assert.equal(hex(blake3(input)), hex(nobleBlake3(input)), `length ${len}, seed ${seed}`);
    }
  },
});

Deno.test({
  name: "the reference blake3() matches @noble/hashes on random inputs",
  fn() {
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rand = seeded(seed);
    for (let i = 0; i < 60; i++) {
      const len = Math.floor(rand() * 20 * 1024);
      const input = randomBytes(len, rand);
      assert.equal(
        hex(referenceBlake3(input)),
        hex(nobleBlake3(input)),
        `length ${len}, seed ${seed}`,
      );
    }
  },
});

Deno.test({
  name: "blake3() hashes views at nonzero offsets and leaves them unchanged",
  fn() {
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rand = seeded(seed);
    const backing = randomBytes(400 * 1024, rand);
    const before = backing.slice();
    for (let i = 0; i < 100; i++) {
      const offset = 1 + Math.floor(rand() * 4096);
      const len = randomLength(rand) % (backing.length - offset);
      const view = backing.subarray(offset, offset + len);
      assert.equal(
        hex(blake3(view)),
        hex(nobleBlake3(view.slice())),
        `offset ${offset}, length ${len}`,
      );
    }
    // A view over a plain ArrayBuffer with an odd offset, as a Uint8Array from another source might be.
    const odd = new Uint8Array(backing.buffer, 3, 5000);
    assert.equal(hex(blake3(odd)), hex(nobleBlake3(odd.slice())));
    assert.deepEqual(backing, before);
  },
});

Deno.test({
  name: "blake3() keeps no state between calls of growing then shrinking sizes",
  fn() {
    const seed = (Math.random() * 2 ** 32) >>> 0;
    const rand = seeded(seed);
    const sizes = [0, 1, 64, 65, 1024, 1025, 4096, 4097, 65536, 1 << 20, (3 << 20) + 1, 5 << 20];
    const order = [...sizes, ...sizes.slice().reverse()];
    const inputs = new Map(sizes.map((len) => [len, randomBytes(len, rand)]));
    const first = new Map<number, string>();
    for (const len of order) {
      const input = inputs.get(len)!;
      const got = hex(blake3(input));
      assert.equal(got, hex(nobleBlake3(input)), `length ${len}`);
      if (first.has(len)) assert.equal(got, first.get(len), `length ${len} hashed again`);
      first.set(len, got);
    }
    // Same length, different bytes: nothing of the previous input may leak into the next digest.
    const a = new Uint8Array(3000).fill(1);
    const b = new Uint8Array(3000).fill(2);
    assert.equal(hex(blake3(a)), hex(nobleBlake3(a)));
    assert.equal(hex(blake3(b)), hex(nobleBlake3(b)));
  },
});

Deno.test({
  name: "blake3() returns a fresh 32-byte array each call",
  fn() {
    const input = vectorInput(2049);
    const first = blake3(input);
    assert.equal(first.length, 32);
    assert.equal(first.byteOffset, 0);
    assert.equal(first.buffer.byteLength, 32);
    first.fill(0);
    assert.equal(hex(blake3(input)), hex(nobleBlake3(input)));
  },
});

Deno.test({
  name: "blake3() rejects input that is not a Uint8Array",
  fn() {
    // deno-lint-ignore no-explicit-any
    const call = (x: unknown) => blake3(x as any);
    assert.throws(() => call("abc"), TypeError);
    assert.throws(() => call([1, 2, 3]), TypeError);
    assert.throws(() => call(new Uint16Array(4)), TypeError);
    assert.throws(() => call(null), TypeError);
  },
});
