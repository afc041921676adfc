/**
 * The desk under attack, on a real anvil with real libp2p peers speaking /meshgate/pay/1.0.0: malleated
 * signatures (checked against the hub's own `redeem` by `eth_call`), a channel squatter, a client cycling peer
 * IDs for credit, and vouchers that would make the desk call the chain again and again.
 */
import assert from "node:assert/strict";
import { type Hex, parseEther } from "viem";
import { simulateContract } from "viem/actions";
import { DeliveryRefusedError } from "../../src/mesh/exchange.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { channelHubAbi } from "../../src/pay/abi.ts";
import { openChannel } from "../../src/pay/channel.ts";
import {
  PayingClient,
  type PaymentDeskInit,
  requestQuote,
  submitVoucher,
  VoucherRefusedError,
} from "../../src/pay/mod.ts";
import { channelHubDomain, signVoucher, verifyVoucher } from "../../src/pay/voucher.ts";
import { hangUpSeen } from "../mesh/_helpers.ts";
import type { TestChain } from "./_chain.ts";
import {
  type Chunk,
  chunks as makeChunks,
  countingWallet,
  type Operator,
  voucherOf,
  withPayWorld,
} from "./_fixtures.ts";

const CHUNK = 16 * 1024;
const PRICE = 1_000_000_000n;
const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

const chunks = (n: number) => makeChunks(n, CHUNK);

interface Fixture {
  env: TestChain;
  /** An operator whose RPC calls are counted by method. */
  operator(held: Chunk[], init?: Partial<PaymentDeskInit>): Promise<
    Operator & {
      calls: Map<string, number>;
    }
  >;
  node(): Promise<MeshNode>;
  /** A node with a real paying client (its own funded wallet). */
  client(): Promise<{ node: MeshNode; payer: PayingClient }>;
}

function withChain(name: string, fn: (f: Fixture) => Promise<void>): void {
  withPayWorld(name, { price: PRICE, batchBytes: 4 * CHUNK, paymentWaitMs: 200 }, (world) =>
    fn({
      env: world.env,
      async operator(held, init = {}) {
        const { wallet, calls } = await countingWallet(world.env);
        return { ...await world.operator(held, { wallet, ...init }), calls };
      },
      node: world.node,
      async client() {
        const { node, payer } = await world.client();
        return { node, payer: payer! };
      },
    }));
}

/** Signature variants: [name, signature]. */
function malleate(sig: Hex): [string, Hex][] {
  const r = sig.slice(2, 66);
  const s = BigInt("0x" + sig.slice(66, 130));
  const v = parseInt(sig.slice(130), 16);
  const hex = (n: bigint) => n.toString(16).padStart(64, "0");
  const byte = (n: number) => n.toString(16).padStart(2, "0");
  return [
    ["canonical", sig],
    ["v - 27", `0x${r}${hex(s)}${byte(v - 27)}`],
    ["high-s twin", `0x${r}${hex(N - s)}${byte(v === 27 ? 28 : 27)}`],
    ["high-s twin, v - 27", `0x${r}${hex(N - s)}${byte(v === 27 ? 1 : 0)}`],
    ["last byte flipped", `0x${sig.slice(2, 130)}${byte(v ^ 1)}`],
    ["last byte inverted", `0x${sig.slice(2, 130)}${byte(v ^ 0xff)}`],
    ["r = 0", `0x${hex(0n)}${hex(s)}${byte(v)}`],
    ["s = 0", `0x${r}${hex(0n)}${byte(v)}`],
    ["short (64 bytes)", `0x${sig.slice(2, 130)}`],
    ["long (66 bytes)", `${sig}00`],
  ];
}

