/**
 * Offers between real nodes: each node signs and publishes its own at start; another gets it by asking the
 * peer, or from the DHT when not connected to it; a forged or altered offer is refused wherever it comes from.
 */
import assert from "node:assert/strict";
import { MeshgateNode } from "../../src/node.ts";
import { encodeOffer, OfferError, offerKey } from "../../src/market/offers.ts";
import { waitFor } from "../mesh/_helpers.ts";

Deno.test({
  name:
    "a node's offer reaches a connected peer directly and a stranger through the DHT; a tampered record is refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dirs: string[] = [];
    const nodes: MeshgateNode[] = [];
    const open = async (bootstrap: string[], offer = {}) => {
      const dir = await Deno.makeTempDir({ prefix: "meshgate-offer-" });
      dirs.push(dir);
      const n = await MeshgateNode.create({
        dataDir: dir,
        parityWorkers: 0,
        maxStoreBytes: 64 * 1024 * 1024,
        offer,
        mesh: { listen: ["/ip4/127.0.0.1/tcp/0"], bootstrap },
      });
      nodes.push(n);
      return n;
    };
    try {
      const a = await open([], { storedPerGiBMonth: 5n, relayedPerGiB: 7n });
      const b = await open([a.mesh!.multiaddrs()[0]!]);
      const c = await open([b.mesh!.multiaddrs()[0]!]);
      const mine = a.offers!.mine();
      assert.equal(mine.peer, a.mesh!.peerId);
      assert.equal(mine.prices.storedPerGiBMonth, "5");
      assert.equal(mine.prices.relayedPerGiB, "7");
      assert.equal(mine.prices.servedPerGiB, "0", "a volunteer serves for free");
      assert.equal(mine.payout, null);
      assert.equal(mine.capacityBytes, 64 * 1024 * 1024);
      // Connected: asked of the peer itself.
      await waitFor(() => b.mesh!.libp2p.getPeers().length >= 2, "b sees a and c");
      assert.deepEqual(await b.offers!.of(a.mesh!.peerId), mine);
      // Not connected: through the DHT, once a has put it there.
      await a.offers!.publish();
      for (const conn of c.mesh!.libp2p.getConnections()) {
        if (conn.remotePeer.toString() === a.mesh!.peerId) await conn.close();
      }
      assert.ok(!c.mesh!.libp2p.getPeers().some((p) => p.toString() === a.mesh!.peerId));
      const viaDht = await c.offers!.of(a.mesh!.peerId);
      assert.deepEqual(viaDht, mine);
      // A record altered on the way (a lower price) fails its signature: the DHT will not keep it.
      const forged = { ...mine, prices: { ...mine.prices, storedPerGiBMonth: "1" } };
      const put = async () => {
        for await (
          const _ of c.mesh!.libp2p.services.dht.put(offerKey(a.mesh!.peerId), encodeOffer(forged))
        ) {
          // drain
        }
      };
      await put().catch(() => {});
      await assert.rejects(
        c.offers!.accept(forged),
        (e: unknown) => e instanceof OfferError && e.code === "offer_signature",
      );
      // What the DHT now gives for a is still a's own offer.
      const fresh = await b.offers!.accept(await c.offers!.of(a.mesh!.peerId));
      assert.equal(fresh.prices.storedPerGiBMonth, "5");
    } finally {
      for (const n of nodes.reverse()) await n.stop();
      for (const d of dirs) await Deno.remove(d, { recursive: true });
    }
  },
});
