/**
 * Paid delivery under every attacker at once, on a real anvil with real libp2p peers on loopback: an honest
 * paying client downloads 4 MiB from two honest in-process operators and 8 MiB from a third, a real `serve`
 * process, while a malleating client (v rewritten), a squatter (junk vouchers on each of the honest client's
 * channels, as soon as they are opened), a client cycling peer IDs without paying, a client that pays, starts
 * closing its channel with vouchers still unredeemed and keeps downloading, and an over-priced operator holding
 * every chunk all do their worst; the `serve` operator is SIGKILLed mid-download and restarted, and a second
 * desk on its data directory (its pay key) is refused. Afterwards each honest operator was paid on-chain price x
 * the bytes it served paying clients (less at most one batch per channel), the honest client paid no more than
 * its cap and nothing to the over-priced operator, and every attacker was refused, cut off or banned.
 */
import assert from "node:assert/strict";
import { type Address, type Hex, parseEther, parseEventLogs } from "viem";
import { type NodeProcess, spawnNode } from "../../src/cluster.ts";
import { DeliveryRefusedError } from "../../src/mesh/exchange.ts";
import { fetchFromMesh } from "../../src/mesh/fetch.ts";
import { channelHubAbi } from "../../src/pay/abi.ts";
import { writeChainConfig } from "../../src/pay/chain.ts";
import { getChannel, openChannel, startClose } from "../../src/pay/channel.ts";
import { MAX_CHUNK_BYTES } from "../../src/pay/limits.ts";
import {
  payAccount,
  type PayerEvent,
  PeerBannedError,
  PriceAboveCapError,
  requestQuote,
  submitVoucher,
  VoucherRefusedError,
} from "../../src/pay/mod.ts";
import { DEFAULT_BATCH_BYTES } from "../../src/pay/receipts.ts";
import { channelHubDomain, signVoucher } from "../../src/pay/voucher.ts";
import { ChunkStore } from "../../src/store/store.ts";
import { startNode, waitFor } from "../mesh/_helpers.ts";
import { startTestChain, type TestChain } from "../pay/_chain.ts";
import { type Chunk, chunks, payWorld, voucherOf } from "../pay/_fixtures.ts";

const KiB = 1024;
const CHUNK = 256 * KiB;
const CHUNKS = 16;
const BATCH = 256 * KiB;
/** 1 gwei a byte: each honest operator's 2 MiB are worth far more than its redeems cost. */
const PRICE = 1_000_000_000n;
/** The attacker's price: 4 gwei a byte, above the client's default ceiling. */
const GREEDY = 4_000_000_000n;
const SYBILS = 12;
/** The `serve` operator's chunks: 1 MiB each, 8 of them, so that it takes a voucher (its batch is the default
 * 4 MiB) before it is killed after 5. */
const BIG = 1024 * KiB;
const BIG_CHUNKS = 8;
const KILL_AFTER = 5;
/** anvil's test account the `serve` operator is paid into (nothing else uses it). */
const SERVE_KEY = "dev:7";

/** An operator as the squatter sees it: a payee and where to reach it now. */
interface Target {
  payee: Address;
  addr(): string;
}