withChain(
  "one signature rule: the desk accepts exactly the signatures redeem accepts, and bans a malleating client",
  async ({ env, operator, node }) => {
    const held = chunks(2);
    const op = await operator(held);
    const payer = await env.wallet();
    const hub = env.contracts.channelHub;
    const domain = channelHubDomain(env.chain.id, hub);
    const { channel } = await openChannel(payer, {
      address: hub,
      payee: op.wallet.account.address,
      deposit: parseEther("1"),
      challengePeriod: 3600n,
    });
    const voucher = voucherOf(channel, PRICE);
    const sig = await signVoucher(payer.account, domain, voucher);
    const stranger = await env.wallet();
    const variants: [string, Hex][] = [
      ...malleate(sig),
      ["foreign signer", await signVoucher(stranger.account, domain, voucher)],
      ...malleate(await signVoucher(stranger.account, domain, voucher)).slice(1, 4)
        .map(([n, s]): [string, Hex] => [`foreign signer, ${n}`, s]),
      [
        "another hub",
        await signVoucher(
          payer.account,
          channelHubDomain(env.chain.id, payer.account.address),
          voucher,
        ),
      ],
    ];
    for (const [name, signature] of variants) {
      const desk = await verifyVoucher({
        domain,
        voucher,
        signature,
        channel,
        payer: payer.account.address,
      })
        .then(() => true, () => false);
      const chain = await simulateContract(op.wallet, {
        address: hub,
        abi: channelHubAbi,
        functionName: "redeem",
        args: [voucher, signature],
        account: op.wallet.account,
      }).then(() => true, () => false);
      assert.equal(
        desk,
        chain,
        `${name}: desk ${desk ? "accepts" : "refuses"}, redeem ${chain ? "accepts" : "reverts"}`,
      );
      assert.equal(desk, name === "canonical", name);
    }

    // The attack as a client would run it: an honest signature with 27 taken off its last byte.
    const callsBefore = op.calls.get("eth_call") ?? 0;
    const cl = await node();
    await cl.connect(op.node.multiaddrs()[0]!);
    await requestQuote(cl.libp2p, op.node.peerId);
    const [, lowV] = malleate(sig)[1]!;
    const hungUp = hangUpSeen(cl, op.node.peerId);
    await assert.rejects(
      submitVoucher(cl.libp2p, op.node.peerId, { voucher, signature: lowV, receipts: [] }),
      (e: unknown) => e instanceof VoucherRefusedError && e.code === "voucher_signature",
    );
    await hungUp;
    await assert.rejects(
      cl.fetchChunk(op.node.multiaddrs()[0]!, held[0]!.cid),
      (e: unknown) => e instanceof DeliveryRefusedError && e.code === "peer_banned",
    );
    assert.equal(op.desk.stats().acceptedWei, 0n);
    // Refused before any chain look-up.
    assert.equal(op.calls.get("eth_call") ?? 0, callsBefore);
  },
);

withChain(
  "verify, then bind: a squatter naming a payer's new channel is banned, and the payer is served",
  async ({ env, operator, node }) => {
    const held = chunks(4);
    const op = await operator(held, { creditBytes: 4 * CHUNK });
    const hub = env.contracts.channelHub;
    const domain = channelHubDomain(env.chain.id, hub);
    const payer = await env.wallet();
    const victim = await node();
    await victim.connect(op.node.multiaddrs()[0]!);
    const { channel } = await openChannel(payer, {
      address: hub,
      payee: op.wallet.account.address,
      deposit: parseEther("1"),
      challengePeriod: 3600n,
    });

    // The squatter saw ChannelOpened and gets in first, with a voucher it signed itself.
    const squatter = await node();
    const squatterKey = await env.wallet();
    await squatter.connect(op.node.multiaddrs()[0]!);
    const junk = voucherOf(channel, 1n);
    await assert.rejects(
      submitVoucher(squatter.libp2p, op.node.peerId, {
        voucher: junk,
        signature: await signVoucher(squatterKey.account, domain, junk),
        receipts: [],
      }),
      (e: unknown) => e instanceof VoucherRefusedError && e.code === "voucher_signer",
    );
    assert.ok(op.desk.accounts().find((a) => a.peer === squatter.peerId)?.banned);
    assert.equal(op.desk.accounts().find((a) => a.peer === squatter.peerId)?.channel, undefined);

    // The real payer binds its channel with a tiny first voucher and is served its credit, then more.
    const first = voucherOf(channel, 1n);
    assert.deepEqual(
      await submitVoucher(victim.libp2p, op.node.peerId, {
        voucher: first,
        signature: await signVoucher(payer.account, domain, first),
        receipts: [],
      }),
      { cumulativeAmount: 1n, servedBytes: 0n },
    );
    for (const c of held) {
      assert.deepEqual(await victim.fetchChunk(op.node.peerId, c.cid), c.bytes);
    }
    const account = op.desk.accounts().find((a) => a.peer === victim.peerId)!;
    assert.equal(account.channel, channel);
    assert.equal(account.banned, undefined);

    // The payer's voucher carried by another of its peers is refused, but signed by the payer: no ban.
    const other = await node();
    await other.connect(op.node.multiaddrs()[0]!);
    const second = voucherOf(channel, 2n);
    await assert.rejects(
      submitVoucher(other.libp2p, op.node.peerId, {
        voucher: second,
        signature: await signVoucher(payer.account, domain, second),
        receipts: [],
      }),
      (e: unknown) =>
        e instanceof VoucherRefusedError && e.code === "voucher_channel_unusable" &&
        /another peer/.test(e.message),
    );
    assert.ok(other.connectedPeers().includes(op.node.peerId));
    assert.equal(op.desk.stats().banned, 1);
  },
);

