/**
 * Mesh transfer, measured against its ceiling in one run: a 64 MiB file over loopback.
 *
 * - ceiling: one libp2p stream between two processes, with the node's own transport, noise and yamux
 *   settings (`_stream_peer.ts`), read as fast as it comes;
 * - Meshgate, 2 nodes: node A holds the file, node B (holding none of it) serves it over HTTP; put is
 *   through A while B is its peer (placement included);
 * - Meshgate, 8 nodes: 7 holders, the file put through node 0, read through an 8th node that holds none.
 *
 * Each put and get is printed in MiB/s and as a ratio to the ceiling, beside the first byte of a mid-file
 * range (as a video player seeking asks) and the reader's peak RSS during the gets. Medians of ROUNDS.
 *
 * `deno task bench:mesh [--size MiB] [--rounds N] [--only 2|8] [--old DIR]`: `--old` also runs the
 * Meshgate rows with another tree's `src/cli.ts` (e.g. a `git archive` of an older commit with this
 * tree's node_modules linked in), each old row right before its new one, so both see the same machine.
 */
import { parseArgs } from "node:util";
import { multiaddr } from "@multiformats/multiaddr";
import { type NodeProcess, spawnNode, startCluster, waitForPeers } from "../src/cluster.ts";
import { cpuMs } from "../src/proc.ts";
import { createMeshNode } from "../src/mesh/node.ts";
import { postStream } from "../test/_util.ts";
import { BLAST_PROTOCOL } from "./_stream_peer.ts";
import { randomFile, streamOf } from "./_bytes.ts";

const MiB = 1024 * 1024;
const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    size: { type: "string", default: "64" },
    rounds: { type: "string", default: "3" },
    only: { type: "string" },
    old: { type: "string" },
    settle: { type: "string", default: "15" },
  },
});
const SIZE = Number(flags.size) * MiB;
const ROUNDS = Number(flags.rounds);
/** Seconds the 8-node mesh gets after the puts, before reading: the holders announce their chunks. */
const SETTLE_S = Number(flags.settle);

const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const rate = (bytes: number, ms: number) => bytes / MiB / (ms / 1000);

/** CPU ms a process spent per MiB moved, by role: where a transfer's time goes, and what the cores allow. */
interface Cpu {
  /** The process that sends (the stream's sender, the holders, the uploader). */
  send: number;
  /** The process that receives from the mesh (the stream's reader, the reading node, the put's peers). */
  recv: number;
  /** This process, as the HTTP client (none for the ceiling). */
  client: number;
}

/** Runs `fn` and returns the CPU each role spent on it, per MiB of `bytes`. */
async function metered<T>(
  bytes: number,
  send: () => number,
  recv: () => number,
  fn: () => Promise<T>,
): Promise<[T, Cpu]> {
  const at = { send: send(), recv: recv(), client: cpuMs() };
  const value = await fn();
  const per = (ms: number) => ms / (bytes / MiB);
  return [value, {
    send: per(send() - at.send),
    recv: per(recv() - at.recv),
    client: per(cpuMs() - at.client),
  }];
}

/** The median of each role's CPU per MiB. */
const medianCpu = (xs: Cpu[]): Cpu => ({
  send: median(xs.map((x) => x.send)),
  recv: median(xs.map((x) => x.recv)),
  client: median(xs.map((x) => x.client)),
});

/** The ceiling: MiB/s of one stream of SIZE bytes from a child process, median of ROUNDS. */
async function ceiling(): Promise<{ rate: number; cpu: Cpu }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./_stream_peer.ts", import.meta.url).pathname, String(SIZE)],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!/^mesh: \S+\n/m.test(seen)) {
    const { value, done } = await lines.read();
    if (done) throw new Error(`the stream peer exited: ${seen}`);
    seen += value;
  }
  const addr = /^mesh: (\S+)$/m.exec(seen)![1]!;
  const client = await createMeshNode({ listen: ["/ip4/127.0.0.1/tcp/0"] });
  try {
    const rates: number[] = [];
    const cpus: Cpu[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const t = performance.now();
      // The reader is this process here, and there is no HTTP client.
      const [, cpu] = await metered(SIZE, () => cpuMs(child.pid), () => cpuMs(), async () => {
        const stream = await client.libp2p.dialProtocol(multiaddr(addr), BLAST_PROTOCOL);
        let n = 0;
        for await (const data of stream) n += data.byteLength;
        if (n !== SIZE) throw new Error(`the stream gave ${n} of ${SIZE} bytes`);
      });
      rates.push(rate(SIZE, performance.now() - t));
      cpus.push({ ...cpu, client: 0 });
    }
    return { rate: median(rates), cpu: medianCpu(cpus) };
  } finally {
    await client.stop();
    child.kill("SIGTERM");
    await child.status;
    lines.cancel().catch(() => {});
  }
}

