import assert from "node:assert/strict";
import { type CID, cidOf } from "../../src/content/cid.ts";
import type { Manifest } from "../../src/content/manifest.ts";
import { ingest } from "../../src/content/ingest.ts";
import {
  durabilityOf,
  peerKey,
  PeerTable,
  type StripeHolders,
  survivableLosses,
} from "../../src/mesh/placement.ts";
import { placeFile } from "../../src/mesh/place.ts";
import { DurabilityRecords } from "../../src/mesh/durability.ts";
import { xorClosest } from "../../src/kernels/reference/xor.ts";
import { MemorySource, randomBytes, SANITIZE, startNode, stopNodes, waitFor } from "./_helpers.ts";

const peers = Array.from({ length: 12 }, (_, i) => `12D3KooWpeer${i}`);
const chunks = Array.from({ length: 10 }, (_, i) => cidOf(new Uint8Array([i, 1, 2])));
const cids = (n: number, salt = 0) =>
  Array.from({ length: n }, (_, i) => cidOf(new Uint8Array([salt, i >> 8, i & 255, 7])));

/** Per holder, the positions of a stripe that no one else has. */
function soleCounts(plan: string[][]): Map<string, number> {
  const out = new Map<string, number>();
  for (const hs of plan) if (hs.length === 1) out.set(hs[0]!, (out.get(hs[0]!) ?? 0) + 1);
  return out;
}

Deno.test("PeerTable.closest() ranks peers by XOR distance to a key, as the reference does", () => {
  const table = new PeerTable(peers);
  const ids = new Uint8Array(peers.length * 32);
  peers.forEach((p, i) => ids.set(peerKey(p), i * 32));
  for (const cid of chunks) {
    const want = [...xorClosest(ids, cid.multihash.digest, 5)].map((i) => peers[i]);
    assert.deepEqual(table.closest(cid.multihash.digest, 5), want);
  }
});

Deno.test("placeStripe() puts each chunk of a stripe on one distinct peer when there are enough", () => {
  const table = new PeerTable(peers);
  const plan = table.placeStripe(chunks, { m: 2, self: peers[0] });
  assert.ok(plan.every((hs) => hs.length === 1), "no extra copies when the spread is safe");
  assert.equal(new Set(plan.flat()).size, chunks.length);
  // The first chunk always gets its nearest peer; placement is deterministic.
  assert.equal(plan[0]![0], table.closest(chunks[0]!.multihash.digest, 1)[0]);
  assert.deepEqual(
    new PeerTable([...peers].reverse()).placeStripe(chunks, { m: 2, self: peers[0] }),
    plan,
  );
  assert.throws(() => new PeerTable([]).placeStripe(chunks, { m: 2 }), /No peers/);
  assert.throws(() => table.placeStripe(chunks, { m: -1 }), /Parity count/);
  assert.equal(new PeerTable(["a", "a", "b"]).peers.length, 2);
});

