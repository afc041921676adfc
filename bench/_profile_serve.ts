/**
 * CPU profiles of real `serve` processes during a mesh transfer, taken through each one's inspector (Deno has
 * no `--cpu-prof`): node A holds a file, node B (holding none) serves it over HTTP, as in `bench/mesh.ts`.
 * Prints, per process, the CPU used and the top functions by self and inclusive time, for a get through B
 * and for a put through A (placed on B). `--nodes 8` reads through an 8th node of a 7-holder mesh instead.
 * `deno run -A bench/_profile_serve.ts [--size MiB] [--top N] [--nodes 2|8] [--only get|put]`
 */
import { parseArgs } from "node:util";
import { type NodeProcess, spawnNode, startCluster, waitForPeers } from "../src/cluster.ts";
import { cpuMs } from "../src/proc.ts";
import { postStream } from "../test/_util.ts";
import { randomFile, streamOf } from "./_bytes.ts";
import { type CpuProfile, foldProfile } from "./_cpu_profile.ts";

const MiB = 1024 * 1024;
const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "64" },
    top: { type: "string", default: "22" },
    nodes: { type: "string", default: "2" },
    only: { type: "string" },
    interval: { type: "string", default: "1000" },
    "no-prof": { type: "boolean", default: false },
    /** Print the stacks (callers) through a function whose name contains this. */
    callers: { type: "string" },
    /** Print the functions whose samples make up this stage. */
    "stage-detail": { type: "string" },
  },
});
const SIZE = Number(flags.size) * MiB;
const TOP = Number(flags.top);