interface Row {
  label: string;
  put: number;
  get: number;
  firstByteMs: number;
  readerRssMiB: number;
  putCpu: Cpu;
  getCpu: Cpu;
}

/** The CPU all of `nodes` have used, ms. */
const cpuOf = (nodes: NodeProcess[]) => () => nodes.reduce((sum, n) => sum + n.cpuMs(), 0);

/** A put through `node` while `peers` take chunks: its CID, MiB/s and the CPU per MiB of each role. */
async function put(
  node: NodeProcess,
  peers: NodeProcess[],
  bytes: Uint8Array,
  name: string,
): Promise<[string, number, Cpu]> {
  const t = performance.now();
  const [cid, cpu] = await metered(bytes.length, cpuOf([node]), cpuOf(peers), async () => {
    const res = await postStream(`${node.url}/mesh?name=${name}`, streamOf(bytes), bytes.length);
    if (!res.ok) throw new Error(`put failed: ${res.status} ${await res.text()}`);
    return (await res.json() as { cid: string }).cid;
  });
  return [cid, rate(bytes.length, performance.now() - t), cpu];
}

/** First byte of mid-file ranges and whole-file gets of `cid` through `reader`, ROUNDS each. */
async function reads(reader: NodeProcess, holders: NodeProcess[], cid: string) {
  const firstByte: number[] = [];
  const gets: number[] = [];
  const cpus: Cpu[] = [];
  let rss = reader.rss();
  const sampler = setInterval(() => rss = Math.max(rss, reader.rss()), 50);
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const start = Math.floor(SIZE / 2 + round * 3 * MiB + 12345);
      let t = performance.now();
      const res = await fetch(`${reader.url}/mesh/${cid}`, {
        headers: { Range: `bytes=${start}-` },
      });
      const body = res.body!.getReader();
      await body.read();
      firstByte.push(performance.now() - t);
      await body.cancel();

      t = performance.now();
      const [, cpu] = await metered(SIZE, cpuOf(holders), cpuOf([reader]), async () => {
        const whole = await fetch(`${reader.url}/mesh/${cid}`);
        let n = 0;
        for await (const piece of whole.body!) n += piece.length;
        if (n !== SIZE) throw new Error(`got ${n} of ${SIZE} bytes`);
      });
      gets.push(rate(SIZE, performance.now() - t));
      cpus.push(cpu);
    }
  } finally {
    clearInterval(sampler);
  }
  return {
    get: median(gets),
    firstByteMs: median(firstByte),
    readerRssMiB: rss / MiB,
    getCpu: medianCpu(cpus),
  };
}

/** Node A holds a file (put while alone); B, holding none of it, serves it; puts go through A with B. */
async function twoNodes(label: string, cli?: string): Promise<Row> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-bench-mesh2-" });
  const nodes: NodeProcess[] = [];
  try {
    const a = await spawnNode(["--data", `${dir}/a`], { stderr: "null", cli });
    nodes.push(a);
    const [cid] = await put(a, [], randomFile(SIZE), "held.bin");
    const b = await spawnNode(["--data", `${dir}/b`, "--bootstrap", a.multiaddrs[0]!], {
      stderr: "null",
      cli,
    });
    nodes.push(b);
    await waitForPeers(a.url, 1);
    await waitForPeers(b.url, 1);
    const puts: number[] = [];
    const cpus: Cpu[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const [, r, cpu] = await put(a, [b], randomFile(SIZE), `put-${round}.bin`);
      puts.push(r);
      cpus.push(cpu);
    }
    return { label, put: median(puts), putCpu: medianCpu(cpus), ...await reads(b, [a], cid) };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await Deno.remove(dir, { recursive: true });
  }
}

