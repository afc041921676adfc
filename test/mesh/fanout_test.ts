/**
 * Audit finding 9, with real peers on loopback: a manifest naming 256 chunks nobody has, handed to a gateway,
 * turns one GET into a bounded number of mesh requests and a clear 502 within seconds, and so does asking
 * again (chunks nobody had are remembered for a while). And finding 5: peers ranked ahead of a chunk's
 * holder that all answer "not found" do not hide it, and one whose own provider record contradicts its
 * "not found" is asked last from then on.
 */
import assert from "node:assert/strict";
import { createGateway } from "../../edge/app.ts";
import { type CID, cidOf } from "../../src/content/cid.ts";
import { sealManifest } from "../../src/content/manifest.ts";
import { DEFAULT_READ_REQUESTS, fetchFromMesh } from "../../src/mesh/fetch.ts";
import { PeerHealth } from "../../src/mesh/health.ts";
import { meshTable } from "../../src/mesh/peers.ts";
import { MeshgateNode } from "../../src/node.ts";
import { MemorySource, randomBytes, startNode, stopNodes } from "./_helpers.ts";

/** A store that has nothing and counts what it is asked: chunk requests, and CIDs asked about in batches
 * (locating a stripe asks each peer once about all its chunks). */
class CountingEmpty extends MemorySource {
  asked = 0;
  located = 0;
  override get(cid: CID) {
    this.asked++;
    return super.get(cid);
  }
  override has(cid: CID) {
    this.located++;
    return super.has(cid);
  }
}

Deno.test({
  name: "a fan-out manifest: one GET causes a bounded number of mesh requests and a clear 502",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-fanout-" });
    const stores = [new CountingEmpty(), new CountingEmpty(), new CountingEmpty()];
    const peers = await Promise.all(stores.map((store) => startNode({ store })));
    const node = await MeshgateNode.create({
      dataDir: dir,
      parityWorkers: 0,
      mesh: { listen: ["/ip4/127.0.0.1/tcp/0"] },
    });
    try {
      for (const p of peers) await node.mesh!.connect(p.multiaddrs()[0]!);
      const chunkSize = 1024;
      const k = 64;
      const stripes = Array.from(
        { length: 4 },
        () => Array.from({ length: k }, () => cidOf(randomBytes(16))),
      );
      const { cid, bytes } = sealManifest({
        name: "fan-out",
        type: "application/octet-stream",
        size: chunkSize * k * 4,
        chunkSize,
        k,
        m: 0,
        stripes,
      });
      await node.store.put(cid, bytes); // as a peer's put would leave it
      const gw = createGateway(node);
      const t0 = performance.now();
      const res = await gw.app.request(`/mesh/${cid}`);
      const body = await res.text();
      const seconds = (performance.now() - t0) / 1000;
      // Fetches still in flight when the answer ended may ask a little longer: count once it is quiet.
      const settled = async () => {
        let last = -1, now = 0;
        while ((now = stores.reduce((n, s) => n + s.asked, 0)) !== last) {
          last = now;
          await new Promise((r) => setTimeout(r, 500));
        }
        return now;
      };
      const asked = await settled();
      const located = stores.reduce((n, s) => n + s.located, 0);
      // Headers may be out before the first stripe fails: then the body breaks off, and that is the answer.
      assert.ok(res.status === 502 || body.length < chunkSize * k * 4, `status ${res.status}`);
      // Chunk requests stay within the read's budget; locating asks about the stripes in flight (two) only.
      assert.ok(
        asked <= DEFAULT_READ_REQUESTS,
        `${asked} chunk requests (budget ${DEFAULT_READ_REQUESTS})`,
      );
      assert.ok(located <= 2 * k * 3, `asked about ${located} CIDs while locating`);
      assert.ok(seconds < 15, `answered in ${seconds.toFixed(1)} s`);
      console.log(
        JSON.stringify({
          fanout: { asked, seconds: Number(seconds.toFixed(2)), status: res.status },
        }),
      );

      // At once again: bounded again (the chunks nobody had are remembered; those cut off were not asked).
      const before = asked;
      await (await gw.app.request(`/mesh/${cid}`)).text();
      const again = await settled() - before;
      assert.ok(again <= DEFAULT_READ_REQUESTS, `asked ${again} times more`);
    } finally {
      await node.stop();
      await stopNodes(...peers);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "eclipse by 'not found': ten peers ranked ahead of the holder say they lack the chunk; it still reads",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const holderStore = new MemorySource();
    const holder = await startNode({ store: holderStore });
    const liars = await Promise.all(Array.from({ length: 10 }, () => startNode()));
    const reader = await startNode();
    try {
      for (const n of [holder, ...liars]) await reader.connect(n.multiaddrs()[0]!);
      for (const n of liars) await holder.connect(n.multiaddrs()[0]!);
      // A chunk whose XOR-nearest known peers are all liars: the holder comes last.
      let bytes: Uint8Array, cid: CID;
      const table = await meshTable(reader);
      do {
        bytes = randomBytes(4096);
        cid = cidOf(bytes);
      } while (
        table.closest(cid.multihash.digest, table.peers.length).at(-1) !== holder.peerId
      );
      await holderStore.put(cid, bytes);
      await holder.provide(cid); // the record the search falls back on
      const got = await fetchFromMesh(reader, cid, { lookupTimeoutMs: 5_000 });
      assert.deepEqual(got, bytes);
      // One liar goes further: it announces a chunk, then denies holding it. Its record contradicts it.
      const other = cidOf(randomBytes(4096));
      await liars[0]!.provide(other);
      const standing = new PeerHealth();
      assert.equal(await fetchFromMesh(reader, other, { nearest: 16, standing }), null);
      assert.ok(standing.skipped(liars[0]!.peerId), "a denial its own record contradicts counts");
      assert.ok(!standing.skipped(liars[1]!.peerId), "a plain 'not found' does not");
    } finally {
      await stopNodes(reader, holder, ...liars);
    }
  },
});
