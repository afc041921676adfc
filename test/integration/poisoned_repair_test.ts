/**
 * Audit finding 4, played by a real attacking libp2p peer on loopback: a crafted manifest M' lists a victim's
 * short chunk p as a full-length data chunk beside withheld attacker data q and parity r of (q, zero-padded
 * p). The attacker answers the reader's first `get p` with found:false and every later one honestly, so p
 * reaches the rebuild as a present position. Before the fix the rebuild handed back p zero-padded to
 * 256 KiB, and the gateway cached and stored it under p's CID. Now the manifest is refused and p is only
 * ever served as its own bytes.
 */
import assert from "node:assert/strict";
import { type CID, cidOf, matchesCid } from "../../src/content/cid.ts";
import { type Manifest, sealManifest } from "../../src/content/manifest.ts";
import { encodeParity } from "../../src/content/stripes.ts";
import { MeshgateNode } from "../../src/node.ts";
import type { ChunkSource } from "../../src/mesh/exchange.ts";
import type { MeshError } from "../../src/errors.ts";
import { collect, randomBytes } from "../_util.ts";
import { startNode, stopNodes, TCP } from "../mesh/_helpers.ts";

const CHUNK = 256 * 1024;

Deno.test("a crafted repair never gets a victim's chunk served, cached or stored with wrong bytes", async () => {
  const victim = randomBytes(100 * 1024); // p: shorter than the manifest's chunk size
  const q = randomBytes(CHUNK);
  const padded = new Uint8Array(CHUNK);
  padded.set(victim);
  const [r] = encodeParity([q, padded], 1);
  const [qCid, pCid, rCid] = [cidOf(q), cidOf(victim), cidOf(r!)];
  const crafted: Manifest = {
    name: "bait",
    type: "application/octet-stream",
    size: 2 * CHUNK,
    chunkSize: CHUNK,
    k: 2,
    m: 1,
    stripes: [[qCid, pCid, rCid]],
  };
  const sealed = sealManifest(crafted);

  // The attacker's store: q withheld, p failed once, then given; M' and r given.
  const held = new Map<string, Uint8Array>([
    [sealed.cid.toString(), sealed.bytes],
    [pCid.toString(), victim],
    [rCid.toString(), r!],
  ]);
  let pAsked = 0;
  const source: ChunkSource = {
    get: (cid: CID) => {
      const key = cid.toString();
      // The first ask of p fails (an error, not "not found": a chunk every peer denied is remembered as
      // missing for a while, which alone would keep the rebuild from asking again).
      if (key === pCid.toString() && pAsked++ === 0) return Promise.reject(new Error("not now"));
      return Promise.resolve(held.get(key) ?? null);
    },
    has: (cid: CID) => Promise.resolve(held.has(cid.toString())),
    put: () => Promise.resolve(),
  };
  const attacker = await startNode({ store: source });
  const dir = await Deno.makeTempDir();
  let gateway: MeshgateNode | undefined;
  try {
    gateway = await MeshgateNode.create({
      dataDir: dir,
      parityWorkers: 0,
      mesh: { listen: [TCP], bootstrap: [attacker.multiaddrs()[0]!] },
    });
    const manifest = await gateway.manifest(sealed.cid);
    const read = await collect(gateway.read(manifest)).catch((e: MeshError) => e);
    assert.ok(pAsked >= 2, "the attacker's honest answer reached the rebuild");
    await new Promise((resolve) => setTimeout(resolve, 300)); // any write-back in flight lands

    // Nothing wrong on disk under p's CID.
    const key = pCid.toString();
    const path = `${dir}/chunks/${key.slice(-2)}/${key}`;
    const onDisk = await Deno.readFile(path).catch(() => null);
    assert.ok(onDisk === null || matchesCid(pCid, onDisk), "wrong bytes stored under p's CID");

    // p served by CID: its own 100 KiB, from the cache, the store or the attacker alike.
    for (let i = 0; i < 2; i++) {
      const served: Uint8Array = await gateway.block(pCid);
      assert.equal(served.length, victim.length);
      assert.ok(matchesCid(pCid, served), "p served with bytes that do not match its CID");
    }
    // And the read of M' itself is refused, saying why.
    assert.ok(read instanceof Error, "the crafted manifest was read");
    assert.equal((read as MeshError).code, "manifest_mismatch");
    assert.match(read.message, /disagrees with its chunks/);
  } finally {
    await gateway?.stop();
    await stopNodes(attacker);
    await Deno.remove(dir, { recursive: true });
  }
});
