import assert from "node:assert/strict";
import { cidOf } from "../../src/content/cid.ts";
import { peerKey, PeerTable } from "../../src/mesh/placement.ts";
import { xorClosest } from "../../src/kernels/reference/xor.ts";

const peers = Array.from({ length: 12 }, (_, i) => `12D3KooWpeer${i}`);
const chunks = Array.from({ length: 10 }, (_, i) => cidOf(new Uint8Array([i, 1, 2])));

Deno.test("PeerTable.closest() ranks peers by XOR distance to a key, as the reference does", () => {
  const table = new PeerTable(peers);
  const ids = new Uint8Array(peers.length * 32);
  peers.forEach((p, i) => ids.set(peerKey(p), i * 32));
  for (const cid of chunks) {
    const want = [...xorClosest(ids, cid.multihash.digest, 5)].map((i) => peers[i]);
    assert.deepEqual(table.closest(cid.multihash.digest, 5), want);
  }
});

Deno.test("placeStripe() puts each chunk of a stripe on a distinct peer when there are enough", () => {
  const table = new PeerTable(peers);
  const holders = table.placeStripe(chunks);
  assert.equal(new Set(holders).size, chunks.length);
  // The first chunk always gets its nearest peer; placement is deterministic.
  assert.equal(holders[0], table.closest(chunks[0]!.multihash.digest, 1)[0]);
  assert.deepEqual(new PeerTable([...peers].reverse()).placeStripe(chunks), holders);
});

Deno.test("placeStripe() spreads evenly over too few peers and refuses none", () => {
  const few = new PeerTable(peers.slice(0, 4));
  const holders = few.placeStripe(chunks);
  const counts = new Map<string, number>();
  for (const h of holders) counts.set(h, (counts.get(h) ?? 0) + 1);
  assert.ok(Math.max(...counts.values()) <= 3);
  assert.equal(counts.size, 4);
  assert.throws(() => new PeerTable([]).placeStripe(chunks), /No peers/);
  assert.equal(new PeerTable(["a", "a", "b"]).peers.length, 2);
});
