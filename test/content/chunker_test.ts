import assert from "node:assert/strict";
import { chunkStream } from "../../src/content/chunker.ts";

async function* pieces(sizes: number[]): AsyncGenerator<Uint8Array> {
  let n = 0;
  for (const size of sizes) {
    const piece = new Uint8Array(size);
    for (let i = 0; i < size; i++) piece[i] = n++ & 0xff;
    yield piece;
  }
}

async function chunksOf(sizes: number[], chunkSize: number): Promise<Uint8Array[]> {
  const out = [];
  for await (const c of chunkStream(pieces(sizes), chunkSize)) out.push(c);
  return out;
}

Deno.test("chunkStream() cuts any piece sizes into full chunks and one short tail", async () => {
  for (
    const sizes of [[10], [3, 3, 3, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [25], [0, 7, 0, 13]]
  ) {
    const total = sizes.reduce((a, b) => a + b, 0);
    const chunks = await chunksOf(sizes, 4);
    assert.deepEqual(
      chunks.map((c) => c.length),
      Array.from({ length: Math.ceil(total / 4) }, (_, i) => Math.min(4, total - i * 4)),
    );
    const joined = chunks.flatMap((c) => [...c]);
    assert.deepEqual(joined, Array.from({ length: total }, (_, i) => i & 0xff));
  }
});

Deno.test("chunkStream() yields nothing for an empty source and fresh arrays otherwise", async () => {
  assert.deepEqual(await chunksOf([], 4), []);
  assert.deepEqual(await chunksOf([0, 0], 4), []);
  const chunks = await chunksOf([8], 4);
  assert.notEqual(chunks[0]!.buffer, chunks[1]!.buffer);
});

Deno.test("chunkStream() refuses chunk sizes outside 1..1 MiB", async () => {
  for (const bad of [0, -1, 1.5, (1 << 20) + 1, NaN]) {
    await assert.rejects(() => chunksOf([1], bad), RangeError);
  }
});
