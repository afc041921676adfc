/**
 * Paid delivery end to end, on anvil with the contracts deployed (`startDevnet`):
 *
 * - three operators are real `serve --chain --price --pay-key` processes; a client node (in process, on real
 *   loopback sockets, built by `MeshgateNode` with `pay`) downloads 32 MiB of 1 MiB chunks from them, paying a
 *   voucher per MiB; once the operators have stopped (and redeemed on the way out), each one's on-chain
 *   balance grew by exactly price x the bytes it served, less the gas of its own redeems, and the hub paid it
 *   exactly price x bytes;
 * - a client that stops paying is cut off within the credit of a fourth operator;
 * - a forged voucher is refused, the forger's connection dropped, and it is served nothing after.
 */
import assert from "node:assert/strict";
import {
  type Address,
  createTestClient,
  createWalletClient,
  type Hex,
  http,
  parseEther,
  parseEventLogs,
  publicActions,
} from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { type CID, cidOf, parseCid } from "../../src/content/cid.ts";
import { decodeManifest } from "../../src/content/manifest.ts";
import {
  CLUSTER_PRICE,
  type NodeProcess,
  spawnNode,
  startCluster,
  waitForPeers,
} from "../../src/cluster.ts";
import { devAccountFor } from "../../src/pay/account.ts";
import { DeliveryRefusedError } from "../../src/mesh/exchange.ts";
import { createMeshNode, type MeshNode } from "../../src/mesh/node.ts";
import { MeshgateNode } from "../../src/node.ts";
import { channelHubAbi } from "../../src/pay/abi.ts";
import { meshChain } from "../../src/pay/chain.ts";
import { openChannel } from "../../src/pay/channel.ts";
import {
  payAccount,
  PayingClient,
  PaymentDesk,
  requestQuote,
  submitVoucher,
  VoucherRefusedError,
} from "../../src/pay/mod.ts";
import { type Devnet, startDevnet } from "../../src/pay/devnet.ts";
import { EMPTY_RECEIPTS_ROOT } from "../../src/pay/receipts.ts";
import { channelHubDomain, signVoucher } from "../../src/pay/voucher.ts";
import type { PayClient } from "../../src/pay/_tx.ts";

const MiB = 1024 * 1024;
/** 1 gwei per byte (~0.001 ETH per MiB): a few MiB are worth more than 10 redeems at anvil's fees. */
const PRICE = 1_000_000_000n;
const TCP = "/ip4/127.0.0.1/tcp/0";

function wallet(devnet: Devnet, index: number): PayClient {
  return createWalletClient({
    account: payAccount(`dev:${index}`),
    chain: meshChain(devnet.config),
    transport: http(devnet.config.rpc),
  }) as PayClient;
}

function randomChunk(size = MiB): { cid: CID; bytes: Uint8Array } {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return { cid: cidOf(bytes), bytes };
}

/** Uploads `mib` MiB of random bytes to a node's gateway as 1 MiB chunks, no parity; returns their CIDs. */
async function putFile(node: NodeProcess, mib: number): Promise<CID[]> {
  const body = new Uint8Array(mib * MiB);
  for (let i = 0; i < body.length; i += 65536) crypto.getRandomValues(body.subarray(i, i + 65536));
  const res = await fetch(`${node.url}/mesh?k=1&m=0&chunkSize=${MiB}`, { method: "POST", body });
  assert.equal(res.status, 201, await res.clone().text());
  const { cid } = await res.json() as { cid: string };
  const raw = await fetch(`${node.url}/mesh/${cid}?format=raw`);
  const manifest = decodeManifest(new Uint8Array(await raw.arrayBuffer()));
  const cids = manifest.stripes.flat().map((c) => parseCid(String(c)));
  assert.equal(cids.length, mib);
  return cids;
}

