/**
 * Leases and audits between real nodes on loopback: an upload leased from every holder the placement chose,
 * audits that pass while the holders keep the chunks and fail (in the lease book and the reputation book's
 * audit factor) once one deletes them from disk; then the refusals, each with its reason.
 */
import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { CID, cidOf } from "../../src/content/cid.ts";
import { MeshgateNode } from "../../src/node.ts";
import { type Lease, LeaseError, signAsClient } from "../../src/market/lease.ts";
import { LEASE_PROTOCOL, LeaseService } from "../../src/market/leasing.ts";
import { AUDIT_PROTOCOL, auditSecret } from "../../src/market/audit.ts";
import { callPeer } from "../../src/mesh/message.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { ChunkStore } from "../../src/store/store.ts";
import { randomBytes, startNode, stopNodes, waitFor } from "../mesh/_helpers.ts";

const TCP = "/ip4/127.0.0.1/tcp/0";
const leasesOf = (n: MeshgateNode) => n.services.get<LeaseService>("leases")!;

Deno.test({
  name:
    "an upload is leased from each holder; audits pass, and fail once a holder deletes the chunks",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-" });
    const nodes: MeshgateNode[] = [];
    const settings = { auditEveryMs: 60_000, challenges: 8, graceMs: 0, minTermMs: 1000 };
    try {
      for (let i = 0; i < 4; i++) {
        nodes.push(
          await MeshgateNode.create({
            dataDir: `${dir}/n${i}`,
            parityWorkers: 0,
            findTimeoutMs: 15_000,
            mesh: {
              listen: [TCP],
              bootstrap: nodes.map((n) => n.mesh!.multiaddrs()[0]!),
            },
            leases: settings,
          }),
        );
      }
      const [client, ...holders] = nodes as [MeshgateNode, ...MeshgateNode[]];
      await waitFor(
        () => client.mesh!.connectedPeers().length === 3,
        "client connected to all",
        30_000, // generous: the machine is shared
      );
      const original = randomBytes(96 * 1024);
      const put = await client.put(ReadableStream.from([original]), {
        chunkSize: 16 * 1024,
        k: 4,
        m: 2,
      });
      assert.ok(put.where, "the placement says where each block went");
      const outcomes = await leasesOf(client).leaseUpload(put, 30 * 86_400_000);
      assert.ok(outcomes.length >= 2, `leased from ${outcomes.length} holders`);
      for (const o of outcomes) assert.ok(o.lease, `${o.holder}: ${o.error?.message}`);
      const view = leasesOf(client).list();
      assert.equal(view.asClient.length, outcomes.length);
      assert.equal(view.asHolder.length, 0);
      for (const o of outcomes) {
        const holder = holders.find((h) => h.mesh!.peerId === o.holder)!;
        const held = leasesOf(holder).list().asHolder;
        assert.deepEqual(held.map((l) => l.id), [o.lease!.id]);
        assert.equal(held[0]!.chunks, o.chunks);
        // Every chunk the lease names is on the holder's disk, with the manifest's length.
        for (const [cid, len] of o.lease!.chunks) {
          assert.equal((await holder.store.get(CID.parse(cid)))?.length, len);
        }
      }
      // Honest holders pass every challenge.
      for (const o of outcomes) {
        const r = await leasesOf(client).audit(o.lease!.id);
        assert.deepEqual([r.passed, r.failed], [8, 0], r.reasons.join("; "));
      }
      // One holder deletes the chunks of its lease from disk.
      const cheat = outcomes[0]!;
      const cheater = holders.find((h) => h.mesh!.peerId === cheat.holder)!;
      for (const [cid] of cheat.lease!.chunks) await cheater.store.delete(CID.parse(cid));
      const kept = await Promise.all(
        cheat.lease!.chunks.map(([cid]) => client.store.has(CID.parse(cid))),
      );
      // The client kept none of them but the manifest: the chunks must be rebuilt from their stripes.
      assert.ok(kept.some((k) => !k), `the client keeps ${JSON.stringify(kept)}`);
      const r = await leasesOf(client).audit(cheat.lease!.id);
      assert.deepEqual([r.passed, r.failed], [0, 8]);
      assert.match(r.reasons[0]!, /no copy/);
      // The failed round re-placed what the cheater lost: rebuilt from the stripes, kept and leased
      // elsewhere until the old lease's end; the old lease is no longer audited for them.
      const lost = cheat.lease!.chunks.map(([cid]) => cid);
      const fresh = leasesOf(client).book.list("client").filter((e) =>
        !outcomes.some((o) => o.lease!.id === e.lease.id)
      );
      assert.ok(fresh.length >= 1, `new leases for the lost chunks: ${JSON.stringify(r)}`);
      assert.deepEqual(
        fresh.flatMap((e) => e.lease.chunks.map(([c]) => c)).sort(),
        [...lost].sort(),
      );
      for (const e of fresh) {
        assert.notEqual(e.lease.holder, cheat.holder);
        assert.equal(e.lease.end, cheat.lease!.end, "the new lease ends with the one it replaces");
        const keeper = holders.find((h) => h.mesh!.peerId === e.lease.holder)!;
        for (const [cid, len] of e.lease.chunks) {
          assert.equal((await keeper.store.get(CID.parse(cid)))?.length, len);
        }
        const again = await leasesOf(client).audit(e.lease.id);
        assert.deepEqual([again.passed, again.failed], [8, 0], again.reasons.join("; "));
      }
      assert.deepEqual(
        await leasesOf(client).audit(cheat.lease!.id),
        { passed: 0, failed: 0, reasons: [] },
        "nothing left to audit on the cheater",
      );
      // With the cheater gone too, the file reads whole through the client.
      await cheater.stop();
      const back = new Uint8Array(await new Response(client.read(put.manifest)).arrayBuffer());
      assert.deepEqual(back, original);
      const entry = leasesOf(client).book.get(cheat.lease!.id, "client")!;
      assert.deepEqual([entry.passed, entry.failed, entry.lastPassed], [8, 8, false]);
      const book = client.reputation!.book;
      assert.deepEqual(book.record(cheat.holder)!.audits, { passed: 8, failed: 8 });
      const honest = outcomes[1]!.holder;
      assert.ok(
        book.score(cheat.holder).factors.audit < book.score(honest).factors.audit,
        "the cheater's audit factor falls below an honest holder's",
      );
    } finally {
      await Promise.all(nodes.map((n) => n.stop().catch(() => {})));
      await new Promise((r) => setTimeout(r, 1100));
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "a holder silent past the grace time has its chunks rebuilt onto others; before it, nothing moves",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-offline-" });
    const nodes: MeshgateNode[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        nodes.push(
          await MeshgateNode.create({
            dataDir: `${dir}/n${i}`,
            parityWorkers: 0,
            findTimeoutMs: 15_000,
            mesh: { listen: [TCP], bootstrap: nodes.map((n) => n.mesh!.multiaddrs()[0]!) },
            leases: { challenges: 2, offlineGraceMs: 1500, timeoutMs: 3000, log: () => {} },
          }),
        );
      }
      const [client, ...holders] = nodes as [MeshgateNode, ...MeshgateNode[]];
      await waitFor(
        () => client.mesh!.connectedPeers().length === 4,
        "client connected to all",
        30_000,
      );
      const original = randomBytes(96 * 1024);
      const put = await client.put(ReadableStream.from([original]), {
        chunkSize: 16 * 1024,
        k: 2,
        m: 1,
      });
      const outcomes = await leasesOf(client).leaseUpload(put, 86_400_000);
      const gone = outcomes.find((o) => o.lease && o.lease.chunks.length > 1)!;
      const away = holders.find((h) => h.mesh!.peerId === gone.holder)!;
      await away.stop();
      const book = leasesOf(client).book;
      const count = () => book.list("client").length;
      const before = count();
      // Silent, but within the grace time: failed rounds, nothing re-placed, no audit failure counted.
      const first = await leasesOf(client).audit(gone.lease!.id);
      assert.equal(first.passed, 0);
      assert.equal(count(), before);
      assert.equal(client.reputation!.book.record(gone.holder)?.audits?.failed ?? 0, 0);
      await new Promise((r) => setTimeout(r, 1600));
      await leasesOf(client).audit(gone.lease!.id);
      const fresh = book.list("client").filter((e) =>
        !outcomes.some((o) => o.lease?.id === e.lease.id)
      );
      assert.deepEqual(
        fresh.flatMap((e) => e.lease.chunks.map(([c]) => c)).sort(),
        gone.lease!.chunks.map(([c]) => c).sort(),
        "every chunk the silent holder kept is leased elsewhere",
      );
      for (const e of fresh) assert.notEqual(e.lease.holder, gone.holder);
      const back = new Uint8Array(await new Response(client.read(put.manifest)).arrayBuffer());
      assert.deepEqual(back, original);
    } finally {
      await Promise.all(nodes.map((n) => n.stop().catch(() => {})));
      await new Promise((r) => setTimeout(r, 1100));
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** A holder and a client as bare services over real libp2p nodes, with a clock the test moves. */
async function pair(
  dir: string,
  holderSettings: Record<string, unknown> = {},
  clientSettings: Record<string, unknown> = {},
) {
  const clock = { now: Date.now() };
  const make = async (name: string, settings: Record<string, unknown>) => {
    const dataDir = `${dir}/${name}`;
    await Deno.mkdir(dataDir, { recursive: true });
    const mesh = await startNode({ dataDir });
    const privateKey = await loadOrCreatePrivateKey(dataDir); // the mesh's identity
    const store = await ChunkStore.open(dataDir);
    const service = new LeaseService({
      dataDir,
      store,
      libp2p: mesh.libp2p,
      privateKey,
      peerId: mesh.peerId,
      graceMs: 0,
      minTermMs: 1000,
      now: () => clock.now,
      log: () => {},
      ...settings,
    });
    await service.start();
    return { mesh, store, service, privateKey };
  };
  const holder = await make("holder", holderSettings);
  const client = await make("client", clientSettings);
  await client.mesh.connect(holder.mesh.multiaddrs()[0]! as never);
  const stop = async () => {
    for (const s of [holder, client]) {
      await s.service.stop();
      await s.store.close();
    }
    await stopNodes(holder.mesh, client.mesh);
  };
  return { clock, holder, client, stop };
}

async function chunkOn(store: ChunkStore, n: number): Promise<[string, number]> {
  const bytes = randomBytes(n);
  const cid = cidOf(bytes);
  await store.put(cid, bytes);
  return [cid.toString(), n];
}

Deno.test({
  name:
    "holders refuse forged, expired, over-capacity, underpriced and chunkless leases; renewals and audits of others' leases",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-bad-" });
    const { clock, holder, client, stop } = await pair(dir, {
      capacityBytes: 100_000,
      volunteerBytes: 60_000,
    });
    try {
      const a = await chunkOn(holder.store, 40_000);
      const b = await chunkOn(holder.store, 40_000);
      const hp = holder.mesh.peerId, cp = client.mesh.peerId;
      const draft = (over: Record<string, unknown> = {}) => ({
        holder: hp,
        client: cp,
        root: a[0],
        chunks: [a],
        start: clock.now,
        end: clock.now + 86_400_000,
        pricePerChunkMonth: "0",
        auditEveryMs: 60_000,
        commit: auditSecret().commit,
        nonce: "00".repeat(16),
        ...over,
      });
      const propose = (lease: Lease) =>
        callPeer(
          client.mesh.libp2p,
          hp,
          LEASE_PROTOCOL,
          { op: "propose", lease },
          AbortSignal.timeout(10_000),
          { maxBytes: 1 << 20, what: "lease", error: (m) => new LeaseError("lease_protocol", m) },
        );
      const refused = async (lease: Lease, code: string, why: RegExp) => {
        const reply = await propose(lease);
        assert.equal(reply.error, code, JSON.stringify(reply));
        assert.match(String(reply.message), why);
      };
      // Forged: signed by another key in the client's name.
      const mallory = await generateKeyPair("Ed25519");
      await refused(await signAsClient(mallory, draft() as never), "lease_signature", /not signed/);
      // Expired, nearly expired, backdated.
      await refused(
        await signAsClient(client.privateKey, draft({ end: clock.now + 500 }) as never),
        "lease_expired",
        /less than/,
      );
      await refused(
        await signAsClient(
          client.privateKey,
          draft({ start: clock.now - 3_600_000, end: clock.now + 3_600_000 }) as never,
        ),
        "lease_expired",
        /past/,
      );
      // A chunk it does not hold, or at another length than it holds.
      const absent = cidOf(new Uint8Array([9, 9, 9])).toString();
      await refused(
        await signAsClient(client.privateKey, draft({ chunks: [[absent, 3]] }) as never),
        "lease_missing",
        /no 3-byte chunk/,
      );
      await refused(
        await signAsClient(client.privateKey, draft({ chunks: [[a[0], 39_999]] }) as never),
        "lease_missing",
        /no 39999-byte/,
      );
      // Another node's lease proposed by the client: a lease is proposed by its own client only.
      const other = await generateKeyPair("Ed25519");
      const { peerIdFromPrivateKey } = await import("@libp2p/peer-id");
      const otherId = peerIdFromPrivateKey(other).toString();
      await refused(
        await signAsClient(other, draft({ client: otherId }) as never),
        "lease_not_yours",
        /to propose/,
      );
      // Within the volunteer quota: accepted. Past it (60 000 bytes free per client): refused.
      const first = await propose(await signAsClient(client.privateKey, draft() as never));
      assert.ok(first.lease, JSON.stringify(first));
      await refused(
        await signAsClient(client.privateKey, draft({ chunks: [b] }) as never),
        "lease_capacity",
        /Free leases/,
      );
      // The same chunk again is not more room.
      const again = await propose(
        await signAsClient(client.privateKey, draft({ nonce: "11".repeat(16) }) as never),
      );
      assert.ok(again.lease);
      // Past the node's capacity (100 000 bytes), for a paying client too.
      await stop();
      const p2 = await pair(`${dir}/2`, {
        capacityBytes: 100_000,
        storedPerGiBMonth: "1073741824",
      });
      try {
        const x = await chunkOn(p2.holder.store, 60_000);
        const y = await chunkOn(p2.holder.store, 60_000);
        const out = await p2.client.service.leaseFile(
          CID.parse(x[0]),
          new Map([[x[0], new Set([p2.holder.mesh.peerId])]]),
          () => 60_000,
          86_400_000,
        );
        assert.ok(out[0]!.lease, JSON.stringify(out[0]!.error));
        assert.equal(
          out[0]!.lease!.pricePerChunkMonth,
          "60000",
          "the holder's price per chunk-month",
        );
        const over = await p2.client.service.leaseFile(
          CID.parse(y[0]),
          new Map([[y[0], new Set([p2.holder.mesh.peerId])]]),
          () => 60_000,
          86_400_000,
        );
        assert.equal(over[0]!.error?.code, "lease_capacity");
        assert.match(over[0]!.error!.message, /capacity/);
        // Underpriced: a proposal below the holder's price.
        const cheap = await signAsClient(p2.client.privateKey, {
          ...draft({ chunks: [y] }),
          holder: p2.holder.mesh.peerId,
          client: p2.client.mesh.peerId,
          root: y[0],
          start: p2.clock.now,
          end: p2.clock.now + 86_400_000,
        } as never);
        const reply = await callPeer(
          p2.client.mesh.libp2p,
          p2.holder.mesh.peerId,
          LEASE_PROTOCOL,
          { op: "propose", lease: cheap },
          AbortSignal.timeout(10_000),
          { maxBytes: 1 << 20, what: "lease", error: (m) => new LeaseError("lease_protocol", m) },
        );
        assert.equal(reply.error, "lease_price");
        // Renewing someone else's lease: the holder cannot renew what it keeps for the client.
        const id = out[0]!.lease!.id;
        await assert.rejects(
          p2.holder.service.renew(id, 86_400_000),
          (e) => e instanceof LeaseError && e.code === "lease_not_yours",
        );
        await assert.rejects(
          p2.holder.service.renew("ab".repeat(16), 86_400_000),
          (e) => e instanceof LeaseError && e.code === "lease_not_found",
        );
        // The client renews its own: a new lease from the old end.
        const renewed = await p2.client.service.renew(id, 86_400_000);
        assert.equal(renewed.start, out[0]!.lease!.end);
        assert.equal(p2.client.service.book.get(id, "client")!.renewedBy, renewed.id);
        // The client may challenge 64 times per audit interval (a one-chunk lease), not more.
        const wire = {
          maxBytes: 4096,
          what: "audit",
          error: (m: string) => new LeaseError("lease_protocol", m),
        };
        const ask = (i: number) =>
          callPeer(
            p2.client.mesh.libp2p,
            p2.holder.mesh.peerId,
            AUDIT_PROTOCOL,
            {
              op: "challenge",
              lease: id,
              cid: x[0],
              index: i % 59,
              nonce: i.toString(16).padStart(32, "0"),
            },
            AbortSignal.timeout(10_000),
            wire,
          );
        for (let i = 0; i < 64; i++) assert.ok((await ask(i)).block, `challenge ${i}`);
        assert.equal((await ask(64)).error, "rate_limited");
        p2.clock.now += 3_600_000; // the next audit interval
        assert.ok((await ask(65)).block);
        // Auditing a lease that is not yours: the holder answers nothing but the refusal.
        const challenge = {
          op: "challenge",
          lease: id,
          cid: x[0],
          index: 0,
          nonce: "22".repeat(16),
        };
        const stranger = await startNode();
        try {
          await stranger.connect(p2.holder.mesh.multiaddrs()[0]! as never);
          const answer = await callPeer(
            stranger.libp2p,
            p2.holder.mesh.peerId,
            AUDIT_PROTOCOL,
            challenge,
            AbortSignal.timeout(10_000),
            { maxBytes: 4096, what: "audit", error: (m) => new LeaseError("lease_protocol", m) },
          );
          assert.equal(answer.error, "lease_not_yours");
          assert.equal(answer.block, undefined);
        } finally {
          await stopNodes(stranger);
        }
      } finally {
        await p2.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "the collector deletes chunks of ended leases; pinned ones and those under a live lease stay",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-gc-" });
    const deleted: CID[] = [];
    const { clock, holder, client, stop } = await pair(dir, {
      onDeleted: (cids: CID[]) => void deleted.push(...cids),
    });
    try {
      const gone = await chunkOn(holder.store, 5000);
      const pinned = await chunkOn(holder.store, 5000);
      const live = await chunkOn(holder.store, 5000);
      const lease = (chunks: [string, number][], ms: number) =>
        client.service.leaseFile(
          CID.parse(chunks[0]![0]),
          new Map(chunks.map(([cid]) => [cid, new Set([holder.mesh.peerId])])),
          (cid) => chunks.find(([c]) => c === cid)![1],
          ms,
        );
      const short = await lease([gone, pinned, live], 10_000);
      assert.ok(short[0]!.lease);
      const long = await lease([live], 100_000);
      assert.ok(long[0]!.lease);
      await holder.store.pin(CID.parse(pinned[0]));
      assert.deepEqual(await holder.service.collect(), [], "nothing ended yet");
      clock.now += 10_001; // the short lease ended
      const out = await holder.service.collect();
      assert.deepEqual(out.map(String), [gone[0]]);
      assert.deepEqual(
        deleted.map(String),
        [gone[0]],
        "the node is told (it withdraws the record)",
      );
      const path = (cid: string) => `${dir}/holder/chunks/${cid.slice(-2)}/${cid}`;
      await assert.rejects(Deno.stat(path(gone[0])), Deno.errors.NotFound);
      await Deno.stat(path(pinned[0]));
      await Deno.stat(path(live[0]));
      assert.ok(
        holder.service.list().asHolder.find((l) => l.id === short[0]!.lease!.id)?.collected,
      );
      // Collected once: a second pass deletes nothing.
      assert.deepEqual(await holder.service.collect(), []);
      // The long lease ends: its chunk goes too (the pinned one still stays).
      clock.now += 100_000;
      assert.deepEqual((await holder.service.collect()).map(String), [live[0]]);
      await Deno.stat(path(pinned[0]));
    } finally {
      await stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a full holder evicts chunks kept for peers, but never one under a live lease",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-evict-" });
    const holder = await MeshgateNode.create({
      dataDir: `${dir}/holder`,
      parityWorkers: 0,
      maxStoreBytes: 64 * 1024, // room for four 16 KiB chunks
      mesh: { listen: [TCP] },
    });
    const dataDir = `${dir}/client`;
    await Deno.mkdir(dataDir, { recursive: true });
    const mesh = await startNode({ dataDir });
    const store = await ChunkStore.open(dataDir);
    const client = new LeaseService({
      dataDir,
      store,
      libp2p: mesh.libp2p,
      privateKey: await loadOrCreatePrivateKey(dataDir),
      peerId: mesh.peerId,
      log: () => {},
    });
    await client.start();
    try {
      const hp = holder.mesh!.peerId;
      await mesh.connect(holder.mesh!.multiaddrs()[0]! as never);
      const chunks = Array.from({ length: 6 }, () => {
        const bytes = randomBytes(16 * 1024);
        return { cid: cidOf(bytes), bytes };
      });
      const stored = await mesh.storeChunks(hp, chunks.slice(0, 4));
      assert.ok(stored.every((r) => r.accepted), JSON.stringify(stored));
      // The oldest one, first in line for eviction, is leased.
      const leased = chunks[0]!.cid.toString();
      const out = await client.leaseFile(
        chunks[0]!.cid,
        new Map([[leased, new Set([hp])]]),
        () => 16 * 1024,
        86_400_000,
      );
      assert.ok(out[0]!.lease, JSON.stringify(out[0]!.error));
      // Two more chunks: the store is full, the oldest unleased ones go.
      const more = await mesh.storeChunks(hp, chunks.slice(4));
      assert.ok(more.every((r) => r.accepted), JSON.stringify(more));
      assert.equal(await holder.store.has(chunks[0]!.cid), true, "the leased chunk stays");
      // Two of the unleased ones went (a holder stores a put's chunks 4 at once, so which of those three
      // counts as oldest is not fixed).
      const left = [];
      for (const c of chunks.slice(1, 4)) if (await holder.store.has(c.cid)) left.push(c);
      assert.equal(left.length, 1, "two unleased chunks were evicted");
    } finally {
      await client.stop();
      await store.close();
      await holder.stop();
      await stopNodes(mesh);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "each audit round closes a period: proven ones are owed at the lease's price, failed ones forfeited",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-pay-" });
    // 2^30 wei per GiB-month: a 64 KiB chunk costs 65 536 wei a month.
    // 32 challenges a round: a round misses a holder that lost half with odds 2^-32.
    const { clock, holder, client, stop } = await pair(dir, { storedPerGiBMonth: "1073741824" }, {
      challenges: 32,
    });
    try {
      const a = await chunkOn(holder.store, 65_536);
      const b = await chunkOn(holder.store, 65_536);
      const month = 30 * 86_400_000;
      const [out] = await client.service.leaseFile(
        CID.parse(a[0]),
        new Map([[a[0], new Set([holder.mesh.peerId])], [b[0], new Set([holder.mesh.peerId])]]),
        () => 65_536,
        3 * month,
      );
      const id = out!.lease!.id;
      assert.equal(out!.lease!.pricePerChunkMonth, "65536");
      const owed = () => client.service.list().asClient.find((l) => l.id === id)!;
      clock.now += month / 2; // half a month, both chunks kept: proven
      assert.equal((await client.service.audit(id)).failed, 0);
      assert.deepEqual([owed().provenMs, owed().forfeitMs, owed().owedWei], [
        month / 2,
        0,
        "65536",
      ]);
      await holder.store.delete(CID.parse(b[0])); // the holder drops half
      clock.now += month;
      assert.ok((await client.service.audit(id)).failed > 0);
      assert.equal(owed().owedWei, "65536", "a failed round forfeits its period");
      assert.equal(owed().forfeitMs, month);
    } finally {
      await stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "the round after a lease ends closes its last period (once); a live lease waits for its interval",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lease-last-" });
    // The closing round's payment fails once: the lease gets no more rounds, and is paid on the next tick.
    const paid: bigint[] = [];
    let down = false;
    const { clock, holder, client, stop } = await pair(dir, { storedPerGiBMonth: "1073741824" }, {
      challenges: 4,
      pay: (_peer: string, wei: bigint) => {
        if (down) return Promise.reject(new Error("the holder's pay protocol did not answer"));
        paid.push(wei);
        return Promise.resolve();
      },
    });
    try {
      const a = await chunkOn(holder.store, 65_536);
      const month = 30 * 86_400_000;
      const [out] = await client.service.leaseFile(
        CID.parse(a[0]),
        new Map([[a[0], new Set([holder.mesh.peerId])]]),
        () => 65_536,
        month,
      );
      const id = out!.lease!.id;
      const view = () => client.service.list().asClient.find((l) => l.id === id)!;
      const every = out!.lease!.auditEveryMs;
      clock.now += month - every / 2; // half an interval before the end: one round
      await client.service.auditDue();
      assert.equal(view().passed, 4);
      clock.now += every / 4; // not due yet
      await client.service.auditDue();
      assert.equal(view().passed, 4);
      clock.now += every / 2; // ended: the closing round, up to the end
      down = true;
      await client.service.auditDue();
      assert.equal(view().passed, 8);
      assert.deepEqual([view().provenMs, view().owedWei], [month, "65536"]);
      assert.notEqual(view().paidWei, view().owedWei, "the closing round's payment failed");
      down = false;
      clock.now += every;
      await client.service.auditDue(); // closed: no round, but what it owes is paid
      assert.equal(view().passed, 8);
      assert.equal(view().paidWei, "65536");
      assert.equal(paid.reduce((n, w) => n + w, 0n), 65_536n);
      await client.service.auditDue(); // once
      assert.equal(paid.reduce((n, w) => n + w, 0n), 65_536n);
    } finally {
      await stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
