/**
 * Deals over HTTP on two real nodes with a chain (anvil) and a pay account: the buyer accepts the quote
 * (`POST /api/market/quotes/<id>/accept`), the seller's node confirms by itself, the buyer releases and rates;
 * the rating reaches the seller's node, whose book's trade factor for itself moves. A second rating is refused.
 */
import assert from "node:assert/strict";
import { createGateway } from "../../edge/app.ts";
import { gossipTopic } from "../../src/market/intent.ts";
import { MeshgateNode } from "../../src/node.ts";
import { waitFor } from "../mesh/_helpers.ts";
import type { PrivateKeyAccount } from "viem/accounts";
import { marketNode, startTestChain } from "../pay/_chain.ts";
import { main } from "../../src/cli.ts";

/** Runs the CLI in process; returns its exit code and what it printed. */
async function cli(args: string[]): Promise<{ code: number; out: string }> {
  const lines: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => void lines.push(a.join(" "));
  console.error = (...a: unknown[]) => void lines.push(a.join(" "));
  try {
    return { code: await main(args), out: lines.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

const TOKEN = "a-token-of-sixteen-chars";
const auth = { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" };

Deno.test({
  name: "deals API: accept, auto-confirm, release, rate once; the rating reaches the seller's book",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await startTestChain();
    const dirs: string[] = [];
    const nodes: MeshgateNode[] = [];
    const servers: Deno.HttpServer[] = [];
    const accounts = new Map<string, PrivateKeyAccount>();
    const start = async (again?: string) => {
      const dir = again ?? await Deno.makeTempDir({ prefix: "meshgate-deals-api-" });
      if (!again) dirs.push(dir);
      const account = accounts.get(dir) ?? (await env.wallet()).account;
      accounts.set(dir, account);
      const node = await marketNode(env, dir, account);
      nodes.push(node);
      const app = createGateway(node, { apiToken: TOKEN }).app;
      const call = async (method: string, path: string, body?: unknown) => {
        const res = await app.request(`http://127.0.0.1${path}`, {
          method,
          headers: { ...auth, origin: "http://127.0.0.1" },
          ...(body ? { body: JSON.stringify(body) } : {}),
        });
        return { status: res.status, json: await res.json() };
      };
      const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
      servers.push(server);
      const url = `http://127.0.0.1:${server.addr.port}`;
      return { node, call, url };
    };
    try {
      const buyer = await start();
      const seller = await start();
      await seller.node.mesh!.connect(buyer.node.mesh!.multiaddrs()[0]!);
      const price = "20000000000000000"; // 0.02 ETH
      assert.equal(
        (await seller.call("POST", "/api/market/listings", {
          topic: "repairs",
          item: "bike tune-up",
          stock: 3,
          currency: "wei",
          price: { unit: price },
          deliveryTime: 0,
        })).status,
        201,
      );
      await waitFor(
        () =>
          buyer.node.mesh!.libp2p.services.pubsub!.getSubscribers(gossipTopic("repairs")).length >
            0,
        "the seller's subscription",
        15_000,
      );
      const gw = ["--gateway", buyer.url, "--api-token", TOKEN];
      const want = await cli([
        "market",
        "want",
        "repairs",
        "bike tune-up",
        "--max",
        "30000000000000000",
        "--ttl",
        "2m",
        ...gw,
      ]);
      assert.equal(want.code, 0, want.out);
      const posted = { json: { id: want.out.trim() } };
      assert.match(posted.json.id, /^[0-9a-f]{64}$/);
      let quotes: { id: string; price: string; payout?: { address: string } }[] = [];
      for (let i = 0; i < 80 && quotes.length === 0; i++) {
        quotes =
          (await buyer.call("GET", `/api/market/quotes?intent=${posted.json.id}`)).json.quotes;
        if (!quotes.length) await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(quotes.length, 1);
      assert.ok(quotes[0]!.payout?.address, "the quote names the seller's account");
      assert.equal((await buyer.call("POST", "/api/market/quotes/0x00/accept")).status, 404);
      const accepted = await buyer.call("POST", `/api/market/quotes/${quotes[0]!.id}/accept`);
      assert.equal(accepted.status, 201, JSON.stringify(accepted.json));
      assert.equal(accepted.json.amount, price);
      const id = accepted.json.id as string;
      let confirmed = false;
      for (let i = 0; i < 80 && !confirmed; i++) {
        const deals = (await seller.call("GET", "/api/market/deals")).json.deals;
        confirmed = deals.some((d: { id: string; status: string; role: string }) =>
          d.id === id && d.status === "confirmed" && d.role === "seller"
        );
        if (!confirmed) await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(confirmed, "the seller's node confirmed the deal");
      const released = await buyer.call("POST", `/api/market/deals/${id}/release`);
      assert.equal(released.status, 200, JSON.stringify(released.json));
      assert.equal(released.json.status, "released");
      assert.equal(
        (await buyer.call("POST", `/api/market/deals/${id}/rate`, { value: 2 })).status,
        400,
      );
      const sellerPeer = seller.node.mesh!.peerId;
      const trade = () => seller.node.reputation!.book.score(sellerPeer).factors.trade;
      const before = trade();
      const rated = await buyer.call("POST", `/api/market/deals/${id}/rate`, { value: 0.3 });
      assert.equal(rated.status, 200, JSON.stringify(rated.json));
      assert.equal(rated.json.rating.sellerPeer, sellerPeer);
      await waitFor(() => trade() < before, "the rating to reach the seller's book", 15_000);
      assert.ok(buyer.node.reputation!.book.score(sellerPeer).factors.trade < 1);
      const again = await buyer.call("POST", `/api/market/deals/${id}/rate`, { value: 1 });
      assert.equal(again.status, 409);
      const mine = (await buyer.call("GET", "/api/market/deals")).json.deals;
      assert.deepEqual(mine.map((d: { rated?: number }) => d.rated), [0.3]);
      // The same through the CLI.
      const listed = await cli(["market", "deals", ...gw]);
      assert.equal(listed.code, 0, listed.out);
      assert.match(listed.out, new RegExp(`^${id}  buyer  released  ${price}  rated 0.3$`));
      const quoted = await cli(["market", "quotes", posted.json.id, ...gw]);
      assert.match(quoted.out, new RegExp(`^${quotes[0]!.id}  ${price} wei`));
      const twice = await cli(["market", "rate", id, "1", ...gw]);
      assert.equal(twice.code, 1);
      assert.match(twice.out, /rated already.*HTTP 409/);
      assert.equal((await cli(["market", "bogus", ...gw])).code, 2);
      // Deals outlive a restart (market/deals.json).
      await buyer.node.stop();
      const back = await start(dirs[0]!);
      const kept = (await back.call("GET", "/api/market/deals")).json.deals;
      assert.deepEqual(
        kept.map((d: { id: string; status: string; rated?: number }) => [d.id, d.status, d.rated]),
        [[id, "released", 0.3]],
      );
    } finally {
      for (const s of servers) await s.shutdown();
      for (const n of nodes) await n.stop();
      await env.stop();
      for (const d of dirs) await Deno.remove(d, { recursive: true }).catch(() => {});
    }
  },
});
