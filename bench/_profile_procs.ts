/**
 * Where a 2-node mesh get spends its CPU in the real processes: a holder and a reader, both `serve`, each
 * CPU-profiled over its inspector while a client GETs a file through the reader (which holds none of it).
 * Prints each process's CPU per MiB and its profile. `deno run -A bench/_profile_procs.ts [MiB]`
 */
import { type NodeProcess, spawnNode, waitForPeers } from "../src/cluster.ts";
import { cpuMs } from "../src/proc.ts";
import { type CpuProfile, summarize } from "./_cpu_profile.ts";
import { randomFile, streamOf } from "./_bytes.ts";
import { postStream } from "../test/_util.ts";

const MiB = 1024 * 1024;
const SIZE = Number(Deno.args[0] ?? 64) * MiB;

/** A `serve` with its inspector open, and a session to it. */
async function inspected(args: string[]) {
  const node = await spawnNode(args, { stderr: "piped", denoFlags: ["--inspect=127.0.0.1:0"] });
  let url: string | undefined;
  for (let i = 0; i < 100 && !url; i++) {
    url = /ws:\/\/127\.0\.0\.1:\d+\/[\w/-]+/.exec(node.logs())?.[0];
    if (!url) await new Promise((r) => setTimeout(r, 50));
  }
  if (!url) throw new Error(`no inspector URL in: ${node.logs()}`);
  const ws = new WebSocket(url);
  await new Promise((r, j) => (ws.onopen = r, ws.onerror = j));
  let id = 0;
  const waiting = new Map<number, (v: unknown) => void>();
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id !== undefined) waiting.get(m.id)?.(m.result), waiting.delete(m.id);
  };
  const post = (method: string, params: unknown = {}) =>
    new Promise<unknown>((resolve) => {
      waiting.set(++id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  await post("Runtime.runIfWaitingForDebugger");
  return { node, post, close: () => ws.close() };
}

const dir = await Deno.makeTempDir({ prefix: "meshgate-profile-procs-" });
const procs: {
  node: NodeProcess;
  post: (m: string, p?: unknown) => Promise<unknown>;
  close(): void;
}[] = [];
try {
  const holder = await inspected(["--data", `${dir}/a`]);
  procs.push(holder);
  const res = await postStream(
    `${holder.node.url}/mesh?name=f.bin`,
    streamOf(randomFile(SIZE)),
    SIZE,
  );
  const { cid } = await res.json() as { cid: string };
  const reader = await inspected([
    "--data",
    `${dir}/b`,
    "--bootstrap",
    holder.node.multiaddrs[0]!,
  ]);
  procs.push(reader);
  await waitForPeers(reader.node.url, 1);
  const get = async () => {
    const t = performance.now();
    let n = 0;
    for await (const piece of (await fetch(`${reader.node.url}/mesh/${cid}`)).body!) {
      n += piece.length;
    }
    if (n !== SIZE) throw new Error(`got ${n} of ${SIZE}`);
    return performance.now() - t;
  };
  await get(); // warm: the locator, the connections, the JIT
  for (const p of procs) {
    await p.post("Profiler.enable");
    await p.post("Profiler.setSamplingInterval", { interval: 200 });
  }
  const cpu0 = [...procs.map((p) => p.node.cpuMs()), cpuMs()];
  for (const p of procs) await p.post("Profiler.start");
  const ms = await get();
  const profiles = await Promise.all(procs.map((p) => p.post("Profiler.stop")));
  const cpu = [...procs.map((p) => p.node.cpuMs()), cpuMs()].map((c, i) => c - cpu0[i]!);
  const per = (c: number) => (c / (SIZE / MiB)).toFixed(2);
  console.log(
    `get ${SIZE / MiB} MiB in ${ms.toFixed(0)} ms = ${
      (SIZE / MiB / (ms / 1000)).toFixed(0)
    } MiB/s ` +
      `(profiled); CPU ms per MiB: holder ${per(cpu[0]!)}, reader ${per(cpu[1]!)}, client ${
        per(cpu[2]!)
      }`,
  );
  for (const [i, name] of ["holder", "reader"].entries()) {
    console.log(`\n${name}:`);
    for (const line of summarize((profiles[i] as { profile: CpuProfile }).profile, 30)) {
      console.log(line);
    }
  }
} finally {
  for (const p of procs) p.close();
  await Promise.all(procs.map((p) => p.node.stop()));
  await Deno.remove(dir, { recursive: true });
}
