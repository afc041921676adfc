/**
 * The mesh path pipelined (issue 16): a read asks a holder for several chunks per request, and an upload's
 * stripes reach their holders while the upload is still arriving.
 */
import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import type { Manifest } from "../../src/content/manifest.ts";
import { MeshgateNode } from "../../src/node.ts";
import { meshPeers } from "../../src/mesh/peers.ts";
import { MemorySource, randomBytes, startNode, stopNodes, TCP, waitFor } from "./_helpers.ts";

const CHUNK = 64 * 1024;

/** A MeshgateNode connected to `holder`, once it knows the holder speaks the chunk protocol. */
async function reader(holder: string): Promise<[MeshgateNode, string]> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-pipeline-" });
  const node = await MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    mesh: { listen: [TCP] },
  });
  await node.mesh!.connect(holder);
  const deadline = Date.now() + 10_000;
  while ((await meshPeers(node.mesh!)).length === 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return [node, dir];
}

Deno.test({
  name: "a read of 20 chunks from one holder takes a handful of requests, not one per chunk",
  sanitizeOps: false, // MeshgateNode's store and libp2p timers are checked by the node's own tests
  sanitizeResources: false,
  async fn() {
    const store = new MemorySource();
    const holder = await startNode({ store });
    const [node, dir] = await reader(holder.multiaddrs()[0]!);
    try {
      const chunks = Array.from({ length: 20 }, () => randomBytes(CHUNK));
      const cids = chunks.map((c) => cidOf(c));
      chunks.forEach((c, i) => store.chunks.set(cids[i]!.toString(), c));
      const manifest: Manifest = {
        name: "",
        type: "application/octet-stream",
        size: 20 * CHUNK,
        chunkSize: CHUNK,
        k: 20,
        m: 0,
        stripes: [cids],
      };
      const mesh = node.mesh!;
      let requests = 0;
      const sizes: number[] = [];
      for (const name of ["fetchChunk", "fetchChunks"] as const) {
        const real = mesh[name].bind(mesh) as (...a: unknown[]) => unknown;
        (mesh as unknown as Record<string, unknown>)[name] = (...a: unknown[]) => {
          requests++;
          sizes.push(Array.isArray(a[1]) ? a[1].length : 1);
          return real(...a);
        };
      }
      const got = new Uint8Array(await new Response(node.read(manifest)).arrayBuffer());
      assert.equal(got.length, 20 * CHUNK);
      chunks.forEach((c, i) => assert.deepEqual(got.subarray(i * CHUNK, (i + 1) * CHUNK), c));
      // The head alone and first, then the other 19 in requests of up to 2 MiB (32 of these chunks): 2
      // (five at a time before: 5; one per chunk before that: 20).
      assert.equal(
        sizes[0],
        1,
        `the first request asks for ${sizes[0]} chunks, not the head alone`,
      );
      assert.ok(requests <= 3, `${requests} requests for 20 chunks (${sizes})`);
    } finally {
      await node.stop();
      await stopNodes(holder);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "an upload's first stripes reach their holder before the upload has ended",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const store = new MemorySource();
    const holder = await startNode({ store });
    const [node, dir] = await reader(holder.multiaddrs()[0]!);
    try {
      let source!: ReadableStreamDefaultController<Uint8Array>;
      const body = new ReadableStream<Uint8Array>({ start: (c) => void (source = c) });
      // Stripes of 4 + 2 chunks of 64 KiB: three stripes' worth now, the rest only once the holder has some.
      const put = node.put(body, { k: 4, m: 2, chunkSize: CHUNK });
      put.catch(() => {});
      source.enqueue(randomBytes(12 * CHUNK));
      await waitFor(() => store.chunks.size > 0, "chunks on the holder during the upload", 10_000);
      source.enqueue(randomBytes(4 * CHUNK));
      source.close();
      const { manifest } = await put;
      assert.equal(manifest.stripes.length, 4);
      // Every stripe still reached the holder (one peer: it holds at most m of each, see placement).
      for (const stripe of manifest.stripes) {
        assert.ok(stripe.some((c) => store.chunks.has(c.toString())), "a stripe was not placed");
      }
    } finally {
      await node.stop();
      await stopNodes(holder);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
