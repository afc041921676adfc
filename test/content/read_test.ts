import assert from "node:assert/strict";
import type { CID } from "../../src/content/cid.ts";
import { ingest } from "../../src/content/ingest.ts";
import { readFile, UnrecoverableError } from "../../src/content/read.ts";
import { collect, pattern, patternStream } from "../_util.ts";

Deno.test("readFile() asks failed chunks once more before it declares a stripe lost", async () => {
  const chunks = new Map<string, Uint8Array>();
  const sink = (cid: CID, bytes: Uint8Array) => Promise.resolve(void chunks.set(`${cid}`, bytes));
  const size = 4 * 1024;
  const { manifest } = await ingest(patternStream(size), sink, { chunkSize: 1024, k: 2, m: 1 });
  // Every chunk is missing the first time it is asked for (its holder was restarting), there the next.
  const asked = new Map<string, number>();
  const flaky = (cid: CID) => {
    const n = (asked.get(`${cid}`) ?? 0) + 1;
    asked.set(`${cid}`, n);
    return Promise.resolve(n === 1 ? null : chunks.get(`${cid}`) ?? null);
  };
  assert.deepEqual(await collect(readFile(manifest, flaky)), pattern(0, size));
  // Chunks that are really gone still fail, after that one extra round.
  chunks.delete(`${manifest.stripes[0]![0]}`);
  chunks.delete(`${manifest.stripes[0]![1]}`);
  await assert.rejects(() => collect(readFile(manifest, flaky)), UnrecoverableError);
});
