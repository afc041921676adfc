/**
 * `deno task bench`: runs every `bench/*_bench.ts` (or the files given) with `deno bench --json`, then the
 * gateway benchmark, and prints per group each implementation's time, throughput and how many times faster
 * Meshgate's kernel is. A group whose name ends with a size ("blake3 256 KiB") is reported in MB/s of input.
 * Results are also written to bench/out/results.json.
 */

interface BenchRecord {
  origin: string;
  group: string | null;
  name: string;
  baseline: boolean;
  results: { ok?: { avg: number; min: number; p75: number; n: number }; failed?: unknown }[];
}

const SIZE = /(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)\s*$/;
const UNIT: Record<string, number> = { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 };

function bytesOf(group: string): number | undefined {
  const m = SIZE.exec(group);
  return m ? Number(m[1]) * UNIT[m[2]!]! : undefined;
}

function fmtTime(ns: number): string {
  if (ns < 1e3) return `${ns.toFixed(0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(2)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r.map((c, i) => (i ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ")
  )
    .join("\n");
}

export function report(benches: BenchRecord[]): string {
  const groups = new Map<string, BenchRecord[]>();
  for (const b of benches) {
    const key = b.group ?? b.name;
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  const out: string[] = [];
  for (const [group, members] of groups) {
    const bytes = bytesOf(group);
    const ours = members.find((m) => m.baseline) ??
      members.find((m) => m.name.startsWith("meshgate"));
    const oursAvg = ours?.results[0]?.ok?.avg;
    const rows = [[
      "  " + group,
      "avg",
      bytes ? "MB/s" : "ops/s",
      ours ? `${ours.name} is, vs each` : "",
    ]];
    for (const m of members) {
      const ok = m.results[0]?.ok;
      if (!ok) {
        rows.push([`    ${m.name}`, "failed", "", ""]);
        continue;
      }
      const rate = bytes ? (bytes / 1e6 / (ok.avg / 1e9)).toFixed(0) : (1e9 / ok.avg).toFixed(1);
      // How many times as fast ours is: above 1 we win, below 1 we lose.
      const ratio = oursAvg && m !== ours ? `${(ok.avg / oursAvg).toFixed(2)}x as fast` : "";
      rows.push([`    ${m.name}`, fmtTime(ok.avg), rate, ratio]);
    }
    out.push(table(rows));
  }
  return out.join("\n\n");
}

if (import.meta.main) {
  const files = Deno.args.filter((a) => !a.startsWith("--"));
  const withSystem = !Deno.args.includes("--kernels-only") && files.length === 0;
  const started = performance.now();
  const run = await new Deno.Command(Deno.execPath(), {
    args: ["bench", "-A", "--json", ...(files.length ? files : ["bench/"])],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  // Bench files print notes to stderr; stdout is deno's JSON, from its first line that opens an object.
  const stdout = new TextDecoder().decode(run.stdout);
  const start = stdout.search(/^\{/m);
  const json = start < 0 ? { benches: [] } : JSON.parse(stdout.slice(start));
  console.log(`\nMeshgate benchmarks (${json.cpu ?? "cpu unknown"}, ${json.runtime ?? ""})\n`);
  console.log(report(json.benches));
  await Deno.mkdir(new URL("./out/", import.meta.url), { recursive: true });
  await Deno.writeTextFile(
    new URL("./out/results.json", import.meta.url),
    JSON.stringify(json, null, 1),
  );
  let ok = run.success;
  if (withSystem) {
    // Whole-system benchmarks, each in its own process: the gateway under wrk, mesh transfer (a libp2p
    // stream, 2 and 8 nodes), paid delivery,
    // signed deliveries' cost to reads, the market (seal and open rates, intent propagation), verifiedFetch
    // in Chromium.
    for (
      const script of [
        "./gateway.ts",
        "./mesh.ts",
        "./paid.ts",
        "./signed_read.ts",
        "./market_bench.ts",
        "./browser.ts",
      ]
    ) {
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", new URL(script, import.meta.url).pathname],
        stdout: "inherit",
        stderr: "inherit",
      }).spawn().status;
      ok &&= run.success;
    }
  }
  console.log(`\n(${((performance.now() - started) / 1000).toFixed(0)} s)`);
  if (!ok) Deno.exit(1);
}
