/**
 * Where a 2-node mesh read and write spend their time: a holder process (`serve`) and an in-process
 * MeshgateNode whose mesh calls are timed. Prints per stage (locate rounds, chunk requests, first byte,
 * consumer), how many requests were in flight on average, and the CPU each process used.
 * `deno run -A bench/_profile_mesh.ts [MiB] [--cpu]` (--cpu: the in-process node's CPU profile)
 */
import process from "node:process";
import { spawnNode, waitForPeers } from "../src/cluster.ts";
import { cpuMs } from "../src/proc.ts";
import { MeshgateNode } from "../src/node.ts";
import { LOOPBACK_MESH } from "../src/cluster.ts";
import { CID } from "../src/content/cid.ts";
import { blake3 } from "../src/kernels/mod.ts";
import { Session } from "node:inspector/promises";
import { type CpuProfile, summarize } from "./_cpu_profile.ts";

/** The in-process node's CPU profile, self time by function, top `n` (with --cpu). */
const inspector = new Session();
inspector.connect();
const profiling = Deno.args.includes("--cpu");
async function profileStart() {
  if (!profiling) return;
  await inspector.post("Profiler.enable");
  await inspector.post("Profiler.setSamplingInterval", { interval: 500 });
  await inspector.post("Profiler.start");
}
async function profileStop(n = 25) {
  if (!profiling) return;
  const { profile } = await inspector.post("Profiler.stop") as unknown as { profile: CpuProfile };
  for (const line of summarize(profile, n)) console.log(line);
}

const MiB = 1024 * 1024;
const SIZE = Number(Deno.args.find((a) => !a.startsWith("--")) ?? 64) * MiB;
const dir = await Deno.makeTempDir({ prefix: "meshgate-profile-" });
const file = new Uint8Array(SIZE);
for (let at = 0; at < SIZE; at += 65536) crypto.getRandomValues(file.subarray(at, at + 65536));

/** CPU seconds of process `pid`. */
const cpuOf = (pid: number) => cpuMs(pid) / 1000;
type Span = { t0: number; t1: number };
const spans = (list: Span[], wall: number) => {
  const sum = list.reduce((s, x) => s + x.t1 - x.t0, 0);
  const sorted = list.map((x) => x.t1 - x.t0).sort((a, b) => a - b);
  return `${list.length} calls, mean ${(sum / list.length || 0).toFixed(1)} ms, p50 ${
    (sorted[sorted.length >> 1] ?? 0).toFixed(1)
  } ms, p95 ${
    (sorted[Math.floor(sorted.length * 0.95)] ?? 0).toFixed(1)
  } ms, in flight on average ${(sum / wall).toFixed(1)}`;
};

