/**
 * A node's reads feed its reputation book: each verified chunk from an operator is a delivery (25 of them
 * vet it), what it learned survives a restart, and an operator excluded by proof is not asked again.
 */
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { MeshgateNode } from "../../src/node.ts";
import { drillSource } from "../../src/mesh/drill.ts";
import { checkFraudProof, type FraudProof } from "../../src/reputation/evidence.ts";
import { MemorySource, randomBytes, startNode, stopNodes, waitFor } from "../mesh/_helpers.ts";

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

Deno.test({
  name:
    "a liar's signed answer becomes a proof: the reader excludes it with the proof, and a node that never read from it does too",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dirs = [
      await Deno.makeTempDir({ prefix: "meshgate-node-proof-a-" }),
      await Deno.makeTempDir({ prefix: "meshgate-node-proof-b-" }),
    ];
    const bytes = randomBytes(64 * 1024);
    const cid = cidOf(bytes);
    const liarStore = new MemorySource();
    await liarStore.put(cid, bytes);
    const liar = await startNode({ store: drillSource(liarStore, "liar") });
    const honestStore = new MemorySource();
    await honestStore.put(cid, bytes);
    const honest = await startNode({ store: honestStore });
    const open = (dir: string, bootstrap: string[]) =>
      MeshgateNode.create({
        dataDir: dir,
        parityWorkers: 0,
        mesh: { listen: ["/ip4/127.0.0.1/tcp/0"], bootstrap },
      });
    const bystander = await open(dirs[1]!, []);
    const reader = await open(dirs[0]!, [
      bystander.mesh!.multiaddrs()[0]!,
    ]);
    try {
      await waitFor(
        () => bystander.mesh!.libp2p.getPeers().length > 0,
        "the bystander is connected",
      );
      // The reader asks the liar first (it is the only one it knows), then the honest holder.
      await reader.mesh!.connect(liar.multiaddrs()[0]!);
      const wrong = await reader.mesh!.fetchChunk(liar.peerId, cid).then(() => null, (e) => e);
      assert.equal(wrong?.code, "chunk_mismatch");
      await reader.mesh!.connect(honest.multiaddrs()[0]!);
      assert.deepEqual(
        await reader.chunk(cid, false),
        bytes,
        "the read still gets the right bytes",
      );
      await waitFor(
        () => reader.reputation!.book.isExcluded(liar.peerId),
        "the reader excluded the liar",
      );
      const evidence = reader.reputation!.book.record(liar.peerId)!.fraud!.evidence as FraudProof;
      assert.equal(evidence.kind, "bad_bytes");
      assert.equal(evidence.cid, cid.toString());
      // The proof is portable: it checks on its own, and it reached the bystander.
      await checkFraudProof(evidence);
      await waitFor(
        () => bystander.reputation!.book.isExcluded(liar.peerId),
        "the bystander excluded the liar on the proof alone",
      );
      assert.equal(bystander.reputation!.book.record(liar.peerId)!.deliveries, 0);
    } finally {
      await reader.stop();
      await bystander.stop();
      await stopNodes(liar, honest);
      for (const d of dirs) await Deno.remove(d, { recursive: true });
    }
  },
});
