/**
 * The lookup operator's probe (src/mesh/lookup.ts) over real loopback nodes: its nearest connected peers are
 * asked for their statements (one request says both that a peer holds the block and its signed word), the
 * find ends once the nearest holder is known (not after the grace), and a peer without the lookup protocol
 * is asked the exchange's `has` instead.
 */
import assert from "node:assert/strict";
import { type CID, cidOf } from "../../src/content/cid.ts";
import { LookupServer, requestLookup } from "../../src/mesh/lookup.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { PeerTable } from "../../src/mesh/placement.ts";
import { MemorySource, randomBytes, SANITIZE, startNode, stopNodes, waitFor } from "./_helpers.ts";

/** A chunk store that counts the exchange's `has` questions. */
class CountingSource extends MemorySource {
  asked = 0;
  override has(cid: CID): Promise<boolean> {
    this.asked++;
    return super.has(cid);
  }
}

/** Bytes whose CID has `peer` XOR-nearest among `peers`. */
function nearestTo(peer: string, peers: string[]): { bytes: Uint8Array; cid: CID } {
  for (;;) {
    const bytes = randomBytes(256);
    const cid = cidOf(bytes);
    if (new PeerTable(peers).closest(cid.multihash.digest, 1)[0] === peer) return { bytes, cid };
  }
}

Deno.test({
  name:
    "lookup probe: statements in one request, the nearest holder ends the find, `has` for others",
  ...SANITIZE,
  async fn() {
    const stores = [new CountingSource(), new CountingSource(), new CountingSource()];
    const [a, b, plain] = await Promise.all(stores.map((store) => startNode({ store })));
    const client = await startNode();
    const op = await startNode();
    const nodes: MeshNode[] = [a!, b!, plain!, client, op];
    const servers: LookupServer[] = [];
    try {
      // a and b sign statements of what they hold; `plain` runs no lookup protocol.
      for (const [i, m] of [a!, b!].entries()) {
        const s = new LookupServer({
          mesh: m,
          privateKey: m.privateKey,
          has: (c) => stores[i]!.chunks.has(c.toString()),
        });
        await s.start(m.libp2p);
        servers.push(s);
      }
      const server = new LookupServer({
        mesh: op,
        privateKey: op.privateKey,
        serve: true,
        graceMs: 20_000, // only the nearest holder's answer ends a find early
        findMs: 20_000,
      });
      await server.start(op.libp2p);
      servers.push(server);
      // The walk takes its time (as in a large mesh): what ends a find early is the probe's doing.
      op.findProviders = (_cid, options) =>
        (async function* () {
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(resolve, 15_000);
            options?.signal?.addEventListener("abort", () => {
              clearTimeout(t);
              reject(options.signal!.reason);
            }, { once: true });
          });
          yield* []; // it names nobody
        })();
      for (const m of [a!, b!, plain!]) await op.connect(m.multiaddrs()[0]!);
      await client.connect(op.multiaddrs()[0]!);
      const ids = [a!.peerId, b!.peerId, plain!.peerId];
      const identified = new Set<string>();
      await waitFor(() => {
        for (const m of [a!, b!]) {
          void op.libp2p.peerStore.get(m.libp2p.peerId).then((p) => {
            if (p.protocols.includes("/meshgate/lookup/1.0.0")) identified.add(m.peerId);
          }).catch(() => {});
        }
        return identified.size === 2;
      }, "identify");

      // a holds a chunk it is nearest to, b one it is not nearest to (a is, and says no).
      const forA = nearestTo(a!.peerId, ids);
      stores[0]!.chunks.set(forA.cid.toString(), forA.bytes);
      const t0 = performance.now();
      const first = await requestLookup(client.libp2p, op.peerId, forA.cid);
      const ms = performance.now() - t0;
      assert.ok(ms < 5000, `the nearest holder's answer ended the find (${ms.toFixed(0)} ms)`);
      assert.deepEqual(first.record.providers.map((p) => p.peerId), [a!.peerId]);
      assert.ok(first.stated.has(a!.peerId), "a's statement came with the probe");
      assert.equal(stores[0]!.asked, 0, "a, which runs the lookup protocol, was not asked `has`");

      const forB = nearestTo(a!.peerId, ids);
      stores[1]!.chunks.set(forB.cid.toString(), forB.bytes);
      const second = await requestLookup(client.libp2p, op.peerId, forB.cid);
      assert.deepEqual(second.record.providers.map((p) => p.peerId), [b!.peerId]);
      assert.ok(second.stated.has(b!.peerId));

      // plain answers the exchange's `has`; its record names it without a statement.
      const forPlain = nearestTo(plain!.peerId, ids);
      stores[2]!.chunks.set(forPlain.cid.toString(), forPlain.bytes);
      const third = await requestLookup(client.libp2p, op.peerId, forPlain.cid);
      assert.deepEqual(third.record.providers.map((p) => p.peerId), [plain!.peerId]);
      assert.equal(third.stated.size, 0);
      assert.ok(stores[2]!.asked >= 1, "plain was asked `has`");
    } finally {
      await Promise.all(servers.map((s) => s.stop()));
      await stopNodes(...nodes);
    }
  },
});
