import { httpStatus } from "../../edge/errors.ts";
/**
 * Paid delivery over real libp2p nodes on loopback and a real anvil: the desk (operator side) metering the chunk
 * exchange, the paying client, forged vouchers, and the redeem policy.
 */
import assert from "node:assert/strict";
import { type Hex, parseEther, parseEventLogs } from "viem";
import type { CID } from "../../src/content/cid.ts";
import { DeliveryRefusedError } from "../../src/mesh/exchange.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { channelHubAbi } from "../../src/pay/abi.ts";
import { getChannel, openChannel } from "../../src/pay/channel.ts";
import {
  checkPrice,
  PAY_PROTOCOL,
  type PayerEvent,
  QuoteRefusedError,
  REDEEM_GAS,
  requestQuote,
  submitVoucher,
  VoucherRefusedError,
} from "../../src/pay/mod.ts";
import { ReceiptBatch } from "../../src/pay/receipts.ts";
import { channelHubDomain, signVoucher, type Voucher } from "../../src/pay/voucher.ts";
import { hangUpSeen, MemorySource, startNode } from "../mesh/_helpers.ts";
import type { TestChain, Wallet } from "./_chain.ts";
import {
  type Chunk,
  chunks as makeChunks,
  type Client,
  type Operator,
  type PayWorld,
  voucherOf,
  withPayWorld,
} from "./_fixtures.ts";

const KiB = 1024;
const CHUNK = 16 * KiB;
const BATCH = 64 * KiB;
/** 1 gwei per byte: ~1e15 wei per MiB, far above a redeem's gas at anvil's fees. */
const PRICE = 1_000_000_000n;

const chunks = (n: number, size = CHUNK) => makeChunks(n, size);

/** Runs `fn` with one anvil; every node started through the world is stopped afterwards. */
const withChain = (name: string, fn: (world: PayWorld) => Promise<void>) =>
  withPayWorld(name, { price: PRICE, batchBytes: BATCH, paymentWaitMs: 300 }, fn);

async function fetchAll(client: MeshNode, operator: MeshNode, cids: CID[]): Promise<Chunk[]> {
  const got: Chunk[] = [];
  for await (const c of client.fetchChunks(operator.multiaddrs()[0]!, cids)) {
    assert.ok(c.bytes, `chunk ${c.cid} was found`);
    got.push({ cid: c.cid, bytes: c.bytes });
  }
  return got;
}

/** Wei the hub paid out on `channel`, from its VoucherRedeemed events. */
async function redeemedTo(env: TestChain, channel: Hex): Promise<bigint> {
  const logs = await env.test.getLogs({
    address: env.contracts.channelHub,
    fromBlock: 0n,
    toBlock: "latest",
  });
  return parseEventLogs({ abi: channelHubAbi, eventName: "VoucherRedeemed", logs })
    .filter((l) => l.args.channel === channel)
    .reduce((sum, l) => sum + l.args.paid, 0n);
}

withChain(
  "PayingClient pays a voucher per batch; the desk accepts each and redeems on stop, exactly",
  async ({ env, operator, client }) => {
    const held = chunks(32);
    const op = await operator(held);
    const cl = await client();
    const before = await env.test.getBalance({ address: op.wallet.account.address });

    const got = await fetchAll(cl.node, op.node, held.map((c) => c.cid));
    assert.deepEqual(got.map((c) => c.bytes), held.map((c) => c.bytes));
    await cl.payer!.settle();

    const total = BigInt(32 * CHUNK);
    const [account] = op.desk.accounts();
    assert.equal(account!.peer, cl.node.peerId);
    assert.equal(account!.servedBytes, total);
    assert.equal(account!.accepted, PRICE * total);
    assert.equal(account!.vouchers, 32 * CHUNK / BATCH);
    const [seen] = cl.payer!.operators();
    assert.equal(seen!.paidBytes, total);
    assert.equal(seen!.unpaidBytes, 0n);
    assert.equal(seen!.quote!.payee, op.wallet.account.address);

    await op.desk.stop();
    const channel = account!.channel!;
    const state = await getChannel(env.test, { address: env.contracts.channelHub, channel });
    assert.equal(state.redeemed, PRICE * total);
    assert.equal(state.payee, op.wallet.account.address);
    assert.equal(await redeemedTo(env, channel), PRICE * total);
    // The operator's account sent only its redeems: its balance grew by what they paid, less their gas.
    const stats = op.desk.stats();
    assert.ok(stats.redeems >= 1);
    assert.equal(stats.redeemedWei, PRICE * total);
    const after = await env.test.getBalance({ address: op.wallet.account.address });
    assert.equal(after - before, PRICE * total - stats.redeemGasCost);
    // The last voucher's receipts are provable on-chain.
    assert.equal(state.receiptCount, BigInt(BATCH / CHUNK));
  },
);

