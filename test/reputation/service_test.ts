/**
 * The reputation protocol between real libp2p nodes on loopback: a proof of fraud spreads and excludes the
 * liar on every node; forged proofs are refused and, repeated, exclude their sender; attestations from a
 * trusted peer vet a newcomer, those from a stranger praising its friend vet no one.
 */
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { fraudProof, signDelivery } from "../../src/reputation/evidence.ts";
import { ReputationService, sendProof } from "../../src/reputation/service.ts";
import { startNode, stopNodes, waitFor } from "../mesh/_helpers.ts";

interface Peer {
  node: MeshNode;
  rep: ReputationService;
  dir: string;
}

async function peer(): Promise<Peer> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-rep-svc-" });
  const node = await startNode({ dataDir: dir });
  const rep = new ReputationService({
    dataDir: dir,
    privateKey: await loadOrCreatePrivateKey(dir),
    peerId: node.peerId,
    trustIntervalMs: 3_600_000, // refreshed by hand here
    log: () => {},
  });
  await rep.start(node.libp2p);
  return { node, rep, dir };
}

Deno.test({
  name:
    "reputation protocol: proofs spread and exclude, forgers are refused, only trusted words vet",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const peers: Peer[] = [];
    try {
      const [a, b, c, liar, forger] = await Promise.all(Array.from({ length: 5 }, peer)) as Peer[];
      peers.push(a!, b!, c!, liar!, forger!);
      for (const p of [b!, c!, forger!]) await p.node.connect(a!.node.multiaddrs()[0]!);
      await c!.node.connect(b!.node.multiaddrs()[0]!);
      await forger!.node.connect(b!.node.multiaddrs()[0]!);

      // The liar signed a delivery of bytes that are not the CID's: a reads it and reports.
      const bytes = new Uint8Array(1024).fill(7);
      const cid = cidOf(bytes);
      const liarKey = await loadOrCreatePrivateKey(liar!.dir);
      const proof = fraudProof(
        liar!.node.peerId,
        cid,
        await signDelivery(liarKey, cid, bytes.map((x) => x ^ 1)),
      );
      await a!.rep.report(proof);
      assert.equal(a!.rep.book.score(liar!.node.peerId).state, "excluded");
      await waitFor(
        () =>
          b!.rep.book.isExcluded(liar!.node.peerId) && c!.rep.book.isExcluded(liar!.node.peerId),
        "the proof to reach b and c",
      );
      assert.deepEqual(b!.rep.book.record(liar!.node.peerId)!.fraud!.evidence, proof);

      // A forger: a proof naming an honest peer, signed with its own key. Refused; thrice, and b excludes it.
      const forgedBy = await loadOrCreatePrivateKey(forger!.dir);
      const forged = fraudProof(
        a!.node.peerId,
        cid,
        await signDelivery(forgedBy, cid, bytes.map((x) => x ^ 1)),
      );
      for (let i = 0; i < 3; i++) {
        const answer = await sendProof(forger!.node.libp2p, b!.node.peerId, forged);
        assert.equal(answer.error, "evidence_signature");
      }
      assert.ok(!b!.rep.book.isExcluded(a!.node.peerId), "the honest peer stands");
      assert.equal(b!.rep.book.score(forger!.node.peerId).state, "excluded");
      assert.equal(b!.rep.book.record(forger!.node.peerId)!.fraud!.kind, "forged_evidence");

      // Attestations: b knows a well (30 verified deliveries); a knows "newcomer" well. The forger (a
      // stranger to b: no deliveries) praises "friend". Only a's word vets.
      for (let i = 0; i < 30; i++) b!.rep.book.delivered(a!.node.peerId, 1 << 18, 5, 1);
      for (let i = 0; i < 30; i++) a!.rep.book.delivered("newcomer", 1 << 18, 5, 1);
      const d = await peer();
      peers.push(d);
      for (let i = 0; i < 1000; i++) d.rep.book.delivered("friend", 1 << 18, 5, 1);
      await d.node.connect(b!.node.multiaddrs()[0]!);
      assert.equal(b!.rep.book.score("newcomer").state, "new");
      await b!.rep.refreshTrust();
      assert.equal(
        b!.rep.book.score("newcomer").state,
        "vetted",
        "vouched for by a, whom b trusts",
      );
      assert.equal(
        b!.rep.book.score("friend").state,
        "new",
        "a stranger's praise counts for nothing",
      );
    } finally {
      for (const p of peers) await p.rep.stop();
      await stopNodes(...peers.map((p) => p.node));
      for (const p of peers) await Deno.remove(p.dir, { recursive: true }).catch(() => {});
    }
  },
});
