/**
 * Relaying between real libp2p nodes over loopback: a node that listens nowhere reserves a slot on a relay and
 * serves chunks through it; the relay's limits hold (reservations, data per circuit); its meter counts what both
 * ends count, and a gate that stops authorizing cuts the circuit.
 */
import assert from "node:assert/strict";
import { type CID, cidOf } from "../../src/content/cid.ts";
import { MeshError } from "../../src/errors.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { STREAM_WINDOW_BYTES } from "../../src/mesh/_framing.ts";
import { type CircuitGate, RELAY_BLOCK_BYTES } from "../../src/mesh/relay.ts";
import { MemorySource, randomBytes, SANITIZE, startNode, stopNodes, waitFor } from "./_helpers.ts";

const LIMITS = { maxReservations: 4, dataBytes: 8 * 1024 * 1024 };

async function relayed(relay: MeshNode, store = new MemorySource()): Promise<MeshNode> {
  return await startNode({ listen: [], relayVia: [relay.multiaddrs()[0]!], store });
}

/** A node behind `relay` holding one chunk of `size` random bytes. */
async function hiddenHolder(relay: MeshNode, size: number) {
  const store = new MemorySource();
  const bytes = randomBytes(size);
  const cid = cidOf(bytes);
  await store.put(cid, bytes);
  return { hidden: await relayed(relay, store), bytes, cid };
}

function circuitAddr(node: MeshNode): string {
  const addr = node.multiaddrs().find((a) => a.includes("/p2p-circuit"));
  assert.ok(addr, `no circuit address in ${node.multiaddrs()}`);
  return addr;
}

Deno.test({
  name:
    "relay: a node that listens nowhere serves a chunk through its relay, both ends count it alike",
  ...SANITIZE,
  async fn() {
    const relay = await startNode({ relay: { limits: LIMITS } });
    const { hidden, bytes, cid } = await hiddenHolder(relay, 1024 * 1024);
    const reader = await startNode();
    try {
      const addr = circuitAddr(hidden);
      assert.ok(addr.startsWith(relay.multiaddrs()[0]!), addr);
      assert.ok(addr.endsWith(`/p2p-circuit/p2p/${hidden.peerId}`), addr);
      assert.equal(relay.relayStats()?.reservations, 1);
      const got = await reader.fetchChunk(addr, cid);
      assert.deepEqual(got, bytes);
      const carried = relay.relayStats()!.relayedBytes;
      assert.ok(carried > bytes.length, `relay carried ${carried}`);
      // The reserving node sees the very bytes the relay carried (its payer pays for these).
      await waitFor(() => hidden.relayedBytes().get(relay.peerId) === carried, "equal counts");
      // The reader's connection to the hidden node goes through the relay (no direct address to punch to).
      const conns = reader.libp2p.getConnections().filter((c) =>
        c.remotePeer.toString() === hidden.peerId
      );
      assert.ok(conns.length > 0 && conns.every((c) => c.limits !== undefined));
      // A second request rides the same circuit: libp2p alone would open a new one per request.
      assert.deepEqual(await reader.fetchChunk(addr, cid), bytes);
      assert.equal(relay.relayStats()!.circuits, 1);
    } finally {
      await stopNodes(reader, hidden, relay);
    }
  },
});

Deno.test({
  name: "relay: a reservation past the relay's most is refused with the reason",
  ...SANITIZE,
  async fn() {
    const relay = await startNode({ relay: { limits: { ...LIMITS, maxReservations: 1 } } });
    const first = await relayed(relay);
    try {
      await assert.rejects(
        () => relayed(relay),
        (e: unknown) => {
          assert.ok(e instanceof MeshError, String(e));
          assert.equal(e.code, "relay_refused");
          assert.match(e.message, /holds its most reservations \(RESERVATION_REFUSED\)/);
          return true;
        },
      );
      assert.equal(relay.relayStats()?.reservations, 1);
    } finally {
      await stopNodes(first, relay);
    }
  },
});

