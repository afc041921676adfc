/**
 * What signed deliveries cost the mesh's reads: two in-process nodes on loopback TCP serve the same 32 chunks
 * of 1 MiB, one signing every answer (the default: an Ed25519 signature over the CID's digest, which its
 * verifying store vouches for; a source that does not verify hashes the chunk first), one not;
 * a third reads all 32 from each in turn, 8 rounds, and the median MiB/s of each is printed with the ratio.
 * The goal: signing and checking cost ≤ 5% of read throughput.
 *
 * `deno run -A bench/signed_read.ts` (also run by `deno task bench`).
 */
import { type CID, cidOf } from "../src/content/cid.ts";
import { createMeshNode, type MeshNode } from "../src/mesh/node.ts";

const CHUNKS = 32;
const ROUNDS = 8;
const held = Array.from(
  { length: CHUNKS },
  (_, n) => new Uint8Array(1 << 20).map((_, i) => ((i + n * 7919) * 2654435761) >>> 24),
);
const cids = held.map((b) => cidOf(b));
// As a node's store: it checks what it reads against the CID, so answers are signed over the CID's digest.
const source = {
  verified: true,
  get: (cid: CID) => Promise.resolve(held[cids.findIndex((c) => c.equals(cid))] ?? null),
  has: (cid: CID) => Promise.resolve(cids.some((c) => c.equals(cid))),
  put: () => Promise.reject(new Error("read-only")),
};
const listen = ["/ip4/127.0.0.1/tcp/0"];
const signing = await createMeshNode({ listen, store: source });
const plain = await createMeshNode({ listen, store: source, exchange: { signDeliveries: false } });
const reader = await createMeshNode({ listen });
try {
  for (const n of [signing, plain]) await reader.connect(n.multiaddrs()[0]!);
  const read = async (from: MeshNode) => {
    const t0 = performance.now();
    for await (const got of reader.fetchChunks(from.peerId, cids)) {
      if (got.bytes === null) throw new Error("a chunk went missing");
    }
    return CHUNKS / ((performance.now() - t0) / 1000); // MiB/s
  };
  await read(plain); // warm-up: connections, JIT
  await read(signing);
  const rates = { plain: [] as number[], signing: [] as number[] };
  for (let r = 0; r < ROUNDS; r++) {
    rates.plain.push(await read(plain));
    rates.signing.push(await read(signing));
  }
  const median = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
  const p = median(rates.plain), s = median(rates.signing);
  console.log("mesh read, 32 x 1 MiB over loopback TCP, median of 8");
  console.log(`  server does not sign   ${p.toFixed(0).padStart(5)} MiB/s`);
  console.log(
    `  server signs answers   ${s.toFixed(0).padStart(5)} MiB/s   ${
      (s / p).toFixed(2)
    }x (goal ≥ 0.95x)`,
  );
} finally {
  await Promise.all([signing.stop(), plain.stop(), reader.stop()]);
}