Deno.test({
  name:
    "under attackers at once, honest operators earn price x bytes served and the honest client stays under its cap",
  // libp2p's lingering timers and viem's keep-alive sockets are stopped, but not always within the last tick.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env: TestChain = await startTestChain();
    // A refused stranger waits paymentWaitMs: short, as the sybils are refused one after another.
    const world = payWorld(env, { price: PRICE, batchBytes: BATCH, paymentWaitMs: 500 });
    let serve: NodeProcess | undefined;
    const dir = await Deno.makeTempDir({ prefix: "meshgate-pay-attackers-" });
    try {
      const hub = env.contracts.channelHub;
      const domain = channelHubDomain(env.chain.id, hub);
      const file = chunks(CHUNKS, CHUNK);
      const big = chunks(BIG_CHUNKS, BIG);
      const total = BigInt(CHUNK * CHUNKS);
      const bigTotal = BigInt(BIG * BIG_CHUNKS);

      const operator = (price: bigint, held: Chunk[], tune: { redeemFactor?: number } = {}) =>
        world.operator(held, { price, watchPollMs: 100, retryMs: 100, ...tune });
      // Operator a redeems only at 1,000 x the gas of a redeem: the closing client's vouchers stay unredeemed
      // until it starts closing.
      const a = await operator(PRICE, file.slice(0, CHUNKS / 2), { redeemFactor: 1_000 });
      const b = await operator(PRICE, file.slice(CHUNKS / 2));
      const greedy = await operator(GREEDY, [...file, ...big]);
      const honestOps = [a, b];

      // Operator c: a real `serve` process, its chunks put in its store beforehand.
      const chainFile = `${dir}/chain.json`;
      await writeChainConfig(chainFile, {
        chainId: env.chain.id,
        rpc: env.anvil.rpc,
        contracts: env.contracts,
      });
      const serveArgs = [
        "--data",
        `${dir}/c`,
        "--chain",
        env.anvil.rpc,
        "--chain-file",
        chainFile,
        "--price-served",
        String(PRICE << 30n),
        "--pay-key",
        SERVE_KEY,
      ];
      const cStore = await ChunkStore.open(`${dir}/c`);
      for (const c of big) await cStore.put(c.cid, c.bytes);
      await cStore.close();
      serve = await spawnNode(serveArgs, { stderr: "piped", timeoutMs: 60_000 });
      const cPayee = payAccount(SERVE_KEY).address;
      assert.equal(serve.account, cPayee);
      const cPeer = serve.peerId!;
      const targets: Target[] = [
        ...honestOps.map((op) => ({ payee: op.payee, addr: () => op.node.multiaddrs()[0]! })),
        { payee: cPayee, addr: () => serve!.multiaddrs[0]! },
      ];

      // The honest client: the default price ceiling, and a daily cap just above the file's price (each fetch
      // reserves one largest chunk).
      const cap = PRICE * (total + bigTotal + BigInt(MAX_CHUNK_BYTES));
      const clientWallet = await env.wallet();
      const events: PayerEvent[] = [];
      const payer = world.payer({
        wallet: clientWallet,
        maxSpendPerDay: cap,
        onEvent: (e) => events.push(e),
      });
      const client = world.track(await startNode({ exchange: { payer } }));
      // The squatter gets in first: the client's pay streams (quotes, vouchers) wait until every channel it has
      // opened was named by the squatter. Deterministic, where a squatter racing the first voucher may lose.
      const squatted = new Set<Hex>();
      const clientChannels = async () => {
        const logs = await env.test.getLogs({ address: hub, fromBlock: 0n, toBlock: "latest" });
        return parseEventLogs({ abi: channelHubAbi, eventName: "ChannelOpened", logs })
          .filter((l) => l.args.payer === clientWallet.account.address);
      };
      // A gate that times out is recorded and asserted at the end: thrown inside a dial, fetch would take it
      // for one peer's failure and go on.
      let gateFailure: string | undefined;
      const squatFirst = async () => {
        const deadline = Date.now() + 60_000;
        while (!(await clientChannels()).every((l) => squatted.has(l.args.channel))) {
          if (Date.now() > deadline) {
            gateFailure ??= `the squatter did not name every channel of the client in 60 s (${
              squatLog.join("; ")
            })`;
            throw new Error(gateFailure);
          }
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      const squatLog: string[] = [];
      let clientDone = false;
      const dial = client.libp2p.dialProtocol.bind(client.libp2p);
      await payer.start({
        dialProtocol: (async (...args: Parameters<typeof dial>) => {
          await squatFirst();
          return await dial(...args);
        }) as typeof dial,
      });
      for (const op of [greedy, a, b]) await client.connect(op.node.multiaddrs()[0]!);
      await client.connect(serve.multiaddrs[0]!);
      await waitFor(() => client.libp2p.getPeers().length === 4, "the client connected to all");

      const honest = async () => {
        // Asked directly, the over-priced operator is refused before anything is requested.
        await assert.rejects(
          client.fetchChunk(greedy.node.peerId, file[0]!.cid),
          (e: unknown) => e instanceof PriceAboveCapError && e.price === GREEDY,
        );
        const budget = { spentWei: 0n };
        const got: Uint8Array[] = [];
        const fetch = async (c: Chunk) => {
          const bytes = await fetchFromMesh(client, c.cid, { budget, lookupTimeoutMs: 200 });
          assert.ok(bytes, `the client got ${c.cid}`);
          got.push(bytes);
        };
        for (const c of file) await fetch(c);
        for (const c of big.slice(0, KILL_AFTER)) await fetch(c);
        // The serve operator took a voucher (on disk before the credit it bought), then it is killed.
        await waitFor(
          () => (payer.operators().find((o) => o.peer === cPeer)?.accepted ?? 0n) > 0n,
          "the serve operator's first voucher",
          20_000,
        );
        const cChannel = payer.operators().find((o) => o.peer === cPeer)!.channel!;
        // A second desk on its data directory (its pay key) is refused at start.
        const second = await spawnNode(serveArgs, { stderr: "piped", timeoutMs: 60_000 }).then(
          (p) => {
            void p.stop("SIGKILL");
            return undefined;
          },
          (e: Error) => e,
        );
        assert.match(String(second?.message), /Another payment desk is running on .*pay\.sqlite/);
        assert.equal(await serve!.stop("SIGKILL"), 137);
        serve = await spawnNode(serveArgs, { stderr: "piped", timeoutMs: 60_000 });
        assert.equal(serve.peerId, cPeer, "the same identity after the restart");
        // Restarted, it redeems the voucher it had accepted before the kill.
        const deadline = Date.now() + 30_000;
        while ((await getChannel(env.test, { address: hub, channel: cChannel })).redeemed === 0n) {
          assert.ok(Date.now() < deadline, "the restarted desk redeemed its voucher");
          await new Promise((r) => setTimeout(r, 100));
        }
        await client.connect(serve.multiaddrs[0]!);
        for (const c of big.slice(KILL_AFTER)) await fetch(c);
        clientDone = true;
        return got;
      };

      // A malleating client: its own channel to operator b, an honest signature with 27 taken off v.
      const malleator = async () => {
        const key = await env.wallet();
        const { channel } = await openChannel(key, {
          address: hub,
          payee: b.payee,
          deposit: parseEther("1"),
          challengePeriod: 3600n,
        });
        const node = await world.node();
        await node.connect(b.node.multiaddrs()[0]!);
        await requestQuote(node.libp2p, b.node.peerId);
        const voucher = voucherOf(channel, PRICE * BigInt(BATCH));
        const sig = await signVoucher(key.account, domain, voucher);
        const v = parseInt(sig.slice(130), 16);
        const lowV = `${sig.slice(0, 130)}${(v - 27).toString(16).padStart(2, "0")}` as Hex;
        await assert.rejects(
          submitVoucher(node.libp2p, b.node.peerId, { voucher, signature: lowV, receipts: [] }),
          (e: unknown) => e instanceof VoucherRefusedError && e.code === "voucher_signature",
        );
        await assert.rejects(
          node.fetchChunk(b.node.multiaddrs()[0]!, file[CHUNKS - 1]!.cid),
          (e: unknown) => e instanceof DeliveryRefusedError && e.code === "peer_banned",
        );
        return node.peerId;
      };

      // A squatter: watches ChannelOpened for the honest client's channels and names each, at its payee, with a
      // voucher it signed itself, until the client is done (a condition, not a timer). Each naming is retried on a
      // fresh address with a deadline: the serve operator moves when it restarts.
      const squatter = async () => {
        const key = await env.wallet();
        const node = await world.node();
        const name = async (l: { args: { channel: Hex; payee: Address } }) => {
          const op = targets.find((o) => o.payee === l.args.payee);
          assert.ok(op, `the honest client opened a channel to ${l.args.payee} only`);
          const junk = voucherOf(l.args.channel, 1n);
          const signature = await signVoucher(key.account, domain, junk);
          const deadline = Date.now() + 30_000;
          for (let attempt = 1;; attempt++) {
            const addr = op.addr();
            try {
              await node.connect(addr);
              await assert.rejects(
                submitVoucher(
                  node.libp2p,
                  addr.slice(addr.lastIndexOf("/p2p/") + 5),
                  { voucher: junk, signature, receipts: [] },
                  { signal: AbortSignal.timeout(10_000) },
                ),
                // Refused for its signer, or (once it forged at this operator before, for another of the
                // client's channels there) banned for that forgery: either way not taken.
                (e: unknown) =>
                  e instanceof VoucherRefusedError &&
                  (e.code === "voucher_signer" ||
                    (e.code === "peer_banned" && /not the payer/.test(e.message))),
              );
              squatLog.push(`${l.args.channel.slice(0, 10)} named (attempt ${attempt})`);
              return;
            } catch (e) {
              squatLog.push(
                `${l.args.channel.slice(0, 10)} attempt ${attempt}: ${String(e).slice(0, 120)}`,
              );
              if (Date.now() > deadline) throw e;
              await new Promise((r) => setTimeout(r, 200));
            }
          }
        };
        const deadline = Date.now() + 120_000;
        while (!clientDone) {
          assert.ok(Date.now() < deadline, "the honest client finished");
          for (const l of await clientChannels()) {
            if (squatted.has(l.args.channel)) continue;
            await name(l);
            squatted.add(l.args.channel);
          }
          await new Promise((r) => setTimeout(r, 25));
        }
        assert.equal(
          squatted.size,
          targets.length,
          "the honest client opened one channel per operator",
        );
        return node.peerId;
      };

      // A client cycling peer IDs at operator a, never paying: served at most the desk's strangers' pool.
      const sybils = async () => {
        let got = 0n;
        let refusals = 0;
        for (let i = 0; i < SYBILS; i++) {
          const sybil = await startNode();
          try {
            for (const c of file.slice(0, 4)) {
              try {
                got += BigInt(
                  (await sybil.fetchChunk(a.node.multiaddrs()[0]!, c.cid))?.length ?? 0,
                );
              } catch (e) {
                assert.ok(e instanceof DeliveryRefusedError, `refused, not ${e}`);
                refusals++;
                break;
              }
            }
          } finally {
            await sybil.stop();
          }
        }
        return { got, refusals };
      };

      // A client that pays operator a for 4 chunks, then starts closing its channel, its vouchers unredeemed
      // (a's factor), and asks for more: cut off at once, and a redeems what it was paid before the period ends.
      const closer = async () => {
        const key = await env.wallet();
        const { node } = await world.client({ wallet: key });
        await node.connect(a.node.multiaddrs()[0]!);
        for (const c of file.slice(0, 4)) {
          assert.deepEqual(await node.fetchChunk(a.node.peerId, c.cid), c.bytes);
        }
        const account = () => a.desk.accounts().find((x) => x.peer === node.peerId);
        await waitFor(() => (account()?.accepted ?? 0n) > 0n, "the closer's vouchers");
        const channel = account()!.channel!;
        assert.equal(
          (await getChannel(env.test, { address: hub, channel })).redeemed,
          0n,
          "precondition: the closer's vouchers are unredeemed",
        );
        await startClose(key, { address: hub, channel });
        const deadline = Date.now() + 20_000;
        while ((await getChannel(env.test, { address: hub, channel })).redeemed === 0n) {
          assert.ok(Date.now() < deadline, "operator a redeemed the closing channel");
          await new Promise((r) => setTimeout(r, 50));
        }
        await assert.rejects(node.fetchChunk(a.node.peerId, file[4]!.cid));
        await assert.rejects(node.fetchChunk(a.node.peerId, file[5]!.cid));
        return { peer: node.peerId, channel };
      };

      const t0 = performance.now();
      const [got, malleatorId, squatterId, sybil, closed] = await Promise.all([
        honest(),
        malleator(),
        squatter(),
        sybils(),
        closer(),
      ]);
      const seconds = (performance.now() - t0) / 1000;
      assert.equal(gateFailure, undefined);

      // The honest client was served byte-identical data.
      for (const [i, c] of [...file, ...big].entries()) {
        assert.deepEqual(got[i], c.bytes, `chunk ${i}`);
      }

      // Settle: the client pays what it owes, then each operator redeems on its way out.
      await payer.settle();
      const served = honestOps.map((op) =>
        op.desk.accounts().find((x) => x.peer === client.peerId)?.servedBytes ?? 0n
      );
      assert.equal(
        served[0]! + served[1]!,
        total,
        "the honest operators served the file between them",
      );
      const greedyServed = greedy.desk.accounts().find((x) => x.peer === client.peerId)
        ?.servedBytes;
      assert.equal(greedyServed ?? 0n, 0n, "the over-priced operator served the client nothing");
      // The closer was paid for: what a served it, less at most one batch, is on-chain, and nothing after.
      const closerAt = a.desk.accounts().find((x) => x.peer === closed.peer)!;
      const closerState = await getChannel(env.test, { address: hub, channel: closed.channel });
      assert.equal(closerState.redeemed, closerAt.accepted);
      assert.ok(
        PRICE * closerAt.servedBytes - closerState.redeemed <= PRICE * BigInt(BATCH),
        `the closer was served ${closerAt.servedBytes} bytes, ${closerState.redeemed} redeemed`,
      );
      assert.ok(closerAt.servedBytes <= 5n * BigInt(CHUNK), "nothing served after the close");
      await world.stopDesks();
      assert.equal(await serve.stop(), 0, "the serve operator stopped cleanly");

      const logs = await env.test.getLogs({ address: hub, fromBlock: 0n, toBlock: "latest" });
      const opened = parseEventLogs({ abi: channelHubAbi, eventName: "ChannelOpened", logs });
      const redeemed = parseEventLogs({ abi: channelHubAbi, eventName: "VoucherRedeemed", logs });
      const mine = opened.filter((l) => l.args.payer === clientWallet.account.address);
      assert.ok(
        mine.every((l) => l.args.payee !== greedy.payee),
        "no channel to the over-priced operator",
      );
      const earnedBy = (payee: Address) => {
        const channels = new Set(
          mine.filter((l) => l.args.payee === payee).map((l) => l.args.channel),
        );
        const paid = redeemed.filter((l) => channels.has(l.args.channel));
        return { channels, paid, earned: paid.reduce((sum, l) => sum + l.args.paid, 0n) };
      };
      // The serve operator, killed and restarted on the way: paid for its 8 MiB, less at most one of its batches.
      {
        const { channels, earned } = earnedBy(cPayee);
        assert.equal(channels.size, 1, "one channel to the serve operator");
        const owed = PRICE * bigTotal;
        assert.ok(
          earned <= owed && earned >= owed - PRICE * BigInt(DEFAULT_BATCH_BYTES),
          `the serve operator earned ${earned} on-chain for ${bigTotal} bytes (${owed} owed)`,
        );
      }
      for (const [i, op] of honestOps.entries()) {
        const { channels, paid, earned } = earnedBy(op.payee);
        assert.equal(channels.size, 1, `one channel to operator ${i}`);
        const owed = PRICE * served[i]!;
        assert.ok(
          earned <= owed && earned >= owed - PRICE * BigInt(BATCH) * BigInt(channels.size),
          `operator ${i} earned ${earned} on-chain for ${served[i]} bytes (${owed} owed)`,
        );
        // The hub paid the operator's own account, which sent nothing but these redeems (funded with 100 ETH),
        // besides the closer's for operator a.
        const closerPaid = redeemed.filter((l) => l.args.channel === closed.channel);
        const hashes = new Set(
          [...paid, ...(i === 0 ? closerPaid : [])].map((l) => l.transactionHash),
        );
        assert.equal(await env.test.getTransactionCount({ address: op.payee }), hashes.size);
        let gas = 0n;
        for (const hash of hashes) {
          const r = await env.test.getTransactionReceipt({ hash });
          gas += r.gasUsed * r.effectiveGasPrice;
        }
        assert.equal(
          await env.test.getBalance({ address: op.payee }),
          parseEther("100") + earned + (i === 0 ? closerState.redeemed : 0n) - gas,
          `operator ${i}'s balance`,
        );
      }

      // The honest client paid for exactly what it fetched, never above its cap, and was banned nowhere.
      const spentOnChain = redeemed
        .filter((l) => mine.some((o) => o.args.channel === l.args.channel))
        .reduce((sum, l) => sum + l.args.paid, 0n);
      assert.equal(payer.stats().spentWei, PRICE * (total + bigTotal));
      assert.ok(spentOnChain <= cap, `the client paid ${spentOnChain}, above its cap of ${cap}`);
      assert.ok(events.some((e) => e.kind === "quote_refused" && e.peer === greedy.node.peerId));
      for (const op of honestOps) {
        op.desk.admit(client.peerId); // throws if banned
      }

      // The attackers: malleator banned at b, squatter banned at both, sybils held to the strangers' pool.
      assert.throws(() => b.desk.admit(malleatorId), PeerBannedError, "malleator banned");
      for (const op of honestOps) {
        assert.throws(() => op.desk.admit(squatterId), PeerBannedError, "squatter banned");
        const s = op.desk.accounts().find((x) => x.peer === squatterId);
        assert.equal(s?.channel, undefined, "the squatter bound no channel");
      }
      assert.ok(sybil.got <= 4n * BigInt(BATCH), `the sybils got ${sybil.got} bytes free`);
      assert.ok(sybil.refusals > 0, "the sybils were refused");
      console.log(JSON.stringify({
        pay_attackers: {
          seconds: Number(seconds.toFixed(2)),
          served: served.map(Number),
          closer_served: Number(closerAt.servedBytes),
          sybil_bytes: Number(sybil.got),
        },
      }));
    } finally {
      await serve?.stop().catch(() => {});
      await world.stop();
      await env.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
