/**
 * `deno task simulate-lookups [--nodes N] [--clients N] [--json]`: a light client's paid lookup through an
 * operator against its own cold DHT walk, in the in-process mesh of src/mesh/sim.ts (src/mesh/sim_lookup.ts);
 * prints the two rows and their ratio (the target: the paid lookup's median at most a third of the walk's).
 */
import { parseArgs } from "node:util";
import { formatLookupReport, simulateLookups } from "../src/mesh/sim_lookup.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    nodes: { type: "string", default: "100" },
    clients: { type: "string", default: "20" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log("deno task simulate-lookups [--nodes 100] [--clients 20] [--json]");
  Deno.exit(0);
}
const count = (name: string, v: string, min: number) => {
  const x = Number(v);
  if (!Number.isInteger(x) || x < min) {
    console.error(`--${name} "${v}" must be an integer >= ${min}`);
    Deno.exit(2);
  }
  return x;
};
const report = await simulateLookups({
  nodes: count("nodes", values.nodes, 10),
  clients: count("clients", values.clients, 1),
  log: (line) => console.error(line),
});
console.log(values.json ? JSON.stringify(report, null, 2) : formatLookupReport(report));
// libp2p's peer-store lock keeps a BroadcastChannel open (see test/mesh/_helpers.ts).
Deno.exit(0);
