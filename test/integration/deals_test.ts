/**
 * Deals end to end on anvil and real libp2p nodes over loopback: a buyer, three sellers (two can fill the
 * intent at different prices, one cannot) and a bystander. The buyer gets two quotes, accepts the best after
 * reputation, funds the escrow; the seller confirms on its own when it sees the deal; the buyer releases and
 * the balances move by exactly the quoted price (the seller pulls it). The buyer's rating reaches every node,
 * each checks it against the chain, and the seller's trade factor changes everywhere. Over the wire, a
 * rating of a deal that never settled and a second rating of one deal are refused. After the run no node
 * but the buyer holds either quote's price or terms in memory (messages, logs), DHT records or data
 * directory; each seller holds only its own.
 */
import assert from "node:assert/strict";
import { DealDesk } from "../../src/market/deals.ts";
import { escrowBalance, getDeal } from "../../src/market/escrow.ts";
import { gossipTopic, intentId, marketDht } from "../../src/market/intent.ts";
import { quoteId } from "../../src/market/quote.ts";
import { RatingDesk, signRating } from "../../src/market/rating.ts";
import { MARKET_PROTOCOL, MARKET_WIRE, MarketService } from "../../src/market/service.ts";
import { callPeer } from "../../src/mesh/message.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { MeshError } from "../../src/errors.ts";
import { ReputationBook } from "../../src/reputation/book.ts";
import { datastoreText, filesText, startNode, stopNodes, waitFor } from "../mesh/_helpers.ts";
import { startTestChain, type TestChain, type Wallet } from "../pay/_chain.ts";

interface Peer {
  name: string;
  node: MeshNode;
  market: MarketService;
  book: ReputationBook;
  desk: RatingDesk;
  wallet?: Wallet;
  dir: string;
  logs: Record<string, unknown>[];
}

const TOPIC = "lamps";
// Long, distinctive amounts and terms, so that a match in a file is never chance.
const A_PRICE = 51234567890123457n;
const B_PRICE = 61234567890123457n;
const A_TERMS = "ships-in-a-box-from-A-r4Lq";
const B_TERMS = "ships-in-a-box-from-B-w8Nz";
const listing = (unit: bigint, stock = 5, terms = "none") => ({
  topic: TOPIC,
  item: "brass lamp",
  stock,
  currency: "wei",
  price: { unit: String(unit) },
  terms,
  deliveryTime: 0,
});

