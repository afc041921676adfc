/**
 * `deno task simulate [--nodes N] [--hour-ms MS] [--churn SHARE] [--json]`: real mesh nodes in one
 * process over `@libp2p/memory`, with latency, loss and churn (src/mesh/sim.ts); prints one summary table.
 * (`deno task simulate:reputation` is the reputation simulation.)
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
    lookups: { type: "string", default: "200" },
    light: { type: "string", default: "20" },
    latency: { type: "string", default: "5,40" },
    loss: { type: "string", default: "0.01" },
    refresh: { type: "string", default: "0" },
    json: { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    "wall-clock": { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "deno task simulate [--nodes 1000] [--hour-ms 60000] [--churn 0.2] [--records 100] [--files 8] [--lookups 200] [--light 20] [--latency 5,40] [--loss 0.01] [--refresh 0] [--wall-clock] [--profile] [--json]",
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
// --profile: V8's sampling profiler over the whole run, summed by package (where the one thread's time goes).
const profiler = values.profile ? await startProfile() : undefined;
const report = await simulateMesh({
  nodes: num("nodes", values.nodes),
  hourMs: num("hour-ms", values["hour-ms"]),
  churnPerHour: num("churn", values.churn),
  records: num("records", values.records),
  files: num("files", values.files),
  lookups: num("lookups", values.lookups),
  lightClients: num("light", values.light),
  dilation: values["wall-clock"] ? false : {},
  latencyMs: values.latency.split(",").map((v) => num("latency", v)) as [number, number],
  loss: num("loss", values.loss),
  refreshRounds: num("refresh", values.refresh),
  dialLoss: num("loss", values.loss),
  log: (line) => console.error(`[${new Date().toISOString().slice(11, 19)}] ${line}`),
});
console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
if (profiler) console.error(await profiler());
// mortice's BroadcastChannel keeps the process alive after every node stopped (see test/mesh/_helpers.ts).
Deno.exit(0);

/** Starts V8's CPU profiler; the function it returns stops it and sums self time by package and function. */
async function startProfile(): Promise<() => Promise<string>> {
  const { Session } = await import("node:inspector");
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) =>
      session.post(method, params, (e: Error | null, r: unknown) => e ? reject(e) : resolve(r as T))
    );
  await post("Profiler.enable");
  await post("Profiler.setSamplingInterval", { interval: 2000 });
  await post("Profiler.start");
  return async () => {
    type Node = {
      id: number;
      callFrame: { functionName: string; url: string; lineNumber: number };
    };
    const { profile } = await post<
      { profile: { nodes: Node[]; samples: number[]; timeDeltas: number[] } }
    >("Profiler.stop");
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const pkg = new Map<string, number>();
    const fn = new Map<string, number>();
    profile.samples.forEach((id, i) => {
      const f = byId.get(id)!.callFrame;
      const dt = profile.timeDeltas[i] ?? 0;
      const m = /node_modules\/\.deno\/([^/]+)\//.exec(f.url);
      const where = m ? m[1]! : f.url ? f.url.replace(/^.*\/(src|bench)\//, "$1/") : "(native)";
      pkg.set(where, (pkg.get(where) ?? 0) + dt);
      const name = `${f.functionName || "(anon)"} ${where}:${f.lineNumber}`;
      fn.set(name, (fn.get(name) ?? 0) + dt);
    });
    const total = [...pkg.values()].reduce((a, b) => a + b, 0);
    const top = (m: Map<string, number>, n: number) =>
      [...m].sort((a, b) => b[1] - a[1]).slice(0, n)
        .map(([k, v]) => `  ${(100 * v / total).toFixed(1).padStart(5)}%  ${k}`).join("\n");
    return `CPU by package:\n${top(pkg, 25)}\nCPU by function:\n${top(fn, 40)}`;
  };
}
