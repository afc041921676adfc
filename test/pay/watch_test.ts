/**
 * The desk watches the chain (on a real anvil, real libp2p peers, a real paying client as the attacker): a
 * client that starts closing mid-session is cut off and the operator redeems what it was paid, however little,
 * before the challenge period ends; an RPC that fails for a while delays the closing event but does not lose it.
 */
import assert from "node:assert/strict";
import { multiaddr } from "@multiformats/multiaddr";
import { createWalletClient, custom, http, parseEther } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { finalizeChannel, getChannel, startClose } from "../../src/pay/channel.ts";
import type { PaymentDesk, PaymentDeskInit } from "../../src/pay/mod.ts";
import { waitFor } from "../mesh/_helpers.ts";
import type { Wallet } from "./_chain.ts";
import { type Chunk, chunks, type PayWorld, withPayWorld } from "./_fixtures.ts";

const CHUNK = 16 * 1024;
const PRICE = 10_000_000_000n; // 1.6e14 wei a chunk: a batch of 4 is worth more than a redeem's gas
const BATCH = 4 * CHUNK;

/** RPC methods to fail, and how many times each. */
type Faults = Map<string, number>;

async function session(
  world: PayWorld,
  init: Partial<PaymentDeskInit>,
  faults: Faults,
  fn: (s: {
    op: MeshNode;
    desk: PaymentDesk;
    operator: Wallet;
    client: MeshNode;
    clientWallet: Wallet;
    held: Chunk[];
  }) => Promise<void>,
) {
  const { env } = world;
  const account = privateKeyToAccount(generatePrivateKey());
  await env.test.setBalance({ address: account.address, value: parseEther("100") });
  const inner = http(env.anvil.rpc)({ chain: env.chain });
  // The operator's RPC fails the methods named in `faults` as many times as told.
  const flaky = custom({
    async request({ method, params }) {
      const left = faults.get(method) ?? 0;
      if (left > 0) {
        faults.set(method, left - 1);
        throw new Error(`RPC down (${method})`);
      }
      return await inner.request({ method, params });
    },
  }, { retryCount: 0 });
  const operator = createWalletClient({ account, chain: env.chain, transport: flaky }) as Wallet;
  const held = chunks(16, CHUNK);
  const op = await world.operator(held, {
    wallet: operator,
    watchPollMs: 100,
    retryMs: 100,
    ...init,
  });
  const client = await world.client({ maxPrice: PRICE });
  await client.node.libp2p.dial(multiaddr(op.node.multiaddrs()[0]!));
  await fn({
    op: op.node,
    desk: op.desk,
    operator,
    client: client.node,
    clientWallet: client.wallet,
    held,
  });
}

const withChain = (name: string, fn: (world: PayWorld) => Promise<void>) =>
  withPayWorld(name, { price: PRICE, batchBytes: BATCH, paymentWaitMs: 200 }, fn);

withChain(
  "a client that starts closing mid-session and keeps downloading is cut off; the operator is paid",
  async (world) => {
    const { env } = world;
    const hub = env.contracts.channelHub;
    // A factor no session reaches: without a watch, nothing would be redeemed before stop().
    await session(world, { redeemFactor: 1_000_000 }, new Map(), async (s) => {
      for (const c of s.held.slice(0, 10)) {
        assert.deepEqual(await s.client.fetchChunk(s.op.peerId, c.cid), c.bytes);
      }
      // Vouchers go out beside the download, not awaited by it: wait until the channel is bound.
      await waitFor(() => s.desk.accounts()[0]?.channel !== undefined, "the channel bound");
      const account = s.desk.accounts()[0]!;
      const channel = account.channel!;
      assert.ok(account.accepted > 0n);
      assert.equal(s.desk.stats().redeems, 0);
      const { closesAt } = await startClose(s.clientWallet, { address: hub, channel });
      // Seen within a poll: the client is cut off, however much credit it had left.
      await waitFor(() => s.desk.stats().redeems === 1, "the closing channel's redeem", 15_000);
      await assert.rejects(s.client.fetchChunk(s.op.peerId, s.held[10]!.cid));
      await assert.rejects(s.client.fetchChunk(s.op.peerId, s.held[11]!.cid));
      const after = s.desk.accounts()[0]!;
      const state = await getChannel(env.test, { address: hub, channel });
      assert.ok(state.closesAt === closesAt && state.redeemed === after.accepted);
      // Paid for what was served, short of at most one batch.
      const served = after.servedBytes * PRICE;
      assert.ok(
        served - state.redeemed <= BigInt(BATCH) * PRICE,
        `served ${served}, redeemed ${state.redeemed}`,
      );
      assert.ok(after.servedBytes <= 10n * BigInt(CHUNK) + BigInt(CHUNK));
    });
  },
);

