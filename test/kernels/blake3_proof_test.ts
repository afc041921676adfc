/**
 * BLAKE3 audit proofs: the kernel (bottom-up, built while hashing) against the plain-TS reference
 * (a top-down tree walk) and against the digest of `blake3()` and @noble/hashes, for every block of
 * inputs around the chunk and tree boundaries; then tampered answers, bad arguments and a fuzz.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { blake3 as nobleBlake3 } from "@noble/hashes/blake3.js";
import {
  blake3,
  BLAKE3_BLOCK_LEN,
  blake3BlockCount,
  blake3Proof,
  blake3VerifyProof,
} from "../../src/kernels/mod.ts";
import * as reference from "../../src/kernels/reference/blake3.ts";
import { seeded, seededBytes } from "../_util.ts";
import { onlyThrows, RUNS } from "../fuzz/_arb.ts";

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

const KiB = 1024;
const SEED = (Math.random() * 2 ** 32) >>> 0;

/** Random bytes quickly: a seeded word stream (seededBytes is per byte, slow for 1 MiB). */
function randomInput(len: number, rand: () => number): Uint8Array {
  const words = new Uint32Array(Math.ceil(len / 4));
  for (let i = 0; i < words.length; i++) words[i] = rand() * 2 ** 32;
  return new Uint8Array(words.buffer, 0, len).slice();
}

/**
 * The block's path, bottom-up: for each level where its node has a sibling, whether the node is the
 * right one. A proof's length is 32 bytes per entry; two lengths with the same path hash alike.
 */
function pathOf(len: number, index: number): string {
  const sides: number[] = [];
  for (let nodes = blake3BlockCount(len), at = index; nodes > 1; nodes = Math.ceil(nodes / 2)) {
    if ((at ^ 1) < nodes) sides.push(at & 1);
    at >>= 1;
  }
  return sides.join("");
}

function blockLenOf(len: number, index: number): number {
  return index < blake3BlockCount(len) - 1 ? KiB : len - index * KiB;
}

/** Both implementations' verdicts, which must agree. */
function verdict(
  root: Uint8Array,
  len: number,
  index: number,
  block: Uint8Array,
  proof: Uint8Array,
): boolean {
  const kernel = blake3VerifyProof(root, len, index, block, proof);
  const ref = reference.blake3VerifyProof(root, len, index, block, proof);
  assert.equal(kernel, ref, `kernel and reference disagree: length ${len}, block ${index}`);
  return kernel;
}

function flipBit(bytes: Uint8Array, bit: number): Uint8Array {
  const out = bytes.slice();
  out[bit >> 3]! ^= 1 << (bit & 7);
  return out;
}

const rand0 = seeded(SEED);
const SIZES = [
  1,
  1023,
  1024,
  1025,
  2049,
  64 * KiB + 1,
  256 * KiB,
  1 << 20,
  // Random, one of them just past a 4-chunk (SIMD pass) boundary.
  1 + Math.floor(rand0() * 300 * KiB),
  1 + Math.floor(rand0() * 40 * KiB),
  4096 * (1 + Math.floor(rand0() * 64)) + 1,
];

Deno.test({
  name: "every block's kernel proof matches the reference and checks against blake3()'s root",
  fn() {
    const rand = seeded(SEED);
    for (const len of SIZES) {
      const data = randomInput(len, rand);
      const root = blake3(data);
      assert.equal(hex(root), hex(nobleBlake3(data)), `length ${len}`);
      const blocks = blake3BlockCount(len);
      assert.equal(blocks, Math.ceil(len / KiB));
      // The reference walks the whole tree per proof: every block of small inputs, a sample of big ones.
      const sampled = new Set([0, blocks - 1, Math.floor(blocks / 2)]);
      for (let k = 0; k < 3; k++) sampled.add(Math.floor(rand() * blocks));
      for (let i = 0; i < blocks; i++) {
        const where = `length ${len}, block ${i}, seed ${SEED}`;
        const got = blake3Proof(data, i);
        assert.equal(hex(got.root), hex(root), where);
        assert.deepEqual(got.block, data.subarray(i * KiB, (i + 1) * KiB), where);
        assert.equal(got.block.length, i === blocks - 1 ? len - i * KiB : KiB, where);
        assert.equal(got.proof.length, 32 * pathOf(len, i).length, where);
        if (blocks <= 80 || sampled.has(i)) {
          const want = reference.blake3Proof(data, i);
          assert.equal(hex(got.proof), hex(want.proof), where);
          assert.equal(hex(want.root), hex(root), where);
          assert.deepEqual(want.block, got.block, where);
        }
        assert.ok(blake3VerifyProof(root, len, i, got.block, got.proof), `kernel: ${where}`);
        assert.ok(
          reference.blake3VerifyProof(root, len, i, got.block, got.proof),
          `reference: ${where}`,
        );
      }
    }
  },
});

