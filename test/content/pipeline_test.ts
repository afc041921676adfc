import assert from "node:assert/strict";
import type { CID } from "../../src/content/cid.ts";
import { chooseChunkSize, ingest, TooLargeError } from "../../src/content/ingest.ts";
import { chunkCount } from "../../src/content/manifest.ts";
import { readFile, UnrecoverableError } from "../../src/content/read.ts";
import { collect, pattern, patternStream } from "../_util.ts";

/** A Map-backed chunk sink/getter, the simplest store. */
function memory() {
  const chunks = new Map<string, Uint8Array>();
  return {
    chunks,
    sink: (cid: CID, bytes: Uint8Array) => Promise.resolve(void chunks.set(cid.toString(), bytes)),
    get: (cid: CID) => Promise.resolve(chunks.get(cid.toString()) ?? null),
  };
}

Deno.test("ingest() then readFile() returns the bytes for sizes around chunk and stripe edges", async () => {
  const chunkSize = 1024;
  for (const size of [0, 1, 1023, 1024, 1025, 4 * 1024, 4 * 1024 + 1, 9 * 1024 - 7, 13 * 1024]) {
    const mem = memory();
    const { cid, manifest } = await ingest(patternStream(size, 3, 700), mem.sink, {
      chunkSize,
      k: 4,
      m: 2,
      name: "a.bin",
    });
    assert.equal(manifest.size, size);
    assert.equal(manifest.stripes.length, Math.ceil(chunkCount(manifest) / 4));
    const chunks = Math.ceil(size / chunkSize);
    manifest.stripes.forEach((stripe, i) =>
      assert.equal(stripe.length, Math.min(4, chunks - 4 * i) + 2)
    );
    assert.ok(mem.chunks.has(cid.toString()), "the manifest is stored too");
    assert.deepEqual(await collect(readFile(manifest, mem.get)), pattern(0, size, 3));
  }
});

Deno.test("readFile() serves any range and fetches only the chunks it touches", async () => {
  const mem = memory();
  const size = 20 * 1024 + 123;
  const { manifest } = await ingest(patternStream(size), mem.sink, { chunkSize: 1024, k: 5, m: 2 });
  const asked = new Set<string>();
  const get = (cid: CID) => {
    asked.add(cid.toString());
    return mem.get(cid);
  };
  for (let i = 0; i < 200; i++) {
    const start = Math.floor(Math.random() * size);
    const end = start + Math.floor(Math.random() * (size - start + 1));
    asked.clear();
    const bytes = await collect(readFile(manifest, get, { start, end, prefetch: 1 }));
    assert.deepEqual(bytes, pattern(start, end - start));
    const touched = end > start ? Math.ceil(end / 1024) - Math.floor(start / 1024) : 0;
    assert.ok(asked.size <= touched + 1, `range ${start}-${end} asked ${asked.size} chunks`);
  }
  assert.throws(() => readFile(manifest, get, { start: 10, end: 5 }), RangeError);
  assert.throws(() => readFile(manifest, get, { start: 0, end: size + 1 }), RangeError);
});

Deno.test("readFile() rebuilds up to m lost chunks per stripe, reports them, and fails past m", async () => {
  const mem = memory();
  const size = 10 * 1024 - 1; // last stripe: 2 data chunks, the last one short
  const { manifest } = await ingest(patternStream(size), mem.sink, { chunkSize: 1024, k: 4, m: 2 });
  const original = new Map(mem.chunks);
  for (const stripe of manifest.stripes) {
    // Lose two chunks of every stripe: the first data chunk and the last one listed.
    mem.chunks.delete(stripe[0]!.toString());
    mem.chunks.delete(stripe.at(-1)!.toString());
  }
  const repaired: string[] = [];
  const bytes = await collect(
    readFile(manifest, mem.get, {
      onRepaired: (cid, b) => {
        assert.deepEqual(b, original.get(cid.toString()));
        repaired.push(cid.toString());
      },
    }),
  );
  assert.deepEqual(bytes, pattern(0, size));
  assert.equal(repaired.length, manifest.stripes.length * 2);

  mem.chunks.delete(manifest.stripes[1]![1]!.toString());
  mem.chunks.delete(manifest.stripes[1]![2]!.toString());
  mem.chunks.delete(manifest.stripes[1]![3]!.toString());
  await assert.rejects(() => collect(readFile(manifest, mem.get)), UnrecoverableError);
});

Deno.test("ingest() enforces its size limit and surfaces sink failures", async () => {
  await assert.rejects(
    () => ingest(patternStream(5000), memory().sink, { chunkSize: 1024, maxBytes: 4096 }),
    TooLargeError,
  );
  await assert.rejects(
    () => ingest(patternStream(10), memory().sink, { expectedSize: 10, maxBytes: 9 }),
    TooLargeError,
  );
  const failing = () => Promise.reject(new Error("disk on fire"));
  await assert.rejects(
    () => ingest(patternStream(5000), failing, { chunkSize: 1024 }),
    /disk on fire/,
  );
  for (const [k, m] of [[0, 1], [200, 57], [1.5, 1], [4, -1]]) {
    await assert.rejects(() => ingest(patternStream(1), memory().sink, { k, m }), /Stripe "k=/);
  }
});

Deno.test("chooseChunkSize() grows the chunk size so the manifest stays under 1 MiB", () => {
  assert.equal(chooseChunkSize(0), 256 * 1024);
  assert.equal(chooseChunkSize(100 * 1024 ** 2), 256 * 1024);
  assert.ok(chooseChunkSize(8 * 1024 ** 3) > 256 * 1024);
  assert.equal(chooseChunkSize(1024 ** 4), 1024 * 1024);
});