Deno.test("placeStripe() never leaves a holder the only one with more than m chunks, for 1..k+m+2 holders", () => {
  const shapes = [[20, 4], [10, 2], [4, 2], [3, 2], [6, 1], [5, 0], [1, 1], [40, 6]] as const;
  for (const [k, m] of shapes) {
    // A full stripe and a short last one (data count below k).
    for (const data of new Set([k, Math.max(1, k >> 2)])) {
      const s = data + m;
      const stripe = cids(s, k + data);
      for (let n = 1; n <= k + m + 2; n++) {
        const self = "self";
        const table = new PeerTable([self, ...peers.concat(cids(64).map(String)).slice(0, n - 1)]);
        const plan = table.placeStripe(stripe, { m, self });
        const what = `k=${k} m=${m} data=${data} holders=${n}`;
        assert.equal(plan.length, s);
        for (const hs of plan) {
          assert.ok(hs.length >= 1 && hs.length <= 2, what);
          assert.equal(new Set(hs).size, hs.length, `${what}: two copies on one holder`);
          for (const h of hs) assert.ok(table.peers.includes(h), what);
        }
        const survives = survivableLosses([{ need: data, holders: plan }]);
        const copies = plan.flat().length;
        if (n === 1) {
          assert.deepEqual(plan, stripe.map(() => [self]), what);
          assert.equal(survives, 0, what);
          continue;
        }
        for (const [h, count] of soleCounts(plan)) {
          assert.ok(count <= m, `${what}: ${h} is the only holder of ${count} chunks`);
        }
        assert.ok(survives >= 1, `${what}: survives ${survives}`);
        if (Math.ceil(s / n) <= m) {
          // Safe as it is: one copy each, spread as evenly as the count allows.
          assert.equal(copies, s, `${what}: extra copies though the spread was safe`);
          const load = soleCounts(plan);
          assert.ok(Math.max(...load.values()) <= Math.ceil(s / n), what);
          // Losing the N fullest holders is what the exact count is about.
          const sorted = [...load.values()].sort((a, b) => b - a);
          const worst = (j: number) => sorted.slice(0, j).reduce((a, c) => a + c, 0);
          assert.ok(worst(survives) <= m && worst(survives + 1) > m, what);
        } else {
          // Too few holders: the fewest extra copies that keep every sole share at m (2s - n·m in all).
          assert.equal(copies, 2 * s - n * m, `${what}: ${copies} copies`);
          // The uploader takes the second copies of the others' surplus; it had the bytes already.
          for (const hs of plan) if (hs.length === 2 && hs[0] !== self) assert.equal(hs[1], self);
        }
      }
    }
  }
});

Deno.test("placeStripe() keeps the existing holders and places only the rest", () => {
  const table = new PeerTable(["self", "a", "b", "c"]);
  const stripe = cids(8, 3);
  const existing = stripe.map((_, i) => (i < 2 ? ["z"] : undefined)); // z refused the rest
  const plan = table.placeStripe(stripe, { m: 4, self: "self", existing });
  for (let i = 0; i < 2; i++) assert.deepEqual(plan[i], ["z"]);
  assert.ok(plan.slice(3).every((hs) => !hs.includes("z")));
  assert.equal(survivableLosses([{ need: 4, holders: plan }]), 2);
});

Deno.test("survivableLosses() on hand-made placements", () => {
  const spread = (counts: number[], prefix = "h") =>
    counts.flatMap((c, h) => Array.from({ length: c }, () => [`${prefix}${h}`]));
  // 20+4 over 4 holders, 6 each (the old placement): one lost holder takes 6 > 4 chunks.
  assert.equal(survivableLosses([{ need: 20, holders: spread([6, 6, 6, 6]) }]), 0);
  // The same with 2 of each holder's chunks copied to the next holder: any one may go, not two.
  const copied = spread([6, 6, 6, 6]).map((
    hs,
    i,
  ) => (i % 6 >= 4 ? [...hs, `h${(i / 6 + 1 | 0) % 4}`] : hs));
  assert.equal(survivableLosses([{ need: 20, holders: copied }]), 1);
  // One chunk per holder: any m may go; 2 per holder on 12: m/2.
  assert.equal(survivableLosses([{ need: 20, holders: spread(Array(24).fill(1)) }]), 4);
  assert.equal(survivableLosses([{ need: 20, holders: spread(Array(12).fill(2)) }]), 2);
  // Uneven: 3,3,3,3,3,3,3,3 → 1; with a short stripe of 4+4 on 8 → 4, the file's N is the minimum.
  const stripes: StripeHolders[] = [
    { need: 20, holders: spread(Array(8).fill(3)) },
    { need: 4, holders: spread(Array(8).fill(1)) },
  ];
  assert.equal(survivableLosses(stripes.slice(1)), 4);
  assert.equal(survivableLosses(stripes), 1);
  // A block on 4 holders survives 3 losses; a stripe already short of chunks survives none.
  assert.equal(survivableLosses([{ need: 1, holders: [["a", "b", "c", "d"]] }]), 3);
  assert.equal(survivableLosses([{ need: 3, holders: [["a"], [], []] }]), 0);
  assert.equal(survivableLosses([]), 0);

  // A refused peer: 8 holders, 3 chunks each; p7 refused its 3, which stayed with the uploader h0.
  const refused = spread(Array(8).fill(3)).map((hs) => (hs[0] === "h7" ? ["h0"] : hs));
  assert.equal(survivableLosses([{ need: 20, holders: refused }]), 0);
  // Placed again without p7, as placeFile does: 7 holders, at most 4 each, survives 1 again.
  const table = new PeerTable(["h0", "h1", "h2", "h3", "h4", "h5", "h6"]);
  const stripe = cids(24, 9);
  const again = table.placeStripe(stripe, {
    m: 4,
    self: "h0",
    existing: refused.map((hs) => (hs[0] === "h0" ? undefined : hs)),
  });
  assert.equal(survivableLosses([{ need: 20, holders: again }]), 1);
});

