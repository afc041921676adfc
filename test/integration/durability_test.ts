/**
 * What an upload answer promises holds: on 3-, 4- and 8-node meshes of real `serve` processes, a file put
 * on one node reports "survives the loss of any N holders"; the placement on disk agrees; the worst N
 * holders one can pick are killed, and the file still comes back byte-identical through every node left.
 */
import assert from "node:assert/strict";
import { decodeManifest, stripeDataCount } from "../../src/content/manifest.ts";
import { type NodeProcess, spawnNode, startCluster, waitForPeers } from "../../src/cluster.ts";
import { type StripeHolders, survivableLosses } from "../../src/mesh/placement.ts";
import { MeshgateNode } from "../../src/node.ts";
import { createGateway } from "../../edge/app.ts";
import { expectPattern, pattern, patternStream, postStream } from "../_util.ts";
import { margin, subsets } from "../mesh/_helpers.ts";

const KiB = 1024;
// 50 chunks of 64 KiB: stripes of 20, 20 and a short one of 10, each with 4 parity chunks.
const SIZE = 3 * 1024 * KiB + 100 * KiB;
const CHUNK = 64 * KiB;

interface Answer {
  cid: string;
  durability: { survives: number; holders: number; overhead: number; warning?: string };
}

/** The CIDs each node's store holds, read from its data directory. */
async function storeListing(dir: string): Promise<Set<string>> {
  const out = new Set<string>();
  for await (const shard of Deno.readDir(`${dir}/chunks`)) {
    for await (const f of Deno.readDir(`${dir}/chunks/${shard.name}`)) out.add(f.name);
  }
  return out;
}

