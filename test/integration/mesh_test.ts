/**
 * Eight real node processes on loopback. A file put through node A comes back through node H, which held
 * none of it, whole and by ranges; again with m holders of every stripe killed; and with a holder that
 * serves corrupted bytes, which are caught and rebuilt and never reach the client.
 */
import assert from "node:assert/strict";
import { decodeManifest } from "../../src/content/manifest.ts";
import { type NodeProcess, spawnNode, startCluster, waitForPeers } from "../../src/cluster.ts";
import { createMeshNode } from "../../src/mesh/node.ts";
import type { CID } from "../../src/content/cid.ts";
import { expectPattern, pattern, patternStream, postStream } from "../_util.ts";

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

async function manifestOf(url: string, cid: string) {
  const res = await fetch(`${url}/mesh/${cid}?format=raw`);
  return decodeManifest(new Uint8Array(await res.arrayBuffer()));
}

async function rangesMatch(url: string, cid: string, size: number, seed: number, count: number) {
  for (let i = 0; i < count; i++) {
    const start = Math.floor(Math.random() * size);
    const end = Math.min(size, start + 1 + Math.floor(Math.random() * 3 * MiB));
    const res = await fetch(`${url}/mesh/${cid}`, {
      headers: { Range: `bytes=${start}-${end - 1}` },
    });
    assert.equal(res.status, 206);
    assert.equal(await expectPattern(res.body!, start, seed), end - start, `range ${start}-${end}`);
  }
}