Deno.test({
  name:
    "relay: a circuit past its data limit is closed; a node without a relay is refused at start",
  ...SANITIZE,
  async fn() {
    const relay = await startNode({ relay: { limits: { ...LIMITS, dataBytes: 256 * 1024 } } });
    const { hidden, cid } = await hiddenHolder(relay, 1024 * 1024);
    const reader = await startNode();
    try {
      await assert.rejects(() => reader.fetchChunk(circuitAddr(hidden), cid));
      const carried = relay.relayStats()!.relayedBytes;
      // libp2p's relay closes the circuit once past the limit: within one message of it.
      assert.ok(carried <= 256 * 1024 + 128 * 1024, `carried ${carried}`);
      await assert.rejects(
        () => startNode({ listen: [], relayVia: ["/ip4/127.0.0.1/tcp/1"] }),
        /must end in "\/p2p\/<peer id>"/,
      );
      const nobody =
        "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWPQabaGHX2HmoBHrr5op3vS78ZM9GbH5G24xuoMKvJXkv";
      await assert.rejects(
        () => startNode({ listen: [], relayVia: [nobody] }),
        (e: unknown) =>
          e instanceof MeshError && e.code === "relay_refused" &&
          /gave no reservation: it cannot be reached \(connection refused\)/.test(e.message),
      );
    } finally {
      await stopNodes(reader, hidden, relay);
    }
  },
});

/** A gate that authorizes `budget` bytes, then refuses: the relay's meter must cut the circuit there. */
class Budget implements CircuitGate {
  authorized = 0;
  constructor(readonly budget: number) {}
  authorize(_peer: string, _cid: unknown, bytes: number): Promise<void> {
    if (this.authorized + bytes > this.budget) {
      return Promise.reject(new MeshError("payment_required", "no more credit"));
    }
    this.authorized += bytes;
    return Promise.resolve();
  }
  served(_peer: string, _cid: unknown, bytes: number, delivered: boolean): void {
    if (!delivered) this.authorized -= bytes;
  }
}

Deno.test({
  name:
    "relay: a circuit whose bytes are not authorized is cut within one stream window of the credit",
  ...SANITIZE,
  async fn() {
    const gate = new Budget(2 * RELAY_BLOCK_BYTES);
    const relay = await startNode({ relay: { limits: LIMITS, gate } });
    const store = new MemorySource();
    const cids: CID[] = [];
    for (let i = 0; i < 3; i++) {
      const bytes = randomBytes(1024 * 1024);
      cids.push(cidOf(bytes));
      await store.put(cids[i]!, bytes);
    }
    const hidden = await relayed(relay, store);
    const reader = await startNode();
    try {
      await assert.rejects(async () => {
        for await (const _ of reader.fetchChunks(circuitAddr(hidden), cids)) { /* drained */ }
      });
      const stats = relay.relayStats()!;
      assert.equal(stats.unpaidCuts, 1);
      // Past the refusal, at most what was in flight: one stream window of the relay's yamux.
      assert.ok(
        stats.relayedBytes <= gate.budget + STREAM_WINDOW_BYTES,
        `carried ${stats.relayedBytes} on a budget of ${gate.budget}`,
      );
      await waitFor(() => relay.relayStats()!.openCircuits === 0, "the circuit closed");
    } finally {
      await stopNodes(reader, hidden, relay);
    }
  },
});

Deno.test({
  name:
    "relay: circuits from several readers each reach the hidden node (a second one used to fail)",
  ...SANITIZE,
  async fn() {
    const relay = await startNode({ relay: { limits: LIMITS } });
    const { hidden, bytes, cid } = await hiddenHolder(relay, 256 * 1024);
    const readers: MeshNode[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        const reader = await startNode();
        readers.push(reader);
        assert.deepEqual(await reader.fetchChunk(circuitAddr(hidden), cid), bytes, `reader ${i}`);
      }
      assert.equal(relay.relayStats()!.circuits, 3);
      await waitFor(
        () => hidden.relayedBytes().get(relay.peerId) === relay.relayStats()!.relayedBytes,
        `equal counts over three circuits: ${hidden.relayedBytes().get(relay.peerId)} vs ${
          relay.relayStats()!.relayedBytes
        }`,
      );
      await assert.rejects(
        () => startNode({ relay: {}, relayVia: [relay.multiaddrs()[0]!] }),
        /A relay needs no relay/,
      );
    } finally {
      await stopNodes(...readers, hidden, relay);
    }
  },
});
