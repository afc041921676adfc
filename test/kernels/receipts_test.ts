import assert from "node:assert/strict";
import { keccak256 as viemKeccak256 } from "viem";
import { keccak_256 as nobleKeccak256 } from "@noble/hashes/sha3.js";
import {
  keccak256,
  keccak256Many,
  merkleProof,
  merkleRoot,
  verifyMerkleProof,
} from "../../src/kernels/receipts.ts";
import * as reference from "../../src/kernels/reference/receipts.ts";
import { seeded, seededBytes } from "../_util.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** keccak256 of `data` by the kernel, the reference, viem and @noble/hashes must all agree. */
function assertKeccak(data: Uint8Array, label: string): void {
  const got = hex(keccak256(data));
  assert.equal(got, viemKeccak256(data).slice(2), `viem, ${label}`);
  assert.equal(got, hex(nobleKeccak256(data)), `@noble/hashes, ${label}`);
  assert.equal(hex(reference.keccak256(data)), got, `reference, ${label}`);
}

/** OpenZeppelin's `MerkleProof.processProof`, over @noble/hashes: an independent check of proofs. */
function ozProcessProof(proof: Uint8Array[], leaf: Uint8Array): Uint8Array {
  let node = leaf;
  for (const sibling of proof) {
    const [a, b] = hex(node) < hex(sibling) ? [node, sibling] : [sibling, node];
    const pair = new Uint8Array(64);
    pair.set(a);
    pair.set(b, 32);
    node = nobleKeccak256(pair);
  }
  return node;
}

function flipBit(bytes: Uint8Array, rand: () => number): Uint8Array {
  const out = bytes.slice();
  out[(rand() * out.length) | 0] ^= 1 << ((rand() * 8) | 0);
  return out;
}

Deno.test("keccak256() gives Ethereum's known digests", () => {
  assert.equal(
    hex(keccak256(new Uint8Array(0))),
    "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470",
  );
  assert.equal(
    hex(keccak256(new TextEncoder().encode("abc"))),
    "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45",
  );
});

Deno.test("keccak256() matches viem, @noble/hashes and the reference for lengths 0..300", () => {
  const rand = seeded(1);
  for (let n = 0; n <= 300; n++) assertKeccak(seededBytes(rand, n), `length ${n}`);
});

Deno.test("keccak256() matches on 1,000 random inputs", () => {
  const rand = seeded(2);
  for (let c = 0; c < 1000; c++) {
    const n = (rand() * (c % 10 === 0 ? 5000 : 700)) | 0;
    assertKeccak(seededBytes(rand, n), `case ${c} length ${n}`);
  }
});

Deno.test("keccak256() of inputs fed to the kernel in several pieces", () => {
  const rand = seeded(3);
  const piece = 136 * 7710;
  const big = seededBytes(rand, 3 * piece + 300);
  for (const n of [piece - 1, piece, piece + 1, piece + 136, 2 * piece, 3 * piece + 300]) {
    const data = big.subarray(0, n);
    assert.equal(hex(keccak256(data)), hex(nobleKeccak256(data)), `length ${n}`);
  }
  // A view into a larger buffer hashes only its own bytes.
  assert.equal(hex(keccak256(big.subarray(5, 141))), hex(nobleKeccak256(big.slice(5, 141))));
});

Deno.test("keccak256Many() hashes each record, for sizes around the rate", () => {
  const rand = seeded(4);
  for (const size of [1, 31, 32, 64, 135, 136, 137, 160, 271, 272, 273, 1000]) {
    for (const n of [0, 1, 2, 3, 4, 5, 9]) {
      const data = seededBytes(rand, n * size);
      const got = keccak256Many(data, size);
      assert.equal(got.length, n * 32);
      assert.deepEqual(got, reference.keccak256Many(data, size), `size ${size} n ${n}`);
      for (let i = 0; i < n; i++) {
        const record = data.subarray(i * size, (i + 1) * size);
        assert.equal(hex(got.subarray(i * 32, i * 32 + 32)), hex(nobleKeccak256(record)));
      }
    }
  }
});