Deno.test({
  name: "8 nodes: put through A, get through a new H, survive m killed holders and a lying holder",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-mesh-" });
    // Seven nodes hold the file; H joins afterwards, so it holds none of it.
    const cluster = await startCluster({ nodes: 7, dir, stderr: "null" });
    const a = cluster.nodes[0]!;
    let h: NodeProcess | undefined;
    try {
      // k + m = 6 of 7 nodes: every stripe on 6 distinct holders.
      const t0 = performance.now();
      const put = await postStream(
        `${a.url}/mesh?k=4&m=2&name=big.bin`,
        patternStream(SIZE, 11),
        SIZE,
      );
      assert.equal(put.status, 201);
      const { cid } = await put.json() as { cid: string };
      const putSeconds = (performance.now() - t0) / 1000;

      const manifest = await manifestOf(a.url, cid);
      const holders = new Map<string, Set<string>>(); // peer → chunks it holds
      for (const node of cluster.nodes) {
        const listing: string[] = [];
        for await (const e of Deno.readDir(`${dir}/node-${cluster.nodes.indexOf(node)}/chunks`)) {
          for await (
            const f of Deno.readDir(`${dir}/node-${cluster.nodes.indexOf(node)}/chunks/${e.name}`)
          ) {
            listing.push(f.name);
          }
        }
        holders.set(node.peerId!, new Set(listing));
      }
      for (const stripe of manifest.stripes) {
        const where = stripe.map((c) =>
          [...holders].filter(([, s]) => s.has(c.toString())).map(([p]) => p)
        );
        for (const w of where) assert.ok(w.length >= 1, "every chunk is held somewhere");
        assert.equal(
          new Set(where.map((w) => w[0])).size,
          6,
          "each stripe spans 6 distinct holders",
        );
      }

      h = await spawnNode(["--data", `${dir}/node-h`, "--bootstrap", a.multiaddrs[0]!], {
        stderr: "null",
      });
      // A gateway that just joined learns the mesh through the DHT's self-lookup: give it a moment.
      await waitForPeers(h.url, 6);

      let t = performance.now();
      const whole = await fetch(`${h.url}/mesh/${cid}`);
      assert.equal(whole.status, 200);
      assert.equal(await expectPattern(whole.body!, 0, 11), SIZE);
      const getSeconds = (performance.now() - t) / 1000;
      await rangesMatch(h.url, cid, SIZE, 11, 8);
      console.log(
        `64 MiB over 8 nodes: put ${(64 / putSeconds).toFixed(0)} MiB/s, get through H ${
          (64 / getSeconds).toFixed(0)
        } MiB/s`,
      );

      // Kill m = 2 holders (not A): every stripe loses at most 2 of its 6 chunks. Chunks that only the
      // victims held are gone for good, and reading the file through H must rebuild its data chunks.
      const victims = cluster.nodes.slice(2, 4);
      const victimIds = new Set(victims.map((v) => v.peerId!));
      const onlyOnVictims = (c: CID) =>
        [...holders].filter(([, s]) => s.has(c.toString())).every(([p]) => victimIds.has(p));
      let lostData = 0;
      for (const stripe of manifest.stripes) {
        assert.ok(
          stripe.filter(onlyOnVictims).length <= 2,
          "at most m chunks of a stripe are lost",
        );
        lostData += stripe.slice(0, manifest.k).filter(onlyOnVictims).length;
      }
      assert.ok(lostData > 0, "the victims held data chunks nobody else had");
      for (const v of victims) await v.stop("SIGKILL");
      t = performance.now();
      const afterKill = await fetch(`${h.url}/mesh/${cid}`);
      assert.equal(await expectPattern(afterKill.body!, 0, 11), SIZE);
      console.log(
        `with 2 holders killed (${lostData} data chunks lost): get ${
          (64 / ((performance.now() - t) / 1000)).toFixed(0)
        } MiB/s`,
      );
      await rangesMatch(h.url, cid, SIZE, 11, 4);
      const metrics = await (await fetch(`${h.url}/metrics`)).text();
      const repaired = Number(/^mesh_chunks_repaired_total (\d+)$/m.exec(metrics)?.[1]);
      assert.ok(
        repaired >= lostData,
        `H rebuilt ${repaired} chunks for ${lostData} lost data chunks`,
      );

      // A liar joins, takes chunks of a new file, and serves them with one bit flipped.
      const liarChunks = new Map<string, Uint8Array>();
      const asked = { get: 0, has: 0 };
      const liar = await createMeshNode({
        listen: ["/ip4/127.0.0.1/tcp/0"],
        bootstrap: [a.multiaddrs[0]!, h.multiaddrs[0]!],
        store: {
          get: (c: CID) => {
            asked.get++;
            const bytes = liarChunks.get(c.toString());
            if (!bytes) return Promise.resolve(null);
            const bad = bytes.slice();
            bad[bad.length >> 1]! ^= 1;
            return Promise.resolve(bad);
          },
          has: (c: CID) => (asked.has++, Promise.resolve(liarChunks.has(c.toString()))),
          put: (c: CID, b: Uint8Array) => Promise.resolve(void liarChunks.set(c.toString(), b)),
        },
      });
      try {
        // Wait until the liar is connected to both A (to be given chunks) and H (to be asked for them).
        for (let i = 0; i < 100; i++) {
          const peers = liar.connectedPeers();
          if (peers.includes(a.peerId!) && peers.includes(h!.peerId!)) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(liar.connectedPeers().includes(h!.peerId!), "the liar reached H");
        const small = 8 * MiB;
        const put2 = await postStream(`${a.url}/mesh?k=4&m=2`, patternStream(small, 12), small);
        const { cid: cid2 } = await put2.json() as { cid: string };
        assert.ok(liarChunks.size > 0, "the liar was given chunks to hold");
        // It also claims every data chunk of the file, so readers that locate holders meet it often.
        const m2 = await manifestOf(a.url, cid2);
        m2.stripes.forEach((stripe, s) =>
          stripe.slice(0, m2.k).forEach((c, j) => {
            const offset = (s * m2.k + j) * m2.chunkSize;
            const length = Math.min(m2.chunkSize, small - offset);
            if (length > 0) liarChunks.set(c.toString(), pattern(offset, length, 12));
          })
        );
        // And for one data chunk it is the only holder left: H must ask it, catch it, and rebuild.
        const only = m2.stripes[0]![0]!.toString();
        for (let i = 0; i < cluster.nodes.length; i++) {
          await Deno.remove(`${dir}/node-${i}/chunks/${only.slice(-2)}/${only}`).catch(() => {});
        }
        const res = await fetch(`${h.url}/mesh/${cid2}`);
        assert.equal(
          await expectPattern(res.body!, 0, 12),
          small,
          "no corrupted byte reached the client",
        );
        const metrics2 = await (await fetch(`${h.url}/metrics`)).text();
        const caught = Number(/^mesh_peer_misbehaviour_total (\d+)$/m.exec(metrics2)?.[1]);
        assert.ok(
          caught >= 1,
          `H caught the liar (${caught} reports; asked ${JSON.stringify(asked)}): ${
            metrics2.split("\n").filter((l) => /^mesh_(chunks|peers|peer_)/.test(l))
          }`,
        );
      } finally {
        await liar.stop();
      }
    } finally {
      await h?.stop();
      await cluster.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
