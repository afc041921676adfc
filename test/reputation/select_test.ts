import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type Candidate,
  order,
  Selection,
  WeightedSampler,
  weightsOf,
} from "../../src/reputation/select.ts";
import { rng } from "../../src/reputation/sim.ts";

function candidates(n: number, random: () => number, fresh = 0.3): Candidate[] {
  return Array.from({ length: n }, (_, i) => ({
    peer: `p${i}`,
    score: 0.1 + 0.9 * random(),
    vetted: random() >= fresh,
    price: Math.floor(random() * 100),
    ttfbMs: 5 + random() * 50,
  }));
}

Deno.test("WeightedSampler draws in proportion to weight (chi-square against the weights)", () => {
  const w = Float64Array.from([1, 2, 3, 4, 0, 10]);
  const s = new WeightedSampler(w);
  const random = rng(3);
  const counts = new Array(w.length).fill(0);
  const N = 200_000;
  for (let i = 0; i < N; i++) counts[s.draw(random)]++;
  assert.equal(counts[4], 0, "a zero weight is never drawn");
  let chi = 0;
  for (let i = 0; i < w.length; i++) {
    if (w[i] === 0) continue;
    const e = N * w[i]! / s.total;
    chi += (counts[i] - e) ** 2 / e;
  }
  assert.ok(chi < 20, `chi-square ${chi} (4 degrees of freedom)`);
});

Deno.test("WeightedSampler.sample: k distinct positive indices, whatever the weights (fuzzed)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.constant(0), fc.double({ min: 1e-9, max: 1e9, noNaN: true })), {
        minLength: 1,
        maxLength: 60,
      }),
      fc.integer({ min: 0, max: 80 }),
      fc.integer(),
      (weights, k, seed) => {
        const w = Float64Array.from(weights);
        const got = new WeightedSampler(w).sample(k, rng(seed));
        const positive = weights.filter((x) => x > 0).length;
        assert.equal(got.length, Math.min(k, positive));
        assert.equal(new Set(got).size, got.length);
        for (const i of got) assert.ok(w[i]! > 0);
      },
    ),
  );
});

Deno.test("Selection.pick: newcomers get about 5% of the picks together, and the rest fill in when short", () => {
  const random = rng(5);
  const all = candidates(10_000, random, 0.5);
  const sel = new Selection(all, { random });
  let fresh = 0, picked = 0;
  for (let i = 0; i < 2_000; i++) {
    const got = sel.pick(24);
    assert.equal(got.length, 24);
    assert.equal(new Set(got.map((c) => c.peer)).size, 24);
    picked += got.length;
    fresh += got.filter((c) => !c.vetted).length;
  }
  const share = fresh / picked;
  assert.ok(share > 0.04 && share < 0.06, `newcomers got ${share}`);
  // Only 3 vetted: the newcomers fill the stripe.
  const few = [
    ...candidates(3, random, 0).map((c) => ({ ...c, vetted: true })),
    ...candidates(50, random, 1),
  ];
  const got = new Selection(few, { random }).pick(24);
  assert.equal(got.length, 24);
  assert.equal(got.filter((c) => c.vetted).length, 3);
});

Deno.test("order: a zero score is never asked; prefer=cheap puts the cheap first, prefer=fast the fast", () => {
  const random = rng(9);
  const list: Candidate[] = [
    { peer: "dear-fast", score: 1, vetted: true, price: 100, ttfbMs: 5 },
    { peer: "cheap-slow", score: 1, vetted: true, price: 1, ttfbMs: 200 },
    { peer: "excluded", score: 0, vetted: true, price: 0, ttfbMs: 1 },
  ];
  const firsts = (prefer: "cheap" | "fast") => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 2_000; i++) {
      const o = order(list, { prefer, random });
      assert.ok(!o.some((c) => c.peer === "excluded"));
      seen.set(o[0]!.peer, (seen.get(o[0]!.peer) ?? 0) + 1);
    }
    return seen;
  };
  const cheap = firsts("cheap");
  assert.ok(
    cheap.get("cheap-slow")! > 3 * (cheap.get("dear-fast") ?? 0),
    JSON.stringify([...cheap]),
  );
  const fast = firsts("fast");
  assert.ok(fast.get("dear-fast")! > 3 * (fast.get("cheap-slow") ?? 0), JSON.stringify([...fast]));
});

Deno.test("weightsOf: the score weighs in, and a score 10x lower weighs at least ~10x less", () => {
  const w = weightsOf([
    { peer: "a", score: 1, vetted: true },
    { peer: "b", score: 0.1, vetted: true },
  ]);
  assert.ok(w[0]! / w[1]! >= 9.99, String(w[0]! / w[1]!));
});

Deno.test("order(): the newcomers' share shelters a vetted operator that serves well, not one far worse than them", () => {
  const random = rng(5);
  const fresh = Array.from({ length: 4 }, (_, i) => ({ peer: `new${i}`, score: 1, vetted: false }));
  const firstFresh = (vetted: Candidate) => {
    let n = 0;
    for (let i = 0; i < 4000; i++) {
      if (!order([vetted, ...fresh], { random })[0]!.vetted) n++;
    }
    return n / 4000;
  };
  // A vetted operator as good as the newcomers: they get their 5% of first asks, no more.
  const good = firstFresh({ peer: "v", score: 1, vetted: true, ttfbMs: 20 });
  assert.ok(good > 0.03 && good < 0.07, `newcomers first ${good}`);
  // One at the floor (slow, say): drawn with the newcomers by weight, so they go first nearly always.
  const slow = firstFresh({ peer: "v", score: 0.1, vetted: true, ttfbMs: 2000 });
  assert.ok(slow > 0.9, `newcomers first ${slow}`);
});
