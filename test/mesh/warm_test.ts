/**
 * Spare streams (src/mesh/warm.ts) on links with 100 ms of one-way latency: a client's lookup through its
 * operator rides a stream negotiated ahead, and the operator's statement request to the holder too, so the
 * answer takes two round trips where a cold one takes four; an idle spare outlives the request deadline (the
 * deadline starts at the request's first byte) while a peer that starts a request and stalls is still cut
 * off at it; a spare goes with its connection.
 */
import assert from "node:assert/strict";
import type { Stream } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { cidOf } from "../../src/content/cid.ts";
import { LOOKUP_PROTOCOL, LookupServer, requestLookup } from "../../src/mesh/lookup.ts";
import { createMeshNode, type MeshNode } from "../../src/mesh/node.ts";
import { SimStore, simTransport } from "../../src/mesh/sim.ts";
import { randomBytes, SANITIZE, stopNodes, waitFor } from "./_helpers.ts";

const ONE_WAY_MS = 100;
const RTT = 2 * ONE_WAY_MS;
const link = { loss: 0, rtoMs: 0, dialLoss: 0 };

async function node(name: string, store: SimStore, clientMode = false): Promise<MeshNode> {
  return await createMeshNode({
    listen: clientMode ? [] : [`/memory/warm-${name}-${crypto.randomUUID()}`],
    transports: [simTransport(link, ONE_WAY_MS)],
    allowLoopback: false,
    connections: { pingIntervalMs: 0 },
    store,
    dht: { clientMode },
  });
}

async function timed<T>(f: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await f();
  return { ms: performance.now() - t0, value };
}

Deno.test({
  name:
    "spare streams: a warm lookup takes two round trips, a cold one four; idle spares outlive the deadline",
  ...SANITIZE,
  async fn() {
    const holderStore = new SimStore();
    const holder = await node("holder", holderStore);
    const op = await node("op", new SimStore());
    const client = await node("client", new SimStore(), true);
    const servers: LookupServer[] = [];
    try {
      const held = Array.from({ length: 4 }, () => {
        const bytes = randomBytes(512);
        holderStore.chunks.set(cidOf(bytes).toString(), bytes);
        return cidOf(bytes);
      });
      const h = new LookupServer({
        mesh: holder,
        privateKey: holder.privateKey,
        has: (c) => holderStore.chunks.has(c.toString()),
      });
      // A short walk: the request deadline (findMs + 5 s) is what the idle spare must outlive.
      const o = new LookupServer({ mesh: op, privateKey: op.privateKey, serve: true, findMs: 300 });
      const c = new LookupServer({ mesh: client, privateKey: client.privateKey });
      for (const [s, m] of [[h, holder], [o, op], [c, client]] as const) {
        await s.start(m.libp2p);
        servers.push(s);
      }
      await op.connect(holder.multiaddrs()[0]!);
      await client.connect(op.multiaddrs()[0]!);
      c.keepWarm(op.peerId);
      await waitFor(() => c.spares === 1 && o.spares >= 1, "spares to the operator and the holder");

      const find = (dialer: LookupServer["dialer"], i: number) =>
        timed(() =>
          requestLookup(dialer, op.peerId, held[i]!, { signal: AbortSignal.timeout(10_000) })
        );
      // Cold: the client's own stream (a round trip to negotiate, one for the request); the operator's hop
      // to the holder is warm, so three round trips at least.
      const cold = await find(client.libp2p, 0);
      assert.ok(cold.value.record.providers.some((p) => p.peerId === holder.peerId));
      assert.ok(cold.ms >= 3 * RTT - 10, `a cold lookup took ${cold.ms.toFixed(0)} ms`);
      // Warm both ways: two round trips (the best of two, against a loaded machine).
      await waitFor(() => c.spares === 1 && o.spares >= 1, "spares again");
      const warm = [];
      for (const i of [1, 2]) {
        const w = await find(c.dialer, i);
        assert.ok(w.value.record.providers.some((p) => p.peerId === holder.peerId));
        const s = w.value.record.providers.find((p) => p.peerId === holder.peerId)?.statement;
        assert.ok(s, "the holder's statement came over the operator's spare");
        warm.push(w.ms);
        await waitFor(() => c.spares === 1 && o.spares >= 1, "the next spares");
      }
      const best = Math.min(...warm);
      console.log(
        `cold ${cold.ms.toFixed(0)} ms, warm ${warm.map((x) => x.toFixed(0)).join(", ")} ms`,
      );
      assert.ok(
        best < 2.6 * RTT,
        `a warm lookup took ${best.toFixed(0)} ms (${RTT} ms round trips)`,
      );

      // A peer that starts a request and stalls is cut off at the deadline from its first byte; a spare
      // that sends nothing is not.
      const lookupStreams = () =>
        client.libp2p.getConnections(peerIdFromString(op.peerId)).flatMap((x) => x.streams)
          .filter((x) => x.protocol === LOOKUP_PROTOCOL).map((x) => x.id);
      const spareIds = lookupStreams();
      const raw = await client.libp2p.dialProtocol(peerIdFromString(op.peerId), LOOKUP_PROTOCOL);
      raw.send(new TextEncoder().encode('{"op":"find","ci'));
      const cut = ended(raw);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const outcome = await Promise.race([
        cut.then(() => "cut"),
        new Promise((r) => timer = setTimeout(() => r("still open"), 300 + 5000 + 3000)),
      ]);
      clearTimeout(timer);
      assert.equal(outcome, "cut", "a stalled request is ended at its deadline");
      assert.equal(c.spares, 1, "a spare is ready");
      assert.ok(
        spareIds.length > 0 && spareIds.every((id) => lookupStreams().includes(id)),
        "the idle spare itself outlived the request deadline",
      );
      const late = await find(c.dialer, 3);
      assert.ok(late.ms < 2.6 * RTT, `after idling, a lookup took ${late.ms.toFixed(0)} ms`);

      // A spare goes with its connection.
      await waitFor(() => c.spares === 1, "a spare after the last lookup");
      await client.libp2p.hangUp(peerIdFromString(op.peerId));
      await waitFor(() => c.spares === 0, "the spare gone with the connection");
    } finally {
      for (const s of servers) await s.stop();
      await stopNodes(client, op, holder);
    }
  },
});

/** Resolves once the operator ends `stream`: its answer (an error) and close, or a reset. */
async function ended(stream: Stream): Promise<void> {
  try {
    for await (const _ of stream) {
      // the error answer, if any
    }
  } catch {
    // reset
  }
}
