import assert from "node:assert/strict";
import { CID, cidOf, matchesCid } from "../../src/content/cid.ts";
import type { Manifest } from "../../src/content/manifest.ts";
import { MeshgateNode } from "../../src/node.ts";
import { type RepairProgress, repairStore } from "../../src/store/repair.ts";
import { ChunkStore } from "../../src/store/store.ts";
import { collect, pattern, patternStream } from "../_util.ts";

const CHUNK = 1024;
const K = 4;
const M = 2;

interface Stored {
  cid: CID;
  manifest: Manifest;
  size: number;
  seed: number;
}

/** Puts files of `sizes` through a real node into a fresh data directory, then stops the node. */
async function setup(sizes: number[]): Promise<{ dir: string; files: Stored[] }> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-repair-" });
  const node = await MeshgateNode.create({ dataDir: dir });
  const files: Stored[] = [];
  try {
    for (const [i, size] of sizes.entries()) {
      const seed = 100 + i;
      const { cid, manifest } = await node.put(patternStream(size, seed, 777), {
        chunkSize: CHUNK,
        k: K,
        m: M,
        name: `f${i}.bin`,
      });
      files.push({ cid, manifest, size, seed });
    }
  } finally {
    await node.stop();
  }
  return { dir, files };
}

function chunkPath(dir: string, cid: CID): string {
  const key = cid.toString();
  return `${dir}/chunks/${key.slice(-2)}/${key}`;
}

/** The bytes of every chunk of every stripe, read while the store is whole. */
async function snapshot(dir: string, files: Stored[]): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const { manifest } of files) {
    for (const cid of manifest.stripes.flat()) {
      out.set(cid.toString(), await Deno.readFile(chunkPath(dir, cid)));
    }
  }
  return out;
}

/** Deletes the chunk file, or (`corrupt`) flips one of its bytes in place. */
async function damage(dir: string, cid: CID, corrupt: boolean): Promise<void> {
  const path = chunkPath(dir, cid);
  if (!corrupt) return await Deno.remove(path);
  const bytes = await Deno.readFile(path);
  bytes[bytes.length >> 1]! ^= 0x5a;
  await Deno.writeFile(path, bytes);
}

/** Asserts every chunk file of every stripe is back, with exactly its original bytes. */
async function assertWhole(dir: string, files: Stored[], original: Map<string, Uint8Array>) {
  for (const { manifest } of files) {
    for (const cid of manifest.stripes.flat()) {
      const bytes = await Deno.readFile(chunkPath(dir, cid));
      assert.deepEqual(bytes, original.get(cid.toString()), `${cid}`);
    }
  }
}

