/**
 * Peer standing with real libp2p nodes on loopback: a peer that served bad bytes is not asked again by the
 * next read, and a holder that restarts is asked again as soon as it is back (not after a fixed 30 s).
 */
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { ChunkLocator, fetchFromMesh } from "../../src/mesh/fetch.ts";
import { PeerHealth } from "../../src/mesh/health.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { PeerTable } from "../../src/mesh/placement.ts";
import { MeshgateNode } from "../../src/node.ts";
import {
  MemorySource,
  randomBytes,
  SANITIZE,
  startNode,
  stopNodes,
  TCP,
  waitFor,
} from "./_helpers.ts";

/** A chunk of random bytes and its CID. */
function chunk(size = 4096) {
  const bytes = randomBytes(size);
  return { cid: cidOf(bytes), bytes };
}

Deno.test({
  name: "a peer that served flipped bytes is not asked again by the next read",
  // MeshgateNode's store and libp2p timers are checked by the node's own tests.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-health-" });
    const asked: string[] = [];
    const liarStore = new MemorySource();
    const liar = await startNode({
      store: {
        has: (c) => liarStore.has(c),
        put: (c, b) => liarStore.put(c, b),
        get: async (c) => {
          asked.push(c.toString());
          const bytes = await liarStore.get(c);
          if (!bytes) return null;
          const bad = bytes.slice();
          bad[0]! ^= 1;
          return bad;
        },
      },
    });
    const honestStore = new MemorySource();
    const honest = await startNode({ store: honestStore });
    const reader = await MeshgateNode.create({
      dataDir: dir,
      parityWorkers: 0,
      mesh: { listen: [TCP] },
    });
    try {
      await reader.mesh!.connect(liar.multiaddrs()[0]!);
      await reader.mesh!.connect(honest.multiaddrs()[0]!);
      // A: only the liar has it. The read catches the flipped bytes and finds nothing else.
      const a = chunk();
      await liarStore.put(a.cid, a.bytes);
      assert.equal(await reader.chunk(a.cid), null);
      assert.deepEqual(asked, [a.cid.toString()], "the liar was asked for A");
      // B: both have it, and the liar ranks first for it, so a reader that forgot would ask it first.
      const table = new PeerTable([liar.peerId, honest.peerId]);
      let b = chunk();
      while (table.closest(b.cid.multihash.digest, 1)[0] !== liar.peerId) b = chunk();
      await liarStore.put(b.cid, b.bytes);
      await honestStore.put(b.cid, b.bytes);
      assert.deepEqual(await reader.chunk(b.cid), b.bytes);
      assert.deepEqual(asked, [a.cid.toString()], "the liar was not asked for B");
    } finally {
      await reader.stop();
      await stopNodes(liar, honest);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A holder with a fixed identity and port, so that it can stop and come back as the same peer. */
async function holder(dataDir: string, store: MemorySource, port = 0, bootstrap: string[] = []) {
  return await startNode({ dataDir, store, listen: [`/ip4/127.0.0.1/tcp/${port}`], bootstrap });
}

const portOf = (node: MeshNode) => Number(/\/tcp\/(\d+)/.exec(node.multiaddrs()[0]!)![1]);

Deno.test({
  name: "a holder that restarts is asked again as soon as it is back",
  ...SANITIZE,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-health-" });
    const store = new MemorySource();
    const chunks = Array.from({ length: 3 }, () => chunk());
    for (const c of chunks) await store.put(c.cid, c.bytes);
    const reader = await startNode();
    const health = new PeerHealth().attach(reader.libp2p);
    const fetch = (i: number) =>
      fetchFromMesh(reader, chunks[i]!.cid, { standing: health, lookupTimeoutMs: 1000 });
    let h = await holder(dir, store);
    const port = portOf(h);
    try {
      await reader.connect(h.multiaddrs()[0]!);
      assert.deepEqual(await fetch(0), chunks[0]!.bytes);

      // Down: the read fails and the holder is skipped from then on.
      await h.stop();
      await waitFor(
        () => reader.connectedPeers().length === 0,
        "the reader to see the holder gone",
      );
      assert.equal(await fetch(0), null);
      assert.ok(health.skipped(h.peerId), "an unreachable holder is skipped");

      // Back on the same port, without dialling the reader: still skipped, yet asked last, so found.
      h = await holder(dir, store, port);
      assert.ok(health.skipped(h.peerId));
      assert.deepEqual(await fetch(1), chunks[1]!.bytes, "a skipped holder is still asked last");
      assert.ok(!health.skipped(h.peerId), "one answer ends the skip");

      // Down again, then back and connecting: no longer skipped, before any request, and located again.
      await h.stop();
      await waitFor(
        () => reader.connectedPeers().length === 0,
        "the reader to see the holder gone",
      );
      assert.equal(await fetch(1).then(() => fetch(2)), null);
      assert.ok(health.skipped(h.peerId));
      h = await holder(dir, store, port, [reader.multiaddrs()[0]!]);
      await waitFor(() => !health.skipped(h.peerId), "the reconnect to end the skip");
      const locator = new ChunkLocator(reader, undefined, health);
      await locator.locate([chunks[2]!.cid]);
      assert.equal(locator.holder(chunks[2]!.cid), h.peerId, "a reconnected holder is located");
      assert.deepEqual(await fetch(2), chunks[2]!.bytes);
    } finally {
      health.detach();
      await stopNodes(reader, h);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
