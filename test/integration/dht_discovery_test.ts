/**
 * Discovery through the DHT alone. The holders of a file are DHT clients (as nodes behind NAT are): they stay
 * out of every routing table, so a reader that joins through one bootstrap peer never meets them as
 * neighbours. Its "ask the peers I know" round reaches only the three DHT servers, which hold nothing; the
 * file can be found only through the provider records the holders published.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { MeshgateNode } from "../../src/node.ts";
import { createGateway } from "../../edge/app.ts";
import { createMeshNode, type MeshNode } from "../../src/mesh/node.ts";
import { meshPeers } from "../../src/mesh/peers.ts";
import { DEFAULT_FIND_TIMEOUT_MS } from "../../src/mesh/dht.ts";
import { cidOf } from "../../src/content/cid.ts";
import { pattern, patternStream } from "../_util.ts";

const TCP = "/ip4/127.0.0.1/tcp/0";
const SIZE = 1536 * 1024;

async function body(res: Response): Promise<Uint8Array> {
  return new Uint8Array(await res.arrayBuffer());
}

Deno.test({
  name:
    "DHT discovery: a reader whose neighbours hold nothing finds and reads a file via provider records",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-dht-" });
    const servers: MeshNode[] = [];
    const holders: MeshgateNode[] = [];
    let reader: MeshgateNode | undefined;
    try {
      // Three DHT servers with no store: they answer DHT queries and refuse to keep chunks.
      servers.push(await createMeshNode({ listen: [TCP] }));
      for (let i = 0; i < 2; i++) {
        servers.push(await createMeshNode({ listen: [TCP], bootstrap: servers[0]!.multiaddrs() }));
      }
      const bootstrap = servers[0]!.multiaddrs();
      // Five holders in DHT client mode, connected to each other so that placement spreads the file.
      for (let i = 0; i < 5; i++) {
        holders.push(
          await MeshgateNode.create({
            dataDir: join(dir, `h${i}`),
            parityWorkers: 0,
            mesh: { listen: [TCP], bootstrap, dht: { clientMode: true } },
          }),
        );
      }
      for (const a of holders) {
        for (const b of holders) if (a !== b) await a.mesh!.connect(b.mesh!.multiaddrs()[0]!);
      }
      const t0 = performance.now();
      const put = await holders[0]!.put(patternStream(SIZE, 5), {
        name: "far.bin",
        k: 2,
        m: 1,
        chunkSize: 64 * 1024,
      });
      await Promise.all(holders.map((h) => h.announcements!.idle()));
      const announceMs = performance.now() - t0;
      const stats = holders.map((h) => h.announcements!.stats());
      const provided = stats.reduce((n, s) => n + s.provided, 0);
      const failed = stats.reduce((n, s) => n + s.failed, 0);
      const ms = stats.reduce((n, s) => n + s.ms, 0);
      console.log(
        `put + announce ${
          announceMs.toFixed(0)
        } ms; ${provided} records published, ${failed} failed, ` +
          `${(ms / Math.max(1, provided + failed)).toFixed(1)} ms per announcement`,
      );
      assert.equal(failed, 0);

      // Who holds what, from the holders' disks.
      const cids = [put.cid, ...put.manifest.stripes.flat()];
      const holding = new Map<string, Set<string>>();
      for (const cid of cids) {
        const set = new Set<string>();
        for (const h of holders) if (await h.store.has(cid)) set.add(h.mesh!.peerId);
        assert.ok(set.size > 0, `${cid} is held somewhere`);
        holding.set(cid.toString(), set);
      }
      assert.ok(provided >= cids.length, "every held chunk was announced");

      reader = await MeshgateNode.create({
        dataDir: join(dir, "reader"),
        parityWorkers: 0,
        mesh: { listen: [TCP], bootstrap: [bootstrap[0]!] },
      });
      const gateway = createGateway(reader).app;
      const holderIds = new Set(holders.map((h) => h.mesh!.peerId));
      // The reader's neighbourhood: the servers only.
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const known = await meshPeers(reader.mesh!);
      assert.ok(known.length >= 1);
      assert.ok(
        known.every((p) => !holderIds.has(p)),
        "no holder is among the reader's known peers",
      );

      // The file, byte-identical, through the far reader's gateway. (Once a lookup has named a holder, the
      // reader dials it and can ask it directly for the chunks of later stripes.)
      const res = await gateway.request(`/mesh/${put.cid}`);
      assert.equal(res.status, 200);
      assert.deepEqual(await body(res), pattern(0, SIZE, 5));

      // /api/providers answers the holders of every block, within the deadline.
      for (const cid of cids.slice(0, 7)) {
        const started = performance.now();
        const res = await gateway.request(`/api/providers/${cid}`);
        const elapsed = performance.now() - started;
        assert.equal(res.status, 200);
        const answer = await res.json() as {
          cid: string;
          providers: { peerId: string; multiaddrs: string[] }[];
          ms: number;
        };
        assert.equal(answer.cid, cid.toString());
        assert.deepEqual(
          new Set(answer.providers.map((p) => p.peerId)),
          holding.get(cid.toString()),
          `providers of ${cid}`,
        );
        assert.ok(answer.providers.every((p) => p.multiaddrs.length > 0));
        assert.ok(
          answer.ms <= elapsed + 1 && elapsed < DEFAULT_FIND_TIMEOUT_MS + 500,
          `${elapsed} ms`,
        );
      }

      // Bad input.
      const bad = await gateway.request("/api/providers/not-a-cid");
      assert.equal(bad.status, 400);
      assert.equal((await bad.json()).error, "invalid_cid");
      const badTimeout = await gateway.request(`/api/providers/${put.cid}?timeout=soon`);
      assert.equal(badTimeout.status, 400);
      // A CID nobody holds: an empty answer within the asked deadline.
      const none = await gateway.request(
        `/api/providers/${cidOf(pattern(0, 100, 99))}?timeout=1000`,
      );
      const empty = await none.json() as { providers: unknown[]; ms: number };
      assert.deepEqual(empty.providers, []);
      assert.ok(empty.ms < 1500);
    } finally {
      await reader?.stop();
      await Promise.all(holders.map((h) => h.stop()));
      await Promise.all(servers.map((s) => s.stop()));
      await Deno.remove(dir, { recursive: true });
    }
  },
});
