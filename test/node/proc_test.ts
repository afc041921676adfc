/** The /proc readings benchmarks and the simulation report: CPU time grows with work, memory is resident. */
import assert from "node:assert/strict";
import { cpuMs, rssBytes } from "../../src/proc.ts";

Deno.test("cpuMs counts this process's work, and a child's apart from it; rssBytes is its resident memory", async () => {
  const before = cpuMs();
  const end = performance.now() + 200;
  let x = 0;
  while (performance.now() < end) x += Math.sqrt(x + 1);
  assert.ok(x > 0);
  const spent = cpuMs() - before;
  assert.ok(spent >= 30 && spent <= 1000, `200 ms of busy loop counted as ${spent} ms`);

  // A child that sleeps uses next to no CPU; its own, not this process's, is what cpuMs(pid) gives.
  const child = new Deno.Command("sleep", { args: ["0.3"] }).spawn();
  try {
    assert.ok(cpuMs(child.pid) < 100);
    assert.ok(rssBytes(child.pid) > 0);
  } finally {
    await child.status;
  }
  const rss = rssBytes();
  assert.ok(rss > 10 * 1024 * 1024 && rss < 4 * 1024 ** 3, `RSS ${rss}`);
});
