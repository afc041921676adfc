/**
 * Bounded resources per peer, each played by a real attacking libp2p peer on loopback (issue 10, findings 2, 7
 * and 8): half-open chunk streams, a provider-record flood, and public mode (loopback not exempt, private
 * addresses neither kept nor dialled).
 */
import assert from "node:assert/strict";
import type { Connection, Stream } from "@libp2p/interface";
import { multiaddr } from "@multiformats/multiaddr";
import { Key } from "interface-datastore";
import { type CID, cidOf } from "../../src/content/cid.ts";
import { providerEntryName } from "../../src/mesh/dht.ts";
import { peerIdFromString } from "@libp2p/peer-id";
import { CHUNK_PROTOCOL } from "../../src/mesh/exchange.ts";
import { encodeFrame } from "../../src/mesh/_framing.ts";
import { isPrivateAddress } from "../../src/mesh/gater.ts";
import type { MeshNode, MeshNodeInit } from "../../src/mesh/node.ts";
import { MemorySource, randomBytes, SANITIZE, startNode, stopNodes, waitFor } from "./_helpers.ts";

const MiB = 1024 * 1024;
const STREAMS = 32;
/** The documented bound per stream: libp2p's read-buffer cap (`MAX_READ_BUFFER_BYTES` in `_framing.ts`). */
const PER_STREAM_BOUND = 4 * MiB;

/** The victim's chunk streams still open, and the bytes they hold unread: its exchange's own count (framing
 * reader and libp2p buffers), or libp2p's read buffers alone where the exchange has no such count. */
function chunkStreams(victim: MeshNode): { open: number; buffered: number } {
  let open = 0;
  let buffered = 0;
  for (const conn of victim.libp2p.getConnections()) {
    for (const s of conn.streams) {
      if (s.protocol !== CHUNK_PROTOCOL) continue;
      if (s.status === "open") open++;
      buffered += s.readBufferLength;
    }
  }
  const exchange = victim.libp2p.services.exchange as {
    inboundStats?: () => { bufferedBytes: number };
  };
  return { open, buffered: Math.max(buffered, exchange.inboundStats?.().bufferedBytes ?? 0) };
}

/** Opens a chunk stream on `conn` and sends a `has` request, leaving the stream's write end open. */
async function halfOpen(conn: Connection, cid: CID): Promise<Stream> {
  const stream = await conn.newStream(CHUNK_PROTOCOL);
  stream.send(encodeFrame({ op: "has", cids: [cid.toString()] }));
  return stream;
}

/** Pushes `bytes` more into `stream` as fast as the victim's window lets it (never more than a piece queued
 * here), until done or the stream ends. Returns the bytes handed to the muxer. */
async function flood(stream: Stream, bytes: number): Promise<number> {
  const piece = new Uint8Array(256 * 1024);
  let sent = 0;
  try {
    while (sent < bytes && stream.status === "open" && stream.writeStatus === "writable") {
      stream.send(piece);
      sent += piece.length;
      while (stream.writeBufferLength > 0 && stream.status === "open") {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error("stalled")), 3000);
          const done = () => {
            clearTimeout(timer);
            for (const e of ["drain", "idle", "close"] as const) {
              stream.removeEventListener(e, done);
            }
            resolve();
          };
          for (const e of ["drain", "idle", "close"] as const) stream.addEventListener(e, done);
        });
      }
    }
  } catch {
    // reset by the victim, or its window stayed shut: either way it takes no more of ours
  }
  return sent - stream.writeBufferLength;
}

Deno.test({
  name:
    "32 half-open streams sending 17 MiB each: the victim buffers a bounded amount, then resets them",
  ...SANITIZE,
  async fn() {
    const source = new MemorySource();
    const bytes = randomBytes(1000);
    const cid = cidOf(bytes);
    await source.put(cid, bytes);
    const victim = await startNode({ store: source, exchange: { halfOpenTimeoutMs: 1000 } });
    const attacker = await startNode({ listen: [] });
    try {
      // One connection, many streams (the audit's 32 per connection).
      const conn = await attacker.libp2p.dial(multiaddr(victim.multiaddrs()[0]!));
      // Streams opened before the victim has set the connection up count as "early" (libp2p allows 10).
      await waitFor(() => victim.connectedPeers().includes(attacker.peerId), "the connection");
      await new Promise((r) => setTimeout(r, 500));
      // Half-open and silent: each request is answered, then the stream is reset once the remote leaves it
      // half-open past the timeout (before the fix, they stayed open for good).
      const silent = await Promise.all(
        Array.from({ length: STREAMS }, () => halfOpen(conn, cid)),
      );
      await waitFor(() => chunkStreams(victim).open === STREAMS, "32 open streams", 10_000);
      await waitFor(
        () => silent.every((s) => s.status !== "open") && chunkStreams(victim).open === 0,
        "the half-open streams to be reset",
        10_000,
      );

      // Half-open and flooding: a request, then 17 MiB per stream, never closing.
      let peak = 0;
      const sampler = setInterval(() => peak = Math.max(peak, chunkStreams(victim).buffered), 20);
      let sent: number[];
      try {
        const streams = await Promise.all(
          Array.from({ length: STREAMS }, () => halfOpen(conn, cid)),
        );
        sent = await Promise.all(streams.map((s) => flood(s, 17 * MiB)));
        await waitFor(
          () => chunkStreams(victim).open === 0,
          "the flooding streams to be reset",
          10_000,
        );
      } finally {
        clearInterval(sampler);
      }
      const held = chunkStreams(victim);
      console.log(
        `half-open flood: peak ${(peak / MiB).toFixed(1)} MiB buffered by the victim, ` +
          `attacker pushed ${(sent.reduce((a, b) => a + b, 0) / MiB).toFixed(0)} MiB in all`,
      );
      // libp2p's read-buffer cap per stream is the documented bound: a window (1 MiB) fits well inside it.
      assert.ok(peak <= STREAMS * PER_STREAM_BOUND, `peak ${peak} bytes buffered`);
      assert.equal(held.buffered, 0);
      // The victim reset each stream after at most a few windows of its 17 MiB.
      assert.ok(sent.every((n) => n <= 4 * MiB), `sent per stream: ${sent.join(", ")}`);
      // It still serves.
      assert.deepEqual(await attacker.hasChunks(victim.multiaddrs()[0]!, [cid]), [true]);
    } finally {
      await stopNodes(attacker, victim);
    }
  },
});

