import { httpStatus } from "../../edge/errors.ts";
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { ChunkStore, StoreFullError } from "../../src/store/store.ts";
import { randomBytes } from "../_util.ts";

async function withStore(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ChunkStore keeps, finds, verifies and deletes chunks", () =>
  withStore(async (dir) => {
    const store = await ChunkStore.open(dir);
    const bytes = randomBytes(5000);
    const cid = cidOf(bytes);
    assert.equal(await store.has(cid), false);
    assert.equal(await store.get(cid), null);
    assert.equal(await store.put(cid, bytes), true);
    assert.equal(await store.put(cid, bytes), false, "second put is a no-op");
    assert.equal(await store.has(cid), true);
    assert.deepEqual(await store.get(cid), bytes);
    assert.deepEqual(store.stats(), {
      chunks: 1,
      bytes: 5000,
      usedBytes: 8192, // two 4 KiB blocks
      maxBytes: store.maxBytes,
      corrupt: 0,
      pins: 0,
    });
    const listed = [];
    for await (const c of store.cids()) listed.push(c.toString());
    assert.deepEqual(listed, [cid.toString()]);
    assert.equal(await store.delete(cid), true);
    assert.equal(await store.delete(cid), false);
    assert.equal(store.stats().bytes, 0);
  }));

Deno.test("ChunkStore refuses bytes that do not match the CID", () =>
  withStore(async (dir) => {
    const store = await ChunkStore.open(dir);
    const cid = cidOf(new Uint8Array([1, 2, 3]));
    await assert.rejects(() => store.put(cid, new Uint8Array([1, 2, 4])), /do not match/);
    assert.equal(store.stats().chunks, 0);
  }));

Deno.test("ChunkStore quarantines a chunk corrupted on disk and never serves it", () =>
  withStore(async (dir) => {
    const store = await ChunkStore.open(dir);
    const bytes = randomBytes(1000);
    const cid = cidOf(bytes);
    await store.put(cid, bytes);
    const key = cid.toString();
    const path = `${dir}/chunks/${key.slice(-2)}/${key}`;
    const bad = bytes.slice();
    bad[500]! ^= 0x40;
    await Deno.writeFile(path, bad);
    assert.equal(await store.get(cid), null);
    assert.equal(await store.has(cid), false);
    const evidence = [...Deno.readDirSync(`${dir}/corrupt`)];
    assert.equal(evidence.length, 1);
    assert.deepEqual(await Deno.readFile(`${dir}/corrupt/${evidence[0]!.name}`), bad);
    assert.equal(store.stats().corrupt, 1);
    assert.equal(store.stats().chunks, 0);
    assert.equal(await store.put(cid, bytes), true, "a good copy can be stored again");
  }));

Deno.test("ChunkStore refuses writes past its cap, counting concurrent writes together", () =>
  withStore(async (dir) => {
    // Each 3000-byte chunk costs one 4 KiB block: three fit.
    const store = await ChunkStore.open(dir, { maxBytes: 12_288 });
    const chunks = Array.from({ length: 5 }, () => randomBytes(3000));
    const results = await Promise.allSettled(chunks.map((b) => store.put(cidOf(b), b)));
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 3);
    const refused = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    assert.ok(refused.reason instanceof StoreFullError);
    assert.equal(httpStatus(refused.reason), 507);
    assert.match(refused.reason.message, /12 KiB cap/);
    assert.equal(store.stats().bytes, 9000);
    assert.equal(store.stats().usedBytes, 12_288);
    await assert.rejects(() => ChunkStore.open(dir, { maxBytes: 0 }), RangeError);
  }));

Deno.test("ChunkStore writes one chunk once under concurrent puts", () =>
  withStore(async (dir) => {
    const store = await ChunkStore.open(dir);
    const bytes = randomBytes(2000);
    const cid = cidOf(bytes);
    const results = await Promise.all(Array.from({ length: 10 }, () => store.put(cid, bytes)));
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(store.stats().bytes, 2000);
  }));

Deno.test("ChunkStore.flush waits for a directory sync under way that took its rename", () =>
  withStore(async (dir) => {
    const store = await ChunkStore.open(dir);
    for (let i = 0; i < 8; i++) {
      const bytes = randomBytes(1000);
      await store.put(cidOf(bytes), bytes);
    }
    // The first flush takes every directory to sync; a second one, called at once, must not report them
    // durable before that sync is done (a holder acknowledges a chunk when its flush resolves).
    let first = false;
    const syncing = store.flush().then(() => first = true);
    await store.flush();
    assert.equal(first, true, "the second flush resolved before the sync under way");
    await syncing;
  }));

Deno.test("ChunkStore keeps pins and usage across reopen and clears unfinished writes", () =>
  withStore(async (dir) => {
    const store = await ChunkStore.open(dir);
    const a = randomBytes(100), b = randomBytes(200);
    await store.put(cidOf(a), a);
    await store.put(cidOf(b), b);
    await Promise.all([store.pin(cidOf(a)), store.pin(cidOf(b))]);
    await store.unpin(cidOf(b));
    await store.close();
    await Deno.writeFile(`${dir}/tmp/leftover-from-a-crash`, randomBytes(10));

    const again = await ChunkStore.open(dir);
    assert.deepEqual(again.pins().map(String), [cidOf(a).toString()]);
    assert.ok(again.isPinned(cidOf(a)));
    assert.equal(again.stats().chunks, 2);
    assert.equal(again.stats().bytes, 300);
    assert.deepEqual([...Deno.readDirSync(`${dir}/tmp`)], []);

    await Deno.writeTextFile(`${dir}/pins.json`, "[not json");
    await assert.rejects(() => ChunkStore.open(dir), /pins\.json/);
  }));