withChain(
  "bounded credit: a client cycling 64 peer IDs gets no more than the strangers' cap in all, and memory stays bounded",
  async ({ env, operator, node, client }) => {
    const held = chunks(8);
    const op = await operator(held, {
      creditBytes: 4 * CHUNK,
      strangerBytes: 8 * CHUNK,
      maxUnpaidBytes: 16 * CHUNK,
      maxAccounts: 16,
      idleMs: 20,
      paymentWaitMs: 50,
    });
    let got = 0;
    for (let i = 0; i < 64; i++) {
      const sybil = await node();
      try {
        for (const c of held.slice(0, 4)) {
          try {
            await sybil.fetchChunk(op.node.multiaddrs()[0]!, c.cid);
            got++;
          } catch (e) {
            assert.ok(e instanceof DeliveryRefusedError, `refused, not ${e}`);
            break;
          }
        }
      } finally {
        await sybil.stop();
      }
    }
    assert.ok(got <= 8, `the sybils got ${got} chunks, more than the 8 of the strangers' cap`);
    assert.ok(op.desk.accounts().length <= 16, `${op.desk.accounts().length} accounts kept`);
    assert.ok(op.desk.stats().evicted >= 48);
    assert.ok(op.desk.stats().owedWei <= 8n * BigInt(CHUNK) * PRICE);

    // A payer that binds a channel first is still served its own credit.
    const payer = await env.wallet();
    const hub = env.contracts.channelHub;
    const { channel } = await openChannel(payer, {
      address: hub,
      payee: op.wallet.account.address,
      deposit: parseEther("1"),
      challengePeriod: 3600n,
    });
    const honest = await node();
    const first = voucherOf(channel, 1n);
    await honest.connect(op.node.multiaddrs()[0]!);
    await submitVoucher(honest.libp2p, op.node.peerId, {
      voucher: first,
      signature: await signVoucher(payer.account, channelHubDomain(env.chain.id, hub), first),
      receipts: [],
    });
    for (const c of held.slice(0, 4)) {
      assert.deepEqual(await honest.fetchChunk(op.node.peerId, c.cid), c.bytes);
    }

    // A real paying client that arrives now, with the strangers' pool spent, is refused at first: it
    // binds a channel with a 1-wei voucher and is served all the same.
    const newcomer = await client();
    for (const c of held.slice(0, 4)) {
      assert.deepEqual(await newcomer.node.fetchChunk(op.node.multiaddrs()[0]!, c.cid), c.bytes);
    }
    assert.equal(newcomer.payer.stats().channels, 1);
    // Its binding wei counts toward what it owes: once paid up, it paid the price of 4 chunks, not 1 wei more.
    await newcomer.payer.settle();
    assert.equal(newcomer.payer.stats().spentWei, PRICE * 4n * BigInt(CHUNK));

    // introBytes 0: no credit at all before a bound channel.
    const strict = await operator(held, { introBytes: 0, paymentWaitMs: 50 });
    const stranger = await node();
    await assert.rejects(
      stranger.fetchChunk(strict.node.multiaddrs()[0]!, held[0]!.cid),
      (e: unknown) => e instanceof DeliveryRefusedError && e.code === "payment_required",
    );
    assert.equal(strict.desk.stats().servedBytes, 0n);

    // A dropped stranger's debt fades out of the caps (here over 300 ms): nobody is locked out for good.
    const fading = await operator(held, {
      introBytes: 2 * CHUNK,
      strangerBytes: 2 * CHUNK,
      maxAccounts: 1,
      writeOffMs: 300,
      paymentWaitMs: 50,
    });
    const gone = await node();
    for (const c of held.slice(0, 2)) await gone.fetchChunk(fading.node.multiaddrs()[0]!, c.cid);
    await gone.stop();
    await new Promise((r) => setTimeout(r, 1100)); // idle long enough to be dropped for a newcomer
    const next = await node();
    await assert.rejects(
      next.fetchChunk(fading.node.multiaddrs()[0]!, held[2]!.cid),
      (e: unknown) => e instanceof DeliveryRefusedError && e.code === "payment_required",
    );
    assert.equal(fading.desk.stats().evicted, 1);
    await new Promise((r) => setTimeout(r, 400));
    assert.deepEqual(await next.fetchChunk(fading.node.peerId, held[2]!.cid), held[2]!.bytes);
  },
);

