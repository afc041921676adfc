/**
 * The deal desk on a real chain (anvil):
 * - a seller that was offline while its quote was funded confirms the deal when it comes back (it catches up
 *   on the escrow's events from the last block it saw, kept in its data directory);
 * - deals and payment channels sent from one account at once share one nonce sequence (paid delivery's
 *   queue): every transaction lands.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { gossipTopic } from "../../src/market/intent.ts";
import { chainMarket } from "../../src/market/deals.ts";
import { getDeal } from "../../src/market/escrow.ts";
import { signQuote } from "../../src/market/quote.ts";
import { openChannel } from "../../src/pay/channel.ts";
import { paidDelivery } from "../../src/pay/delivery.ts";
import { MeshgateNode } from "../../src/node.ts";
import { waitFor } from "../mesh/_helpers.ts";
import { marketNode, startTestChain } from "../pay/_chain.ts";

Deno.test({
  name:
    "deal desk: a seller offline while its quote was funded confirms the deal at its next start",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await startTestChain();
    const dirs: string[] = [];
    const nodes: MeshgateNode[] = [];
    const start = async (dir: string, account: ReturnType<typeof privateKeyToAccount>) => {
      const node = await marketNode(env, dir, account);
      nodes.push(node);
      return node;
    };
    try {
      for (let i = 0; i < 2; i++) {
        dirs.push(await Deno.makeTempDir({ prefix: "meshgate-catchup-" }));
      }
      const sellerAccount = (await env.wallet()).account;
      const buyer = await start(dirs[0]!, (await env.wallet()).account);
      let seller = await start(dirs[1]!, sellerAccount);
      await seller.mesh!.connect(buyer.mesh!.multiaddrs()[0]!);
      seller.market!.addListing({
        topic: "repairs",
        item: "bike tune-up",
        stock: 3,
        currency: "wei",
        price: { unit: "1000000000000000" },
      });
      await waitFor(
        () => buyer.mesh!.libp2p.services.pubsub!.getSubscribers(gossipTopic("repairs")).length > 0,
        "the seller's subscription",
        15_000,
      );
      const intent = await buyer.market!.want({
        topic: "repairs",
        item: "bike tune-up",
        specs: {},
        quantity: 1,
        maxPrice: "2000000000000000",
        currency: "wei",
        expiry: Date.now() + 120_000,
      });
      const { intentId } = await import("../../src/market/intent.ts");
      const id = intentId(intent);
      await waitFor(() => buyer.market!.quotes(id).length === 1, "the quote", 20_000);
      // The seller goes offline; the buyer funds meanwhile, and the chain moves on.
      await seller.stop();
      const { quoteId } = await import("../../src/market/quote.ts");
      const deal = await buyer.market!.accept(quoteId(buyer.market!.quotes(id)[0]!.quote));
      await env.test.mine({ blocks: 3 });
      assert.equal(
        (await getDeal(env.test, { address: env.contracts.escrow, deal: deal.id })).status,
        "funded",
      );
      seller = await start(dirs[1]!, sellerAccount);
      await waitFor(
        () => seller.market!.deals!.get(deal.id)?.status === "confirmed",
        "the seller's catch-up to confirm the deal",
        20_000,
      );
      assert.equal(
        (await getDeal(env.test, { address: env.contracts.escrow, deal: deal.id })).status,
        "confirmed",
      );
      assert.equal(seller.market!.deals!.get(deal.id)!.role, "seller");
      // Seen once more after another restart, handled once: still one deal, and no second confirm sent.
      const txs = seller.market!.deals!.get(deal.id)!.txs.length;
      await seller.stop();
      seller = await start(dirs[1]!, sellerAccount);
      assert.equal(seller.market!.deals!.list().length, 1);
      assert.equal(seller.market!.deals!.get(deal.id)!.txs.length, txs);
    } finally {
      for (const n of nodes) await n.stop().catch(() => {});
      await env.stop();
      for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "one nonce sequence per account: deals and channels sent at once from one account all land",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await startTestChain();
    const chain = { chainId: env.chain.id, rpc: env.anvil.rpc, contracts: env.contracts };
    try {
      const account = (await env.wallet()).account;
      // As node.ts wires them: the deal desk sends through paid delivery's client and queue.
      const delivery = paidDelivery({ chain, account, log: false });
      const { deals } = chainMarket({
        chain,
        account,
        wallet: delivery.wallet,
        transactions: delivery.transactions,
        book: { rated: () => {} },
      });
      const desk = deals!;
      const key = await generateKeyPair("Ed25519");
      const seller = peerIdFromPrivateKey(key).toString();
      const sellerDesk = chainMarket({
        chain,
        account: (await env.wallet()).account,
        book: { rated: () => {} },
      }).deals!;
      const payout = await sellerDesk.payout(key);
      const quote = (i: number) =>
        signQuote(key, seller, i.toString(16).padStart(64, "0"), {
          item: "x",
          quantity: 1,
          price: String(1000 + i),
          currency: "wei",
          terms: "",
          deliveryTime: 0,
          validUntil: Date.now() + 60_000,
          payout,
        });
      const quotes = await Promise.all([0, 1, 2, 3].map(quote));
      const payee = privateKeyToAccount(generatePrivateKey()).address;
      const results = await Promise.allSettled([
        ...quotes.map((q) => desk.fund(q)),
        ...[0, 1, 2, 3].map(() =>
          delivery.transactions.run(() =>
            openChannel(delivery.wallet, {
              address: env.contracts.channelHub,
              payee,
              deposit: 1000n,
              challengePeriod: 3600n,
            })
          )
        ),
      ]);
      const failed = results.filter((r) => r.status === "rejected");
      assert.deepEqual(failed.map((f) => String((f as PromiseRejectedResult).reason)), []);
      assert.equal(desk.list().length, 4);
      assert.equal(
        await env.test.getTransactionCount({ address: account.address }),
        8,
      );
    } finally {
      await env.stop();
    }
  },
});