const holder = await spawnNode(["--data", `${dir}/a`], { stderr: "null" });
try {
  const res = await fetch(`${holder.url}/mesh?name=f.bin`, { method: "POST", body: file });
  const { cid } = await res.json() as { cid: string };
  const node = await MeshgateNode.create({
    dataDir: `${dir}/r`,
    mesh: { listen: [LOOPBACK_MESH[2]!], bootstrap: [holder.multiaddrs[0]!] },
  });
  try {
    await waitForPeers(holder.url, 1);
    const mesh = node.mesh!;
    const fetches: Span[] = [];
    const has: Span[] = [];
    const stores: Span[] = [];
    const proves: Span[] = [];
    const wrap = <K extends "fetchChunk" | "hasChunks" | "storeChunks" | "proveChunks">(
      name: K,
      into: Span[],
    ) => {
      const real = (mesh[name] as (...a: unknown[]) => Promise<unknown>).bind(mesh);
      (mesh as unknown as Record<string, unknown>)[name] = async (...a: unknown[]) => {
        const s = { t0: performance.now(), t1: 0 };
        try {
          return await real(...a);
        } finally {
          s.t1 = performance.now();
          into.push(s);
        }
      };
    };
    wrap("fetchChunk", fetches);
    // Batched reads (mesh/batch.ts) go through fetchChunks: a span per request, and when its first chunk came.
    const batches: (Span & { first: number; chunks: number })[] = [];
    {
      const real = mesh.fetchChunks.bind(mesh);
      (mesh as unknown as Record<string, unknown>).fetchChunks = async function* (
        ...a: Parameters<typeof real>
      ) {
        const s = { t0: performance.now(), t1: 0, first: 0, chunks: 0 };
        try {
          for await (const got of real(...a)) {
            s.first ||= performance.now();
            s.chunks++;
            yield got;
          }
        } finally {
          s.t1 = performance.now();
          batches.push(s);
        }
      };
    }
    wrap("hasChunks", has);
    wrap("storeChunks", stores);
    wrap("proveChunks", proves);

    const manifest = await node.manifest(CID.parse(cid));
    for (const label of ["read 1 (cold locator)", "read 2"]) {
      fetches.length = has.length = batches.length = 0;
      const cpu0 = [process.cpuUsage(), cpuOf(holder.pid)] as const;
      const t0 = performance.now();
      let first = 0;
      let n = 0;
      let waiting = 0;
      if (label === "read 2") await profileStart();
      const reader = node.read(manifest).getReader();
      for (;;) {
        const w = performance.now();
        const { value, done } = await reader.read();
        waiting += performance.now() - w;
        if (done) break;
        if (!first) first = performance.now() - t0;
        n += value.length;
      }
      const wall = performance.now() - t0;
      const cpu = process.cpuUsage(cpu0[0]);
      console.log(
        `\n${label}: ${n / MiB} MiB in ${wall.toFixed(0)} ms = ${
          (n / MiB / wall * 1000).toFixed(0)
        } MiB/s, first byte ${first.toFixed(0)} ms, consumer waited ${waiting.toFixed(0)} ms`,
      );
      if (label === "read 2") await profileStop();
      console.log(`  fetchChunk: ${spans(fetches, wall)}`);
      console.log(`  fetchChunks (batches): ${spans(batches, wall)}`);
      const firsts = batches.map((b) => b.first - b.t0).sort((x, y) => x - y);
      console.log(
        `    first chunk after p50 ${
          (firsts[firsts.length >> 1] ?? 0).toFixed(1)
        } ms, chunks per batch ${
          (batches.reduce((n, b) => n + b.chunks, 0) / batches.length).toFixed(1)
        }`,
      );
      console.log(`  hasChunks (locate): ${spans(has, wall)}`);
      console.log(
        `  CPU: reader ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s, holder ${
          (cpuOf(holder.pid) - cpu0[1]).toFixed(2)
        } s (of ${(wall / 1000).toFixed(2)} s wall)`,
      );
    }
    const t = performance.now();
    for (let i = 0; i < 20; i++) blake3(file.subarray(i * 262144, (i + 1) * 262144));
    console.log(
      `  verify: blake3 of a 256 KiB chunk ${((performance.now() - t) / 20).toFixed(2)} ms`,
    );

    // The write: an upload into the in-process node, placed on the holder.
    const cpu0 = [process.cpuUsage(), cpuOf(holder.pid)] as const;
    const t0 = performance.now();
    const other = file.slice();
    other[0]! ^= 1;
    other[SIZE - 1]! ^= 1;
    other[SIZE >> 1]! ^= 1;
    await profileStart();
    await node.put(ReadableStream.from([other]));
    await profileStop();
    const wall = performance.now() - t0;
    const firstStore = Math.min(...stores.map((s) => s.t0)) - t0;
    const cpu = process.cpuUsage(cpu0[0]);
    console.log(
      `\nput: ${SIZE / MiB} MiB in ${wall.toFixed(0)} ms = ${
        (SIZE / MiB / wall * 1000).toFixed(0)
      } MiB/s; first chunk sent to the peer at ${firstStore.toFixed(0)} ms`,
    );
    console.log(`  storeChunks: ${spans(stores, wall)}`);
    console.log(`  proveChunks: ${spans(proves, wall)}`);
    console.log(
      `  CPU: uploader ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s, holder ${
        (cpuOf(holder.pid) - cpu0[1]).toFixed(2)
      } s`,
    );
  } finally {
    await node.stop();
  }
} finally {
  await holder.stop();
  await Deno.remove(dir, { recursive: true });
}
Deno.exit(0);