withChain(
  "a client that closes with vouchers below the redeem threshold: the operator redeems them before finalize",
  async (world) => {
    const { env } = world;
    const hub = env.contracts.channelHub;
    await session(world, { redeemFactor: 1_000 }, new Map(), async (s) => {
      for (const c of s.held.slice(0, 8)) await s.client.fetchChunk(s.op.peerId, c.cid);
      // Vouchers go out beside the download, not awaited by it: wait until the channel is bound.
      await waitFor(() => s.desk.accounts()[0]?.channel !== undefined, "the channel bound");
      const account = s.desk.accounts()[0]!;
      const channel = account.channel!;
      await waitFor(
        () => s.desk.accounts()[0]!.accepted >= 2n * BigInt(BATCH) * PRICE,
        "two vouchers",
      );
      assert.equal(s.desk.stats().redeems, 0); // below the threshold: kept for later
      const before = await env.test.getBalance({ address: s.operator.account.address });
      const { closesAt } = await startClose(s.clientWallet, { address: hub, channel });
      await waitFor(() => s.desk.stats().redeems === 1, "the closing channel's redeem", 15_000);
      const accepted = s.desk.accounts()[0]!.accepted;
      // The challenge period passes; the payer finalizes and gets back only what it did not pay.
      await env.travel(Number(closesAt - await env.now()) + 1);
      const { refunded } = await finalizeChannel(s.clientWallet, { address: hub, channel });
      const state = await getChannel(env.test, { address: hub, channel });
      assert.equal(state.redeemed, accepted);
      assert.equal(refunded, state.deposit - accepted);
      const after = await env.test.getBalance({ address: s.operator.account.address });
      assert.ok(after > before, "the redeem earned more than its gas");
    });
  },
);

withChain(
  "an RPC that fails a few times does not lose the closing event, nor the redeem",
  async (world) => {
    const { env } = world;
    const hub = env.contracts.channelHub;
    const faults: Faults = new Map();
    const lines: string[] = [];
    const error = console.error;
    console.error = (line: unknown) => lines.push(String(line));
    try {
      await session(world, { redeemFactor: 1_000 }, faults, async (s) => {
        for (const c of s.held.slice(0, 8)) await s.client.fetchChunk(s.op.peerId, c.cid);
        await waitFor(() => s.desk.accounts()[0]?.channel !== undefined, "the channel bound");
        const channel = s.desk.accounts()[0]!.channel!;
        // From now on the operator's log polls fail 4 times, and its first redeem transaction once.
        faults.set("eth_getLogs", 4);
        faults.set("eth_sendRawTransaction", 1);
        await startClose(s.clientWallet, { address: hub, channel });
        await waitFor(
          () => s.desk.stats().redeems === 1,
          "the redeem after the RPC recovers",
          20_000,
        );
        assert.equal(faults.get("eth_getLogs"), 0);
        assert.equal(faults.get("eth_sendRawTransaction"), 0);
        const state = await getChannel(env.test, { address: hub, channel });
        assert.equal(state.redeemed, s.desk.accounts()[0]!.accepted);
        await assert.rejects(s.client.fetchChunk(s.op.peerId, s.held[8]!.cid));
      });
    } finally {
      console.error = error;
    }
    const logged = lines.flatMap((l) => {
      try {
        return [JSON.parse(l)];
      } catch {
        return [];
      }
    });
    assert.ok(logged.filter((l) => l.msg === "chain watch poll failed").length >= 4);
    assert.equal(logged.filter((l) => l.msg === "closing channel redeem failed").length, 1);
  },
);