Deno.test({
  name:
    "paid delivery: 32 MiB from 3 operators paid per MiB and settled exactly; non-payers and forgers cut off",
  // Child processes, libp2p's lingering timers and viem's keep-alive sockets are all stopped, but not always
  // within the test's last tick.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-paid-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    const chain = createTestClient({
      chain: meshChain(devnet.config),
      mode: "anvil",
      transport: http(devnet.config.rpc),
    }).extend(publicActions);
    const hub = devnet.config.contracts.channelHub;
    const operators: NodeProcess[] = [];
    const inProcess: MeshNode[] = [];
    let client: MeshgateNode | undefined;
    try {
      await t.step(
        "3 operators, 32 MiB paid per MiB, balances grow by exactly price x bytes",
        async () => {
          const started = await Promise.all([1, 2, 3].map((i) =>
            spawnNode([
              "--data",
              `${dir}/op-${i}`,
              "--chain",
              devnet.config.rpc,
              "--chain-file",
              `${dir}/chain.json`,
              "--price-served",
              String(PRICE << 30n),
              "--pay-key",
              `dev:${i}`,
            ], { stderr: "null" })
          ));
          operators.push(...started);
          const payees = [1, 2, 3].map((i) => payAccount(`dev:${i}`).address);
          const sizes = [11, 11, 10];
          const cids = await Promise.all(operators.map((op, i) => putFile(op, sizes[i]!)));
          const before = await Promise.all(payees.map((a) => chain.getBalance({ address: a })));

          client = await MeshgateNode.create({
            dataDir: `${dir}/client`,
            chain: devnet.config,
            mesh: { listen: [TCP] },
            pay: { account: payAccount("dev:4"), batchBytes: MiB },
          });
          const t0 = performance.now();
          const served = await Promise.all(operators.map(async (op, i) => {
            let bytes = 0n;
            for await (const c of client!.mesh!.fetchChunks(op.multiaddrs[0]!, cids[i]!)) {
              assert.ok(c.bytes, `operator ${i} serves ${c.cid}`);
              bytes += BigInt(c.bytes.length);
            }
            return bytes;
          }));
          const seconds = (performance.now() - t0) / 1000;
          assert.equal(served.reduce((a, b) => a + b), 32n * BigInt(MiB));
          await client.delivery!.payer.settle();
          const paid = client.delivery!.payer.operators();
          assert.equal(paid.reduce((n, o) => n + o.vouchers, 0), 32);
          assert.ok(paid.every((o) => o.unpaidBytes === 0n));

          // Settlement: each operator redeems its latest voucher as it shuts down.
          const codes = await Promise.all(operators.splice(0).map((op) => op.stop()));
          assert.deepEqual(codes, [0, 0, 0]);

          const logs = await chain.getLogs({ address: hub, fromBlock: 0n, toBlock: "latest" });
          const opened = parseEventLogs({ abi: channelHubAbi, eventName: "ChannelOpened", logs });
          const redeemed = parseEventLogs({
            abi: channelHubAbi,
            eventName: "VoucherRedeemed",
            logs,
          });
          const gasPerRedeem: bigint[] = [];
          for (const [i, payee] of payees.entries()) {
            const channels = new Set<Hex>(
              opened.filter((l) => l.args.payee === payee).map((l) => l.args.channel),
            );
            assert.equal(channels.size, 1, `one channel to operator ${i}`);
            const mine = redeemed.filter((l) => channels.has(l.args.channel));
            const total = mine.reduce((sum, l) => sum + l.args.paid, 0n);
            assert.equal(total, PRICE * served[i]!, `the hub paid operator ${i} price x bytes`);
            // The operator's account sent nothing but these redeems, so its balance moved by their pay less gas.
            const nonce = await chain.getTransactionCount({ address: payee });
            const hashes = new Set(mine.map((l) => l.transactionHash));
            assert.equal(nonce, hashes.size, `operator ${i} sent only redeems`);
            let gas = 0n;
            for (const hash of hashes) {
              const r = await chain.getTransactionReceipt({ hash });
              assert.equal(r.from.toLowerCase(), payee.toLowerCase());
              gas += r.gasUsed * r.effectiveGasPrice;
              gasPerRedeem.push(r.gasUsed);
            }
            const after = await chain.getBalance({ address: payee });
            assert.equal(after - before[i]!, PRICE * served[i]! - gas, `operator ${i}'s balance`);
          }
          console.log(JSON.stringify({
            paid_download: {
              mib: 32,
              seconds: Number(seconds.toFixed(2)),
              vouchers: 32,
              vouchers_per_gib: 1024,
              redeems: gasPerRedeem.length,
              gas_per_redeem: gasPerRedeem.map(Number),
            },
          }));
        },
      );

      // A fourth operator, in process, with a small credit, for the clients that misbehave.
      const guardWallet = wallet(devnet, 7);
      const guardDesk = new PaymentDesk({
        chain: devnet.config,
        wallet: guardWallet,
        price: PRICE,
        batchBytes: MiB,
        creditBytes: 2 * MiB,
        paymentWaitMs: 1000,
      });
      const held = Array.from({ length: 10 }, () => randomChunk());
      const store = new Map(held.map((c) => [c.cid.toString(), c.bytes]));
      const guard = await createMeshNode({
        listen: [TCP],
        store: {
          get: (cid) => Promise.resolve(store.get(cid.toString()) ?? null),
          has: (cid) => Promise.resolve(store.has(cid.toString())),
          put: () => Promise.reject(new Error("read-only")),
        },
        exchange: { gate: guardDesk },
      });
      inProcess.push(guard);
      await guardDesk.start(guard.libp2p);

      await t.step("a client that stops paying is cut off within the credit limit", async () => {
        const inner = new PayingClient({
          chain: devnet.config,
          wallet: wallet(devnet, 5),
          batchBytes: MiB,
        });
        let paying = true;
        let unpaid = 0;
        const stopper = await createMeshNode({
          listen: [TCP],
          exchange: {
            payer: {
              received: (peer, cid, bytes) => {
                if (paying) return inner.received(peer, cid, bytes);
                unpaid += bytes;
                return Promise.resolve();
              },
              refused: () => Promise.resolve(false),
            },
          },
        });
        inProcess.push(stopper);
        await inner.start(stopper.libp2p);
        let got = 0;
        const refusal = await (async () => {
          try {
            for await (
              const c of stopper.fetchChunks(
                guard.multiaddrs()[0]!,
                held.map((c) => c.cid),
              )
            ) {
              got++;
              // Three MiB paid for, then nothing more.
              if (got === 3) paying = false;
              assert.ok(c.bytes);
            }
          } catch (e) {
            return e;
          }
        })();
        assert.ok(refusal instanceof DeliveryRefusedError, `expected a refusal, got ${refusal}`);
        assert.equal(refusal.code, "payment_required");
        assert.ok(unpaid > 0 && unpaid <= 2 * MiB + MiB, `got ${unpaid} unpaid bytes`);
        assert.ok(got < held.length);
        const account = guardDesk.accounts().find((a) => a.peer === stopper.peerId)!;
        assert.equal(account.accepted, PRICE * 3n * BigInt(MiB));
        assert.ok(account.servedBytes * PRICE - account.accepted <= PRICE * 2n * BigInt(MiB));
      });

      await t.step("a forged voucher is refused and the connection dropped", async () => {
        const forgerWallet = wallet(devnet, 6);
        const forger = await createMeshNode({ listen: [TCP] });
        inProcess.push(forger);
        await forger.connect(guard.multiaddrs()[0]!);
        const quote = await requestQuote(forger.libp2p, guard.peerId);
        assert.equal(quote.payee, guardWallet.account.address);
        assert.equal(quote.price, PRICE);
        const { channel } = await openChannel(forgerWallet, {
          address: hub,
          payee: quote.payee as Address,
          deposit: 10n ** 17n,
          challengePeriod: 3600n,
        });
        const voucher = {
          channel,
          cumulativeAmount: PRICE * BigInt(MiB),
          receiptsRoot: EMPTY_RECEIPTS_ROOT,
          receiptCount: 0n,
        };
        // Signed by another key than the channel's payer.
        const signature = await signVoucher(
          payAccount("dev:8"),
          channelHubDomain(devnet.config.chainId, hub),
          voucher,
        );
        await assert.rejects(
          submitVoucher(forger.libp2p, guard.peerId, { voucher, signature, receipts: [] }),
          (e: unknown) => e instanceof VoucherRefusedError && e.code === "voucher_signer",
        );
        const deadline = Date.now() + 5000;
        while (forger.connectedPeers().includes(guard.peerId)) {
          assert.ok(Date.now() < deadline, "the operator hangs up");
          await new Promise((r) => setTimeout(r, 25));
        }
        await assert.rejects(
          forger.fetchChunk(guard.multiaddrs()[0]!, held[0]!.cid),
          (e: unknown) => e instanceof DeliveryRefusedError && e.code === "peer_banned",
        );
        assert.equal(guardDesk.accounts().find((a) => a.peer === forger.peerId)?.accepted, 0n);
      });
      await guardDesk.stop();
    } finally {
      await Promise.all(operators.map((op) => op.stop()));
      await client?.stop();
      await Promise.all(inProcess.map((n) => n.stop()));
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

/** `GET <url>/api/pay` as JSON. */
async function payOf(node: NodeProcess): Promise<Record<string, unknown>> {
  return await (await fetch(`${node.url}/api/pay`)).json();
}

/** The value of an unlabelled series in `<url>/metrics`. */
async function metric(node: NodeProcess, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.split(" ")[1]);
}

