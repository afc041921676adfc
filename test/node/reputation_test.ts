/**
 * A node's reads feed its reputation book: each verified chunk from an operator is a delivery (25 of them
 * vet it), what it learned survives a restart, and an operator excluded by proof is not asked again.
 */
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { MeshgateNode } from "../../src/node.ts";
import { MemorySource, randomBytes, startNode, stopNodes } from "../mesh/_helpers.ts";

Deno.test({
  name:
    "reads score the operators they fetch from; the score survives a restart; the excluded are skipped",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-node-rep-" });
    const store = new MemorySource();
    const chunks = Array.from({ length: 26 }, () => randomBytes(8192));
    for (const c of chunks) await store.put(cidOf(c), c);
    const holder = await startNode({ store });
    const open = () =>
      MeshgateNode.create({
        dataDir: dir,
        parityWorkers: 0,
        mesh: { listen: ["/ip4/127.0.0.1/tcp/0"], bootstrap: [holder.multiaddrs()[0]!] },
      });
    let node = await open();
    try {
      for (const c of chunks.slice(0, 25)) {
        assert.deepEqual(await node.chunk(cidOf(c), false), c);
      }
      const book = node.reputation!.book;
      assert.equal(book.record(holder.peerId)?.deliveries, 25);
      assert.equal(book.score(holder.peerId).state, "vetted");
      await node.stop();
      node = await open();
      assert.equal(node.reputation!.book.score(holder.peerId).state, "vetted", "after a restart");
      // Excluded by proof: not asked again, so the last chunk is not found through it.
      node.reputation!.book.excluded(holder.peerId, {
        kind: "bad_bytes",
        at: Date.now(),
        evidence: {},
      });
      assert.equal(await node.chunk(cidOf(chunks[25]!), false), null);
    } finally {
      await node.stop();
      await stopNodes(holder);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
