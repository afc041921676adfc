/**
 * The private marketplace on real libp2p nodes over loopback: a buyer posts an intent, three sellers watch
 * its topic (two can fill it at different prices, one cannot), a bystander only relays. The buyer gets
 * exactly two sealed quotes and reads both; no other node's inbox, logs, DHT records or data directory holds
 * either price or terms, and each seller holds only its own. A seller started later finds the intent in the
 * DHT. Forged, expired and mis-sealed messages are refused.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { generateHpkeKeyPair } from "../../src/market/hpke.ts";
import {
  encodeGossip,
  gossipTopic,
  intentId,
  type IntentTerms,
  marketDht,
  signIntent,
} from "../../src/market/intent.ts";
import { sealQuote, signQuote } from "../../src/market/quote.ts";
import { MARKET_PROTOCOL, MARKET_WIRE, MarketService } from "../../src/market/service.ts";
import { callPeer } from "../../src/mesh/message.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { datastoreText, filesText, startNode, stopNodes, waitFor } from "../mesh/_helpers.ts";

interface Peer {
  name: string;
  dir: string;
  node: MeshNode;
  market: MarketService;
  logs: Record<string, unknown>[];
}

async function peer(name: string): Promise<Peer> {
  const dir = await Deno.makeTempDir({ prefix: `meshgate-market-${name}-` });
  const node = await startNode({ dataDir: dir, pubsub: true, dht: marketDht() });
  const logs: Record<string, unknown>[] = [];
  const market = new MarketService({
    privateKey: await loadOrCreatePrivateKey(dir),
    peerId: node.peerId,
    dataDir: dir,
    pruneMs: 250,
    log: (e) => logs.push(e),
  });
  await market.start(node.libp2p);
  return { name, dir, node, market, logs };
}

const TOPIC = "books";
const WANT: Omit<IntentTerms, "expiry"> = {
  topic: TOPIC,
  item: "Odyssey, first edition",
  specs: { condition: "fine" },
  quantity: 3,
  maxPrice: "999999999999999",
  currency: "wei",
};
// Long, distinctive amounts and terms, so that a match in a file is never chance.
const A = { unit: "123456789012", price: "370370367036", terms: "terms-of-seller-A-q7Zx" };
const B = { unit: "155555555555", price: "466666666665", terms: "terms-of-seller-B-k2Wp" };
const LATE = { unit: "111111111111", price: "333333333333", terms: "terms-of-seller-D-m9Ty" };
const listing = (s: { unit: string; terms: string }, extra = {}) => ({
  topic: TOPIC,
  item: WANT.item,
  specs: { condition: "fine", binding: "leather" },
  stock: 5,
  currency: "wei",
  price: { unit: s.unit },
  terms: s.terms,
  ...extra,
});

const memoryText = (p: Peer) =>
  JSON.stringify({ inbox: p.market.inbox(), logs: p.logs, seen: p.market.seen() });

Deno.test({
  name:
    "market: two sealed quotes reach the buyer alone; a late seller finds the intent in the DHT; forgeries are refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const peers: Peer[] = [];
    try {
      const bystander = await peer("bystander");
      const buyer = await peer("buyer");
      const sellerA = await peer("sellerA");
      const sellerB = await peer("sellerB");
      const sellerC = await peer("sellerC");
      peers.push(bystander, buyer, sellerA, sellerB, sellerC);
      sellerA.market.addListing(listing(A));
      sellerB.market.addListing(listing(B));
      // C sells under the topic, but has too few in stock.
      sellerC.market.addListing(
        listing({ unit: "100000000000", terms: "terms-of-C" }, { stock: 2 }),
      );
      // Everyone connected to everyone (gossip flows between subscribers only).
      for (let i = 0; i < peers.length; i++) {
        for (let j = i + 1; j < peers.length; j++) {
          await peers[j]!.node.connect(peers[i]!.node.multiaddrs()[0]!);
        }
      }
      const gt = gossipTopic(TOPIC);
      await waitFor(
        () => buyer.node.libp2p.services.pubsub!.getSubscribers(gt).length === 3,
        "the buyer to see three subscribed sellers",
        15_000,
      );

      const intent = await buyer.market.want({ ...WANT, expiry: Date.now() + 120_000 });
      const id = intentId(intent);
      await waitFor(() => buyer.market.quotes(id).length >= 2, "two quotes", 15_000);
      await new Promise((r) => setTimeout(r, 1000)); // a third would have come by now
      const quotes = buyer.market.quotes(id);
      assert.equal(quotes.length, 2);
      // The buyer reads both, best first (no trust yet: by price).
      assert.deepEqual(quotes.map((q) => [q.quote.price, q.quote.terms]), [
        [A.price, A.terms],
        [B.price, B.terms],
      ]);
      assert.deepEqual(quotes.map((q) => q.quote.seller), [
        sellerA.node.peerId,
        sellerB.node.peerId,
      ]);
      assert.equal(sellerC.market.sent().length, 0);
      assert.equal(sellerC.market.seen().length, 1, "C saw the intent and could not fill it");
      // What arrived at the buyer arrived sealed.
      const arrived = JSON.stringify(buyer.market.inbox());
      for (const s of [A.price, A.terms, B.price, B.terms]) assert.ok(!arrived.includes(s));

      // Refusals at the buyer, over the wire: a quote with a bad signature, one sealed to another key.
      const forger = await generateKeyPair("Ed25519");
      const badSig = await sealQuote(
        await signQuote(forger, sellerC.node.peerId, id, {
          item: WANT.item,
          quantity: 3,
          price: "1",
          currency: "wei",
          terms: "",
          deliveryTime: 0,
          validUntil: Date.now() + 60_000,
        }),
        intent,
      );
      // Sealed to another key: the same intent with another sealing key, as a confused seller might.
      const otherKey = await generateHpkeKeyPair();
      const elsewhere = { ...intent, key: btoa(String.fromCharCode(...otherKey.publicKey)) };
      const wrongKey = await sealQuote(
        await signQuote(
          await loadOrCreatePrivateKey(sellerC.dir),
          sellerC.node.peerId,
          intentId(elsewhere),
          {
            item: WANT.item,
            quantity: 3,
            price: "1",
            currency: "wei",
            terms: "",
            deliveryTime: 0,
            validUntil: Date.now() + 60_000,
          },
        ),
        elsewhere,
      );
      for (
        const [sealed, code] of [
          [badSig, "quote_signature"],
          [{ ...wrongKey, intent: id }, "quote_sealed"],
        ] as const
      ) {
        const answer = await callPeer(
          sellerC.node.libp2p,
          buyer.node.peerId,
          MARKET_PROTOCOL,
          { op: "quote", sealed: { ...sealed, intent: id } },
          AbortSignal.timeout(10_000),
          MARKET_WIRE,
        );
        assert.equal(answer.error, code);
      }
      assert.equal(buyer.market.quotes(id).length, 2, "refused quotes are not kept");

      // Refusals on gossip: the bystander (not subscribed, so not validating) publishes a forged intent and an
      // expired one; the sellers' topic validators reject both. A real one it publishes gets through.
      const byKey = await loadOrCreatePrivateKey(bystander.dir);
      const reach = { key: (await generateHpkeKeyPair()).publicKey, addrs: [] };
      const forged = await signIntent(forger, buyer.node.peerId, {
        ...WANT,
        expiry: Date.now() + 60_000,
      }, reach);
      const expired = await signIntent(
        byKey,
        bystander.node.peerId,
        { ...WANT, item: "expired one", expiry: Date.now() + 100 },
        reach,
        Date.now() - 1000,
      );
      await new Promise((r) => setTimeout(r, 150));
      const real = await signIntent(
        byKey,
        bystander.node.peerId,
        { ...WANT, item: "a real one", expiry: Date.now() + 60_000 },
        reach,
      );
      const pubsub = bystander.node.libp2p.services.pubsub!;
      // What gossipsub delivers (and so forwards) at each seller: only what its topic validator accepted.
      const delivered: string[] = [];
      for (const s of [sellerA, sellerB, sellerC]) {
        s.node.libp2p.services.pubsub!.addEventListener("message", (e) => {
          delivered.push(new TextDecoder().decode(e.detail.data));
        });
      }
      for (const i of [forged, expired, real]) {
        await pubsub.publish(gt, encodeGossip({ intent: i }));
      }
      await waitFor(
        () =>
          [sellerA, sellerB, sellerC].every((s) =>
            s.market.seen().some((i) => i.item === "a real one")
          ),
        "the real intent to reach every seller",
        10_000,
      );
      assert.ok(delivered.some((d) => d.includes(real.sig)));
      for (const bad of [forged, expired]) {
        assert.ok(
          !delivered.some((d) => d.includes(bad.sig)),
          "the validator let a bad intent through",
        );
      }
      for (const s of [sellerA, sellerB, sellerC]) {
        const items = s.market.seen().map((i) => i.item);
        assert.ok(!items.includes("expired one"), `${s.name} took an expired intent`);
        assert.equal(s.market.seen().filter((i) => i.buyer === buyer.node.peerId).length, 1);
      }

      // Nobody but the buyer holds either quote in the clear; each seller holds only its own.
      const secrets = { sellerA: [A.price, A.terms], sellerB: [B.price, B.terms] } as const;
      for (const p of [bystander, sellerA, sellerB, sellerC]) {
        const text = memoryText(p) + await datastoreText(p.node);
        for (const [owner, list] of Object.entries(secrets)) {
          if (owner === p.name) continue;
          for (const s of list) assert.ok(!text.includes(s), `${p.name} holds ${owner}'s ${s}`);
        }
      }
      // The late seller: online after the intent was posted, connected to the bystander only.
      const late = await peer("late");
      peers.push(late);
      await late.node.connect(bystander.node.multiaddrs()[0]!);
      await waitFor(
        () => late.node.routingTableSize() > 0,
        "the late seller's routing table",
        10_000,
      );
      late.market.addListing(listing(LATE));
      await waitFor(() => buyer.market.quotes(id).length === 3, "the late seller's quote", 20_000);
      assert.ok(
        late.logs.some((e) => e.msg === "intent seen" && e.via === "dht" && e.intent === id),
      );
      assert.equal(buyer.market.quotes(id)[0]!.quote.price, LATE.price);

      // Expired intents are dropped: one posted for 1.5 s is seen, then gone from every seller.
      const brief = await buyer.market.want({ ...WANT, item: "brief", expiry: Date.now() + 1500 });
      await waitFor(
        () => sellerA.market.seen().some((i) => intentId(i) === intentId(brief)),
        "the brief intent at A",
        10_000,
      );
      await waitFor(
        () =>
          [sellerA, sellerB, sellerC, late].every((s) =>
            !s.market.seen().some((i) => intentId(i) === intentId(brief))
          ) && !buyer.market.intents().some((i) => i.id === intentId(brief)),
        "the brief intent to be dropped everywhere",
        10_000,
      );

      // A withdrawal reaches the sellers, and the DHT record no longer names the intent.
      assert.ok(await buyer.market.withdraw(id));
      await waitFor(
        () =>
          [sellerA, sellerB, sellerC].every((s) =>
            !s.market.seen().some((i) => intentId(i) === id)
          ),
        "the withdrawal at every seller",
        10_000,
      );
      await buyer.market.settled(); // its new record is in the DHT
      assert.ok(!(await late.market.discover(TOPIC)).some((i) => intentId(i) === id));
      assert.equal(buyer.market.quotes(id).length, 0);

      // After the run: the data directories.
      const dirs = peers.map((p) => p.dir);
      const names = peers.map((p) => p.name);
      const snapshots = peers.map((p) => memoryText(p));
      await stopNodes(...peers.map((p) => p.node));
      await Promise.all(peers.map((p) => p.market.stop()));
      for (let i = 0; i < dirs.length; i++) {
        if (names[i] === "buyer") continue;
        const text = (await filesText(dirs[i]!)) + snapshots[i];
        // The scan sees what is there: a seller's own listing holds its own terms.
        if (names[i] === "sellerA") assert.ok(text.includes(A.terms));
        for (const [owner, list] of Object.entries(secrets)) {
          if (owner === names[i]) continue;
          for (const s of list) {
            assert.ok(!text.includes(s), `${names[i]}'s data holds ${owner}'s ${s}`);
          }
        }
      }
    } finally {
      await Promise.all(peers.map((p) => p.market.stop()));
      await stopNodes(...peers.map((p) => p.node));
      for (const p of peers) await Deno.remove(p.dir, { recursive: true }).catch(() => {});
    }
  },
});