Deno.test("the empty input has one empty block, proven by the root alone", () => {
  const empty = new Uint8Array(0);
  const { block, proof, root } = blake3Proof(empty, 0);
  assert.equal(block.length, 0);
  assert.equal(proof.length, 0);
  assert.equal(hex(root), hex(blake3(empty)));
  assert.ok(verdict(root, 0, 0, block, proof));
  assert.ok(!verdict(root, 0, 0, new Uint8Array(1), proof));
});

Deno.test("an answer for a 256 KiB chunk is 1,280 bytes, for a 1 MiB chunk 1,344 (at most 2 KiB)", () => {
  const rand = seeded(SEED);
  for (const [len, size] of [[256 * KiB, 1280], [1 << 20, 1344]] as const) {
    const data = randomInput(len, rand);
    for (const i of [0, 77, blake3BlockCount(len) - 1]) {
      const { block, proof } = blake3Proof(data, i);
      assert.equal(block.length + proof.length, size);
      assert.ok(block.length + proof.length <= 2048);
    }
  }
});

Deno.test({
  name:
    "tampered answers are refused: a flipped bit in the block or any sibling, another index or input",
  fn() {
    const rand = seeded(SEED ^ 0x7a3);
    for (const len of [1, 1000, 1024, 1025, 2049, 5000, 64 * KiB + 1, 256 * KiB, 300 * KiB + 17]) {
      const data = randomInput(len, rand);
      // Differs from `data` in every byte: two random inputs of 1025 bytes share their 1-byte last block
      // (and so block 0's proof) once in 256 runs, which failed this test in CI (seed 653207697).
      const other = randomInput(len, rand).map((b, j) => data[j]! ^ (1 + (b % 255)));
      const root = blake3(data);
      const blocks = blake3BlockCount(len);
      const indexes = new Set([0, blocks - 1, Math.floor(rand() * blocks)]);
      for (const i of indexes) {
        const where = `length ${len}, block ${i}, seed ${SEED}`;
        const { block, proof } = blake3Proof(data, i);
        assert.ok(verdict(root, len, i, block, proof), where);
        // Every bit of a short block, a sample of a long one.
        for (let k = 0; k < Math.min(block.length * 8, 64); k++) {
          const bit = block.length * 8 <= 64 ? k : Math.floor(rand() * block.length * 8);
          assert.ok(
            !verdict(root, len, i, flipBit(block, bit), proof),
            `${where}, block bit ${bit}`,
          );
        }
        // Each sibling CV, one random bit and its first and last bit.
        for (let s = 0; s < proof.length / 32; s++) {
          for (const bit of [s * 256, s * 256 + 255, s * 256 + Math.floor(rand() * 256)]) {
            assert.ok(
              !verdict(root, len, i, block, flipBit(proof, bit)),
              `${where}, proof bit ${bit}`,
            );
          }
        }
        // Siblings swapped (when there are two that differ).
        if (proof.length >= 64) {
          const swapped = proof.slice();
          swapped.set(proof.subarray(32, 64), 0);
          swapped.set(proof.subarray(0, 32), 32);
          assert.ok(!verdict(root, len, i, block, swapped), `${where}, siblings swapped`);
        }
        // The answer for another block, and this answer claimed for a neighbour.
        for (const j of [i - 1, i + 1]) {
          if (j < 0 || j >= blocks) continue;
          const wrong = blake3Proof(data, j);
          assert.ok(
            !verdict(root, len, i, wrong.block, wrong.proof),
            `${where}, block ${j}'s answer`,
          );
          assert.ok(!verdict(root, len, j, block, proof), `${where}, claimed as block ${j}`);
          assert.ok(!verdict(root, len, i, wrong.block, proof), `${where}, block ${j}'s bytes`);
        }
        // Another input's block, proof or root.
        const foreign = blake3Proof(other, i);
        assert.ok(!verdict(root, len, i, foreign.block, foreign.proof), `${where}, other input`);
        assert.ok(!verdict(root, len, i, foreign.block, proof), `${where}, other block`);
        if (proof.length) {
          assert.ok(!verdict(root, len, i, block, foreign.proof), `${where}, other proof`);
        }
        assert.ok(!verdict(foreign.root, len, i, block, proof), `${where}, other root`);
      }
    }
  },
});

