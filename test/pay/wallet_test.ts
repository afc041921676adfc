/**
 * The paying client protects its wallet, on a real anvil with real operators (PaymentDesk over libp2p on
 * loopback): an operator quoting ~4 gwei a byte for a file only it holds, asked through a victim's gateway, is
 * paid nothing and the read fails with 402; an honest cheaper holder is used instead; spending caps per file
 * and per day; idle channels are closed and their deposits come back.
 */
import assert from "node:assert/strict";
import { multiaddr } from "@multiformats/multiaddr";
import { createGateway } from "../../edge/app.ts";
import { cidOf } from "../../src/content/cid.ts";
import { fetchFromMesh } from "../../src/mesh/fetch.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { meshPeers } from "../../src/mesh/peers.ts";
import { MeshgateNode } from "../../src/node.ts";
import { getChannel } from "../../src/pay/channel.ts";
import {
  DEFAULT_MAX_PRICE,
  type PayerEvent,
  PayingClient,
  PaymentDesk,
  PriceAboveCapError,
  SpendingCapError,
} from "../../src/pay/mod.ts";
import { MAX_CHUNK_BYTES } from "../../src/pay/limits.ts";
import { MemorySource, randomBytes, startNode, stopNodes, waitFor } from "../mesh/_helpers.ts";
import { startTestChain, type TestChain } from "./_chain.ts";

const KiB = 1024;
const BATCH = 64 * KiB;
/** The attacker's price: 4 gwei a byte, ~1 ETH per default deposit of 256 MiB. */
const GREEDY = 4_000_000_000n;
/** An honest operator's price, under the default ceiling. */
const FAIR = 100_000_000n;

interface Operator {
  node: MeshNode;
  desk: PaymentDesk;
}

async function operator(env: TestChain, price: bigint, held: Uint8Array[]): Promise<Operator> {
  const desk = new PaymentDesk({
    chain: { chainId: env.chain.id, contracts: env.contracts },
    wallet: await env.wallet(),
    price,
    batchBytes: BATCH,
    paymentWaitMs: 300,
  });
  const store = new MemorySource();
  for (const bytes of held) await store.put(cidOf(bytes), bytes);
  const node = await startNode({ store, exchange: { gate: desk } });
  await desk.start(node.libp2p);
  return { node, desk };
}