Deno.test("survivableLosses() on many holders is a conservative bound that is exact for a clean spread", () => {
  const holders = Array.from({ length: 46 }, (_, i) => [`h${i}`]); // 40+6 over 46 holders
  assert.equal(survivableLosses([{ need: 40, holders }]), 6);
  // Position i on holders i and i+1 (mod 40): losing h1..h4 costs 6 positions (1-3 and 41-43), h1..h5
  // costs 8, so the exact answer is 4; the bound (each holder costs at most half of what it holds) says 3.
  const twice = Array.from({ length: 46 }, (_, i) => [`h${i % 40}`, `h${(i + 1) % 40}`]);
  assert.equal(survivableLosses([{ need: 40, holders: twice }]), 3);
});

/** A manifest with made-up chunk CIDs: durabilityOf reads only the shape. */
function fakeManifest(size: number, chunkSize: number, k: number, m: number): Manifest {
  const count = Math.ceil(size / chunkSize);
  const stripes: CID[][] = [];
  for (let s = 0; s * k < count; s++) {
    const data = Math.min(k, count - s * k);
    stripes.push(cids(data + m, 100 + s));
  }
  return { name: "", type: "application/octet-stream", size, chunkSize, k, m, stripes };
}

Deno.test("durabilityOf() counts the bytes every holder really stores, a short last stripe included", () => {
  const root = cidOf(new Uint8Array([1]));
  // 20 full chunks + 3 (1000, 1000, 500 bytes): the short stripe still pays 4 parity chunks of 1000.
  const manifest = fakeManifest(22_500, 1000, 20, 4);
  const alone = durabilityOf(root, manifest, () => ["self"]);
  assert.deepEqual(alone, { survives: 0, holders: 1, overhead: 0.3556 });
  assert.equal(durabilityOf(root, fakeManifest(20_000, 1000, 20, 4), () => ["x"]).overhead, 0.2);
  assert.equal(durabilityOf(root, fakeManifest(0, 1000, 20, 4), () => ["x"]).overhead, 0);

  // The 4-holder placement with extra copies: 32 chunks stored for 20 of data.
  const full = fakeManifest(20_000, 1000, 20, 4);
  const table = new PeerTable(["self", "a", "b", "c"]);
  const plan = table.placeStripe(full.stripes[0]!, { m: 4, self: "self" });
  const where = new Map(full.stripes[0]!.map((c, i) => [c.toString(), plan[i]!]));
  const d = durabilityOf(
    root,
    full,
    (c) => c.equals(root) ? ["self", "a", "b", "c"] : where.get(`${c}`)!,
  );
  assert.deepEqual(d, { survives: 1, holders: 4, overhead: 0.6 });
  // The manifest counts: on the uploader alone, losing it loses the file whatever the chunks do.
  assert.equal(
    durabilityOf(root, full, (c) => c.equals(root) ? ["self"] : where.get(`${c}`)!).survives,
    0,
  );
  // A CID that occurs twice (equal chunks) is stored once per holder.
  const twin = {
    ...full,
    stripes: [full.stripes[0]!.map((c, i) => (i === 1 ? full.stripes[0]![0]! : c))],
  };
  assert.equal(durabilityOf(root, twin, () => ["x"]).overhead, 0.15);
});

