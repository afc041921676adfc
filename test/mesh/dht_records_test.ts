/**
 * The DHT's records: kept in `<data>/mesh.sqlite` across restarts, republished before they expire, and
 * withdrawn (then lapsed on other peers) when the content goes away.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Key } from "interface-datastore";
import { type CID, cidOf } from "../../src/content/cid.ts";
import { SqliteDatastore } from "../../src/mesh/datastore.ts";
import { ownProviderEntries, providerEntryName, type ProviderInfo } from "../../src/mesh/dht.ts";
import type { MeshNode, MeshNodeInit } from "../../src/mesh/node.ts";
import { ProvideQueue } from "../../src/mesh/provide.ts";
import { ChunkStore } from "../../src/store/store.ts";
import { MeshgateNode } from "../../src/node.ts";
import { randomBytes, SANITIZE, startNode, stopNodes, TCP, waitFor } from "./_helpers.ts";

async function firstProvider(node: MeshNode, cid: CID): Promise<ProviderInfo | undefined> {
  for await (const p of node.findProviders(cid, { signal: AbortSignal.timeout(5000) })) return p;
}

/** Whether `holder` keeps a provider record of `provider` for `cid` in its datastore. */
async function keepsRecord(holder: MeshNode, cid: CID, provider: MeshNode): Promise<boolean> {
  return await holder.datastore.has(
    new Key(`/dht/provider/${await providerEntryName(cid)}/${provider.peerId}`),
  );
}

/** A record sent is stored once the holder has handled the message, which may be just after `provide`
 * resolved: poll for a while. */
