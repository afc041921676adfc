/**
 * Gateway throughput: GET of a stored 1 MiB object through `serve`, beside plain `Deno.serve` returning the
 * same bytes from a file, each loaded by wrk on 127.0.0.1 for a bounded time. Prints requests/s and the ratio.
 */
import { spawnNode } from "../src/cluster.ts";

const SECONDS = Number(Deno.env.get("MESH_BENCH_SECONDS") ?? 8);
const CONNECTIONS = 16;

async function wrk(url: string): Promise<number> {
  const out = await new Deno.Command("wrk", {
    args: ["-t1", `-c${CONNECTIONS}`, `-d${SECONDS}s`, url],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text)?.[1];
  if (!out.success || !rps) {
    throw new Error(`wrk failed: ${text}${new TextDecoder().decode(out.stderr)}`);
  }
  if (/Non-2xx/.test(text)) throw new Error(`wrk saw errors: ${text}`);
  return Number(rps);
}

try {
  await new Deno.Command("wrk", { args: ["--version"], stdout: "null", stderr: "null" }).output();
} catch {
  console.log("\ngateway bench skipped: wrk is not installed (apt-get install wrk)");
  Deno.exit(0);
}

const dir = await Deno.makeTempDir({ prefix: "meshgate-bench-" });
const object = crypto.getRandomValues(new Uint8Array(65536));
const bytes = new Uint8Array(1024 * 1024);
for (let i = 0; i < 16; i++) bytes.set(object, i * 65536);
bytes[0] = 1; // not 16 equal chunks' worth of dedup: make the first chunk differ
await Deno.writeFile(`${dir}/object.bin`, bytes);

const gateway = await spawnNode(["--data", `${dir}/data`]);
const plain = await spawnNode([], {
  command: [
    "run",
    "-A",
    new URL("./_file_server.ts", import.meta.url).pathname,
    `${dir}/object.bin`,
  ],
});
try {
  const res = await fetch(`${gateway.url}/mesh`, { method: "POST", body: bytes });
  const { cid } = await res.json();
  const check = new Uint8Array(await (await fetch(`${gateway.url}/mesh/${cid}`)).arrayBuffer());
  if (check.length !== bytes.length) throw new Error("gateway returned the wrong object");

  const plainRps = await wrk(`${plain.url}/`);
  const gatewayRps = await wrk(`${gateway.url}/mesh/${cid}`);
  console.log(`\n  gateway GET 1 MiB (wrk, ${CONNECTIONS} connections, ${SECONDS} s each)`);
  console.log(`    plain Deno.serve from a file   ${plainRps.toFixed(0).padStart(7)} req/s`);
  console.log(`    meshgate gateway               ${gatewayRps.toFixed(0).padStart(7)} req/s`);
  console.log(`    ratio                          ${(gatewayRps / plainRps).toFixed(2)}x of plain`);
} finally {
  await gateway.stop();
  await plain.stop();
  await Deno.remove(dir, { recursive: true });
}
