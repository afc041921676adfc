/**
 * The volunteer quota with real libp2p peers on loopback: a peer that floods `put`s is refused past its quota
 * (`quota_exceeded`), also after the node restarts, while other peers are not; an uploader whose chunks are
 * refused keeps them itself.
 */
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { MIN_CHARGE_BYTES, VolunteerQuota } from "../../src/mesh/quota.ts";
import { MeshgateNode } from "../../src/node.ts";
import { collect, pattern, patternStream } from "../_util.ts";
import { randomBytes, startNode, stopNodes, TCP } from "./_helpers.ts";

const KiB = 1024;

/** A MeshgateNode in the mesh, storing under `dir`. */
function meshgate(dir: string, volunteerQuotaBytes?: number, volunteerQuotaChunks?: number) {
  return MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    volunteerQuotaBytes,
    volunteerQuotaChunks,
    mesh: { listen: [TCP] },
  });
}

const chunks = (n: number, size = 4 * KiB) =>
  Array.from({ length: n }, () => {
    const bytes = randomBytes(size);
    return { cid: cidOf(bytes), bytes };
  });

Deno.test({
  name: "a peer that floods puts is refused past its quota, also after a restart; others are not",
  // MeshgateNode's store and libp2p timers are checked by the node's own tests.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-quota-" });
    let node = await meshgate(dir, 64 * KiB);
    const flooder = await startNode();
    const other = await startNode();
    try {
      // 40 chunks of 4 KiB in four parallel streams: exactly 16 fit in 64 KiB, whatever the interleaving.
      const flood = chunks(40);
      const target = node.mesh!.multiaddrs()[0]!;
      const results = (await Promise.all(
        [0, 1, 2, 3].map((i) => flooder.storeChunks(target, flood.slice(i * 10, i * 10 + 10))),
      )).flat();
      const accepted = results.filter((r) => r.accepted);
      const refused = results.filter((r) => !r.accepted);
      assert.equal(accepted.length, 16);
      assert.ok(refused.every((r) => r.reason === "quota_exceeded"), JSON.stringify(refused[0]));
      assert.match(
        refused[0]!.message!,
        /has used 64 KiB of its 64 KiB volunteer quota on this node/,
      );
      for (const r of results) assert.equal(await node.store.has(r.cid), r.accepted);
      // A chunk the node already holds costs nothing, so it is accepted even now.
      assert.ok(
        (await flooder.storeChunks(target, [flood.find((_, i) => results[i]!.accepted)!]))[0]!
          .accepted,
      );

      // Another peer has a quota of its own; a tiny chunk is charged as a whole block.
      const [tiny] = chunks(1, 3);
      assert.ok((await other.storeChunks(target, [tiny!]))[0]!.accepted);

      // The counts live in the data directory: a restart does not reset them.
      await node.stop();
      node = await meshgate(dir, 64 * KiB);
      const again = await flooder.storeChunks(node.mesh!.multiaddrs()[0]!, chunks(1));
      assert.equal(again[0]!.reason, "quota_exceeded");
      assert.throws(() => VolunteerQuota.open(dir, -1), RangeError);
      const quota = VolunteerQuota.open(dir, 64 * KiB);
      try {
        assert.equal(quota.used(flooder.peerId), 64 * KiB);
        assert.equal(quota.used(other.peerId), MIN_CHARGE_BYTES);
      } finally {
        quota.close();
      }
    } finally {
      await node.stop();
      await stopNodes(flooder, other);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "an uploader keeps the chunks a peer refuses for its quota",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-quota-" });
    const a = await meshgate(`${dir}/a`);
    const b = await meshgate(`${dir}/b`, 0); // keeps nothing for anyone
    try {
      await a.mesh!.connect(b.mesh!.multiaddrs()[0]!);
      const size = 64 * KiB;
      const { cid, manifest } = await a.put(patternStream(size, 5), {
        k: 2,
        m: 1,
        chunkSize: 4 * KiB,
      });
      const all = manifest.stripes.flat();
      assert.ok(a.stats().refused >= all.length / 3, `B refused ${a.stats().refused} chunks`);
      for (const c of all) assert.ok(await a.store.has(c), `A kept ${c}`);
      for (const c of all) assert.ok(!(await b.store.has(c)), `B holds nothing: ${c}`);
      await b.stop();
      assert.deepEqual(await collect(a.read(await a.manifest(cid))), pattern(0, size, 5));
    } finally {
      await a.stop();
      await b.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "2,048 tiny puts from one peer are refused past its quota in chunks, and cost whole blocks",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-quota-" });
    // The byte quota (1 GiB default) is nowhere near: only the count of files stops the flood.
    const node = await meshgate(dir, undefined, 1024);
    const flooder = await startNode();
    try {
      // 2,048 distinct 3-byte chunks (random ones would collide now and then, and a held one is free).
      const base = Math.floor(Math.random() * 2 ** 24);
      const flood = Array.from({ length: 2048 }, (_, i) => {
        const n = (base + i) % 2 ** 24;
        const bytes = new Uint8Array([n >> 16, (n >> 8) & 255, n & 255]);
        return { cid: cidOf(bytes), bytes };
      });
      const target = node.mesh!.multiaddrs()[0]!;
      const results = (await Promise.all(
        [0, 1, 2, 3].map((i) => flooder.storeChunks(target, flood.slice(i * 512, i * 512 + 512))),
      )).flat();
      const accepted = results.filter((r) => r.accepted);
      const refused = results.filter((r) => !r.accepted);
      assert.equal(accepted.length, 1024);
      assert.ok(refused.every((r) => r.reason === "quota_exceeded"), JSON.stringify(refused[0]));
      assert.match(refused[0]!.message!, /has used 1024 of its 1024 chunks of volunteer quota/);
      // What the store counts toward its cap is what the chunks take on disk: a block each.
      const stats = node.store.stats();
      assert.equal(stats.chunks, 1024);
      assert.equal(stats.bytes, 1024 * 3);
      assert.equal(stats.usedBytes, 1024 * 4 * KiB);
      assert.throws(() => VolunteerQuota.open(dir, 1, -1), RangeError);
    } finally {
      await node.stop();
      await stopNodes(flooder);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a full store evicts the oldest chunks kept for peers, never its own upload's",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-evict-" });
    // 16 blocks of 4 KiB.
    const node = await MeshgateNode.create({
      dataDir: dir,
      parityWorkers: 0,
      maxStoreBytes: 64 * KiB,
      mesh: { listen: [TCP] },
    });
    let flooder: Awaited<ReturnType<typeof startNode>> | undefined;
    try {
      // The node's own upload, while alone (so it keeps every chunk): 2 data + 1 parity + the manifest.
      const { cid, manifest } = await node.put(patternStream(8 * KiB, 7), {
        k: 2,
        m: 1,
        chunkSize: 4 * KiB,
      });
      const own = [cid, ...manifest.stripes.flat()];
      assert.equal(node.store.stats().usedBytes, 16 * KiB);

      flooder = await startNode();
      const target = node.mesh!.multiaddrs()[0]!;
      const older = chunks(12);
      const newer = chunks(12);
      const first = await flooder.storeChunks(target, older);
      assert.ok(first.every((r) => r.accepted), JSON.stringify(first.find((r) => !r.accepted)));
      assert.equal(node.store.stats().usedBytes, 64 * KiB, "the store is full");
      // Full: each new chunk evicts the oldest kept for a peer.
      const second = await flooder.storeChunks(target, newer);
      assert.ok(second.every((r) => r.accepted), JSON.stringify(second.find((r) => !r.accepted)));
      for (const c of newer) assert.ok(await node.store.has(c.cid), "the newer chunks are kept");
      for (const c of older) assert.ok(!(await node.store.has(c.cid)), "the older ones evicted");
      for (const c of own) assert.ok(await node.store.has(c), `own chunk ${c} kept`);
      assert.ok(node.store.stats().usedBytes <= 64 * KiB);
      assert.deepEqual(await collect(node.read(await node.manifest(cid))), pattern(0, 8 * KiB, 7));

      // A chunk larger than the whole cap is refused without evicting anything for it.
      const big = await flooder.storeChunks(target, chunks(1, 80 * KiB));
      assert.equal(big[0]!.reason, "store_full");
    } finally {
      await node.stop();
      if (flooder) await stopNodes(flooder);
    }
    // Evicted chunks gave the peer its quota back.
    const quota = VolunteerQuota.open(dir);
    try {
      assert.equal(quota.usedChunks(flooder!.peerId), 12);
      assert.equal(quota.used(flooder!.peerId), 12 * 4 * KiB);
    } finally {
      quota.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