async function storesRecord(holder: MeshNode, cid: CID, provider: MeshNode): Promise<boolean> {
  for (const end = Date.now() + 5000; Date.now() < end;) {
    if (await keepsRecord(holder, cid, provider)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

async function ownNames(node: MeshNode): Promise<string[]> {
  const names = [];
  for await (const e of ownProviderEntries(node.datastore, node.peerId)) names.push(e.name);
  return names;
}

Deno.test("SqliteDatastore: get/has/delete, prefix queries across pages, batches, reopen", async () => {
  const dir = await Deno.makeTempDir();
  const path = join(dir, "ds.sqlite");
  let ds = new SqliteDatastore(path);
  try {
    for (let i = 0; i < 1200; i++) {
      ds.put(new Key(`/a/${String(i).padStart(4, "0")}`), Uint8Array.of(i));
    }
    ds.put(new Key("/ab"), Uint8Array.of(1));
    ds.put(new Key("/b/x"), Uint8Array.of(2));
    assert.deepEqual(ds.get(new Key("/b/x")), Uint8Array.of(2));
    assert.ok(ds.has(new Key("/ab")));
    assert.throws(() => ds.get(new Key("/nope")), { name: "NotFoundError" });
    // Deleting while iterating (kad-dht's sweep does) sees every key once.
    let seen = 0;
    for await (const { key } of ds.query({ prefix: "/a/" })) {
      seen++;
      ds.delete(key);
    }
    assert.equal(seen, 1200);
    assert.deepEqual((await Array.fromAsync(ds.queryKeys({}))).map(String), ["/ab", "/b/x"]);
    const batch = ds.batch();
    batch.put(new Key("/c"), Uint8Array.of(3));
    batch.delete(new Key("/ab"));
    await batch.commit();
    ds.close();
    ds = new SqliteDatastore(path);
    assert.deepEqual((await Array.fromAsync(ds.queryKeys({}))).map(String), ["/b/x", "/c"]);
  } finally {
    ds.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  ...SANITIZE,
  name:
    "DHT records survive a restart: routing table peers, records kept for others, own provide list",
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const cid = cidOf(randomBytes(1000));
    const nodes: MeshNode[] = [];
    const start = async (init: MeshNodeInit) => {
      const node = await startNode(init);
      nodes.push(node);
      return node;
    };
    try {
      const a = await start({ dataDir: join(dir, "a") });
      const p = await start({ dataDir: join(dir, "p"), bootstrap: a.multiaddrs() });
      await waitFor(() => a.routingTableSize() >= 1 && p.routingTableSize() >= 1, "routing tables");
      await p.provide(cid, { signal: AbortSignal.timeout(10_000) });
      assert.ok(await keepsRecord(a, cid, p));

      // A restarts with no bootstrap peer: its routing table comes back from the peer store.
      await a.stop();
      const a2 = await start({ dataDir: join(dir, "a") });
      assert.equal(a2.peerId, a.peerId);
      await waitFor(() => a2.routingTableSize() >= 1, "the restored routing table", 10_000);

      // P restarts: its provide list (what kad-dht republishes) is still there.
      await p.stop();
      const p2 = await start({ dataDir: join(dir, "p") });
      assert.deepEqual(await ownNames(p2), [await providerEntryName(cid)]);
      await p2.stop();

      // With P down, A (restarted again) still serves P's record, addresses included, to a newcomer.
      await a2.stop();
      const a3 = await start({ dataDir: join(dir, "a") });
      const finder = await start({ bootstrap: a3.multiaddrs() });
      await waitFor(() => finder.routingTableSize() >= 1, "the finder's routing table");
      const found = await firstProvider(finder, cid);
      assert.equal(found?.peerId, p.peerId);
      assert.ok(found.multiaddrs.length > 0);
    } finally {
      await stopNodes(...nodes);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...SANITIZE,
  name:
    "ProvideQueue: records are republished before they expire; withdrawn ones lapse on other peers",
  fn: async () => {
    // Lifetimes in seconds instead of days: records live 3 s, are republished when older than 1 s.
    const dht = { providerValidityMs: 3000, republishThresholdMs: 2000, republishIntervalMs: 400 };
    const nodes: MeshNode[] = [];
    let queue: ProvideQueue | undefined;
    try {
      const a = await startNode({ dht });
      nodes.push(a);
      const p = await startNode({ dht, bootstrap: a.multiaddrs() });
      nodes.push(p);
      const kept = cidOf(randomBytes(100));
      const dropped = cidOf(randomBytes(100));
      queue = new ProvideQueue(p);
      // Queued before the routing table has a peer: the queue waits instead of failing.
      queue.add([kept, dropped]);
      await waitFor(() => p.routingTableSize() >= 1, "routing table");
      await queue.idle();
      assert.deepEqual(queue.stats().provided, 2);
      assert.ok(await storesRecord(a, kept, p));
      assert.ok(await storesRecord(a, dropped, p));

      await queue.withdraw([dropped]);
      assert.deepEqual(await ownNames(p), [await providerEntryName(kept)]);

      // Two lifetimes later: the kept record was republished, the withdrawn one expired and was swept.
      await new Promise((resolve) => setTimeout(resolve, 6500));
      assert.ok(await keepsRecord(a, kept, p), "a republished record is still kept");
      assert.ok(!(await keepsRecord(a, dropped, p)), "a withdrawn record lapses");
      assert.equal((await firstProvider(a, kept))?.peerId, p.peerId);
    } finally {
      queue?.stop();
      await stopNodes(...nodes);
    }
  },
});

Deno.test({
  name:
    "At start a node announces held blocks without a record and drops records of blocks it lost",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const server = await startNode();
    const open = () =>
      MeshgateNode.create({
        dataDir: dir,
        parityWorkers: 0,
        mesh: { listen: [TCP], bootstrap: server.multiaddrs() },
      });
    let node: MeshgateNode | undefined;
    try {
      node = await open();
      // The server keeps nothing, so every block of the upload stays here and is announced.
      const { cid } = await node.put(ReadableStream.from([randomBytes(3000)]), {
        chunkSize: 1024,
        k: 2,
        m: 1,
      });
      await node.announcements!.idle();
      const announced = await ownNames(node.mesh!);
      assert.ok(announced.includes(await providerEntryName(cid)));
      await node.stop();

      // While the node is down, one block is lost and one arrives without being announced.
      const store = await ChunkStore.open(dir);
      const gone = (await Array.fromAsync(store.cids())).find((c) => !c.equals(cid))!;
      await store.delete(gone);
      const extra = randomBytes(500);
      const added = cidOf(extra);
      await store.put(added, extra);
      await store.flush();
      await store.close();

      node = await open();
      const want = new Set(announced);
      want.delete(await providerEntryName(gone));
      want.add(await providerEntryName(added));
      const deadline = Date.now() + 15_000;
      for (;;) {
        const now = await ownNames(node.mesh!);
        if (now.length === want.size && now.every((n) => want.has(n))) break;
        assert.ok(Date.now() < deadline, `the provide list ${now} matches the store ${[...want]}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      await node?.stop();
      await stopNodes(server);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  ...SANITIZE,
  name: "ProvideQueue waits while the node is busy, and not longer than maxDeferMs",
  fn: async () => {
    const nodes: MeshNode[] = [];
    let queue: ProvideQueue | undefined;
    try {
      nodes.push(await startNode());
      nodes.push(await startNode({ bootstrap: nodes[0]!.multiaddrs() }));
      const p = nodes[1]!;
      await waitFor(() => p.routingTableSize() >= 1, "routing table");
      queue = new ProvideQueue(p, { settleMs: 300, maxDeferMs: 2000 });
      queue.add([cidOf(randomBytes(100))]);
      // Serving chunks every 100 ms: the announcement defers, then runs once maxDeferMs has passed.
      const t0 = performance.now();
      const busy = setInterval(() => queue!.touch(), 100);
      await new Promise((resolve) => setTimeout(resolve, 1200));
      assert.equal(queue.stats().provided, 0, "nothing announced while busy");
      await queue.idle();
      clearInterval(busy);
      assert.equal(queue.stats().provided, 1);
      assert.ok(performance.now() - t0 >= 2000);
      // Quiet: the next one goes after settleMs.
      const t1 = performance.now();
      queue.add([cidOf(randomBytes(100))]);
      await queue.idle();
      assert.ok(performance.now() - t1 < 2000);
      assert.equal(queue.stats().provided, 2);
    } finally {
      queue?.stop();
      await stopNodes(...nodes);
    }
  },
});