withChain(
  "repeated over-deposit vouchers cost at most a few chain look-ups and end in a ban; look-ups are rate-limited",
  async ({ env, operator, node }) => {
    const held = chunks(2);
    const op = await operator(held);
    const hub = env.contracts.channelHub;
    const domain = channelHubDomain(env.chain.id, hub);
    const open = async (challengePeriod: bigint) => {
      const payer = await env.wallet();
      const { channel } = await openChannel(payer, {
        address: hub,
        payee: op.wallet.account.address,
        deposit: parseEther("1"),
        challengePeriod,
      });
      const cl = await node();
      await cl.connect(op.node.multiaddrs()[0]!);
      const send = async (amount: bigint) => {
        const v = voucherOf(channel, amount);
        return await submitVoucher(cl.libp2p, op.node.peerId, {
          voucher: v,
          signature: await signVoucher(payer.account, domain, v),
          receipts: [],
        });
      };
      return { cl, send };
    };

    const a = await open(3600n);
    await a.send(1n);
    const before = op.calls.get("eth_call") ?? 0;
    const codes: string[] = [];
    for (let i = 0; i < 10; i++) {
      await a.send(parseEther("2")).catch((e) =>
        codes.push((e as VoucherRefusedError).code ?? "dropped")
      );
    }
    const spent = (op.calls.get("eth_call") ?? 0) - before;
    assert.ok(spent <= 3, `10 over-deposit vouchers cost ${spent} eth_calls`);
    assert.ok(op.desk.accounts().find((p) => p.peer === a.cl.peerId)?.banned, "banned");
    assert.equal(codes.length, 10);

    // A channel the desk refuses without a ban (too short a challenge period): the peer's look-ups are budgeted.
    const b = await open(60n);
    const mid = op.calls.get("eth_call") ?? 0;
    const refusals: string[] = [];
    for (let i = 0; i < 10; i++) {
      await b.send(1n).catch((e) => refusals.push((e as VoucherRefusedError).code));
    }
    const used = (op.calls.get("eth_call") ?? 0) - mid;
    assert.ok(used <= 4, `10 vouchers on an unusable channel cost ${used} eth_calls`);
    assert.equal(refusals.length, 10);
    assert.ok(refusals.includes("pay_rate_limited"), refusals.join());
    assert.ok(b.cl.connectedPeers().includes(op.node.peerId), "not banned, not hung up");
  },
);
