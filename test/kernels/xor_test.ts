import assert from "node:assert/strict";
import { xorClosest, XorTable } from "../../src/kernels/xor.ts";
import { xorClosest as referenceClosest } from "../../src/kernels/reference/xor.ts";
import { seeded, seededBytes } from "../_util.ts";

/** Checks the one-shot API and a table against the reference. */
function assertSame(ids: Uint8Array, target: Uint8Array, k: number, label: string): void {
  const want = referenceClosest(ids, target, k);
  assert.deepEqual(xorClosest(ids, target, k), want, `xorClosest ${label}`);
  assert.deepEqual(new XorTable(ids).closest(target, k), want, `XorTable ${label}`);
}

Deno.test("xorClosest() matches the reference on random tables", () => {
  const rand = seeded(1);
  for (let c = 0; c < 300; c++) {
    const n = c < 50 ? c : (rand() * (c < 250 ? 300 : 5000)) | 0;
    const k = [0, 1, 2, 7, 8, 9, 20, 64, n, n + 3][c % 10]!;
    assertSame(seededBytes(rand, n * 32), seededBytes(rand, 32), k, `case ${c} n=${n} k=${k}`);
  }
});

Deno.test("xorClosest() matches the reference on a large table", () => {
  const rand = seeded(2);
  const ids = seededBytes(rand, 100_000 * 32);
  for (const k of [1, 20, 1000]) assertSame(ids, seededBytes(rand, 32), k, `k=${k}`);
});

Deno.test("xorClosest() decides distances that share the first 8 bytes or more by the later bytes", () => {
  const rand = seeded(3);
  for (let c = 0; c < 200; c++) {
    const target = seededBytes(rand, 32);
    const n = 1 + ((rand() * 400) | 0);
    const ids = seededBytes(rand, n * 32);
    // Most IDs copy the target's first 8..31 bytes, so their 64-bit keys tie (often with each other).
    for (let i = 0; i < n; i++) {
      if (rand() < 0.8) {
        const shared = 8 + ((rand() * 24) | 0);
        ids.set(target.subarray(0, shared), i * 32);
        if (rand() < 0.5) ids[i * 32 + shared] = target[shared % 32]! ^ (1 << ((rand() * 8) | 0));
      }
    }
    assertSame(ids, target, (rand() * 40) | 0, `case ${c}`);
  }
});

Deno.test("xorClosest() lists identical IDs by lower index first", () => {
  const rand = seeded(4);
  const id = seededBytes(rand, 32);
  const ids = new Uint8Array(50 * 32);
  for (let i = 0; i < 50; i++) ids.set(id, i * 32);
  const target = seededBytes(rand, 32);
  assert.deepEqual([...xorClosest(ids, target, 5)], [0, 1, 2, 3, 4]);
  assert.deepEqual([...new XorTable(ids).closest(target, 50)], [...Array(50).keys()]);
  // A nearer ID later in the table still comes first, then the duplicates in index order.
  const more = new Uint8Array(51 * 32);
  more.set(ids);
  more.set(target, 50 * 32);
  assert.deepEqual([...xorClosest(more, target, 4)], [50, 0, 1, 2]);
});

Deno.test("xorClosest() puts an ID equal to the target first", () => {
  const rand = seeded(5);
  const ids = seededBytes(rand, 1000 * 32);
  const target = ids.slice(617 * 32, 618 * 32);
  assert.equal(xorClosest(ids, target, 20)[0], 617);
  assert.equal(new XorTable(ids).closest(target, 1)[0], 617);
});

Deno.test("xorClosest() keeps the right k when every ID is nearer than the last", () => {
  // Farthest first: each ID displaces the current farthest kept one.
  const n = 2000;
  const target = new Uint8Array(32);
  const ids = new Uint8Array(n * 32);
  for (let i = 0; i < n; i++) new DataView(ids.buffer).setUint32(i * 32 + 4, n - i);
  assertSame(ids, target, 25, "descending");
});

Deno.test("xorClosest() returns min(k, N) indices for k = 0, k > N and N = 0", () => {
  const rand = seeded(6);
  const ids = seededBytes(rand, 10 * 32);
  const target = seededBytes(rand, 32);
  assert.equal(xorClosest(ids, target, 0).length, 0);
  assert.deepEqual(xorClosest(ids, target, 1000), referenceClosest(ids, target, 10));
  assert.equal(xorClosest(ids, target, 1000).length, 10);
  assert.equal(xorClosest(new Uint8Array(0), target, 20).length, 0);
  assert.equal(new XorTable(new Uint8Array(0)).closest(target, 20).length, 0);
  assert.equal(new XorTable(ids).closest(target, 0).length, 0);
});

Deno.test("xorClosest() rejects bad arguments with clear errors", () => {
  const ids = new Uint8Array(64);
  const target = new Uint8Array(32);
  assert.throws(() => xorClosest(new Uint8Array(33), target, 1), {
    name: "RangeError",
    message: 'Expected ids to be a multiple of 32 bytes long, got "33" bytes',
  });
  assert.throws(() => xorClosest(ids, new Uint8Array(31), 1), {
    name: "RangeError",
    message: 'Expected target to be 32 bytes long, got "31" bytes',
  });
  for (const k of [-1, 1.5, NaN, Infinity]) {
    assert.throws(() => xorClosest(ids, target, k), { name: "RangeError", message: /k to be/ });
  }
  // deno-lint-ignore no-explicit-any
  assert.throws(() => xorClosest([1, 2] as any, target, 1), { name: "TypeError" });
  // deno-lint-ignore no-explicit-any
  assert.throws(() => xorClosest(ids, "x" as any, 1), { name: "TypeError" });
  assert.throws(() => new XorTable(new Uint8Array(40)), { name: "RangeError" });
  assert.throws(() => new XorTable(ids).closest(new Uint8Array(33), 1), { name: "RangeError" });
});

Deno.test("XorTable keeps answering correctly while other tables and one-shot calls use the kernel", () => {
  const rand = seeded(7);
  const a = seededBytes(rand, 3000 * 32);
  const b = seededBytes(rand, 500 * 32);
  const tableA = new XorTable(a);
  const tableB = new XorTable(b);
  for (let round = 0; round < 5; round++) {
    const target = seededBytes(rand, 32);
    assert.deepEqual(tableA.closest(target, 20), referenceClosest(a, target, 20));
    assert.deepEqual(xorClosest(b, target, 3), referenceClosest(b, target, 3));
    assert.deepEqual(tableB.closest(target, 20), referenceClosest(b, target, 20));
    assert.deepEqual(tableA.closest(target, 7), referenceClosest(a, target, 7));
  }
});

Deno.test("XorTable is not affected by later changes to the caller's array", () => {
  const rand = seeded(8);
  const ids = seededBytes(rand, 100 * 32);
  const original = ids.slice();
  const table = new XorTable(ids);
  const target = seededBytes(rand, 32);
  ids.fill(0);
  assert.equal(table.size, 100);
  assert.deepEqual(table.closest(target, 10), referenceClosest(original, target, 10));
});