Deno.test({
  name:
    "an over-priced sole holder behind a gateway is paid nothing (402); a cheaper holder is used instead",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await startTestChain();
    const dir = await Deno.makeTempDir({ prefix: "meshgate-wallet-" });
    const ops: Operator[] = [];
    let victim: MeshgateNode | undefined;
    let server: Deno.HttpServer | undefined;
    try {
      // Within the desk's credit (2 x BATCH): served first, paid after.
      const file = randomBytes(96 * KiB);
      const cid = cidOf(file);
      const greedy = await operator(env, GREEDY, [file]);
      ops.push(greedy);
      const wallet = await env.wallet();
      const events: PayerEvent[] = [];
      victim = await MeshgateNode.create({
        dataDir: dir,
        parityWorkers: 0,
        findTimeoutMs: 2000,
        chain: { chainId: env.chain.id, rpc: env.anvil.rpc, contracts: env.contracts },
        pay: {
          account: wallet.account,
          batchBytes: BATCH,
          log: false,
          onPayerEvent: (e) => events.push(e),
        },
        mesh: {
          listen: ["/ip4/127.0.0.1/tcp/0"],
          bootstrap: [String(greedy.node.multiaddrs()[0])],
        },
      });
      const mesh = victim.mesh!;
      const deadline = Date.now() + 10_000;
      while (!(await meshPeers(mesh)).includes(greedy.node.peerId)) {
        assert.ok(Date.now() < deadline, "the victim sees the greedy operator");
        await new Promise((r) => setTimeout(r, 50));
      }
      const { app } = createGateway(victim);
      server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
      const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
      const balance = await env.test.getBalance({ address: wallet.account.address });

      // Only the greedy operator holds it: refused before anything is asked, with the price and the cap.
      const res = await fetch(`${url}/mesh/${cid}`);
      assert.equal(res.status, 402);
      const body = await res.json() as { error: string; message: string };
      assert.equal(body.error, "price_above_cap");
      assert.match(body.message, new RegExp(`${GREEDY} wei per byte`));
      assert.match(body.message, new RegExp(`ceiling of ${DEFAULT_MAX_PRICE}`));
      assert.equal(
        await env.test.getBalance({ address: wallet.account.address }),
        balance,
        "no wei left",
      );
      assert.equal(victim.delivery!.payer.stats().channels, 0, "no channel opened");
      assert.equal(greedy.desk.stats().servedBytes, 0n, "the greedy operator served nothing");
      assert.ok(events.some((e) => e.kind === "quote_refused" && e.peer === greedy.node.peerId));

      // An honest holder joins: it is used, the greedy one still gets nothing.
      const fair = await operator(env, FAIR, [file]);
      ops.push(fair);
      await mesh.libp2p.dial(multiaddr(fair.node.multiaddrs()[0]!));
      while (!(await meshPeers(mesh)).includes(fair.node.peerId)) {
        assert.ok(Date.now() < deadline + 10_000, "the victim sees the fair operator");
        await new Promise((r) => setTimeout(r, 50));
      }
      const ok = await fetch(`${url}/mesh/${cid}`);
      assert.equal(ok.status, 200, await ok.clone().text());
      assert.deepEqual(new Uint8Array(await ok.arrayBuffer()), file);
      await victim.delivery!.payer.settle();
      const accounts = victim.delivery!.payer.operators();
      const paidTo = (peer: string) => accounts.find((a) => a.peer === peer)?.cumulative ?? 0n;
      assert.equal(paidTo(greedy.node.peerId), 0n);
      assert.equal(paidTo(fair.node.peerId), FAIR * BigInt(file.length));

      // GET /api/channels: the fair operator's channel, its deposit, and what is still locked.
      const channels = await (await fetch(`${url}/api/channels`)).json() as {
        mode: string;
        channels: {
          peer: string;
          channel: string;
          status: string;
          depositWei: string;
          lockedWei: string;
        }[];
      };
      assert.equal(channels.mode, "paid");
      assert.equal(channels.channels.length, 1);
      const [ch] = channels.channels;
      assert.equal(ch!.peer, fair.node.peerId);
      assert.equal(ch!.status, "open");
      const onChain = await getChannel(env.test, {
        address: env.contracts.channelHub,
        channel: ch!.channel as `0x${string}`,
      });
      assert.equal(BigInt(ch!.depositWei), onChain.deposit);
      assert.equal(BigInt(ch!.lockedWei), onChain.deposit - FAIR * BigInt(file.length));
    } finally {
      await server?.shutdown();
      await victim?.stop();
      await Promise.all(ops.map((o) => o.desk.stop()));
      await stopNodes(...ops.map((o) => o.node));
      await env.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "spending caps: a file, then a day, stop paid fetches before the cap is passed; a new file starts over",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await startTestChain();
    const nodes: MeshNode[] = [];
    const ops: Operator[] = [];
    let payer: PayingClient | undefined;
    try {
      const chunkBytes = 16 * KiB;
      const held = Array.from({ length: 12 }, () => randomBytes(chunkBytes));
      const price = 1_000_000_000n;
      const op = await operator(env, price, held);
      ops.push(op);
      const perChunk = price * BigInt(chunkBytes);
      // Each fetch reserves a whole largest chunk: 4 chunks of 16 KiB fit in a file, 8 in a day.
      const reserve = price * BigInt(MAX_CHUNK_BYTES);
      payer = new PayingClient({
        chain: { chainId: env.chain.id, contracts: env.contracts },
        wallet: await env.wallet(),
        batchBytes: BATCH,
        maxSpendPerFile: reserve + 3n * perChunk,
        maxSpendPerDay: reserve + 7n * perChunk,
      });
      const client = await startNode({ exchange: { payer } });
      nodes.push(client);
      await payer.start(client.libp2p);
      await client.libp2p.dial(multiaddr(op.node.multiaddrs()[0]!));
      await waitFor(() => client.libp2p.getPeers().length > 0, "connected");
      const fetchAll = async (budget: { spentWei: bigint }, from: number, n: number) => {
        const got: Uint8Array[] = [];
        for (let i = from; i < from + n; i++) {
          const bytes = await fetchFromMesh(client, cidOf(held[i]!), {
            budget,
            lookupTimeoutMs: 200,
          });
          assert.ok(bytes);
          got.push(bytes);
        }
        return got;
      };
      const first = { spentWei: 0n };
      assert.equal((await fetchAll(first, 0, 4)).length, 4);
      assert.equal(first.spentWei, 4n * perChunk);
      await assert.rejects(
        fetchAll(first, 4, 1),
        (e: unknown) =>
          e instanceof SpendingCapError && e.cap === "file" && /per-file/.test(e.message),
      );
      // Another file: its own budget, until the day's cap.
      const second = { spentWei: 0n };
      assert.equal((await fetchAll(second, 4, 4)).length, 4);
      await assert.rejects(
        fetchAll(second, 8, 1),
        (e: unknown) => e instanceof SpendingCapError && e.cap === "day",
      );
      // A new file does not reset the day.
      await assert.rejects(
        fetchAll({ spentWei: 0n }, 8, 1),
        (e: unknown) =>
          e instanceof SpendingCapError && e.cap === "day" && /per-day/.test(e.message),
      );
      await payer.settle();
      assert.equal(payer.stats().spentWei, 8n * perChunk, "paid for exactly what it fetched");
      assert.ok(payer.stats().spentWei <= reserve + 7n * perChunk, "never above the day's cap");
    } finally {
      await payer?.stop();
      await Promise.all(ops.map((o) => o.desk.stop()));
      await stopNodes(...nodes, ...ops.map((o) => o.node));
      await env.stop();
    }
  },
});

