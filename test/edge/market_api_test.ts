/**
 * The market over HTTP on two real nodes (`market: true` in the node config): a seller posts a listing, a
 * buyer an intent; the buyer's `GET /api/market/quotes` shows the opened quote, and only with the token.
 */
import assert from "node:assert/strict";
import { createGateway } from "../../edge/app.ts";
import { gossipTopic } from "../../src/market/intent.ts";
import { MeshgateNode } from "../../src/node.ts";
import { waitFor } from "../mesh/_helpers.ts";

const TOKEN = "a-token-of-sixteen-chars";
const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

async function start(dir: string) {
  const node = await MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    mesh: { listen: ["/ip4/127.0.0.1/tcp/0"] },
    market: true,
  });
  const app = createGateway(node, { apiToken: TOKEN }).app;
  const call = async (method: string, path: string, body?: unknown, headers = auth) => {
    const res = await app.request(`http://127.0.0.1${path}`, {
      method,
      headers: { ...headers, origin: "http://127.0.0.1" },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: await res.json() };
  };
  return { node, call };
}

Deno.test({
  name: "market API: a listing answers an intent; the buyer reads the quote with its token",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dirs = [await Deno.makeTempDir(), await Deno.makeTempDir()];
    const buyer = await start(dirs[0]!);
    const seller = await start(dirs[1]!);
    try {
      await seller.node.mesh!.connect(buyer.node.mesh!.multiaddrs()[0]!);
      const listing = await seller.call("POST", "/api/market/listings", {
        topic: "compute",
        item: "GPU-hour",
        stock: 10,
        currency: "wei",
        price: { unit: "700000000001" },
        terms: "a100, no preemption",
      });
      assert.equal(listing.status, 201, JSON.stringify(listing.json));
      const bad = await buyer.call("POST", "/api/market/intents", {
        topic: "compute",
        quantity: 0,
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.json.error, "intent_malformed");
      // The seller's gossip subscription reaches the buyer first (else the seller finds it in the DHT, later).
      await waitFor(
        () =>
          buyer.node.mesh!.libp2p.services.pubsub!.getSubscribers(gossipTopic("compute")).length >
            0,
        "the seller's subscription",
        10_000,
      );
      const posted = await buyer.call("POST", "/api/market/intents", {
        topic: "compute",
        item: "GPU-hour",
        quantity: 2,
        maxPrice: "2000000000000",
        currency: "wei",
        ttlMs: 60_000,
      });
      assert.equal(posted.status, 201, JSON.stringify(posted.json));
      const id = posted.json.id as string;
      let quotes: { price: string; terms: string; seller: string }[] = [];
      for (let i = 0; i < 60 && quotes.length === 0; i++) {
        quotes = (await buyer.call("GET", `/api/market/quotes?intent=${id}`)).json.quotes;
        if (!quotes.length) await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(quotes.length, 1);
      assert.equal(quotes[0]!.price, "1400000000002");
      assert.equal(quotes[0]!.terms, "a100, no preemption");
      assert.equal(quotes[0]!.seller, seller.node.mesh!.peerId);
      // Without the token, not even a read.
      const anon = await buyer.call(
        "GET",
        `/api/market/quotes?intent=${id}`,
        undefined,
        {
          "content-type": "application/json",
        } as typeof auth,
      );
      assert.equal(anon.status, 401);
      // An intent this node does not have is said so, not answered with no quotes.
      const unknown = await buyer.call("GET", "/api/market/quotes?intent=nonexistent");
      assert.equal(unknown.status, 404);
      assert.match(unknown.json.message, /No intent "nonexistent" here/);
      const intents = await buyer.call("GET", "/api/market/intents");
      assert.equal(intents.json.intents[0].quotes, 1);
      const sent = await seller.call("GET", "/api/market/seen");
      assert.equal(sent.json.sent.length, 1);
      assert.equal((await buyer.call("DELETE", `/api/market/intents/${id}`)).status, 200);
      assert.equal((await buyer.call("GET", "/api/market/intents")).json.intents.length, 0);
    } finally {
      await seller.node.stop();
      await buyer.node.stop();
      for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
});