withChain(
  "a peer that does not pay is served its credit, then refused with payment_required",
  async ({ operator, client }) => {
    const held = chunks(12);
    const op = await operator(held, { creditBytes: 4 * CHUNK });
    const cl = await client(false);
    const got: Chunk[] = [];
    const err = await (async () => {
      try {
        for await (
          const c of cl.node.fetchChunks(
            op.node.multiaddrs()[0]!,
            held.map((c) => c.cid),
          )
        ) {
          got.push({ cid: c.cid, bytes: c.bytes! });
        }
      } catch (e) {
        return e;
      }
    })();
    assert.ok(err instanceof DeliveryRefusedError, `expected a refusal, got ${err}`);
    assert.equal(err.code, "payment_required");
    assert.equal(httpStatus(err), 402);
    assert.equal(got.length, 4);
    assert.equal(op.desk.accounts()[0]!.servedBytes, BigInt(4 * CHUNK));
    // Concurrent requests cannot overdraw: the credit is spent, so every one of them is refused.
    const results = await Promise.allSettled(
      held.slice(4, 10).map((c) => cl.node.fetchChunk(op.node.peerId, c.cid)),
    );
    assert.ok(results.every((r) => r.status === "rejected"));
    assert.equal(op.desk.accounts()[0]!.servedBytes, BigInt(4 * CHUNK));
  },
);

withChain(
  "concurrent requests of one unpaid peer never get past the credit",
  async ({ operator, client }) => {
    const held = chunks(10);
    const op = await operator(held, { creditBytes: 4 * CHUNK, paymentWaitMs: 200 });
    const cl = await client(false);
    await cl.node.connect(op.node.multiaddrs()[0]!);
    const results = await Promise.allSettled(
      held.map((c) => cl.node.fetchChunk(op.node.peerId, c.cid)),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 4);
    for (const r of results) {
      if (r.status === "rejected") {
        assert.equal((r.reason as DeliveryRefusedError).code, "payment_required");
      }
    }
  },
);

withChain(
  "a client whose batch outgrows the credit pays when refused, and the exchange asks again",
  async ({ operator, client }) => {
    const held = chunks(16);
    const op = await operator(held, { creditBytes: 3 * CHUNK, paymentWaitMs: 150 });
    // The client would pay only every 1 MiB: the operator cuts it off at 48 KiB every time.
    const cl = await client({ batchBytes: 1024 * KiB });
    const got = await fetchAll(cl.node, op.node, held.map((c) => c.cid));
    assert.equal(got.length, 16);
    await cl.payer!.settle();
    const [account] = op.desk.accounts();
    assert.equal(account!.accepted, PRICE * BigInt(16 * CHUNK));
    assert.ok(account!.vouchers >= 5, `paid ${account!.vouchers} times`);
  },
);

withChain(
  "a voucher lost on the way is sent again when the operator asks for payment",
  async ({ operator, client }) => {
    const held = chunks(16);
    const op = await operator(held, { creditBytes: 4 * CHUNK, paymentWaitMs: 500 });
    const cl = await client();
    await cl.node.connect(op.node.multiaddrs()[0]!);
    await cl.payer!.quote(op.node.peerId);
    // The operator stops taking vouchers for a moment: the first one, sent in the background, is lost.
    await op.node.libp2p.unhandle(PAY_PROTOCOL);
    const back = setTimeout(() => op.desk.start(op.node.libp2p), 250);
    try {
      const got = await fetchAll(cl.node, op.node, held.map((c) => c.cid));
      assert.equal(got.length, 16);
    } finally {
      clearTimeout(back);
    }
    await cl.payer!.settle();
    const [seen] = cl.payer!.operators();
    assert.ok(seen!.lastError, "the first voucher failed");
    assert.equal(seen!.accepted, PRICE * BigInt(16 * CHUNK));
    assert.equal(op.desk.accounts()[0]!.accepted, PRICE * BigInt(16 * CHUNK));
  },
);