Deno.test({
  name:
    "an idle channel is closed, then finalized after its challenge period: the unspent deposit comes back",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await startTestChain();
    const nodes: MeshNode[] = [];
    let desk: PaymentDesk | undefined;
    let payer: PayingClient | undefined;
    try {
      // 1 MiB at 1 gwei a byte: worth a redeem at anvil's gas price.
      const held = Array.from({ length: 16 }, () => randomBytes(64 * KiB));
      const price = 1_000_000_000n;
      const op = await operator(env, price, held);
      desk = op.desk;
      nodes.push(op.node);
      const wallet = await env.wallet();
      const events: PayerEvent[] = [];
      payer = new PayingClient({
        chain: { chainId: env.chain.id, contracts: env.contracts },
        wallet,
        batchBytes: BATCH,
        idleCloseMs: 60_000,
        onEvent: (e) => events.push(e),
      });
      const client = await startNode({ exchange: { payer } });
      nodes.push(client);
      await payer.start(client.libp2p);
      for await (
        const c of client.fetchChunks(
          op.node.multiaddrs()[0]!,
          held.map((b) => cidOf(b)),
        )
      ) {
        assert.ok(c.bytes);
      }
      await payer.settle();
      const [account] = payer.operators();
      const channel = account!.channel!;
      const spent = account!.cumulative;
      assert.equal(spent, price * BigInt(16 * 64 * KiB));
      // Still in use: nothing closes.
      await payer.sweep(Date.now() + 1000);
      assert.equal(payer.closing().length, 0);
      // Idle for longer than idleCloseMs: closing starts, the operator can still redeem what it is owed.
      await payer.sweep(Date.now() + 61_000);
      assert.equal(payer.closing().length, 1);
      assert.equal(
        (await getChannel(env.test, { address: env.contracts.channelHub, channel })).status,
        "closing",
      );
      assert.ok(events.some((e) => e.kind === "channel_closing" && e.channel === channel));
      assert.equal(payer.stats().channels, 0, "the operator's next chunk goes on a new channel");
      await desk.redeemAll({ factor: 1 });
      // Not before the challenge period: still closing.
      await payer.sweep();
      assert.equal(payer.closing().length, 1);
      await env.travel(86_400 + 1);
      const before = await env.test.getBalance({ address: wallet.account.address });
      await payer.sweep();
      assert.equal(payer.closing().length, 0);
      const state = await getChannel(env.test, { address: env.contracts.channelHub, channel });
      assert.equal(state.status, "closed");
      const finalized = events.find((e) => e.kind === "channel_finalized");
      assert.ok(finalized && finalized.kind === "channel_finalized");
      assert.equal(state.redeemed, spent, "the operator redeemed during the challenge period");
      assert.equal(finalized.refunded, account!.deposit - spent);
      assert.ok(await env.test.getBalance({ address: wallet.account.address }) > before);
    } finally {
      await payer?.stop();
      await desk?.stop();
      await stopNodes(...nodes);
      await env.stop();
    }
  },
});