/** A serve process with its inspector open on a free port (its URL is in the process's logs). */
function inspected(args: string[], dir: string): Promise<NodeProcess> {
  return spawnNode(["--data", dir, ...args], {
    stderr: "piped",
    denoFlags: ["--inspect=127.0.0.1:0"],
  });
}

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
class Inspector {
  #ws: WebSocket;
  #id = 0;
  #waiting = new Map<number, (v: unknown) => void>();
  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => {
      const msg = JSON.parse(e.data as string);
      if (msg.id !== undefined) this.#waiting.get(msg.id)?.(msg.result);
    };
  }
  static async of(node: NodeProcess): Promise<Inspector> {
    for (let i = 0; i < 100; i++) {
      const url = /ws:\/\/127\.0\.0\.1:\d+\/[0-9a-f-]+/.exec(node.logs())?.[0];
      if (url) {
        const ws = new WebSocket(url);
        await new Promise((r, j) => (ws.onopen = r, ws.onerror = j));
        return new Inspector(ws);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no inspector address in: ${node.logs()}`);
  }
  post(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = ++this.#id;
    this.#ws.send(JSON.stringify({ id, method, params }));
    return new Promise((r) => this.#waiting.set(id, r));
  }
  close() {
    this.#ws.close();
  }
}

/** CPU seconds of process `pid`. */
const cpuOf = (pid: number) => cpuMs(pid) / 1000;

/** Stages a sample is charged to: the first whose pattern matches a frame of its stack. */
const STAGES: [string, RegExp][] = [
  ["idle", /^\(idle\)/],
  ["garbage collection", /^\(garbage collector\)/],
  ["BLAKE3 verify", /^matchesCid |^blake3 src\/kernels/],
  ["delivery signature", /signDelivery|sign_ed25519|signTagged/],
  ["noise decrypt", /^(chaCha20Poly1305Decrypt|decrypt) /],
  ["noise encrypt", /^(chaCha20Poly1305Encrypt|encrypt) /],
  ["yamux window updates", /^sendWindowUpdate /],
  ["socket write", /^writeBuffer |^Socket\._writeGeneric /],
  ["store read", /^get src\/store\/|readFile ext:deno_fs|op_fs_/],
  [
    "frame copies (concat, Buffer)",
    /uint8arraylist|uint8arrays|^concat |createBuffer|FastBuffer|_copyActual|allocUnsafe/,
  ],
  ["framing + exchange (src/mesh)", /src\/mesh\//],
  [
    "read assembly + HTTP body (src/content, edge, hono)",
    /src\/content\/|edge\/|hono@|ReadableStream|deno_http/,
  ],
  [
    "yamux decode + stream events",
    /libp2p-yamux|abstract-message-stream|abstract-stream|main-event|02_event\.js/,
  ],
  ["socket read", /onStreamRead|socket-to-conn/],
  ["timers", /timers/],
];

function report(name: string, profile: CpuProfile, cpuS: number) {
  // Each sample counts as one interval: a time delta also holds the time the process was not scheduled (a
  // loaded machine), which would be charged to whatever function it was preempted in.
  const interval = Number(flags.interval) / 1000;
  const { self, inclusive, stacks, busyMs: total } = foldProfile(profile, interval);
  if (flags.callers) {
    const through = new Map<string, number>();
    for (const { chain, ms } of stacks) {
      const hit = chain.findIndex((k) => k.includes(flags.callers!));
      if (hit < 0) continue;
      const key = chain.slice(hit, hit + 14).join("\n        <- ");
      through.set(key, (through.get(key) ?? 0) + ms);
    }
    for (const [k, ms] of [...through].sort((a, b) => b[1] - a[1]).slice(0, 4)) {
      console.log(`    ${ms.toFixed(0)} ms in\n        ${k}`);
    }
  }
  // Each sample charged to the first stage (in this order) that a frame of its stack belongs to.
  const staged = new Map<string, number>();
  const detail = new Map<string, number>();
  for (const { chain, ms } of stacks) {
    const stage = STAGES.find(([, re]) => chain.some((k) => re.test(k)))?.[0] ?? "other";
    staged.set(stage, (staged.get(stage) ?? 0) + ms);
    if (flags["stage-detail"] && stage === flags["stage-detail"]) {
      detail.set(chain[0]!, (detail.get(chain[0]!) ?? 0) + ms);
    }
  }
  const line = ([k, ms]: [string, number]) =>
    `      ${ms.toFixed(0).padStart(6)} ms ${(ms / total * 100).toFixed(1).padStart(5)}%  ${k}`;
  console.log(`  ${name}: CPU ${cpuS.toFixed(2)} s; busy samples ${total.toFixed(0)} ms`);
  console.log(`    by stage (ms per MiB moved, share of busy samples):`);
  for (const [k, ms] of [...staged].sort((a, b) => b[1] - a[1])) {
    if (k === "idle") continue;
    console.log(
      `      ${(ms / (SIZE / MiB)).toFixed(2).padStart(6)} ms/MiB ${
        (ms / total * 100).toFixed(1).padStart(5)
      }%  ${k}`,
    );
  }
  for (const [k, ms] of [...detail].sort((a, b) => b[1] - a[1]).slice(0, TOP)) {
    console.log(`        ${ms.toFixed(1).padStart(6)} ms  ${k}`);
  }
  console.log(`    self:`);
  for (const e of [...self].sort((a, b) => b[1] - a[1]).slice(0, TOP)) console.log(line(e));
  console.log(`    inclusive:`);
  for (
    const e of [...inclusive].filter(([k]) =>
      !/^\(root\)|^\(idle\)|^\(anon\) :|^run :|drainTicks|__drainNext|processTicks/.test(k)
    ).sort((a, b) => b[1] - a[1]).slice(0, TOP)
  ) console.log(line(e));
}

async function profiled<T>(
  nodes: [string, NodeProcess][],
  what: string,
  fn: () => Promise<T>,
): Promise<T> {
  const inspectors = flags["no-prof"]
    ? []
    : await Promise.all(nodes.map(([, n]) => Inspector.of(n)));
  for (const i of inspectors) {
    await i.post("Profiler.enable");
    await i.post("Profiler.setSamplingInterval", { interval: Number(flags.interval) });
    await i.post("Profiler.start");
  }
  const cpu0 = nodes.map(([, n]) => cpuOf(n.pid));
  const t = performance.now();
  const out = await fn();
  const wall = performance.now() - t;
  const cpu = nodes.map(([, n], i) => cpuOf(n.pid) - cpu0[i]!);
  console.log(
    `\n${what}: ${SIZE / MiB} MiB in ${wall.toFixed(0)} ms = ${
      (SIZE / MiB / wall * 1000).toFixed(0)
    } MiB/s`,
  );
  if (flags["no-prof"]) {
    nodes.forEach(([name], i) => console.log(`  ${name}: CPU ${cpu[i]!.toFixed(2)} s`));
  }
  for (const [i, ins] of inspectors.entries()) {
    const { profile } = await ins.post("Profiler.stop") as { profile: CpuProfile };
    report(nodes[i]![0], profile, cpu[i]!);
    ins.close();
  }
  return out;
}

async function get(reader: NodeProcess, cid: string) {
  const res = await fetch(`${reader.url}/mesh/${cid}`);
  let n = 0;
  for await (const piece of res.body!) n += piece.length;
  if (n !== SIZE) throw new Error(`got ${n} of ${SIZE}`);
}

async function put(node: NodeProcess, bytes: Uint8Array): Promise<string> {
  const res = await postStream(`${node.url}/mesh?name=f.bin`, streamOf(bytes), bytes.length);
  if (!res.ok) throw new Error(`put failed: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { cid: string }).cid;
}

const dir = await Deno.makeTempDir({ prefix: "meshgate-profile-serve-" });
const all: NodeProcess[] = [];
try {
  if (flags.nodes === "8") {
    const cluster = await startCluster({ nodes: 7, dir, stderr: "null" });
    try {
      const a = cluster.nodes[0]!;
      const cid = await put(a, randomFile(SIZE));
      const h = await inspected(["--bootstrap", a.multiaddrs[0]!], `${dir}/h`);
      all.push(h);
      await waitForPeers(h.url, 6);
      await new Promise((r) => setTimeout(r, 15_000));
      await get(h, cid); // warm: locator, connections
      await profiled(
        [["reader (holds nothing)", h]],
        "8-node get through the reader",
        () => get(h, cid),
      );
    } finally {
      await cluster.stop();
    }
  } else {
    const a = await inspected([], `${dir}/a`);
    all.push(a);
    const cid = await put(a, randomFile(SIZE));
    const b = await inspected(["--bootstrap", a.multiaddrs[0]!], `${dir}/b`);
    all.push(b);
    await waitForPeers(a.url, 1);
    await waitForPeers(b.url, 1);
    if (flags.only !== "put") {
      await get(b, (await put(a, randomFile(4 * MiB))) && cid); // warm the connection
      await profiled([["B (reader)", b], ["A (holder)", a]], "get through B", () => get(b, cid));
    }
    if (flags.only !== "get") {
      await profiled(
        [["A (uploader)", a], ["B (holder)", b]],
        "put through A",
        () => put(a, randomFile(SIZE)),
      );
    }
  }
} finally {
  await Promise.all(all.map((n) => n.stop()));
  await Deno.remove(dir, { recursive: true });
}
Deno.exit(0);
