/**
 * A silent peer (issue 10, finding 3): it accepts /meshgate/chunk streams and never answers, and it ranks
 * ahead of the honest holder for every chunk read. Reads hedge past it after a deadline drawn from observed
 * fetch times, and once it has let a deadline pass it is skipped: 16 concurrent reads finish within twice
 * their time without it (before the fix: 30 s and 60 s, the exchange's idle timeout once or twice over).
 */
import assert from "node:assert/strict";
import type { Stream } from "@libp2p/interface";
import { type CID, cidOf } from "../../src/content/cid.ts";
import type { Manifest } from "../../src/content/manifest.ts";
import { CHUNK_PROTOCOL } from "../../src/mesh/exchange.ts";
import { fetchFromMesh, HEDGE_COLD_MS } from "../../src/mesh/fetch.ts";
import { PeerHealth } from "../../src/mesh/health.ts";
import { KeyedLimiter } from "../../src/mesh/_limiter.ts";
import { PeerTable } from "../../src/mesh/placement.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { MeshgateNode } from "../../src/node.ts";
import { MemorySource, randomBytes, startNode, stopNodes, TCP } from "./_helpers.ts";

const CHUNK = 256 * 1024;
const PER_FILE = 4;
const FILES = 16;

/** A file of `PER_FILE` chunks held by `store`, each ranked nearer `ahead` than `behind` when given. */
async function file(store: MemorySource, ahead?: string, behind?: string): Promise<Manifest> {
  const cids: CID[] = [];
  const table = ahead && behind ? new PeerTable([ahead, behind]) : undefined;
  while (cids.length < PER_FILE) {
    const bytes = randomBytes(CHUNK);
    const cid = cidOf(bytes);
    if (table && table.closest(cid.multihash.digest, 1)[0] !== ahead) continue;
    await store.put(cid, bytes);
    cids.push(cid);
  }
  return {
    name: "",
    type: "application/octet-stream",
    size: CHUNK * PER_FILE,
    chunkSize: CHUNK,
    k: PER_FILE,
    m: 0,
    stripes: [cids],
  };
}

async function readAll(node: MeshgateNode, manifest: Manifest): Promise<number> {
  let n = 0;
  for await (const piece of node.read(manifest)) n += piece.length;
  return n;
}

/** Times 16 concurrent reads through a fresh reader connected to `peers`, warmed up on the holder alone. */
async function timedReads(
  holder: MeshNode,
  store: MemorySource,
  silent?: MeshNode,
): Promise<number> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-stall-" });
  const reader = await MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    mesh: { listen: [TCP] },
  });
  try {
    await reader.mesh!.connect(holder.multiaddrs()[0]!);
    // Warm-up without the attacker: the reader sees a few fetch times, as any running node has.
    for (let i = 0; i < 3; i++) await readAll(reader, await file(store));
    const files = [];
    for (let i = 0; i < FILES; i++) files.push(await file(store, silent?.peerId, holder.peerId));
    if (silent) await reader.mesh!.connect(silent.multiaddrs()[0]!);
    const t = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const sizes = await Promise.race([
      Promise.all(files.map((f) => readAll(reader, f))),
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error("the reads took over 20 s")), 20_000)
      ),
    ]).finally(() => clearTimeout(timer));
    const ms = performance.now() - t;
    assert.deepEqual(sizes, files.map(() => CHUNK * PER_FILE));
    return ms;
  } finally {
    await reader.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name:
    "a silent peer ranked ahead of the holder costs 16 concurrent reads at most their time again",
  // MeshgateNode's store and libp2p timers are checked by the node's own tests.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const store = new MemorySource();
    const holder = await startNode({ store });
    const silent = await startNode();
    const held: Stream[] = [];
    await silent.libp2p.unhandle(CHUNK_PROTOCOL);
    await silent.libp2p.handle(CHUNK_PROTOCOL, (stream: Stream) => void held.push(stream), {
      maxInboundStreams: 1024,
    });
    try {
      await timedReads(holder, store); // the process warms up (JIT, first connections): not counted
      // Best of two each, fresh readers every time (the silent peer costs anew): other processes share the
      // machine's two cores.
      const without = Math.min(await timedReads(holder, store), await timedReads(holder, store));
      const withIt = Math.min(
        await timedReads(holder, store, silent),
        await timedReads(holder, store, silent),
      );
      console.log(
        `16 reads: ${without.toFixed(0)} ms alone, ${withIt.toFixed(0)} ms with a silent peer`,
      );
      assert.ok(held.length > 0, "the silent peer was asked");
      assert.ok(
        withIt <= 2 * without,
        `with the silent peer ${withIt.toFixed(0)} ms, without ${without.toFixed(0)} ms`,
      );
    } finally {
      for (const s of held) s.abort(new Error("test over"));
      await stopNodes(holder, silent);
    }
  },
});

Deno.test({
  name: "a fetch hedges past a silent nearest peer, which is skipped from then on",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const store = new MemorySource();
    const holder = await startNode({ store });
    const silent = await startNode();
    const reader = await startNode();
    const held: Stream[] = [];
    await silent.libp2p.unhandle(CHUNK_PROTOCOL);
    await silent.libp2p.handle(CHUNK_PROTOCOL, (stream: Stream) => void held.push(stream));
    const health = new PeerHealth().attach(reader.libp2p);
    try {
      await reader.connect(holder.multiaddrs()[0]!);
      await reader.connect(silent.multiaddrs()[0]!);
      const [a, b] = (await file(store, silent.peerId, holder.peerId)).stripes[0]!;
      let t = performance.now();
      assert.ok(await fetchFromMesh(reader, a!, { standing: health, lookupTimeoutMs: 1000 }));
      const first = performance.now() - t;
      assert.ok(first < HEDGE_COLD_MS + 2000, `the first fetch took ${first.toFixed(0)} ms`);
      assert.ok(health.skipped(silent.peerId), "the silent peer counts as timed out");
      t = performance.now();
      assert.ok(await fetchFromMesh(reader, b!, { standing: health, lookupTimeoutMs: 1000 }));
      const second = performance.now() - t;
      assert.ok(second < first, `the second fetch (${second.toFixed(0)} ms) waited again`);
      assert.equal(held.length, 1, "the silent peer was asked once");
    } finally {
      health.detach();
      for (const s of held) s.abort(new Error("test over"));
      await stopNodes(holder, silent, reader);
    }
  },
});

Deno.test("a slot wait has a deadline", async () => {
  const limiter = new KeyedLimiter(1);
  const release = await limiter.acquire("p");
  await assert.rejects(limiter.acquire("p", undefined, 50, () => new Error("no slot")), /no slot/);
  release();
  (await limiter.acquire("p", undefined, 50))();
  assert.equal(limiter.active("p"), 0);
});