withChain(
  "PayingClient tops its channel up when the deposit runs low",
  async ({ env, operator, client }) => {
    const held = chunks(16);
    const op = await operator(held);
    const cl = await client({ depositBytes: 2 * BATCH });
    await fetchAll(cl.node, op.node, held.map((c) => c.cid));
    await cl.payer!.settle();
    const [seen] = cl.payer!.operators();
    const state = await getChannel(env.test, {
      address: env.contracts.channelHub,
      channel: seen!.channel!,
    });
    assert.equal(state.deposit, PRICE * BigInt(16 * CHUNK));
    assert.equal(op.desk.accounts()[0]!.accepted, PRICE * BigInt(16 * CHUNK));
  },
);

withChain(
  "an operator without a desk is free: the paying client opens no channel",
  async ({ env, client, track }) => {
    const held = chunks(4);
    const store = new MemorySource();
    for (const c of held) await store.put(c.cid, c.bytes);
    const cl = await client();
    const free = track(await startNode({ store }));
    await fetchAll(cl.node, free, held.map((c) => c.cid));
    await cl.payer!.settle();
    const [seen] = cl.payer!.operators();
    assert.equal(seen!.quote!.price, 0n);
    assert.equal(seen!.channel, undefined);
    assert.equal(
      await env.test.getTransactionCount({ address: cl.wallet.account.address }),
      0,
    );
  },
);

/** A client that speaks the pay protocol by hand, to send what an honest PayingClient never would. */
async function rawClient(
  env: TestChain,
  client: () => Promise<Client>,
  op: Operator,
  challengePeriod = 3600n,
) {
  const cl = await client();
  await cl.node.connect(op.node.multiaddrs()[0]!);
  const domain = channelHubDomain(env.chain.id, env.contracts.channelHub);
  const quote = await requestQuote(cl.node.libp2p, op.node.peerId);
  const { channel } = await openChannel(cl.wallet, {
    address: env.contracts.channelHub,
    payee: quote.payee,
    deposit: parseEther("1"),
    challengePeriod,
  });
  const voucher = (amount: bigint, ch: Hex = channel): Voucher => voucherOf(ch, amount);
  const send = async (v: Voucher, signer: Wallet = cl.wallet) =>
    await submitVoucher(cl.node.libp2p, op.node.peerId, {
      voucher: v,
      signature: await signVoucher(signer.account, domain, v),
      receipts: [],
    });
  return { ...cl, channel, voucher, send, domain };
}

/** Asserts the forgery was refused, the connection dropped, and the exchange now refuses the peer. */
async function assertBanned(
  attempt: Promise<unknown>,
  cl: { node: MeshNode },
  op: Operator,
  held: Chunk[],
  code: string,
): Promise<void> {
  const hungUp = hangUpSeen(cl.node, op.node.peerId);
  // The desk answers before it hangs up, so the forger learns why.
  await assert.rejects(
    attempt,
    (e: unknown) => e instanceof VoucherRefusedError && e.code === code,
  );
  await hungUp;
  await assert.rejects(
    cl.node.fetchChunk(op.node.multiaddrs()[0]!, held[0]!.cid),
    (e: unknown) => e instanceof DeliveryRefusedError && e.code === "peer_banned",
  );
  const account = op.desk.accounts().find((a) => a.peer === cl.node.peerId);
  assert.ok(account?.banned, "the peer is banned");
}