async function withSetup(
  sizes: number[],
  fn: (dir: string, files: Stored[], original: Map<string, Uint8Array>) => Promise<void>,
) {
  const { dir, files } = await setup(sizes);
  try {
    await fn(dir, files, await snapshot(dir, files));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// 14 data chunks: stripes of 4+2, 4+2, 4+2 and a last one of 2+2 whose second chunk is short; then
// 8 chunks in two stripes; then 4 chunks, the last of them 1 byte, in one stripe.
const SIZES = [13 * CHUNK + 500, 8 * CHUNK, 3 * CHUNK + 1];

Deno.test("repairStore() rebuilds up to m deleted or corrupt chunks of every stripe, data and parity", () =>
  withSetup(SIZES, async (dir, files, original) => {
    let lost = 0;
    let corrupted = 0;
    let checked = 0;
    let stripes = 0;
    for (const { manifest } of files) {
      for (const [s, cids] of manifest.stripes.entries()) {
        stripes++;
        checked += cids.length;
        // Vary the pattern: both data, data and parity, both parity; deleted and corrupt.
        const n = cids.length;
        const picks = [[0, 1], [1, n - 1], [n - 2, n - 1]][s % 3]!.slice(0, M);
        for (const [j, at] of picks.entries()) {
          const corrupt = (s + j) % 2 === 1;
          await damage(dir, cids[at]!, corrupt);
          lost++;
          if (corrupt) corrupted++;
        }
      }
    }
    const store = await ChunkStore.open(dir);
    const before = store.stats().chunks;
    const report = await repairStore(store);
    assert.deepEqual(report, {
      roots: 3,
      stripes,
      chunksChecked: checked,
      missing: lost,
      repaired: lost,
      unrecoverable: [],
      manifestsMissing: [],
    });
    assert.equal(stripes, 4 + 2 + 1);
    assert.equal(store.stats().corrupt, corrupted, "corrupt chunks were quarantined");
    assert.equal(store.stats().chunks, before - corrupted + lost);
    assert.equal([...Deno.readDirSync(`${dir}/corrupt`)].length, corrupted);
    await assertWhole(dir, files, original);

    const again = await repairStore(store);
    assert.equal(again.missing, 0, "a second pass finds nothing to do");
    assert.equal(again.chunksChecked, checked);
    await store.close();

    // The files read back whole through a node.
    const node = await MeshgateNode.create({ dataDir: dir });
    try {
      for (const { cid, size, seed } of files) {
        const bytes = await collect(node.read(await node.manifest(cid)));
        assert.deepEqual(bytes, pattern(0, size, seed));
      }
    } finally {
      await node.stop();
    }
  }));

Deno.test("repairStore() reports a stripe with more than m losses and repairs everything else", () =>
  withSetup(SIZES, async (dir, files, original) => {
    const [a, b] = files;
    const bad = a!.manifest.stripes[1]!;
    const gone = [bad[0]!, bad[2]!, bad[K]!]; // m + 1 = 3 of one stripe
    for (const [i, cid] of gone.entries()) await damage(dir, cid, i === 1);
    await damage(dir, a!.manifest.stripes[0]![3]!, false);
    await damage(dir, a!.manifest.stripes[3]![1]!, true); // the short chunk of the 2+2 stripe
    await damage(dir, b!.manifest.stripes[1]![K + 1]!, false);

    const store = await ChunkStore.open(dir);
    const report = await repairStore(store);
    assert.deepEqual(report.unrecoverable, [{ root: a!.cid.toString(), stripe: 1 }]);
    assert.equal(report.missing, 6);
    assert.equal(report.repaired, 3);
    assert.deepEqual(report.manifestsMissing, []);
    await store.close();

    for (const cid of gone) {
      assert.equal(await Deno.stat(chunkPath(dir, cid)).catch(() => null), null, "still lost");
    }
    const survivors = bad.filter((cid) => !gone.includes(cid));
    await assertWhole(dir, [b!, files[2]!], original);
    const rest = a!.manifest.stripes.filter((_, i) => i !== 1).flat().concat(survivors);
    for (const cid of rest) {
      assert.deepEqual(await Deno.readFile(chunkPath(dir, cid)), original.get(cid.toString()));
    }
  }));

Deno.test("repairStore() reports missing and corrupt manifests and checks raw roots", () =>
  withSetup(SIZES, async (dir, files) => {
    const [a, b, c] = files;
    await damage(dir, a!.cid, false);
    await damage(dir, b!.cid, true);
    await damage(dir, c!.manifest.stripes[0]![0]!, false);

    const store = await ChunkStore.open(dir);
    const keep = new Uint8Array([1, 2, 3]);
    const kept = cidOf(keep);
    const lost = cidOf(new Uint8Array([4, 5, 6]));
    await store.put(kept, keep);
    await store.pin(kept);
    await store.put(lost, new Uint8Array([4, 5, 6]));
    await store.pin(lost);
    await store.delete(lost);

    const report = await repairStore(store);
    assert.deepEqual(report.manifestsMissing.toSorted(), [`${a!.cid}`, `${b!.cid}`].toSorted());
    assert.deepEqual(report.unrecoverable, [{ root: `${lost}`, stripe: 0 }]);
    assert.equal(report.roots, 5);
    assert.equal(report.stripes, 1 + 2, "one stripe of file c, one per raw root");
    assert.equal(report.chunksChecked, 6 + 2);
    assert.equal(report.missing, 1 + 1);
    assert.equal(report.repaired, 1);
    assert.equal(store.stats().corrupt, 1, "the corrupt manifest went to corrupt/");
    await store.close();
  }));

Deno.test("repairStore() reports progress per stripe, stops on abort, and takes given roots", () =>
  withSetup(SIZES, async (dir, files, original) => {
    for (const { manifest } of files) {
      for (const cids of manifest.stripes) await damage(dir, cids.at(-1)!, false);
    }
    const store = await ChunkStore.open(dir);
    try {
      // Only the second file, as given.
      const events: RepairProgress[] = [];
      const one = await repairStore(store, {
        roots: [files[1]!.cid],
        onProgress: (p) => events.push(p),
      });
      assert.equal(one.roots, 1);
      assert.equal(one.repaired, 2);
      assert.deepEqual(events.map((e) => [e.stripe, e.done, e.total, e.missing, e.repaired]), [
        [0, 1, 2, 1, 1],
        [1, 2, 2, 1, 1],
      ]);
      assert.ok(events.every((e) => e.root === `${files[1]!.cid}` && !e.unrecoverable));
      await assertWhole(dir, [files[1]!], original);

      // Aborted after the second stripe: two stripes repaired, durable, and the rest left alone.
      const abort = new AbortController();
      const seen: number[] = [];
      await assert.rejects(
        repairStore(store, {
          signal: abort.signal,
          onProgress: (p) => {
            seen.push(p.done);
            if (p.done === 2) abort.abort();
          },
        }),
        (e: unknown) => e instanceof DOMException && e.name === "AbortError",
      );
      assert.deepEqual(seen, [1, 2]);
      assert.equal(seen.length, 2);
      const left = await repairStore(store, { roots: [files[0]!.cid, files[2]!.cid] });
      assert.equal(left.missing, 4 + 1 - 2, "the aborted pass had repaired two stripes");

      // Already aborted: no work at all.
      const reason = new Error("stop now");
      await assert.rejects(
        repairStore(store, { signal: AbortSignal.abort(reason) }),
        (e) => e === reason,
      );
      await assertWhole(dir, files, original);
    } finally {
      await store.close();
    }
  }));

Deno.test("repairStore() on a whole store changes nothing", () =>
  withSetup(SIZES, async (dir, files, original) => {
    const store = await ChunkStore.open(dir);
    const before = store.stats();
    const report = await repairStore(store);
    assert.deepEqual(report, {
      roots: 3,
      stripes: 7,
      chunksChecked: original.size,
      missing: 0,
      repaired: 0,
      unrecoverable: [],
      manifestsMissing: [],
    });
    assert.deepEqual(store.stats(), before);
    assert.equal((await repairStore(store, { roots: [] })).stripes, 0);
    const dagPb = CID.createV1(0x70, files[0]!.cid.multihash);
    await assert.rejects(
      repairStore(store, { roots: [dagPb] }),
      /neither a raw chunk nor a dag-json/,
    );
    await store.close();
    for (const cid of files.flatMap((f) => f.manifest.stripes.flat())) {
      assert.ok(matchesCid(cid, original.get(`${cid}`)!));
    }
  }));

Deno.test("repairStore() cannot rebuild a one-chunk stripe locally: its parity is the chunk itself", () =>
  withSetup([4 * CHUNK + 10], async (dir, [file]) => {
    // With one data chunk, every parity row of the code is 1: parity = the chunk, so one CID three times.
    const last = file!.manifest.stripes[1]!;
    assert.equal(last.length, 1 + M);
    assert.ok(last.every((cid) => cid.equals(last[0]!)));
    await damage(dir, last[0]!, false);
    const store = await ChunkStore.open(dir);
    const report = await repairStore(store);
    await store.close();
    assert.deepEqual(report.unrecoverable, [{ root: `${file!.cid}`, stripe: 1 }]);
    assert.equal(report.missing, 3, "counted per position");
    assert.equal(report.chunksChecked, 6 + 3);
  }));
