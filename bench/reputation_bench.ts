/**
 * Reputation's hot paths at the sizes the issue names, each beside the straightforward way to do it:
 *
 * - choosing k = 24 of 10,000 scored operators (a stripe's holders): a prebuilt {@link Selection} (prefix sums,
 *   a binary search per draw) beside a fresh weighted draw over every candidate each time (Efraimidis–Spirakis
 *   keys `u^(1/w)`, the usual one-pass way, top 24 kept). Goal: ≥ 10,000 selections/s.
 * - one trust iteration over 10,000 nodes x 20 attestations each: {@link TrustGraph}'s compressed rows beside
 *   the same step over a Map of Maps. Goal: ≤ 100 ms.
 * - a signed delivery (sign on the server, verify on the client) beside the BLAKE3 every read already
 *   computes for the same 1 MiB chunk. Goal: ≤ 5% of read throughput.
 */
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { cidOf } from "../src/content/cid.ts";
import { blake3 } from "../src/kernels/mod.ts";
import { signDelivery, verifyDelivery } from "../src/reputation/evidence.ts";
import { type Candidate, Selection, weightsOf } from "../src/reputation/select.ts";
import { rng } from "../src/reputation/sim.ts";
import { type Attested, TrustGraph } from "../src/reputation/trust.ts";

const N = 10_000;
const K = 24;
const random = rng(1);
const candidates: Candidate[] = Array.from({ length: N }, (_, i) => ({
  peer: `p${i}`,
  score: 0.1 + 0.9 * random(),
  vetted: random() > 0.1,
  price: Math.floor(random() * 1000),
  ttfbMs: 5 + random() * 100,
}));
const selection = new Selection(candidates, { random });
const weights = weightsOf(candidates);

/** The one-pass weighted draw without replacement: keep the K largest u^(1/w). */
function oneshot(): number[] {
  const keys = new Float64Array(K).fill(-1);
  const idx = new Int32Array(K).fill(-1);
  for (let i = 0; i < N; i++) {
    const w = weights[i]!;
    if (w <= 0) continue;
    const key = random() ** (1 / w);
    if (key <= keys[K - 1]!) continue;
    let j = K - 1;
    while (j > 0 && keys[j - 1]! < key) {
      keys[j] = keys[j - 1]!;
      idx[j] = idx[j - 1]!;
      j--;
    }
    keys[j] = key;
    idx[j] = i;
  }
  return [...idx];
}

const selectGroup = `select ${K} of ${N.toLocaleString("en")} operators`;
Deno.bench({
  name: "meshgate Selection.pick",
  group: selectGroup,
  baseline: true,
  fn: () => void selection.pick(K),
});
Deno.bench({ name: "one-pass weighted draw", group: selectGroup, fn: () => void oneshot() });
Deno.bench({
  name: "build the Selection, then pick",
  group: selectGroup,
  fn: () => void new Selection(candidates, { random }).pick(K),
});

// 10,000 nodes, 20 attestations each.
const attested: Attested[] = [];
for (let i = 0; i < N; i++) {
  for (let e = 0; e < 20; e++) {
    attested.push({
      from: `n${i}`,
      about: `n${Math.floor(random() * N)}`,
      satisfaction: 1 + random() * 100,
    });
  }
}
const graph = new TrustGraph("n0", attested);
const t = graph.trust({ maxIterations: 3 });
const out = new Float64Array(graph.size);

// The same step over a Map of Maps, rows normalised beforehand.
const rows = new Map<string, Map<string, number>>();
for (const a of attested) {
  if (a.from === a.about) continue;
  let r = rows.get(a.from);
  if (!r) rows.set(a.from, r = new Map());
  r.set(a.about, a.satisfaction);
}
for (const r of rows.values()) {
  let sum = 0;
  for (const v of r.values()) sum += v;
  for (const [k, v] of r) r.set(k, v / sum);
}
const tMap = new Map<string, number>(graph.ids.map((id, i) => [id, t[i]!]));
function mapStep(): Map<string, number> {
  const next = new Map<string, number>();
  let dangling = 0;
  for (const [i, ti] of tMap) {
    const r = rows.get(i);
    if (!r) {
      dangling += ti;
      continue;
    }
    for (const [j, c] of r) next.set(j, (next.get(j) ?? 0) + 0.85 * ti * c);
  }
  next.set("n0", (next.get("n0") ?? 0) + 0.15 * (1 - dangling) + dangling);
  return next;
}

const trustGroup = `trust iteration ${N.toLocaleString("en")} nodes x 20`;
Deno.bench({
  name: "meshgate TrustGraph.step",
  group: trustGroup,
  baseline: true,
  fn: () => void graph.step(t, out),
});
Deno.bench({ name: "Map of Maps", group: trustGroup, fn: () => void mapStep() });

// Signed deliveries beside what a read already does per chunk: BLAKE3 of 1 MiB. The goal: signing
// and checking cost ≤ 5% of the mesh's read throughput.
const key = await generateKeyPair("Ed25519");
const peer = peerIdFromPrivateKey(key).toString();
const chunk = new Uint8Array(1 << 20).map((_, i) => (i * 2654435761) >>> 24);
const chunkCid = cidOf(chunk);
const hash = blake3(chunk);
const signed = await signDelivery(key, chunkCid, chunk, Date.now(), hash);
const sigGroup = "delivery signature per 1 MiB chunk";
Deno.bench({
  name: "blake3 of the chunk (every read does it)",
  group: sigGroup,
  baseline: true,
  fn: () => void blake3(chunk),
});
Deno.bench({
  name: "sign (server)",
  group: sigGroup,
  fn: async () => void await signDelivery(key, chunkCid, chunk, Date.now(), hash),
});
Deno.bench({
  name: "verify (client)",
  group: sigGroup,
  fn: async () => void await verifyDelivery(peer, chunkCid, signed),
});
