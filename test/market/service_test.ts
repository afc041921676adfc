/**
 * The market service keeps its own intents (and their sealing keys) in the data directory: after a restart
 * a quote to an intent posted before it still opens.
 */
import assert from "node:assert/strict";
import { marketDht } from "../../src/market/intent.ts";
import { sealQuote, signQuote } from "../../src/market/quote.ts";
import { MARKET_PROTOCOL, MarketService } from "../../src/market/service.ts";
import { MeshError } from "../../src/errors.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { callPeer } from "../../src/mesh/message.ts";
import { startNode, stopNodes } from "../mesh/_helpers.ts";

Deno.test({
  name: "market service: own intents and their keys survive a restart; quotes to them still open",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-market-restart-" });
    const buyer = await startNode({ dataDir: dir, pubsub: true, dht: marketDht() });
    const sellerDir = await Deno.makeTempDir({ prefix: "meshgate-market-seller-" });
    const seller = await startNode({ dataDir: sellerDir, pubsub: true, dht: marketDht() });
    const make = async () =>
      new MarketService({
        privateKey: await loadOrCreatePrivateKey(dir),
        peerId: buyer.peerId,
        dataDir: dir,
        timeoutMs: 2000,
      });
    let market = await make();
    try {
      await market.start(buyer.libp2p);
      const intent = await market.want({
        topic: "t",
        item: "thing",
        specs: {},
        quantity: 1,
        maxPrice: "10",
        currency: "wei",
        expiry: Date.now() + 60_000,
      });
      await market.stop();
      market = await make();
      await market.start(buyer.libp2p);
      const restored = market.intents();
      assert.equal(restored.length, 1);
      const id = restored[0]!.id;
      assert.deepEqual(restored[0]!.intent, intent);
      const sealed = await sealQuote(
        await signQuote(await loadOrCreatePrivateKey(sellerDir), seller.peerId, id, {
          item: "thing",
          quantity: 1,
          price: "9",
          currency: "wei",
          terms: "",
          deliveryTime: 0,
          validUntil: Date.now() + 60_000,
        }),
        intent,
      );
      await seller.connect(buyer.multiaddrs()[0]!);
      const answer = await callPeer(
        seller.libp2p,
        buyer.peerId,
        MARKET_PROTOCOL,
        {
          op: "quote",
          sealed,
        },
        AbortSignal.timeout(10_000),
        {
          maxBytes: 8192,
          what: "market",
          error: (m) => new MeshError("market_protocol", m),
        },
      );
      assert.deepEqual(answer, { ok: true });
      assert.equal(market.quotes(id)[0]!.quote.price, "9");
    } finally {
      await market.stop();
      await stopNodes(buyer, seller);
      await Deno.remove(dir, { recursive: true });
      await Deno.remove(sellerDir, { recursive: true });
    }
  },
});