/** 7 holders, puts through node 0; an 8th node holding none of the file reads it. */
async function eightNodes(label: string, cli?: string): Promise<Row> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-bench-mesh8-" });
  const cluster = await startCluster({ nodes: 7, dir, stderr: "null", cli });
  try {
    const a = cluster.nodes[0]!;
    const puts: number[] = [];
    const cpus: Cpu[] = [];
    let cid = "";
    for (let round = 0; round < ROUNDS; round++) {
      const [c, r, cpu] = await put(
        a,
        cluster.nodes.slice(1),
        randomFile(SIZE),
        `put-${round}.bin`,
      );
      cid ||= c;
      puts.push(r);
      cpus.push(cpu);
    }
    const h = await spawnNode(["--data", `${dir}/h`, "--bootstrap", a.multiaddrs[0]!], {
      stderr: "null",
      cli,
    });
    try {
      await waitForPeers(h.url, 6);
      await new Promise((r) => setTimeout(r, SETTLE_S * 1000));
      return {
        label,
        put: median(puts),
        putCpu: medianCpu(cpus),
        ...await reads(h, cluster.nodes, cid),
      };
    } finally {
      await h.stop();
    }
  } finally {
    await cluster.stop();
    await Deno.remove(dir, { recursive: true });
  }
}

const oldCli = flags.old
  ? new URL(`${flags.old}/src/cli.ts`, `file://${Deno.cwd()}/`).pathname
  : "";
const started = performance.now();
const { rate: top, cpu: topCpu } = await ceiling();
const rows: Row[] = [];
const runs: [string, (label: string, cli?: string) => Promise<Row>][] = [];
if (flags.only !== "8") runs.push(["2 nodes", twoNodes]);
if (flags.only !== "2") runs.push(["8 nodes", eightNodes]);
for (const [name, run] of runs) {
  if (oldCli) rows.push(await run(`meshgate ${name} (old: ${flags.old})`, oldCli));
  rows.push(await run(`meshgate ${name}`));
}
const x = (v: number) => `${(v / top).toFixed(2)}x`;
const table = [
  ["", "put MiB/s", "of ceiling", "get MiB/s", "of ceiling", "range 1st byte", "reader RSS"],
  ["libp2p stream, TCP + noise + yamux", "", "", top.toFixed(0), "1.00x", "", ""],
  ...rows.map((r) => [
    r.label,
    r.put.toFixed(0),
    x(r.put),
    r.get.toFixed(0),
    x(r.get),
    `${r.firstByteMs.toFixed(0)} ms`,
    `${r.readerRssMiB.toFixed(0)} MiB`,
  ]),
];
/** Prints `rows` under `title`, the first column left-aligned and the others right-aligned. */
function printTable(title: string, rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  console.log(`\n  ${title}`);
  for (const r of rows) {
    console.log(
      "    " + r.map((c, i) => i ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)).join("  "),
    );
  }
}
printTable(
  `mesh transfer ${SIZE / MiB} MiB, loopback (medians of ${ROUNDS}; get: the reader holds none ` +
    `of the file; ceiling: one stream between two processes)`,
  table,
);
// Where the CPU goes, per MiB moved: a role at 1000 ms/MiB can move at most 1 MiB/s on its core, and all
// of them together share this machine's cores.
const cores = navigator.hardwareConcurrency;
const cpuRow = (label: string, c: Cpu, client = c.client.toFixed(2)) => [
  label,
  c.send.toFixed(2),
  c.recv.toFixed(2),
  client,
  (cores * 1000 / (c.send + c.recv + c.client)).toFixed(0),
];
printTable("where the CPU goes (medians; all threads of each process)", [
  ["CPU ms per MiB", "sender", "receiver", "HTTP client", `${cores}-core bound MiB/s`],
  cpuRow("libp2p stream (sender, reader)", topCpu, ""),
  ...rows.flatMap((r) => [
    cpuRow(`${r.label} get (holders, reader)`, r.getCpu),
    cpuRow(`${r.label} put (uploader, peers)`, r.putCpu),
  ]),
]);
console.log(`  (${((performance.now() - started) / 1000).toFixed(0)} s)`);
await Deno.mkdir(new URL("./out/", import.meta.url), { recursive: true });
await Deno.writeTextFile(
  new URL("./out/mesh.json", import.meta.url),
  JSON.stringify({ size: SIZE, rounds: ROUNDS, ceiling: top, ceilingCpu: topCpu, rows }, null, 1),
);
// The ceiling's client leaves libp2p timers behind that would keep the process alive.
Deno.exit(0);