withChain(
  "forged vouchers are refused, the connection dropped and the peer refused after",
  async ({ env, operator, client }) => {
    const held = chunks(2);
    const op = await operator(held);

    // Signed by someone other than the channel's payer.
    const a = await rawClient(env, client, op);
    await assertBanned(a.send(a.voucher(PRICE), await env.wallet()), a, op, held, "voucher_signer");

    // Lower than an accepted voucher, then a replay of it.
    const b = await rawClient(env, client, op);
    await b.send(b.voucher(5n * PRICE));
    await assertBanned(b.send(b.voucher(4n * PRICE)), b, op, held, "voucher_amount");
    const c = await rawClient(env, client, op);
    await c.send(c.voucher(5n * PRICE));
    await assertBanned(c.send(c.voucher(5n * PRICE)), c, op, held, "voucher_replay");

    // A channel that pays someone else.
    const d = await rawClient(env, client, op);
    const other = await openChannel(d.wallet, {
      address: env.contracts.channelHub,
      payee: (await env.wallet()).account.address,
      deposit: parseEther("1"),
      challengePeriod: 3600n,
    });
    await assertBanned(
      d.send(d.voucher(PRICE, other.channel)),
      d,
      op,
      held,
      "voucher_channel_unusable",
    );

    // Another channel than the one this peer pays through.
    const e = await rawClient(env, client, op);
    await e.send(e.voucher(PRICE));
    const second = await openChannel(e.wallet, {
      address: env.contracts.channelHub,
      payee: op.wallet.account.address,
      deposit: parseEther("1"),
      challengePeriod: 3600n,
    });
    await assertBanned(
      e.send(e.voucher(2n * PRICE, second.channel)),
      e,
      op,
      held,
      "voucher_channel",
    );

    // A receipts root that does not hash the receipts sent with it.
    const f = await rawClient(env, client, op);
    const batch = new ReceiptBatch();
    batch.add({
      operator: op.wallet.account.address,
      client: f.wallet.account.address,
      cid: held[0]!.cid.bytes,
      size: BigInt(CHUNK),
      time: 1n,
    });
    const lying = { ...f.voucher(PRICE), receiptsRoot: batch.root(), receiptCount: 1n };
    await assertBanned(
      submitVoucher(f.node.libp2p, op.node.peerId, {
        voucher: lying,
        signature: await signVoucher(f.wallet.account, f.domain, lying),
        receipts: [{ ...batch.receipts[0]!, size: BigInt(CHUNK + 1) }],
      }),
      f,
      op,
      held,
      "voucher_receipts",
    );

    // Honest peers are untouched, and nothing forged was ever counted as paid.
    const g = await rawClient(env, client, op);
    assert.deepEqual(await g.send(g.voucher(PRICE)), { cumulativeAmount: PRICE, servedBytes: 0n });
    assert.equal(op.desk.stats().banned, 6);
    // Accepted: b and c 5 x PRICE each, e and g PRICE each.
    assert.equal(op.desk.stats().acceptedWei, 12n * PRICE);
  },
);

withChain(
  "vouchers above the deposit, or on a channel closable too soon, are refused without a ban",
  async ({ env, operator, client }) => {
    const held = chunks(2);
    const op = await operator(held);
    const a = await rawClient(env, client, op);
    await assert.rejects(
      a.send(a.voucher(parseEther("2"))),
      (e: unknown) => e instanceof VoucherRefusedError && e.code === "voucher_deposit",
    );
    assert.ok(a.node.connectedPeers().includes(op.node.peerId));
    await a.send(a.voucher(PRICE));

    // A payer could close a 60 s channel and take its deposit back before the operator redeems.
    const b = await rawClient(env, client, op, 60n);
    await assert.rejects(
      b.send(b.voucher(PRICE)),
      (e: unknown) => e instanceof VoucherRefusedError && e.code === "voucher_channel_unusable",
    );
    assert.ok(b.node.connectedPeers().includes(op.node.peerId));
    assert.equal(op.desk.stats().banned, 0);
  },
);

withChain(
  "the desk redeems when the value is well above the gas, on stop otherwise, never at a loss",
  async ({ env, operator, client }) => {
    const held = chunks(16);
    // Factor 10 at 10 gwei/byte: 256 KiB (2.6e15 wei) are worth more than 10 redeems (~2e14 wei each).
    const eager = await operator(held, { price: 10n * PRICE, redeemFactor: 10 });
    // Factor 10^6: nothing is worth a redeem while running; on stop everything is.
    const patient = await operator(held, { redeemFactor: 1_000_000 });
    // 1 wei per byte: 256 KiB are worth 262 144 wei, far less than any redeem's gas.
    const cheap = await operator(held, { price: 1n });
    // Above the default price ceiling: this client accepts the eager operator's price.
    const cl = await client({ maxPrice: 10n * PRICE });
    for (const op of [eager, patient, cheap]) {
      await fetchAll(cl.node, op.node, held.map((c) => c.cid));
    }
    await cl.payer!.settle();
    await eager.desk.redeemAll();
    assert.ok(eager.events.some((e) => e.kind === "redeemed"), "eager redeemed while running");
    assert.ok(!patient.events.some((e) => e.kind === "redeemed"), "patient waited");

    const balance = (op: Operator) => env.test.getBalance({ address: op.wallet.account.address });
    const cheapBefore = await balance(cheap);
    for (const op of [eager, patient, cheap]) await op.desk.stop();
    const total = BigInt(16 * CHUNK);
    assert.equal(eager.desk.stats().redeemedWei, 10n * PRICE * total);
    assert.equal(patient.desk.stats().redeemedWei, PRICE * total);
    assert.equal(patient.desk.stats().redeems, 1);
    assert.equal(cheap.desk.stats().redeems, 0);
    assert.ok(cheap.events.some((e) => e.kind === "redeem_skipped"));
    assert.equal(await balance(cheap), cheapBefore);
    assert.ok(eager.desk.stats().lastRedeemGas > 0n);
  },
);