Deno.test({
  name:
    "paid mode for a newcomer: two serve processes with default accounts pay each other, /api/pay and /metrics show what the hub paid",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-paid-default-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    const chain = createTestClient({
      chain: meshChain(devnet.config),
      mode: "anvil",
      transport: http(devnet.config.rpc),
    }).extend(publicActions);
    const price = 10n * PRICE; // well above 10 redeems' gas per 4 MiB voucher: each is redeemed at once
    const paid = [
      "--chain",
      devnet.config.rpc,
      "--chain-file",
      `${dir}/chain.json`,
    ];
    const nodes: NodeProcess[] = [];
    try {
      // The operator keeps its key in <data>/pay.key (found without a flag); the reader has no key at all
      // and gets the dev account of its data directory.
      const key = generatePrivateKey();
      const operatorAddress = privateKeyToAccount(key).address;
      await Deno.mkdir(`${dir}/op`, { recursive: true });
      await Deno.writeTextFile(`${dir}/op/pay.key`, `${key}\n`, { mode: 0o600 });
      await chain.setBalance({ address: operatorAddress, value: parseEther("100") });

      const op = await spawnNode([
        "--data",
        `${dir}/op`,
        ...paid,
        "--price-served",
        String(price << 30n),
      ], {
        stderr: "piped",
      });
      nodes.push(op);
      assert.equal(op.account, operatorAddress, "the key file in the data directory is used");
      const cmdline = await Deno.readTextFile(`/proc/${op.pid}/cmdline`);
      assert.ok(!cmdline.includes(key.slice(2)), "no key in the process's arguments");

      const mib = 12;
      const body = new Uint8Array(mib * MiB);
      for (let i = 0; i < body.length; i += 65536) {
        crypto.getRandomValues(body.subarray(i, i + 65536));
      }
      // Alone in the mesh, the operator keeps every chunk: the reader must buy them all from it.
      const put = await fetch(`${op.url}/mesh?k=1&m=0&chunkSize=${MiB}`, { method: "POST", body });
      assert.equal(put.status, 201, await put.clone().text());
      const { cid } = await put.json() as { cid: string };

      const reader = await spawnNode(
        // 10 gwei a byte and 12 MiB are above the default ceiling and per-file cap: this reader allows them.
        [
          "--data",
          `${dir}/reader`,
          ...paid,
          "--price-served",
          String(1n << 30n),
          "--max-price",
          String(price << 30n),
          "--max-spend-file",
          String(parseEther("1")),
          "--bootstrap",
          op.multiaddrs[0]!,
        ],
        { stderr: "piped" },
      );
      nodes.push(reader);
      assert.equal(reader.account, devAccountFor(`${dir}/reader`).address);
      assert.notEqual(reader.account, op.account);
      // 1 wei a byte can never pay for a redeem: said at start, with a price that would.
      const warning = reader.logs().split("\n").filter(Boolean).map((l) => JSON.parse(l))
        .find((l) => /too low ever to be worth redeeming/.test(l.msg));
      assert.ok(warning, `a low-price warning in: ${reader.logs()}`);
      assert.equal(warning.level, "warn");
      assert.ok(BigInt(warning.minPrice) > 1n && BigInt(warning.minPrice) <= price);
      assert.match(warning.msg, new RegExp(`--price-served ${BigInt(warning.minPrice) << 30n} `));
      await waitForPeers(reader.url, 1);

      const before = await chain.getBalance({ address: operatorAddress });
      const got = await fetch(`${reader.url}/mesh/${cid}`);
      assert.equal(got.status, 200);
      assert.deepEqual(new Uint8Array(await got.arrayBuffer()), body);

      // Every voucher accepted is redeemed while the nodes run (each is worth far more than its gas).
      const deadline = Date.now() + 30_000;
      let earned: Record<string, unknown>;
      while (true) {
        earned = await payOf(op);
        if (
          (earned.vouchersReceived as number) >= 3 && earned.redeemedWei === earned.earnedWei &&
          earned.redeems === earned.vouchersReceived
        ) break;
        assert.ok(Date.now() < deadline, `redeems done: ${JSON.stringify(earned)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const spent = await payOf(reader);
      assert.equal(earned.mode, "paid");
      assert.equal(earned.account, operatorAddress);
      assert.equal(earned.price, String(price));
      assert.equal(spent.account, reader.account);
      assert.equal(spent.vouchersSent, earned.vouchersReceived);
      assert.equal(spent.spentWei, earned.earnedWei);
      // 12 MiB and the manifest's few hundred bytes, in vouchers of 4 MiB.
      const wei = BigInt(earned.earnedWei as string);
      assert.ok(
        wei >= price * BigInt(12 * MiB) && wei < price * BigInt(12 * MiB + 65536),
        `${wei}`,
      );

      // What the hub paid the operator, from its events, is what the node says it earned.
      const logs = await chain.getLogs({
        address: devnet.config.contracts.channelHub,
        fromBlock: 0n,
        toBlock: "latest",
      });
      const channels = new Set(
        parseEventLogs({ abi: channelHubAbi, eventName: "ChannelOpened", logs })
          .filter((l) => l.args.payee === operatorAddress).map((l) => l.args.channel),
      );
      assert.equal(channels.size, 1);
      const hubPaid = parseEventLogs({ abi: channelHubAbi, eventName: "VoucherRedeemed", logs })
        .filter((l) => channels.has(l.args.channel)).reduce((sum, l) => sum + l.args.paid, 0n);
      assert.equal(BigInt(earned.redeemedWei as string), hubPaid);
      const after = await chain.getBalance({ address: operatorAddress });
      assert.equal(after - before, hubPaid - BigInt(earned.redeemGasWei as string));
      const channel = (earned.channels as Record<string, unknown>[])[0]!;
      assert.equal(channel.direction, "in");
      assert.equal(channel.payer, reader.account);
      assert.ok(channels.has(channel.channel as Hex));

      assert.equal(await metric(op, "mesh_pay_earned_wei_total"), Number(hubPaid));
      assert.equal(await metric(op, "mesh_pay_redeemed_wei_total"), Number(hubPaid));
      assert.equal(await metric(op, "mesh_pay_redeems_total"), earned.redeems);
      assert.equal(
        await metric(op, "mesh_pay_redeem_gas_wei_total"),
        Number(earned.redeemGasWei),
      );
      assert.ok(await metric(op, "mesh_pay_redeem_gas_total") > 0);
      assert.equal(
        await metric(op, "mesh_pay_vouchers_received_total"),
        earned.vouchersReceived,
      );
      assert.equal(await metric(reader, "mesh_pay_vouchers_sent_total"), spent.vouchersSent);
      assert.equal(await metric(reader, "mesh_pay_spent_wei_total"), Number(hubPaid));

      const codes = await Promise.all(nodes.splice(0).map((n) => n.stop()));
      assert.deepEqual(codes, [0, 0]);
      // Every log line is one JSON object: no stack traces.
      for (const node of [op, reader]) {
        for (const line of node.logs().split("\n").filter(Boolean)) {
          assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
        }
      }

      // A key file others may read is refused, in one line, before anything starts.
      await Deno.mkdir(`${dir}/loose`);
      await Deno.writeTextFile(`${dir}/loose/pay.key`, `${key}\n`, { mode: 0o644 });
      await Deno.chmod(`${dir}/loose/pay.key`, 0o644);
      const loose = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "src/cli.ts",
          "serve",
          "--port",
          "0",
          "--data",
          `${dir}/loose`,
          ...paid,
        ],
        cwd: new URL("../../", import.meta.url),
        stdout: "null",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(loose.stderr).trim();
      assert.equal(loose.code, 1);
      assert.equal(stderr.split("\n").length, 1, stderr);
      assert.match(stderr, /pay\.key" is readable by others \(mode 644\): run "chmod 600 /);
      assert.ok(!stderr.includes(key.slice(2)));
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "cluster --paid: every node pays and is paid with the dev account of its own data directory",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-paid-cluster-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    try {
      await using cluster = await startCluster({
        nodes: 2,
        dir,
        paid: { chainFile: `${dir}/chain.json` },
        stderr: "null",
      });
      const accounts = cluster.nodes.map((n) => n.account);
      assert.deepEqual(accounts, [0, 1].map((i) => devAccountFor(`${dir}/node-${i}`).address));
      for (const node of cluster.nodes) {
        const pay = await payOf(node);
        assert.equal(pay.mode, "paid");
        assert.equal(pay.chainId, devnet.config.chainId);
        assert.equal(pay.account, node.account);
        assert.equal(pay.price, String(CLUSTER_PRICE));
      }
    } finally {
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