Deno.test("keccak256Many() handles batches larger than one kernel call", () => {
  const rand = seeded(5);
  const size = 160;
  const n = 13_201; // more than two pieces' worth of records
  const data = seededBytes(rand, n * size);
  const got = keccak256Many(data, size);
  for (let i = 0; i < n; i += 97) {
    const record = data.subarray(i * size, (i + 1) * size);
    assert.equal(
      hex(got.subarray(i * 32, i * 32 + 32)),
      hex(nobleKeccak256(record)),
      `record ${i}`,
    );
  }
  const last = data.subarray((n - 1) * size);
  assert.equal(hex(got.subarray((n - 1) * 32)), hex(nobleKeccak256(last)));
  // A very large record (several pieces long) on its own.
  const huge = seededBytes(rand, 2 * 136 * 7710 + 5);
  assert.equal(hex(keccak256Many(huge, huge.length)), hex(nobleKeccak256(huge)));
});

Deno.test("merkleRoot() and merkleProof() match the reference, and every proof verifies", () => {
  const rand = seeded(6);
  const sizes = [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 100, 1000];
  for (let c = 0; c < 20; c++) sizes.push(1 + ((rand() * 300) | 0));
  for (const n of sizes) {
    const leaves = seededBytes(rand, n * 32);
    const root = merkleRoot(leaves);
    assert.deepEqual(root, reference.merkleRoot(leaves), `root, n ${n}`);
    const indices = n <= 100 ? [...Array(n).keys()] : [0, 1, n - 2, n - 1, (rand() * n) | 0];
    for (const i of indices) {
      const leaf = leaves.subarray(i * 32, i * 32 + 32);
      const proof = merkleProof(leaves, i);
      assert.deepEqual(proof, reference.merkleProof(leaves, i), `proof, n ${n} index ${i}`);
      assert.ok(verifyMerkleProof(root, leaf, proof), `verify, n ${n} index ${i}`);
      assert.deepEqual(ozProcessProof(proof, leaf), root, `OZ processProof, n ${n} index ${i}`);
    }
  }
});

Deno.test("merkleRoot() of one leaf is the leaf, with an empty proof", () => {
  const leaf = seededBytes(seeded(7), 32);
  assert.deepEqual(merkleRoot(leaf), leaf);
  assert.deepEqual(merkleProof(leaf, 0), []);
  assert.ok(verifyMerkleProof(leaf, leaf, []));
});

Deno.test("merkleRoot() hashes pairs sorted: keccak256(min || max)", () => {
  const rand = seeded(8);
  const a = seededBytes(rand, 32);
  const b = seededBytes(rand, 32);
  const ab = new Uint8Array([...a, ...b]);
  const ba = new Uint8Array([...b, ...a]);
  const [lo, hi] = hex(a) < hex(b) ? [a, b] : [b, a];
  const want = nobleKeccak256(new Uint8Array([...lo, ...hi]));
  assert.deepEqual(merkleRoot(ab), want);
  assert.deepEqual(merkleRoot(ba), want);
  // Three leaves: the third moves up unchanged and is hashed with the first pair's node.
  const c = seededBytes(rand, 32);
  const [lo2, hi2] = hex(want) < hex(c) ? [want, c] : [c, want];
  assert.deepEqual(
    merkleRoot(new Uint8Array([...ab, ...c])),
    nobleKeccak256(new Uint8Array([...lo2, ...hi2])),
  );
  assert.deepEqual(merkleProof(new Uint8Array([...ab, ...c]), 2), [want]);
});