Deno.test("a price ceiling refuses dearer quotes with the price and the ceiling named", () => {
  const e = new PriceAboveCapError("peer-x", GREEDY, DEFAULT_MAX_PRICE);
  assert.equal(e.code, "price_above_cap");
  assert.match(e.message, /4000000000 wei per byte, above this node's price ceiling of 1000000000/);
});

Deno.test({
  name: "of two holders within the ceiling, the cheaper one is asked and paid",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await startTestChain();
    const dir = await Deno.makeTempDir({ prefix: "meshgate-wallet-" });
    const ops: Operator[] = [];
    let reader: MeshgateNode | undefined;
    let server: Deno.HttpServer | undefined;
    try {
      // Four files, so that the XOR order alone would pick the cheaper holder for all of them 1 time in 16.
      const files = Array.from({ length: 4 }, () => randomBytes(32 * KiB));
      const dear = await operator(env, DEFAULT_MAX_PRICE, files);
      const cheap = await operator(env, FAIR, files);
      ops.push(dear, cheap);
      reader = await MeshgateNode.create({
        dataDir: dir,
        parityWorkers: 0,
        chain: { chainId: env.chain.id, rpc: env.anvil.rpc, contracts: env.contracts },
        pay: { account: (await env.wallet()).account, batchBytes: BATCH, log: false },
        mesh: {
          listen: ["/ip4/127.0.0.1/tcp/0"],
          bootstrap: [dear.node.multiaddrs()[0]!, cheap.node.multiaddrs()[0]!],
        },
      });
      const mesh = reader.mesh!;
      const deadline = Date.now() + 10_000;
      while ((await meshPeers(mesh)).length < 2) {
        assert.ok(Date.now() < deadline, "the reader sees both operators");
        await new Promise((r) => setTimeout(r, 50));
      }
      const { app } = createGateway(reader);
      server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, app.fetch);
      const url = `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`;
      for (const file of files) {
        const res = await fetch(`${url}/mesh/${cidOf(file)}`);
        assert.equal(res.status, 200);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), file);
      }
      await reader.delivery!.payer.settle();
      const paid = (peer: string) =>
        reader!.delivery!.payer.operators().find((a) => a.peer === peer)?.cumulative ?? 0n;
      assert.equal(paid(dear.node.peerId), 0n, "the dearer holder was not used");
      assert.equal(paid(cheap.node.peerId), FAIR * BigInt(4 * 32 * KiB));
    } finally {
      await server?.shutdown();
      await reader?.stop();
      await Promise.all(ops.map((o) => o.desk.stop()));
      await stopNodes(...ops.map((o) => o.node));
      await env.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