Deno.test({
  name:
    "deals: accept the best quote, fund, seller confirms, release moves exactly the price, the rating reaches every node",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env: TestChain = await startTestChain();
    const peers: Peer[] = [];
    const dirs: string[] = [];
    const peer = async (name: string, trade: boolean): Promise<Peer> => {
      const dir = await Deno.makeTempDir({ prefix: `meshgate-deals-${name}-` });
      dirs.push(dir);
      const node = await startNode({ dataDir: dir, pubsub: true, dht: marketDht() });
      const book = new ReputationBook();
      await book.start();
      const desk = new RatingDesk({ client: env.test, escrow: env.contracts.escrow, book });
      await desk.start();
      const wallet = trade ? await env.wallet() : undefined;
      const logs: Record<string, unknown>[] = [];
      const market = new MarketService({
        privateKey: await loadOrCreatePrivateKey(dir),
        peerId: node.peerId,
        dataDir: dir,
        trust: (p) => book.record(p) ? book.score(p).score : 0,
        ...(wallet
          ? {
            deals: new DealDesk({
              wallet,
              escrow: env.contracts.escrow,
              pollingMs: 200,
              dataDir: dir,
            }),
          }
          : {}),
        ratings: desk,
        log: (e) => void logs.push(e),
      });
      await market.start(node.libp2p);
      const p = { name, node, market, book, desk, wallet, dir, logs };
      peers.push(p);
      return p;
    };
    try {
      const bystander = await peer("bystander", false);
      const buyer = await peer("buyer", true);
      const sellerA = await peer("sellerA", true);
      const sellerB = await peer("sellerB", true);
      const sellerC = await peer("sellerC", true);
      sellerA.market.addListing(listing(A_PRICE, 5, A_TERMS));
      sellerB.market.addListing(listing(B_PRICE, 5, B_TERMS));
      sellerC.market.addListing(listing(1n, 0)); // nothing in stock
      for (let i = 0; i < peers.length; i++) {
        for (let j = i + 1; j < peers.length; j++) {
          await peers[j]!.node.connect(peers[i]!.node.multiaddrs()[0]!);
        }
      }
      await waitFor(
        () => buyer.node.libp2p.services.pubsub!.getSubscribers(gossipTopic(TOPIC)).length === 3,
        "the buyer to see three subscribed sellers",
        20_000,
      );

      const intent = await buyer.market.want({
        topic: TOPIC,
        item: "brass lamp",
        specs: {},
        quantity: 1,
        maxPrice: String(10n ** 18n),
        currency: "wei",
        expiry: Date.now() + 300_000,
      });
      const id = intentId(intent);
      await waitFor(() => buyer.market.quotes(id).length >= 2, "two quotes", 20_000);
      await new Promise((r) => setTimeout(r, 1000)); // a third would have come by now
      const ranked = buyer.market.quotes(id);
      assert.equal(ranked.length, 2);
      assert.equal(sellerC.market.sent().length, 0);
      // Every quote names its seller's account and carries its payout link.
      for (const r of ranked) {
        const s = r.quote.seller === sellerA.node.peerId ? sellerA : sellerB;
        assert.equal(r.quote.payout?.address, s.wallet!.account.address);
        assert.equal(r.quote.payout?.chainId, env.chain.id);
      }
      const best = ranked[0]!;
      assert.ok(best.effective <= ranked[1]!.effective, "the best after reputation comes first");
      const seller = best.quote.seller === sellerA.node.peerId ? sellerA : sellerB;
      const price = BigInt(best.quote.price);
      assert.equal(price, A_PRICE, "no trust yet: the cheaper quote is the best");

      const buyerBefore = await env.test.getBalance({ address: buyer.wallet!.account.address });
      const sellerBefore = await env.test.getBalance({ address: seller.wallet!.account.address });
      const escrowBefore = await env.test.getBalance({ address: env.contracts.escrow });

      // Accept: the buyer funds; the seller confirms by itself.
      const deal = await buyer.market.accept(quoteId(best.quote));
      assert.equal(deal.status, "funded");
      assert.equal(deal.terms, quoteId(best.quote));
      await waitFor(
        () => seller.market.deals!.get(deal.id)?.status === "confirmed",
        "the seller to confirm",
        20_000,
      );
      const onChain = await getDeal(env.test, { address: env.contracts.escrow, deal: deal.id });
      assert.equal(onChain.status, "confirmed");
      assert.equal(onChain.amount, price);
      assert.equal(onChain.seller, seller.wallet!.account.address);
      assert.equal(onChain.terms, quoteId(best.quote));
      assert.equal(
        (await env.test.getBalance({ address: env.contracts.escrow })) - escrowBefore,
        price,
      );

      // Release; the seller pulls what it was credited.
      const released = await buyer.market.release(deal.id);
      assert.equal(released.status, "released");
      assert.equal(
        await escrowBalance(env.test, {
          address: env.contracts.escrow,
          account: seller.wallet!.account.address,
        }),
        price,
      );
      const pulled = await seller.market.deals!.withdraw();
      assert.equal(pulled.amount, price);
      const gas = async (hashes: `0x${string}`[]) => {
        let sum = 0n;
        for (const h of hashes) sum += await env.gasCost(h);
        return sum;
      };
      const buyerGas = await gas(released.txs);
      const sellerGas = await gas([...seller.market.deals!.get(deal.id)!.txs, pulled.hash]);
      assert.equal(
        buyerBefore - await env.test.getBalance({ address: buyer.wallet!.account.address }),
        price + buyerGas,
      );
      assert.equal(
        await env.test.getBalance({ address: seller.wallet!.account.address }) - sellerBefore,
        price - sellerGas,
      );
      assert.equal(await env.test.getBalance({ address: env.contracts.escrow }), escrowBefore);

      // The rating: the seller's trade factor changes on every node, the bystander's too.
      const trade = (p: Peer) => p.book.score(seller.node.peerId).factors.trade;
      const before = peers.map(trade);
      const rating = await buyer.market.rate(deal.id, 0.4);
      await waitFor(
        () => peers.every((p) => p.desk.accepted(deal.id) !== undefined),
        "every node to accept the rating",
        20_000,
      );
      const after = peers.map(trade);
      for (let i = 0; i < peers.length; i++) {
        assert.ok(after[i]! < before[i]!, `${peers[i]!.name}: trade ${before[i]} -> ${after[i]}`);
        assert.equal(peers[i]!.book.record(seller.node.peerId)?.ratings, 1, peers[i]!.name);
      }
      assert.deepEqual(bystander.desk.accepted(deal.id), rating);

      // Refused over the wire: a second rating of the same deal…
      const send = async (r: unknown) =>
        await callPeer(
          buyer.node.libp2p,
          bystander.node.peerId,
          MARKET_PROTOCOL,
          { op: "rating", rating: r },
          AbortSignal.timeout(20_000),
          MARKET_WIRE,
        );
      const again = await signRating(
        buyer.wallet!.account,
        buyer.market.deals!.rateTerms(deal.id, 1),
      );
      assert.equal((await send(again)).error, "rating_duplicate");
      await assert.rejects(
        buyer.market.rate(deal.id, 1),
        (e: MeshError) => e.code === "deal_state",
      );
      // …and one of a deal funded but never settled (the other seller's, which it confirms and keeps open).
      const other = ranked[1]!.quote;
      const open = await buyer.market.accept(quoteId(other));
      const unsettled = await signRating(
        buyer.wallet!.account,
        buyer.market.deals!.rateTerms(open.id, 1),
      );
      const answer = await send(unsettled);
      assert.equal(answer.error, "rating_unsettled", String(answer.message));
      await assert.rejects(
        buyer.market.rate(open.id, 1),
        (e: MeshError) => e.code === "rating_unsettled",
      );
      assert.deepEqual(peers.map(trade), after, "no refused rating moved anything");
      assert.equal(bystander.desk.accepted(open.id), undefined);

      // After the run: nobody but the buyer holds either quote in the clear; each seller only its own.
      await Promise.all(peers.map((p) => p.market.settled()));
      const secrets = {
        sellerA: [String(A_PRICE), A_TERMS],
        sellerB: [String(B_PRICE), B_TERMS],
      } as Record<string, string[]>;
      for (const p of [bystander, sellerA, sellerB, sellerC]) {
        const memory = JSON.stringify({
          inbox: p.market.inbox(),
          logs: p.logs,
          seen: p.market.seen(),
          sent: p.market.sent(),
          deals: p.market.deals?.list() ?? [],
        }, (_k, v) => typeof v === "bigint" ? String(v) : v);
        const text = memory + await filesText(p.dir) + await datastoreText(p.node);
        for (const [owner, list] of Object.entries(secrets)) {
          if (owner === p.name) continue;
          for (const x of list) assert.ok(!text.includes(x), `${p.name} holds ${owner}'s ${x}`);
        }
      }
      const mine = await filesText(sellerA.dir);
      assert.ok(mine.includes(A_TERMS), "the seller keeps its own sent quote (market/sent.json)");
    } finally {
      for (const p of peers) {
        await p.market.stop();
        await p.desk.stop();
        await p.book.stop();
      }
      await stopNodes(...peers.map((p) => p.node));
      await env.stop();
      for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
});