Deno.test("a truncated, extended or empty proof, or a resized block, is refused", () => {
  const rand = seeded(SEED ^ 0x51);
  for (const len of [1, 1025, 2049, 7000, 64 * KiB + 1, 256 * KiB]) {
    const data = randomInput(len, rand);
    const root = blake3(data);
    const blocks = blake3BlockCount(len);
    for (const i of new Set([0, blocks - 1, Math.floor(blocks / 2)])) {
      const where = `length ${len}, block ${i}`;
      const { block, proof } = blake3Proof(data, i);
      const cuts = [proof.subarray(0, proof.length - 32), proof.subarray(0, proof.length - 1)];
      for (const cut of cuts) {
        if (cut.length < proof.length && proof.length) {
          assert.ok(!verdict(root, len, i, block, cut), `${where}, proof cut to ${cut.length}`);
        }
      }
      if (proof.length) assert.ok(!verdict(root, len, i, block, new Uint8Array(0)), where);
      for (const extra of [1, 32, 64]) {
        const longer = new Uint8Array(proof.length + extra);
        longer.set(proof);
        assert.ok(!verdict(root, len, i, block, longer), `${where}, proof + ${extra} bytes`);
      }
      // The last block, short: neither zero-padded to 1 KiB nor cut by a byte.
      const padded = new Uint8Array(KiB);
      padded.set(block);
      if (block.length < KiB) assert.ok(!verdict(root, len, i, padded, proof), `${where}, padded`);
      if (block.length) {
        assert.ok(!verdict(root, len, i, block.subarray(1), proof), `${where}, block cut`);
      }
      const grown = new Uint8Array(block.length + 1);
      grown.set(block);
      assert.ok(!verdict(root, len, i, grown, proof), `${where}, block grown`);
      assert.ok(!verdict(root, len, i, new Uint8Array(4096), proof), `${where}, 4 KiB block`);
      assert.ok(!verdict(root, len, i, block, new Uint8Array(4096)), `${where}, 4 KiB proof`);
    }
  }
});

Deno.test("a wrong length is refused unless it gives the block the same path and size", () => {
  const rand = seeded(SEED ^ 0x1e9);
  let refused = 0;
  let alike = 0;
  for (const len of [1, 1024, 1025, 2048, 2049, 5000, 64 * KiB + 1, 256 * KiB]) {
    const data = randomInput(len, rand);
    const root = blake3(data);
    const blocks = blake3BlockCount(len);
    for (const i of new Set([0, blocks - 1, Math.floor(blocks / 2)])) {
      const { block, proof } = blake3Proof(data, i);
      for (const other of [len - 1, len + 1, len - KiB, len + KiB, len * 2, len + 3 * KiB]) {
        if (other < 0 || other === len || i >= blake3BlockCount(other)) continue;
        // The same path and block size mean the very same hashes, so it checks (bao's slices too:
        // only the last chunk pins the length); anything else never does.
        const same = pathOf(other, i) === pathOf(len, i) && blockLenOf(other, i) === block.length;
        assert.equal(
          verdict(root, other, i, block, proof),
          same,
          `length ${len} claimed as ${other}, block ${i}`,
        );
        if (same) alike++;
        else refused++;
      }
    }
  }
  assert.ok(refused > 50 && alike > 5, `${refused} refused, ${alike} alike`);
});

