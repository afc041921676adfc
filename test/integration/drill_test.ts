/**
 * The drill of issue 11, with real processes: 8 honest `serve` nodes and two drills (a liar that flips a bit in
 * what it serves, a node 10x slower), both holding a copy of every chunk, so each chunk has a choice of
 * holders. Three files are put through node 0 and read three times through a node that holds none of them
 * (its chunk cache off, so each read goes to the mesh).
 *
 * - every read is byte-identical;
 * - the liar is caught on the first reads: its signed answer is a proof, which reaches every honest node
 *   (each shows the exclusion and the proof in `/api/operators`), and from then on it is asked for no chunk;
 * - the slow node gets less than its fair share of the later reads.
 */
import assert from "node:assert/strict";
import { ingest } from "../../src/content/ingest.ts";
import { ChunkStore } from "../../src/store/store.ts";
import { type NodeProcess, spawnNode, startCluster, waitForPeers } from "../../src/cluster.ts";
import { checkFraudProof } from "../../src/reputation/evidence.ts";
import { seeded, seededBytes } from "../_util.ts";

const HONEST = 8;
const FILE_BYTES = 768 * 1024;
const OPTS = { k: 4, m: 2, chunkSize: 64 * 1024 };

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

async function operators(url: string): Promise<Record<string, Record<string, unknown>>> {
  const { operators } = await (await fetch(`${url}/api/operators`)).json();
  return Object.fromEntries(operators.map((o: { peer: string }) => [o.peer, o]));
}

Deno.test({
  name:
    "cluster with a liar and a slow drill: reads stay byte-identical, the liar is caught once and asked no more by any node, the slow node loses its share",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-drill-" });
    const rand = seeded(11);
    const files = Array.from({ length: 3 }, () => seededBytes(rand, FILE_BYTES));
    // The drills (nodes 8 and 9) start holding every chunk of every file.
    const cids: string[] = [];
    for (const i of [HONEST, HONEST + 1]) {
      const store = await ChunkStore.open(`${dir}/node-${i}`);
      for (const [f, bytes] of files.entries()) {
        const { cid } = await ingest(ReadableStream.from([bytes]), (c, b) => store.put(c, b), {
          ...OPTS,
          name: `f${f}`,
          type: "application/octet-stream",
        });
        cids[f] = cid.toString();
      }
      await store.close();
    }
    let reader: NodeProcess | undefined;
    const cluster = await startCluster({
      nodes: HONEST,
      dir,
      drills: ["liar", "slow"],
      stderr: "null",
    });
    try {
      const nodes = cluster.nodes;
      const liar = nodes[HONEST]!, slow = nodes[HONEST + 1]!;
      for (const [f, bytes] of files.entries()) {
        const q = `k=${OPTS.k}&m=${OPTS.m}&chunkSize=${OPTS.chunkSize}&name=f${f}`;
        const res = await fetch(`${nodes[0]!.url}/mesh?${q}`, {
          method: "POST",
          body: bytes,
          headers: { "Content-Type": "application/octet-stream" },
        });
        assert.equal(res.status, 201, await res.clone().text());
        assert.equal((await res.json()).cid, cids[f], "the same CID as the drills hold");
      }
      // The holders announce once quiet (provide.ts); the shares below compare against the DHT's
      // providers, so the reads start once every announcement ran (under load they lag the puts).
      const announced = Date.now() + 60_000;
      for (const n of nodes) {
        while (await metric(n.url, "mesh_provide_pending") > 0) {
          assert.ok(Date.now() < announced, `${n.url} announced its chunks`);
          await new Promise((r) => setTimeout(r, 200));
        }
        assert.ok(await metric(n.url, "mesh_provided_total") > 0, `${n.url} announced`);
      }
      reader = await spawnNode(
        // A long search deadline: eleven processes share this machine with the rest of the suite.
        [
          "--data",
          `${dir}/reader`,
          "--cache",
          "0",
          "--find-timeout",
          "15000",
          "--bootstrap",
          nodes[0]!.multiaddrs[0]!,
        ],
        { stderr: "null" },
      );
      await waitForPeers(reader.url, nodes.length, 30_000);
      assert.equal(await metric(reader.url, "mesh_store_chunks"), 0, "the reader holds nothing");

      const read = async () => {
        for (const [f, bytes] of files.entries()) {
          const res = await fetch(`${reader!.url}/mesh/${cids[f]}`);
          assert.equal(res.status, 200);
          assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes, `file ${f}`);
        }
      };
      await read();

      // Caught on the first reads, with a proof that every honest node ends up holding.
      const honest = [...nodes.filter((n) => n !== liar), reader];
      const deadline = Date.now() + 20_000;
      for (const n of honest) {
        for (;;) {
          const o = (await operators(n.url))[liar.peerId!];
          if (o?.state === "excluded") {
            await checkFraudProof(o.evidence); // a proof anyone can check, not a word
            break;
          }
          assert.ok(Date.now() < deadline, `${n.url} excluded the liar`);
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      const askedOfLiar = await metric(liar.url, "mesh_chunks_requested_total");
      assert.ok(askedOfLiar > 0, "the liar was asked before it was caught");
      const before = await operators(reader.url);
      await read();
      await read();
      assert.equal(
        await metric(liar.url, "mesh_chunks_requested_total"),
        askedOfLiar,
        "no node asked the liar for a chunk after the proof",
      );
      // The slow node's share of the later reads' deliveries, beside its fair share: the mean over the data
      // chunks of 1 / their good holders (the DHT's providers, the liar left out).
      const after = await operators(reader.url);
      const delta = (p: string) =>
        Number(after[p]?.deliveries ?? 0) - Number(before[p]?.deliveries ?? 0);
      const total = Object.keys(after).reduce((sum, p) => sum + delta(p), 0);
      const share = delta(slow.peerId!) / total;
      let fair = 0, chunks = 0;
      for (const cid of cids) {
        const manifest = await (await fetch(`${nodes[0]!.url}/mesh/${cid}?format=raw`)).json();
        for (const stripe of manifest.stripes) {
          for (const chunk of stripe.slice(0, OPTS.k)) {
            const res = await fetch(`${reader.url}/api/providers/${chunk["/"]}?timeout=3000`);
            const { providers } = await res.json();
            const good = new Set(
              providers.map((p: { peerId: string }) => p.peerId).filter((p: string) =>
                p !== liar.peerId
              ),
            );
            good.add(slow.peerId!);
            fair += 1 / good.size;
            chunks++;
          }
        }
      }
      fair /= chunks;
      console.log(JSON.stringify({ askedOfLiar, laterDeliveries: total, slowShare: share, fair }));
      assert.ok(total >= 2 * chunks, "every later chunk was delivered");
      assert.ok(
        share < fair,
        `the slow node's share ${share.toFixed(3)} is below its fair ${fair.toFixed(3)}`,
      );
    } finally {
      await reader?.stop();
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