Deno.test({
  name:
    "a lone node answers survives 0 with its real overhead, and /api/files says the same after a restart",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-durability-lone-" });
    const bytes = pattern(0, 5 * 4096 + 100, 1); // two stripes of 3+2, the last chunk 100 bytes
    const upload = async (node: MeshgateNode) => {
      const res = await createGateway(node).app.request("/mesh?k=3&m=2&chunkSize=4096", {
        method: "POST",
        body: bytes,
      });
      assert.equal(res.status, 201);
      return (await res.json()) as Answer;
    };
    const listed = async (node: MeshgateNode) =>
      (await (await createGateway(node).app.request("/api/files")).json()).files[0].durability;
    try {
      // No mesh: every chunk stays here. Stripe 0: 3 data + 2 parity chunks of 4096; stripe 1: 2×4096 +
      // 100 bytes of data, and 2 parity chunks as long as its first chunk (4096).
      const stored = 5 * 4096 + (2 * 4096 + 100) + 2 * 4096;
      const want = {
        survives: 0,
        holders: 1,
        overhead: Math.round((stored / bytes.length - 1) * 1e4) / 1e4,
      };
      let node = await MeshgateNode.create({ dataDir: `${dir}/alone`, parityWorkers: 0 });
      assert.deepEqual((await upload(node)).durability, want);
      await node.stop();
      node = await MeshgateNode.create({ dataDir: `${dir}/alone`, parityWorkers: 0 });
      assert.deepEqual(await listed(node), want);
      await node.stop();

      // A mesh without peers: the same, and a warning (answer and record alike).
      node = await MeshgateNode.create({
        dataDir: `${dir}/meshed`,
        parityWorkers: 0,
        mesh: { listen: ["/ip4/127.0.0.1/tcp/0"] },
      });
      try {
        const { durability } = await upload(node);
        assert.deepEqual({ ...durability, warning: undefined }, { ...want, warning: undefined });
        assert.match(durability.warning!, /No peers/);
        assert.deepEqual(await listed(node), durability);
      } finally {
        await node.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/**
 * Starts `nodes`, puts the file on node 0, kills the worst N holders (`uploader`: node 0, alone) and reads
 * the file through every node left.
 */
async function lose(nodes: number, dir: string, uploader = false): Promise<void> {
  const t0 = performance.now();
  const cluster = await startCluster({ nodes, dir, stderr: "null" });
  try {
    // Every node connected to every other one: readers ask the peers they know.
    await Promise.all(cluster.nodes.map((n) => waitForPeers(n.url, nodes - 1, 30_000)));
    const up = cluster.nodes[0]!;
    const put = await postStream(
      `${up.url}/mesh?name=d.bin&chunkSize=${CHUNK}`,
      patternStream(SIZE, nodes),
      SIZE,
    );
    assert.equal(put.status, 201);
    const answer = await put.json() as Answer;
    const { survives, holders, overhead } = answer.durability;
    assert.ok(survives >= 1, `${nodes} nodes: survives ${survives}`);
    assert.equal(holders, nodes);
    // The widest stripe is a full one, 20+4 (the default k and m; the last stripe is 10+4).
    if (nodes < 6) assert.match(answer.durability.warning!, /too few to spread stripes of 20\+4 /);
    else assert.equal(answer.durability.warning, undefined);

    // The placement as it is on disk gives the same N and the same overhead.
    const manifest = decodeManifest(
      new Uint8Array(await (await fetch(`${up.url}/mesh/${answer.cid}?format=raw`)).arrayBuffer()),
    );
    const list = () => Promise.all(cluster.nodes.map((_, i) => storeListing(`${dir}/node-${i}`)));
    let listings = await list();
    const ids = cluster.nodes.map((n) => n.peerId!);
    const where = (cid: string) => ids.filter((_, i) => listings[i]!.has(cid));
    const onDisk = (): StripeHolders[] => [
      { need: 1, holders: [where(answer.cid)] },
      ...manifest.stripes.map((stripe, s) => ({
        need: stripeDataCount(manifest, s),
        holders: stripe.map((c) => where(c.toString())),
      })),
    ];
    let placement = onDisk();
    assert.equal(survivableLosses(placement), survives, "the answer's N is the disk's N");
    let stored = 0;
    for (const [i, listing] of listings.entries()) {
      for (const name of listing) {
        if (name !== answer.cid) {
          stored += (await Deno.stat(`${dir}/node-${i}/chunks/${name.slice(-2)}/${name}`)).size;
        }
      }
    }
    assert.ok(
      Math.abs(stored / SIZE - 1 - overhead) < 1e-3,
      `overhead ${overhead}, disk ${stored / SIZE - 1}`,
    );

    if (nodes === 3) {
      // Node 1 uploads the same bytes in stripes of 10+2: the same data chunks, placed otherwise. Its
      // own placement must not drop the chunks it already held for node 0's file.
      const before = listings[1]!;
      const again = await postStream(
        `${cluster.nodes[1]!.url}/mesh?name=copy.bin&chunkSize=${CHUNK}&k=10&m=2`,
        patternStream(SIZE, nodes),
        SIZE,
      );
      assert.equal(again.status, 201);
      listings = await list();
      const gone = [...before].filter((c) => !listings[1]!.has(c));
      assert.deepEqual(gone, [], "node 1 kept what it held for node 0");
      placement = onDisk();
      assert.ok(survivableLosses(placement) >= survives);
    }

    // The worst N holders to lose (not the uploader alone): the fewest chunks left beyond need.
    // (ties: the set holding the most chunks).
    const chunksOf = (id: string) => listings[ids.indexOf(id)]!.size;
    let victims: string[] = [];
    let worst = Infinity;
    let most = 0;
    for (const set of uploader ? [[up.peerId!]] : subsets(ids, survives)) {
      if (!uploader && set.length === 1 && set[0] === up.peerId) continue;
      const left = margin(placement, new Set(set));
      const held = set.reduce((a, id) => a + chunksOf(id), 0);
      if (left < worst || (left === worst && held > most)) {
        [worst, victims, most] = [left, set, held];
      }
    }
    assert.ok(worst >= 0);
    const lostSet = new Set(victims);
    console.log(
      `${nodes} nodes: survives ${survives}, overhead ${overhead}; killing ${
        victims.map(chunksOf).join("+")
      } chunk holder(s) of ${ids.map(chunksOf).join("/")}, ${worst} chunk(s) to spare`,
    );
    const killed = cluster.nodes.filter((n) => lostSet.has(n.peerId!));
    await Promise.all(killed.map((n) => n.stop("SIGKILL")));

    for (const node of cluster.nodes.filter((n) => !lostSet.has(n.peerId!))) {
      const res = await fetch(`${node.url}/mesh/${answer.cid}`);
      assert.equal(res.status, 200, `read through ${node.url}`);
      assert.equal(await expectPattern(res.body!, 0, nodes), SIZE);
    }

    if (nodes === 3 && !lostSet.has(up.peerId!)) {
      // The uploader restarted knows what its files are worth: /api/files reads the record on disk.
      await up.stop();
      const again: NodeProcess = await spawnNode(["--data", `${dir}/node-0`], { stderr: "null" });
      try {
        const { files } = await (await fetch(`${again.url}/api/files`)).json();
        assert.deepEqual(
          files.find((f: { cid: string }) => f.cid === answer.cid).durability,
          answer.durability,
        );
      } finally {
        await again.stop();
      }
    }
  } finally {
    await cluster.stop();
  }
  console.log(`${nodes} nodes: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

for (const [nodes, uploader] of [[3, false], [4, false], [4, true], [8, false]] as const) {
  const whom = uploader ? "the uploader" : "the worst N holders the upload answer allows";
  Deno.test({
    name: `${nodes} nodes: losing ${whom} keeps the file whole`,
    sanitizeResources: false,
    sanitizeOps: false,
    async fn() {
      const dir = await Deno.makeTempDir({ prefix: `meshgate-durability-${nodes}-` });
      try {
        await lose(nodes, dir, uploader);
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}
