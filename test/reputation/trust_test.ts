import assert from "node:assert/strict";
import { type Attested, TrustGraph } from "../../src/reputation/trust.ts";
import { rng } from "../../src/reputation/sim.ts";

/** Dense reference: t ← (1−a)·Cᵀt + a·p, rows without positive trust replaced by p, iterated to the end. */
function reference(self: string, attested: Attested[], restart: number, iterations: number) {
  const ids = [self];
  const at = new Map([[self, 0]]);
  const id = (x: string) => {
    if (!at.has(x)) {
      at.set(x, ids.length);
      ids.push(x);
    }
    return at.get(x)!;
  };
  const s = new Map<string, number>();
  for (const a of attested) {
    id(a.from);
    id(a.about);
    if (a.from !== a.about && a.satisfaction > 0) {
      s.set(`${id(a.from)},${id(a.about)}`, a.satisfaction);
    }
  }
  const n = ids.length;
  const c = Array.from({ length: n }, () => new Array(n).fill(0));
  for (const [k, v] of s) {
    const [i, j] = k.split(",").map(Number);
    c[i!]![j!] = v;
  }
  for (let i = 0; i < n; i++) {
    const sum = c[i]!.reduce((a: number, b: number) => a + b, 0);
    if (sum === 0) c[i]![0] = 1;
    else for (let j = 0; j < n; j++) c[i]![j] /= sum;
  }
  let t = new Array(n).fill(0);
  t[0] = 1;
  for (let k = 0; k < iterations; k++) {
    const next = new Array(n).fill(0);
    for (let i = 0; i < n; i++) {
      const dangling = c[i]![0] === 1 && c[i]!.every((x: number, j: number) => j === 0 || x === 0);
      for (let j = 0; j < n; j++) next[j] += (dangling ? 1 : 1 - restart) * t[i] * c[i]![j]!;
      if (!dangling) next[0] += restart * t[i];
    }
    t = next;
  }
  return { ids, t };
}

Deno.test("TrustGraph matches a dense reference on random graphs", () => {
  for (let seed = 1; seed <= 30; seed++) {
    const random = rng(seed);
    const n = 2 + Math.floor(random() * 30);
    const attested: Attested[] = [];
    for (let e = 0; e < n * 3; e++) {
      attested.push({
        from: `n${Math.floor(random() * n)}`,
        about: `n${Math.floor(random() * n)}`,
        satisfaction: Math.floor(random() * 20) - 5,
      });
    }
    const g = new TrustGraph("n0", attested);
    const t = g.trust({ maxIterations: 40, tolerance: 0 });
    const ref = reference("n0", attested, 0.15, 40);
    assert.deepEqual(g.ids, ref.ids);
    let sum = 0;
    for (let i = 0; i < t.length; i++) {
      sum += t[i]!;
      assert.ok(
        Math.abs(t[i]! - ref.t[i]) < 1e-9,
        `seed ${seed} node ${i}: ${t[i]} vs ${ref.t[i]}`,
      );
    }
    assert.ok(Math.abs(sum - 1) < 1e-9);
  }
});

Deno.test("a clique of 1,000 Sybils praising each other and a bad peer gets no trust; negative words move no one", () => {
  const attested: Attested[] = [
    { from: "me", about: "alice", satisfaction: 50 },
    { from: "me", about: "bob", satisfaction: 30 },
    { from: "alice", about: "carol", satisfaction: 10 },
  ];
  const honestOnly = new TrustGraph("me", attested).trust();
  for (let s = 0; s < 1000; s++) {
    attested.push({ from: `sybil${s}`, about: `sybil${(s + 1) % 1000}`, satisfaction: 1e6 });
    attested.push({ from: `sybil${s}`, about: "mallory", satisfaction: 1e6 });
    attested.push({ from: `sybil${s}`, about: "alice", satisfaction: -1e6 });
  }
  const g = new TrustGraph("me", attested);
  const t = g.trust();
  assert.equal(t[g.indexOf("mallory")!], 0);
  assert.equal(t[g.indexOf("sybil0")!], 0);
  for (const name of ["me", "alice", "bob", "carol"]) {
    assert.ok(
      Math.abs(
        t[g.indexOf(name)!]! -
          honestOnly[new TrustGraph("me", attested.slice(0, 3)).indexOf(name)!]!,
      ) < 1e-12,
      name,
    );
  }
  // Trust follows own experience: alice (50) above bob (30), carol through alice.
  assert.ok(t[g.indexOf("alice")!]! > t[g.indexOf("bob")!]!);
  assert.ok(t[g.indexOf("carol")!]! > 0);
});
