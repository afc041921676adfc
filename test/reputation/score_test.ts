import assert from "node:assert/strict";
import {
  audited,
  DEFAULT_SCORE_PARAMS,
  defrauded,
  delivered,
  failedDelivery,
  lookedUp,
  newRecord,
  type PeerRecord,
  rated,
  scoreOf,
} from "../../src/reputation/score.ts";
import { rng } from "../../src/reputation/sim.ts";

/** Feeds `events` requests failing with probability `failRate`; returns the first event at which the record
 * was suspended, or -1. */
function run(failRate: number, events: number, seed = 7): { suspendedAt: number; r: PeerRecord } {
  const random = rng(seed);
  const r = newRecord("p", 0);
  for (let i = 0; i < events; i++) {
    if (random() < failRate) failedDelivery(r, i);
    else delivered(r, 1024, 1, 1, i);
    if (scoreOf(r, undefined).state === "suspended") return { suspendedAt: i, r };
  }
  return { suspendedAt: -1, r };
}

Deno.test("an operator failing 2% of requests is never suspended (Storj's tolerance), over 100,000 requests and 20 seeds", () => {
  for (let seed = 1; seed <= 20; seed++) {
    assert.equal(run(0.02, 100_000, seed).suspendedAt, -1, `seed ${seed}`);
  }
});

Deno.test("an operator failing 6% of requests is suspended, within a few thousand requests", () => {
  for (let seed = 1; seed <= 10; seed++) {
    const { suspendedAt } = run(0.06, 20_000, seed);
    assert.ok(suspendedAt > 0 && suspendedAt < 5_000, `seed ${seed}: ${suspendedAt}`);
  }
});

Deno.test("from a long perfect record, about 41 straight failures suspend (λ 0.999, line 0.96)", () => {
  const r = newRecord("p", 0);
  for (let i = 0; i < 5_000; i++) delivered(r, 1024, 1, 1, i);
  let n = 0;
  while (scoreOf(r, undefined).state !== "suspended") {
    failedDelivery(r, 5_000 + n);
    n++;
  }
  assert.ok(n >= 38 && n <= 44, `${n} failures`);
});

Deno.test("a few early failures suspend no one: a decision waits for 50 requests", () => {
  const r = newRecord("p", 0);
  for (let i = 0; i < 5; i++) failedDelivery(r, i);
  assert.equal(scoreOf(r, undefined).state, "new");
  // But selection already weighs the failures: the reliability factor is at its floor.
  assert.equal(scoreOf(r, undefined).factors.reliability, DEFAULT_SCORE_PARAMS.floor);
});

Deno.test("one proof of fraud excludes at once and for good, whatever the record", () => {
  const r = newRecord("p", 0);
  for (let i = 0; i < 1000; i++) delivered(r, 1024, 1, 1, i);
  defrauded(r, { kind: "bad_bytes", at: 1000, evidence: { cid: "x" } });
  for (let i = 0; i < 1000; i++) delivered(r, 1024, 1, 1, 2000 + i);
  const s = scoreOf(r, undefined);
  assert.equal(s.state, "excluded");
  assert.equal(s.score, 0);
  assert.match(s.reasons[0]!, /bad bytes/);
  // The first proof is the one kept.
  defrauded(r, { kind: "forged_voucher", at: 5000, evidence: {} });
  assert.equal(r.fraud!.kind, "bad_bytes");
});

Deno.test("factors are floored at 0.1: one weak factor costs at most 10x", () => {
  const slow = newRecord("slow", 0);
  for (let i = 0; i < 30; i++) delivered(slow, 1024, 1000, 500, i); // ~1 byte/ms
  const s = scoreOf(slow, 1000); // the typical peer does 1000 bytes/ms
  assert.equal(s.factors.speed, 0.1);
  assert.equal(s.state, "vetted");
  assert.ok(Math.abs(s.score - 0.1) < 1e-9, String(s.score));
  assert.ok(s.reasons.some((x) => /slower/.test(x)));
});

Deno.test("vetting takes 20 verified deliveries; failures do not count toward it", () => {
  const r = newRecord("p", 0);
  for (let i = 0; i < 19; i++) delivered(r, 1024, 1, 1, i);
  for (let i = 0; i < 30; i++) failedDelivery(r, 100 + i);
  assert.equal(scoreOf(r, undefined).state, "new");
  delivered(r, 1024, 1, 1, 200);
  assert.equal(scoreOf(r, undefined).state, "vetted");
});

Deno.test("audits and trade ratings are factors: unseen they weigh 1, failures and bad ratings lower them to the floor", () => {
  const r = newRecord("p", 0);
  for (let i = 0; i < 30; i++) delivered(r, 1024, 1, 1, 0);
  const fresh = scoreOf(r, undefined);
  assert.equal(fresh.factors.audit, 1);
  assert.equal(fresh.factors.trade, 1);
  for (let i = 0; i < 100; i++) audited(r, i % 25 !== 0, 0); // 4% failed
  const a = scoreOf(r, undefined);
  assert.ok(
    a.factors.audit < 0.8 && a.factors.audit > 0.3,
    `4% failed audits weigh ${a.factors.audit}`,
  );
  assert.ok(
    a.reasons.some((x) => x.startsWith("failed storage audits: 4 of 100")),
    a.reasons.join(),
  );
  for (let i = 0; i < 100; i++) audited(r, false, 0);
  assert.equal(scoreOf(r, undefined).factors.audit, DEFAULT_SCORE_PARAMS.floor);
  // One large bad deal outweighs many tiny good ones: ratings weigh by value.
  const t = newRecord("q", 0);
  for (let i = 0; i < 50; i++) rated(t, 1, 0.01);
  rated(t, 0, 10);
  assert.ok(
    scoreOf(t, undefined).factors.trade < 0.2,
    `trade ${scoreOf(t, undefined).factors.trade}`,
  );
  assert.throws(() => rated(t, 2, 1), RangeError);
  assert.throws(() => rated(t, 1, Number.POSITIVE_INFINITY), RangeError);
});

Deno.test("lookups: a failed paid lookup costs a share, a run of them the floor; good ones restore it", () => {
  const r = newRecord("op", 0);
  assert.equal(scoreOf(r, undefined).factors.lookup, 1);
  lookedUp(r, false, 0);
  const one = scoreOf(r, undefined);
  assert.ok(
    one.factors.lookup > 0.3 && one.factors.lookup < 0.5,
    `one failure: ${one.factors.lookup}`,
  );
  assert.ok(
    one.reasons.some((x) => x === "paid lookups that did not deliver: 1 of 1"),
    one.reasons.join(),
  );
  for (let i = 0; i < 4; i++) lookedUp(r, false, 0);
  assert.equal(scoreOf(r, undefined).factors.lookup, DEFAULT_SCORE_PARAMS.floor);
  for (let i = 0; i < 200; i++) lookedUp(r, true, 0);
  assert.ok(scoreOf(r, undefined).factors.lookup > 0.9);
  assert.deepEqual(r.lookups, { good: 200, bad: 5 });
});