Deno.test("proofs share the kernel with blake3() and keep no state between sizes", () => {
  const rand = seeded(SEED ^ 0x3);
  const sizes = [5 << 20, 1025, 1 << 20, 1, 3 * KiB + 5, 2 << 20, 64 * KiB];
  const inputs = sizes.map((len) => randomInput(len, rand));
  for (const round of [0, 1]) {
    for (const data of round ? inputs.slice().reverse() : inputs) {
      const len = data.length;
      const i = Math.floor(rand() * blake3BlockCount(len));
      const { block, proof, root } = blake3Proof(data, i);
      assert.equal(hex(root), hex(nobleBlake3(data)), `length ${len}`);
      assert.equal(hex(blake3(data)), hex(root));
      // A big hash in between must not disturb a verify, nor a verify the next proof.
      blake3(inputs[0]!);
      assert.ok(blake3VerifyProof(root, len, i, block, proof), `length ${len}, block ${i}`);
    }
  }
  // Views at odd offsets, left unchanged.
  const backing = randomInput(80 * KiB, rand);
  const before = backing.slice();
  const view = backing.subarray(3, 3 + 50 * KiB + 7);
  const { block, proof, root } = blake3Proof(view, 50);
  assert.equal(hex(root), hex(nobleBlake3(view.slice())));
  assert.ok(blake3VerifyProof(root, view.length, 50, block, proof));
  const blockView = backing.subarray(3 + 50 * KiB, 3 + 50 * KiB + 7);
  assert.ok(blake3VerifyProof(root, view.length, 50, blockView, proof));
  assert.deepEqual(backing, before);
});

Deno.test("bad arguments get a TypeError or RangeError that says what is wrong", () => {
  const data = seededBytes(seeded(1), 5000);
  const { block, proof, root } = blake3Proof(data, 2);
  // deno-lint-ignore no-explicit-any
  const bad = (x: unknown) => x as any;
  assert.throws(() => blake3Proof(bad("abc"), 0), { name: "TypeError", message: /data/ });
  assert.throws(() => blake3Proof(bad([1, 2]), 0), TypeError);
  for (const index of [-1, 5, 1.5, NaN, Infinity, bad("0")]) {
    assert.throws(() => blake3Proof(data, index), {
      name: "RangeError",
      message: /blockIndex .*\[0, 5\)/,
    }, `index ${index}`);
    assert.throws(() => blake3VerifyProof(root, 5000, index, block, proof), RangeError);
  }
  for (const len of [-1, 1.5, 2 ** 32, NaN, bad("5000")]) {
    assert.throws(() => blake3VerifyProof(root, len, 0, block, proof), {
      name: "RangeError",
      message: /length/,
    }, `length ${len}`);
  }
  for (const r of [new Uint8Array(31), new Uint8Array(33), new Uint8Array(0)]) {
    assert.throws(() => blake3VerifyProof(r, 5000, 2, block, proof), {
      name: "RangeError",
      message: /root .*32 bytes/,
    });
  }
  assert.throws(() => blake3VerifyProof(bad(hex(root)), 5000, 2, block, proof), /root/);
  assert.throws(() => blake3VerifyProof(root, 5000, 2, bad([...block]), proof), /block/);
  assert.throws(() => blake3VerifyProof(root, 5000, 2, block, bad(null)), /proof/);
  assert.throws(() => blake3VerifyProof(root, 5000, 2, block, bad(new Uint16Array(16))), TypeError);
  // The good answer still checks after all that.
  assert.ok(blake3VerifyProof(root, 5000, 2, block, proof));
  assert.equal(BLAKE3_BLOCK_LEN, 1024);
});