withChain(
  "a client paid by the operator's own account is refused once, in one event, not per chunk",
  async ({ operator, client }) => {
    const held = chunks(12);
    const op = await operator(held, { creditBytes: 2 * CHUNK });
    const events: PayerEvent[] = [];
    const cl = await client({ wallet: op.wallet, onEvent: (e) => events.push(e) });
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        fetchAll(cl.node, op.node, held.map((c) => c.cid)),
        (e: unknown) => e instanceof QuoteRefusedError && /paid by its own account/.test(e.message),
      );
    }
    assert.deepEqual(events.map((e) => e.kind), ["quote_refused"]);
  },
);

withChain(
  "checkPrice: 1 wei per byte never pays for a redeem; the price it suggests does",
  async ({ env }) => {
    const chain = { chainId: env.chain.id, rpc: env.anvil.rpc };
    const low = await checkPrice(chain, 1n);
    assert.equal(low.worthIt, false);
    assert.ok(low.feePerGas > 0n && low.redeemCostWei === REDEEM_GAS * low.feePerGas);
    assert.equal(low.bytesPerRedeem, 10n * low.redeemCostWei + 1n);
    assert.ok(low.bytesPerRedeem > low.depositBytes);
    const ok = await checkPrice(chain, low.minPrice);
    assert.equal(ok.worthIt, true);
    assert.equal((await checkPrice(chain, low.minPrice / 2n)).worthIt, false);
    assert.ok((await checkPrice(chain, PRICE)).worthIt, "the tests' 1 gwei per byte is worth it");
  },
);

withChain(
  "storage pay is no credit for deliveries, nor delivery pay storage; a storage part that shrinks or outgrows the voucher is refused",
  async ({ env, operator, client }) => {
    const held = chunks(32); // 512 KiB, against a credit of 2 batches (128 KiB)
    const op = await operator(held);
    // A real paying client that pays for deliveries only when the desk asks (its batch outsizes the file).
    const cl = await client({ batchBytes: 1 << 30, depositBytes: 64 << 20 });
    await cl.node.connect(op.node.multiaddrs()[0]!);
    const storage = PRICE * 10n * 1024n * 1024n; // worth 10 MiB of delivery, were it credit
    await cl.payer!.payStorage(op.node.peerId, storage);
    assert.equal(op.desk.accounts()[0]!.storageWei, storage);
    assert.equal((await fetchAll(cl.node, op.node, held.map((c) => c.cid))).length, 32);
    const account = op.desk.accounts().find((a) => a.peer === cl.node.peerId)!;
    assert.equal(account.servedBytes, 512n * BigInt(KiB));
    // The client had to pay for what it was served, beyond the credit, apart from its storage pay.
    const paidBytes = cl.payer!.operators()[0]!.paidBytes;
    assert.ok(paidBytes >= (512n - 128n) * BigInt(KiB), `paid for ${paidBytes} bytes of 512 KiB`);
    const delivery = account.accepted - account.base - account.storageWei;
    assert.equal(delivery, paidBytes * PRICE);
    assert.equal(account.storageWei, storage, "delivery vouchers are no storage pay");
    assert.equal(op.desk.stats().storageWei, storage);

    // By hand: a storage part that shrinks, or grows by more than the voucher does, is refused.
    const raw = await rawClient(env, client, op);
    const send = async (amount: bigint, part: bigint) => {
      const v = voucherOf(raw.channel, amount);
      return await submitVoucher(raw.node.libp2p, op.node.peerId, {
        voucher: v,
        signature: await signVoucher(raw.wallet.account, raw.domain, v),
        receipts: [],
        storage: part,
      });
    };
    await send(1000n, 600n);
    await assert.rejects(send(2000n, 500n), /storage part \(500 wei\) must grow from 600/);
    await assert.rejects(send(2000n, 1700n), /by at most what the voucher adds \(1000\)/);
    await send(2000n, 1600n);
    const r = op.desk.accounts().find((a) => a.peer === raw.node.peerId)!;
    assert.deepEqual([r.accepted - r.base, r.storageWei], [2000n, 1600n]);
  },
);