/** Provider records `holder` keeps that name `peer` (or anyone but itself), counted in its datastore. */
async function recordsHeld(holder: MeshNode, peer?: string): Promise<number> {
  let n = 0;
  for await (const key of holder.datastore.queryKeys({ prefix: "/dht/provider/" })) {
    const who = key.toString().split("/").pop();
    if (peer === undefined ? who !== holder.peerId : who === peer) n++;
  }
  return n;
}

Deno.test({
  name: "a provider-record flood: records held stay within the cap per peer and overall",
  ...SANITIZE,
  async fn() {
    // A plain object spread below, so the test also type-checks (and fails) against code without the option.
    const caps = { providerRecords: { maxPerPeer: 40, maxTotal: 100 } } as Partial<MeshNodeInit>;
    const victim = await startNode({ ...caps });
    const attackers = await Promise.all([0, 1, 2].map(() => startNode()));
    try {
      for (const a of attackers) await a.connect(victim.multiaddrs()[0]!);
      await waitFor(
        () => attackers.every((a) => a.routingTableSize() > 0),
        "routing tables",
        10_000,
      );
      // Each attacker announces 60 keys, 10 at a time; past the caps the victim resets its DHT stream.
      await Promise.all(attackers.map(async (a) => {
        const cids = Array.from({ length: 60 }, (_, i) => cidOf(randomBytes(8 + (i % 4))));
        for (let i = 0; i < cids.length; i += 10) {
          await Promise.all(
            cids.slice(i, i + 10).map((cid) =>
              a.provide(cid, { signal: AbortSignal.timeout(5000) }).catch(() => {})
            ),
          );
        }
      }));
      const perPeer = await Promise.all(attackers.map((a) => recordsHeld(victim, a.peerId)));
      const total = await recordsHeld(victim);
      console.log(`provider flood: held per attacker ${perPeer.join(", ")}, ${total} in all`);
      assert.ok(perPeer.every((n) => n <= 40), `per peer: ${perPeer.join(", ")}`);
      assert.ok(total <= 100, `total: ${total}`);
      assert.ok(total >= 40, `the caps let records in (${total})`);
      // Records of a known key are refreshed, not refused, and the victim's own always pass.
      const mine = cidOf(randomBytes(9));
      await victim.provide(mine, { signal: AbortSignal.timeout(5000) }).catch(() => {});
      const own = new Key(`/dht/provider/${await providerEntryName(mine)}/${victim.peerId}`);
      assert.ok(await victim.datastore.has(own));
    } finally {
      await stopNodes(...attackers, victim);
    }
  },
});

Deno.test({
  name:
    "public mode: loopback peers are not exempt, private addresses are neither kept nor dialled",
  ...SANITIZE,
  async fn() {
    const limits = { connections: { maxConnectionsPerIp: 3 } } as Partial<MeshNodeInit>;
    const victim = await startNode({ allowLoopback: false, ...limits });
    const local = await startNode({ ...limits });
    const attackers = await Promise.all([0, 1, 2, 3, 4].map(() => startNode()));
    try {
      // Five identities from 127.0.0.1: public mode takes three; local mode exempts loopback and takes all.
      const into = async (node: MeshNode) => {
        const results = await Promise.allSettled(
          attackers.map((a) =>
            a.connect(node.multiaddrs()[0]!, { signal: AbortSignal.timeout(5000) })
          ),
        );
        await new Promise((r) => setTimeout(r, 300));
        return results.filter((r) => r.status === "fulfilled").length;
      };
      const publicAccepted = await into(victim);
      const localAccepted = await into(local);
      assert.equal(victim.connectedPeers().length, 3, `public mode accepted ${publicAccepted}`);
      assert.equal(local.connectedPeers().length, 5, `local mode accepted ${localAccepted}`);

      // The attackers announced their loopback listen addresses (identify): none is kept.
      const known = await Promise.all(
        victim.connectedPeers().map((p) =>
          victim.libp2p.peerStore.get(peerIdFromString(p)).catch(() => null)
        ),
      );
      const kept = known.flatMap((p) => p?.addresses.map((a) => a.multiaddr) ?? []);
      assert.ok(!kept.some(isPrivateAddress), `kept: ${kept.join(", ")}`);

      // Nor dialled, whoever names them.
      const stranger = await startNode();
      try {
        await assert.rejects(victim.connect(stranger.multiaddrs()[0]!));
        await assert.rejects(victim.connect("/ip4/10.0.0.1/tcp/4001/p2p/" + stranger.peerId));
        assert.ok(!victim.connectedPeers().includes(stranger.peerId));
      } finally {
        await stranger.stop();
      }
    } finally {
      await stopNodes(...attackers, local, victim);
    }
  },
});