Deno.test("fuzz: verifying arbitrary answers gives false or a TypeError/RangeError, as the reference does", () => {
  const rand = seeded(SEED ^ 0xf);
  const inputs = [1, 1500, 4097, 20 * KiB + 3].map((len) => randomInput(len, rand));
  const answers = inputs.flatMap((data) =>
    [0, blake3BlockCount(data.length) - 1].map((i) => ({
      len: data.length,
      i,
      ...blake3Proof(data, i),
    }))
  );
  const bytes = (valid: Uint8Array) =>
    fc.oneof(
      fc.constant(valid),
      fc.uint8Array({ maxLength: 1100 }),
      fc.tuple(fc.nat(), fc.nat({ max: 7 }), fc.nat()).map(([at, bit, cut]) => {
        const out = valid.slice(0, valid.length - (cut % 4 === 0 ? cut % (valid.length + 1) : 0));
        if (out.length) out[at % out.length]! ^= 1 << bit;
        return out;
      }),
    );
  const number = (valid: number) =>
    fc.oneof(
      fc.constant(valid),
      fc.integer({ min: -2, max: 40 }),
      fc.integer({ min: -(2 ** 33), max: 2 ** 33 }),
      fc.double(),
      fc.constantFrom(valid + 1, valid - 1, valid + KiB, 2 ** 32 - 1, 2 ** 32),
    );
  const answer = fc.constantFrom(...answers).chain((a) =>
    fc.record({
      a: fc.constant(a),
      root: bytes(a.root),
      len: number(a.len),
      i: number(a.i),
      block: bytes(a.block),
      proof: bytes(a.proof),
    })
  );
  fc.assert(
    fc.property(answer, ({ a, root, len, i, block, proof }) => {
      const kernel = onlyThrows(
        () => blake3VerifyProof(root, len, i, block, proof),
        TypeError,
        RangeError,
      );
      if (kernel === undefined) return;
      assert.equal(typeof kernel, "boolean");
      assert.equal(kernel, reference.blake3VerifyProof(root, len, i, block, proof));
      if (kernel) {
        // Only the real answer checks (the length may vary within the documented rule).
        assert.equal(hex(root), hex(a.root));
        assert.equal(i, a.i);
        assert.equal(hex(block), hex(a.block));
        assert.equal(hex(proof), hex(a.proof));
        assert.equal(pathOf(len, i), pathOf(a.len, a.i));
      }
    }),
    { numRuns: RUNS, seed: SEED },
  );
  // Values that are not bytes at all: a TypeError (or a RangeError for the numbers), never anything else.
  fc.assert(
    fc.property(fc.anything(), fc.anything(), fc.nat({ max: 4 }), (x, n, slot) => {
      const { root, block, proof, len, i } = answers[1]!;
      const args: unknown[] = [root, len, i, block, proof];
      args[slot] = slot === 1 || slot === 2 ? n : x;
      // deno-lint-ignore no-explicit-any
      const call = () => (blake3VerifyProof as any)(...args);
      const got = onlyThrows(call, TypeError, RangeError);
      if (got !== undefined) assert.equal(typeof got, "boolean");
    }),
    { numRuns: 500, seed: SEED },
  );
});

/** Seconds per call of each of `fns`, in alternating ~1 ms batches, at the 10th percentile of the batches: the
 * speed of a core left alone, which other tests on a shared machine disturb far less than a mean. */
function secondsPerCall(fns: (() => void)[], batches: number): number[] {
  const sizes = fns.map((fn) => {
    for (let i = 0; i < 10; i++) fn();
    const t0 = performance.now();
    for (let i = 0; i < 10; i++) fn();
    return Math.max(1, Math.round(10 / (performance.now() - t0)));
  });
  const times = fns.map(() => [] as number[]);
  for (let b = 0; b < batches; b++) {
    fns.forEach((fn, f) => {
      const t0 = performance.now();
      for (let i = 0; i < sizes[f]!; i++) fn();
      times[f]!.push((performance.now() - t0) / sizes[f]! / 1000);
    });
  }
  return times.map((t) => t.sort((x, y) => x - y)[Math.floor(t.length / 10)]!);
}

Deno.test("a 256 KiB chunk: >= 50,000 proofs checked a second; a proof built at >= 0.8x hashing it", () => {
  const len = 256 * 1024;
  const chunk = seededBytes(seeded(7), len);
  const root = blake3(chunk);
  const picks = Array.from({ length: 64 }, (_, i) => (i * 37) % blake3BlockCount(len));
  const answers = picks.map((i) => ({ i, ...blake3Proof(chunk, i) }));
  let n = 0;
  const [verify] = secondsPerCall([() => {
    const a = answers[n++ % 64]!;
    if (!blake3VerifyProof(root, len, a.i, a.block, a.proof)) {
      throw new Error("a good proof failed");
    }
  }], 200);
  const [build, hash] = secondsPerCall([
    () => void blake3Proof(chunk, picks[n++ % 64]!),
    () => void blake3(chunk),
  ], 100);
  const perSecond = 1 / verify!;
  const ratio = hash! / build!;
  console.log(JSON.stringify({ verify_per_s: Math.round(perSecond), build_vs_hash: ratio }));
  assert.ok(perSecond >= 50_000, `${Math.round(perSecond)} proofs checked a second`);
  assert.ok(ratio >= 0.8, `a proof builds at ${ratio.toFixed(2)}x the rate of hashing the chunk`);
});
