/**
 * `deno task simulate-mesh [--nodes N] [--hour-ms MS] [--churn SHARE] [--json]`: real mesh nodes in one
 * process over `@libp2p/memory`, with latency, loss and churn (src/mesh/sim.ts); prints one summary table.
 * (`deno task simulate` is the reputation simulation.)
 */
import { parseArgs } from "node:util";
import { formatReport, simulateMesh } from "../src/mesh/sim.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: "1000" },
    "hour-ms": { type: "string", default: "60000" },
    churn: { type: "string", default: "0.2" },
    records: { type: "string", default: "100" },
    files: { type: "string", default: "8" },
    latency: { type: "string", default: "5,40" },
    loss: { type: "string", default: "0.01" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "deno task simulate-mesh [--nodes 1000] [--hour-ms 60000] [--churn 0.2] [--records 100] [--files 8] [--latency 5,40] [--loss 0.01] [--json]",
  );
  Deno.exit(0);
}
const num = (name: string, v: string) => {
  const x = Number(v);
  if (!Number.isFinite(x) || x < 0) {
    console.error(`--${name} "${v}" must be a non-negative number`);
    Deno.exit(2);
  }
  return x;
};
const report = await simulateMesh({
  nodes: num("nodes", values.nodes),
  hourMs: num("hour-ms", values["hour-ms"]),
  churnPerHour: num("churn", values.churn),
  records: num("records", values.records),
  files: num("files", values.files),
  latencyMs: values.latency.split(",").map((v) => num("latency", v)) as [number, number],
  loss: num("loss", values.loss),
  dialLoss: num("loss", values.loss),
  log: (line) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`),
});
console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
// mortice's BroadcastChannel keeps the process alive after every node stopped (see test/mesh/_helpers.ts).
Deno.exit(0);
