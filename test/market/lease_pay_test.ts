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
import { callPeer } from "../../src/mesh/message.ts";
import { AUDIT_PROTOCOL, AuditError, beaconIndex } from "../../src/market/audit.ts";
import { chainBeacon } from "../../src/market/beacon.ts";
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

/** Asks the holder to answer `challenge` on the audit protocol, as a client would. */
function ask(mesh: MeshNode, holder: string, challenge: Record<string, unknown>) {
  return callPeer(mesh.libp2p, holder, AUDIT_PROTOCOL, challenge, AbortSignal.timeout(10_000), {
    maxBytes: 4096,
    what: "audit",
    error: (m) => new AuditError("audit_protocol", m),
  });
}

withPayWorld(
  "paid leases are audited from the chain's block hash; a fake, old, future or unseeded challenge is refused",
  { price: 1_000_000_000n, batchBytes: 64 * 1024, paymentWaitMs: 300 },
  async ({ env, track }) => {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-beacon-" });
    const clock = { now: Date.now() };
    await Deno.mkdir(`${dir}/h`, { recursive: true });
    await Deno.mkdir(`${dir}/c`, { recursive: true });
    const hMesh = track(await startNode({ dataDir: `${dir}/h` }));
    const cMesh = track(await startNode({ dataDir: `${dir}/c` }));
    // Each side reads the chain through its own client.
    const holder = await service(`${dir}/h`, hMesh, clock, {
      storedPerGiBMonth: PER_GIB_MONTH,
      beacon: chainBeacon(await env.wallet(), { maxAgeBlocks: 8, headTtlMs: 0 }),
    });
    const lessee = await service(`${dir}/c`, cMesh, clock, {
      beacon: chainBeacon(await env.wallet(), { headTtlMs: 0 }),
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
        MONTH,
      );
      const lease = out!.lease!;
      // The client's rounds name the latest block: the holder checks and answers all 32.
      const round = await lessee.s.audit(lease.id);
      assert.deepEqual([round.passed, round.failed], [32, 0], round.reasons.join("; "));

      const head = await env.test.getBlock({ blockTag: "latest" });
      const seeded = (n: bigint, hash: string, nonce: string) => ({
        op: "challenge",
        lease: lease.id,
        cid: cid.toString(),
        index: beaconIndex(hash, lease.id, nonce, cid.toString(), 65_536),
        nonce,
        block: Number(n),
        blockHash: hash,
      });
      // A fair challenge, made by hand: answered with the block and its proof.
      const fair = await ask(cMesh, hMesh.peerId, seeded(head.number, head.hash, "01".repeat(16)));
      assert.equal(typeof fair.block, "string", JSON.stringify(fair));
      const refused = async (challenge: Record<string, unknown>, why: RegExp) => {
        const reply = await ask(cMesh, hMesh.peerId, challenge);
        assert.equal(reply.error, "audit_beacon", JSON.stringify(reply));
        assert.match(String(reply.message), why);
        assert.equal(reply.block, undefined);
      };
      // A hash that is not the chain's at that height (a block the client made up).
      const fake = `0x${"ab".repeat(32)}`;
      await refused(seeded(head.number, fake, "02".repeat(16)), /not a real block/);
      // A block the chain has not reached.
      await refused(seeded(head.number + 5n, fake, "03".repeat(16)), /past this node's chain head/);
      // A real block, but too old: the holder takes 8 blocks behind its head at most.
      await env.test.mine({ blocks: 12 });
      await refused(seeded(head.number, head.hash, "04".repeat(16)), /not recent/);
      // A real, recent block, but an index it does not give (an aimed challenge).
      const now = await env.test.getBlock({ blockTag: "latest" });
      const aimed = seeded(now.number, now.hash, "05".repeat(16));
      await refused({ ...aimed, index: (aimed.index + 1) % 64 }, /hash gives/);
      // No block at all on a paid lease: the committed-secret scheme is for volunteers.
      const { block: _b, blockHash: _h, ...bare } = aimed;
      await refused(bare, /must name a recent chain block/);
      // The rounds go on passing after all that (in the next audit interval: 64 challenges per interval).
      clock.now += 3_600_000;
      const again = await lessee.s.audit(lease.id);
      assert.deepEqual([again.passed, again.failed], [32, 0], again.reasons.join("; "));
    } finally {
      await lessee.s.stop();
      await holder.s.stop();
      await lessee.store.close();
      await holder.store.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
