import assert from "node:assert/strict";
import { cidOf, matchesCid } from "../../src/content/cid.ts";
import { DRILL, drillAway, drillSource, parseDrill } from "../../src/mesh/drill.ts";
import { MemorySource } from "./_helpers.ts";
import { rng } from "../../src/reputation/sim.ts";

const bytes = new Uint8Array(4096).map((_, i) => i);
const cid = cidOf(bytes);
const store = new MemorySource();
await store.put(cid, bytes);

Deno.test("drill liar: every chunk it serves fails its CID", async () => {
  const liar = drillSource(store, "liar", rng(1));
  for (let i = 0; i < 20; i++) assert.ok(!matchesCid(cid, (await liar.get(cid))!));
  assert.ok(matchesCid(cid, (await store.get(cid))!), "the store itself is untouched");
});

Deno.test("drill flaky: about 30% of requests fail", async () => {
  const flaky = drillSource(store, "flaky", rng(2));
  let failed = 0;
  for (let i = 0; i < 2000; i++) await flaky.get(cid).catch(() => failed++);
  assert.ok(Math.abs(failed / 2000 - DRILL.flakyShare) < 0.04, String(failed));
});

Deno.test("drill slow: at least 200 ms per request", async () => {
  const slow = drillSource(store, "slow");
  const t0 = performance.now();
  assert.deepEqual(await slow.get(cid), bytes);
  assert.ok(performance.now() - t0 >= DRILL.slowFloorMs - 5);
});

Deno.test("drill offline: away 20 s of each minute, then back", () => {
  assert.ok(drillAway(0, 1_000));
  assert.ok(!drillAway(0, 30_000));
  assert.ok(drillAway(0, 61_000));
  assert.throws(() => parseDrill("sloth"), /liar, slow, flaky, offline/);
});