Deno.test("DurabilityRecords keeps one summary per root across instances, written atomically", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-durability-" });
  try {
    const root = cidOf(new Uint8Array([5]));
    assert.equal(await new DurabilityRecords(dir).get(root), undefined);
    await new DurabilityRecords(dir).save(root, {
      survives: 1,
      holders: 4,
      overhead: 0.6,
      warning: "w",
    });
    await new DurabilityRecords(dir).save(root, { survives: 2, holders: 9, overhead: 0.2 });
    assert.deepEqual(await new DurabilityRecords(dir).get(root), {
      survives: 2,
      holders: 9,
      overhead: 0.2,
    });
    assert.deepEqual([...Deno.readDirSync(`${dir}/placement`)].map((e) => e.name), [
      `${root}.json`,
    ]);
    await Deno.writeTextFile(`${dir}/placement/${root}.json`, "{not json");
    assert.equal(await new DurabilityRecords(dir).get(root), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  ...SANITIZE,
  name:
    "placeFile() on 4 real nodes, one refusing: its chunks go to the others and the file still survives 1 lost holder",
  fn: async () => {
    const sources = [
      new MemorySource(),
      new MemorySource(),
      new MemorySource(),
      new MemorySource(0),
    ];
    const up = await startNode({ store: sources[0] });
    const others = await Promise.all(
      sources.slice(1).map((store) => startNode({ store, bootstrap: up.multiaddrs() })),
    );
    try {
      await waitFor(() => up.connectedPeers().length === 3, "3 peers");
      const { cid, manifest } = await ingest(
        ReadableStream.from([randomBytes(3 * 20 * 1024 + 5000)]),
        (c, bytes) => sources[0]!.put(c, bytes),
        { k: 4, m: 2, chunkSize: 4096 },
      );
      const report = await placeFile(up, cid, manifest, (c) => sources[0]!.get(c));
      const refusing = others[2]!.peerId;
      assert.equal(sources[3]!.chunks.size, 0);
      assert.ok(![...report.where.values()].some((hs) => hs.has(refusing)));
      // Left with 3 holders for stripes of 6 with m = 2: every one at most 2 sole chunks, so 1 may go.
      for (const stripe of manifest.stripes) {
        const plan = stripe.map((c) => [...report.where.get(c.toString())!]);
        for (const [, count] of soleCounts(plan)) assert.ok(count <= 2);
      }
      assert.deepEqual(report.durability, {
        survives: 1,
        holders: 3,
        overhead: report.durability.overhead,
      });
      assert.ok(report.durability.overhead < 0.9); // one copy each: no extra copies were needed
      // What the uploader may drop is held elsewhere, and nothing it keeps is in that list.
      for (const c of report.drop) {
        const hs = report.where.get(c.toString())!;
        assert.ok(!hs.has(up.peerId) && hs.size >= 1);
      }
      assert.ok(report.local.some((c) => c.equals(cid)));
    } finally {
      await stopNodes(up, ...others);
    }
  },
});

Deno.test({
  ...SANITIZE,
  name:
    "placeFile() with its only peer refusing keeps everything and warns that nothing may be lost",
  fn: async () => {
    const mine = new MemorySource();
    const up = await startNode({ store: mine });
    const full = await startNode({ store: new MemorySource(0), bootstrap: up.multiaddrs() });
    try {
      await waitFor(() => up.connectedPeers().length === 1, "1 peer");
      const { cid, manifest } = await ingest(
        ReadableStream.from([randomBytes(40_000)]),
        (c, b) => mine.put(c, b),
        {
          k: 4,
          m: 2,
          chunkSize: 4096,
        },
      );
      const report = await placeFile(up, cid, manifest, (c) => mine.get(c));
      assert.deepEqual(report.drop, []);
      assert.equal(report.placed, 0);
      assert.equal(report.durability.survives, 0);
      assert.equal(report.durability.holders, 1);
      assert.match(
        report.durability.warning!,
        /^1 peer refused or failed .* survives the loss of 0 holders, 1 planned/,
      );
    } finally {
      await stopNodes(up, full);
    }
  },
});
