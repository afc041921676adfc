/**
 * The mesh simulation (src/mesh/sim.ts; `deno task simulate --nodes 1000` is the full run): real mesh nodes
 * over in-memory links with latency, loss and 20% churn per hour, compressed, on dilated time (the one
 * thread shares a loaded machine; see src/mesh/_sim_clock.ts).
 *
 * The simulation runs in a child process (this file, run with `deno run`): V8 flags can be given there (a
 * young generation of 64 MiB cuts the collector's share of the run; a test process cannot set it), and its
 * hundreds of nodes' memory and libp2p's leftover timers go with it.
 */
import assert from "node:assert/strict";
import {
  formatReport,
  type MeshSimInit,
  type MeshSimReport,
  simulateMesh,
} from "../../src/mesh/sim.ts";

/** V8 flags of the child: see the module doc. */
export const SIM_V8_FLAGS = "--max-old-space-size=16384,--expose-gc,--max-semi-space-size=64";

if (import.meta.main) {
  const init = JSON.parse(Deno.args[0] ?? "{}") as MeshSimInit;
  const report = await simulateMesh({ dilation: {}, log: (line) => console.error(line), ...init });
  console.log(JSON.stringify(report));
  // mortice's BroadcastChannel keeps the process alive after every node stopped (see test/mesh/_helpers.ts).
  Deno.exit(0);
}

async function simulateInChild(init: MeshSimInit): Promise<MeshSimReport> {
  const root = new URL("../../", import.meta.url);
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=${SIM_V8_FLAGS}`,
      new URL("test/mesh/sim_test.ts", root).pathname,
      JSON.stringify(init),
    ],
    cwd: root.pathname,
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  assert.equal(out.code, 0, `the simulation exited with ${out.code}: ${text.slice(-500)}`);
  return JSON.parse(text.slice(text.lastIndexOf("\n") + 1)) as MeshSimReport;
}

async function check(init: MeshSimInit, minLookups: number) {
  const report = await simulateInChild(init);
  console.log(formatReport(report));
  const n = init.nodes!;
  assert.ok(report.left >= Math.floor(n * 0.2) - 1, `20% of ${n} nodes churned (${report.left})`);
  assert.equal(report.joined, report.left);
  assert.ok(report.all.count >= minLookups, `${report.all.count} lookups`);
  assert.ok(report.all.success >= 0.99, `lookup success ${report.all.success}`);
  assert.ok(
    report.all.hopsMedian <= report.hopBound,
    `median hops ${report.all.hopsMedian} > ${report.hopBound}`,
  );
  assert.ok(report.filesExpected >= 1, "some file kept k live holders per stripe");
  assert.equal(report.filesRead, report.filesExpected, "every such file reads byte-identical");
  assert.equal(report.light.success, 1, "light clients find records");
}

Deno.test(
  "200 nodes, 20% churn per hour: >= 99% of lookups succeed, hops within log2(N)/2 + 2, files read",
  async () => {
    await check({
      nodes: 200,
      hourMs: 10_000,
      records: 6,
      lookups: 30,
      churnLookupConcurrency: 2,
      churnLookupGapMs: 150,
      files: 2,
      k: 4,
      m: 2,
      fileSize: 4 * 4096 - 7, // one stripe
      lightClients: 2,
    }, 90);
  },
);