Deno.test("verifyMerkleProof() fails on a flipped bit in the root, the leaf or any proof element", () => {
  const rand = seeded(9);
  for (const n of [2, 3, 5, 8, 13, 100]) {
    const leaves = seededBytes(rand, n * 32);
    const root = merkleRoot(leaves);
    for (let c = 0; c < 10; c++) {
      const i = (rand() * n) | 0;
      const leaf = leaves.subarray(i * 32, i * 32 + 32);
      const proof = merkleProof(leaves, i);
      assert.ok(verifyMerkleProof(root, leaf, proof));
      assert.ok(!verifyMerkleProof(flipBit(root, rand), leaf, proof), `root, n ${n}`);
      assert.ok(!verifyMerkleProof(root, flipBit(leaf, rand), proof), `leaf, n ${n}`);
      for (let j = 0; j < proof.length; j++) {
        const bad = proof.slice();
        bad[j] = flipBit(bad[j]!, rand);
        assert.ok(!verifyMerkleProof(root, leaf, bad), `proof[${j}], n ${n}`);
      }
      assert.ok(!verifyMerkleProof(root, leaf, proof.slice(0, -1)), `short proof, n ${n}`);
    }
  }
});

Deno.test("merkleRoot() over 100,000 leaves matches the reference tree", () => {
  const rand = seeded(10);
  const leaves = seededBytes(rand, 100_000 * 32);
  // The tree built with @noble/hashes pair by pair, the same shape as the reference.
  let level: Uint8Array[] = Array.from(
    { length: 100_000 },
    (_, i) => leaves.subarray(i * 32, i * 32 + 32),
  );
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i + 1 < level.length; i += 2) {
      next.push(ozProcessProof([level[i + 1]!], level[i]!));
    }
    if (level.length % 2) next.push(level[level.length - 1]!);
    level = next;
  }
  assert.deepEqual(merkleRoot(leaves), level[0]);
  // Leaf 0 has a sibling on all 17 levels; the last leaf moves up alone wherever a level is odd.
  const first = merkleProof(leaves, 0);
  assert.equal(first.length, 17);
  assert.ok(verifyMerkleProof(level[0]!, leaves.subarray(0, 32), first));
  const last = merkleProof(leaves, 99_999);
  assert.equal(last.length, 10);
  assert.ok(verifyMerkleProof(level[0]!, leaves.subarray(99_999 * 32), last));
});

Deno.test("receipts functions reject bad arguments with clear errors", () => {
  const leaves = new Uint8Array(96);
  // deno-lint-ignore no-explicit-any
  const bad = (v: unknown) => v as any;
  assert.throws(() => keccak256(bad("abc")), { name: "TypeError" });
  assert.throws(() => keccak256Many(new Uint8Array(10), 0), {
    name: "RangeError",
    message: 'Expected size to be a positive integer, got "0"',
  });
  assert.throws(() => keccak256Many(new Uint8Array(10), 3), {
    name: "RangeError",
    message: 'Expected data to be a multiple of size "3" bytes long, got "10" bytes',
  });
  assert.throws(() => merkleRoot(new Uint8Array(0)), {
    name: "RangeError",
    message: "Expected at least one leaf, got none",
  });
  assert.throws(() => merkleRoot(new Uint8Array(33)), {
    name: "RangeError",
    message: 'Expected leaves to be a multiple of 32 bytes long, got "33" bytes',
  });
  assert.throws(() => merkleRoot(bad([1, 2])), { name: "TypeError" });
  for (const i of [-1, 3, 1.5, NaN]) {
    assert.throws(() => merkleProof(leaves, i), { name: "RangeError", message: /index/ });
  }
  assert.throws(() => merkleProof(new Uint8Array(0), 0), { name: "RangeError" });
  assert.throws(() => merkleProof(new Uint8Array(40), 0), { name: "RangeError" });
  const h = new Uint8Array(32);
  assert.throws(() => verifyMerkleProof(new Uint8Array(31), h, []), {
    name: "RangeError",
    message: 'Expected root to be 32 bytes long, got "31" bytes',
  });
  assert.throws(() => verifyMerkleProof(h, h, [new Uint8Array(33)]), {
    name: "RangeError",
    message: 'Expected proof[0] to be 32 bytes long, got "33" bytes',
  });
  assert.throws(() => verifyMerkleProof(h, h, bad(h)), { name: "TypeError" });
});
