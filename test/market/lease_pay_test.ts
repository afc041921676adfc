/**
 * Pay per proven period over a real anvil and real libp2p nodes: the client pays the holder, on the delivery
 * channel, what each passed audit round proved (price x chunks x time), nothing for a failed round; the
 * holder's desk redeems exactly that on chain.
 */
import assert from "node:assert/strict";
import { type Hex, parseEventLogs } from "viem";
import { CID, cidOf } from "../../src/content/cid.ts";
import { LeaseService } from "../../src/market/leasing.ts";
import { channelHubAbi } from "../../src/pay/abi.ts";
import { ChunkStore } from "../../src/store/store.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { PaymentDesk } from "../../src/pay/mod.ts";
import { randomBytes, startNode } from "../mesh/_helpers.ts";
import type { TestChain } from "../pay/_chain.ts";
import { withPayWorld } from "../pay/_fixtures.ts";

const MONTH = 30 * 86_400_000;
/** 2e16 wei per chunk-month for a 64 KiB chunk (GiB-month price = that x 16 384): far above a redeem's gas. */
const PER_GIB_MONTH = (20_000_000_000_000_000n * 16_384n).toString();

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

async function service(
  dir: string,
  mesh: MeshNode,
  clock: { now: number },
  extra: Record<string, unknown>,
) {
  const store = await ChunkStore.open(dir);
  const s = new LeaseService({
    dataDir: dir,
    store,
    libp2p: mesh.libp2p,
    privateKey: await loadOrCreatePrivateKey(dir), // the node's identity
    peerId: mesh.peerId,
    minTermMs: 1000,
    challenges: 32,
    now: () => clock.now,
    log: () => {},
    ...extra,
  });
  await s.start();
  return { s, store };
}

withPayWorld(
  "proven periods are paid on the delivery channel, a failed one is not; the desk redeems exactly that",
  { price: 1_000_000_000n, batchBytes: 64 * 1024, paymentWaitMs: 300 },
  async ({ env, chain, payer, track }) => {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-paid-" });
    const clock = { now: Date.now() };
    // The holder: a desk on its node (paid into its own account); the client: a paying client on its node.
    // Both nodes have their identity in their data directory, which the lease services sign with.
    const desk = new PaymentDesk({
      chain,
      wallet: await env.wallet(),
      price: 1_000_000_000n,
      batchBytes: 64 * 1024,
    });
    const pays = payer({ wallet: await env.wallet() });
    await Deno.mkdir(`${dir}/h`, { recursive: true });
    await Deno.mkdir(`${dir}/c`, { recursive: true });
    const hMesh = track(await startNode({ dataDir: `${dir}/h`, exchange: { gate: desk } }));
    const cMesh = track(await startNode({ dataDir: `${dir}/c`, exchange: { payer: pays } }));
    await desk.start(hMesh.libp2p);
    await pays.start(cMesh.libp2p);
    const paidTo: string[] = [];
    const holder = await service(`${dir}/h`, hMesh, clock, { storedPerGiBMonth: PER_GIB_MONTH });
    const lessee = await service(`${dir}/c`, cMesh, clock, {
      pay: async (peer: string, wei: bigint) => {
        paidTo.push(peer);
        await pays.payStorage(peer, wei);
      },
    });
    try {
      await cMesh.connect(hMesh.multiaddrs()[0]! as never);
      const bytes = randomBytes(65_536);
      const cid = cidOf(bytes);
      await holder.store.put(cid, bytes);
      const [out] = await lessee.s.leaseFile(
        cid,
        new Map([[cid.toString(), new Set([hMesh.peerId])]]),
        () => 65_536,
        3 * MONTH,
      );
      const id = out!.lease!.id;
      assert.equal(out!.lease!.pricePerChunkMonth, "20000000000000000");
      clock.now += MONTH / 2;
      assert.equal((await lessee.s.audit(id)).failed, 0);
      const view = () => lessee.s.list().asClient.find((l) => l.id === id)!;
      assert.deepEqual([view().owedWei, view().paidWei], [
        "10000000000000000",
        "10000000000000000",
      ]);
      assert.deepEqual(paidTo, [hMesh.peerId]);
      // The holder loses the chunk: the next period is forfeited, nothing more is paid.
      await holder.store.delete(CID.parse(cid.toString()));
      clock.now += MONTH / 2;
      assert.ok((await lessee.s.audit(id)).failed > 0);
      assert.deepEqual([view().owedWei, view().paidWei], [
        "10000000000000000",
        "10000000000000000",
      ]);
      assert.equal(paidTo.length, 1);
      // On chain: the desk redeems what the voucher says, exactly the proven half month.
      const account = desk.accounts().find((a) => a.peer === cMesh.peerId)!;
      assert.equal(account.accepted - account.base, 10_000_000_000_000_000n);
      await desk.stop();
      assert.equal(await redeemedTo(env, account.channel!), 10_000_000_000_000_000n);
    } finally {
      await lessee.s.stop();
      await holder.s.stop();
      await lessee.store.close();
      await holder.store.close();
      await desk.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
