/**
 * Local clusters: real `serve` processes on loopback, wired into one mesh. Used by `deno task cluster`, the
 * integration tests and the mesh benchmark.
 */
import { loadPay } from "./pay/load.ts";
import { cpuMs, rssBytes } from "./proc.ts";
import type { Drill } from "./mesh/drill.ts";

const CLI = new URL("./cli.ts", import.meta.url).pathname;

/** Mesh listeners on free loopback ports, so local nodes never collide on 4001/4002, in local mode (loopback
 * peers are trusted). */
export const LOOPBACK_MESH = [
  "--local",
  "--listen",
  "/ip4/127.0.0.1/tcp/0",
  "--listen",
  "/ip4/127.0.0.1/tcp/0/ws",
];

/** Characters of a piped node's stderr kept for {@link NodeProcess.logs}. */
const LOG_TAIL = 256 * 1024;

/** A node process started by {@link spawnNode}. */
export interface NodeProcess {
  /** Gateway base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  /** Peer ID and mesh multiaddrs as printed at start (none with --no-mesh). */
  peerId?: string;
  multiaddrs: string[];
  /** The pay account, when payments are on. */
  account?: string;
  /** What the node wrote to stderr (its last 256 KiB), when spawned with `stderr: "piped"` (else ""). */
  logs(): string;
  pid: number;
  child: Deno.ChildProcess;
  /** Resident memory of the process in bytes (Linux). */
  rss(): number;
  /** CPU time the process has used so far, user and system, all threads, in ms (Linux). */
  cpuMs(): number;
  /** Sends `signal` (SIGTERM: a graceful stop) and waits; returns the exit code. */
  stop(signal?: Deno.Signal): Promise<number>;
}

export interface SpawnOptions {
  /** Replaces the whole deno command line, for other servers that print `gateway: <url>/` the same way. */
  command?: string[];
  /** Where the node's log lines (stderr) go; `"piped"` keeps them for {@link NodeProcess.logs}. Default: this
   * process's stderr. */
  stderr?: "inherit" | "null" | "piped";
  /** Milliseconds to wait for the node to listen. Default 30 000. */
  timeoutMs?: number;
  /** Another tree's `src/cli.ts` to run (benchmarks compare commits). Default: this tree's. */
  cli?: string;
  /** Flags for `deno run` itself, e.g. `--inspect=127.0.0.1:0` (profiling). Default: none. */
  denoFlags?: string[];
}

/** Starts `serve <args>` (a free gateway port and loopback mesh ports unless `args` say otherwise). */
export async function spawnNode(
  args: string[] = [],
  options: SpawnOptions = {},
): Promise<NodeProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: options.command ??
      [
        "run",
        "-A",
        ...options.denoFlags ?? [],
        options.cli ?? CLI,
        "serve",
        "--port",
        "0",
        ...LOOPBACK_MESH,
        ...args,
      ],
    stdout: "piped",
    stderr: options.stderr ?? "inherit",
  }).spawn();
  let logs = "";
  if (options.stderr === "piped") {
    (async () => {
      for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
        logs = (logs + text).slice(-LOG_TAIL); // bounded: a long-running node logs without end
      }
    })().catch(() => {});
  }
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  let url: string | undefined;
  const timeout = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 30_000);
  try {
    while (!url) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`serve exited before listening; it printed: ${seen}${logs}`);
      seen += value;
      // `serve` prints its gateway, mesh and payment lines, then "data:" last.
      if (/^data: .*\n/m.test(seen) || options.command) {
        url = /gateway: (http:\/\/\S+?)\/?\n/.exec(seen)?.[1];
      }
    }
  } finally {
    clearTimeout(timeout);
  }
  // Keep draining stdout so the child never blocks on a full pipe.
  (async () => {
    while (!(await reader.read()).done);
  })().catch(() => {});
  const pid = child.pid;
  return {
    url,
    peerId: /^peer: +(\S+)$/m.exec(seen)?.[1],
    multiaddrs: [...seen.matchAll(/^mesh: +(\/\S+)$/gm)].map((m) => m[1]!),
    account: /^account: +(0x[0-9a-fA-F]{40})/m.exec(seen)?.[1],
    pid,
    child,
    logs: () => logs,
    cpuMs: () => cpuMs(pid),
    rss: () => rssBytes(pid),
    async stop(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
      return (await child.status).code;
    },
  };
}

export interface ClusterOptions {
  /** Number of nodes. */
  nodes: number;
  /** Parent of the nodes' data directories (`node-0`, `node-1`, …). */
  dir: string;
  /** Gateway port of node 0; node i gets basePort + i. Default: any free ports. */
  basePort?: number;
  /** More `serve` arguments for every node. */
  args?: string[];
  stderr?: "inherit" | "null";
  /** Another tree's `src/cli.ts` to run (see {@link SpawnOptions.cli}). Default: this tree's. */
  cli?: string;
  /** Turn payments on: every node pays and is paid through the chain of `chainFile` (what `deno task devnet`
   * wrote), each with the dev account of its own data directory, at `price` wei per byte. Default: off. */
  paid?: { chainFile?: string; price?: bigint };
  /** Drill nodes started besides the `nodes` honest ones (after them), each misbehaving as named
   * (`mesh/drill.ts`). Default: none. */
  drills?: Drill[];
}

/** Price of `cluster --paid`: 1 gwei per byte (~0.001 ETH per MiB), well above a redeem's gas on anvil. */
export const CLUSTER_PRICE = 1_000_000_000n;

export interface Cluster extends AsyncDisposable {
  nodes: NodeProcess[];
  /** Gracefully stops every node still running. */
  stop(): Promise<void>;
}

/** Starts node 0, then the others joining through it, and waits until each sees a peer. */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const { nodes: count, dir } = options;
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`Node count "${count}" must be >= 1`);
  }
  const pay: string[] = [];
  if (options.paid) {
    const { DEFAULT_CHAIN_FILE, loadChain } = await loadPay(); // viem only for a paid cluster
    const chainFile = options.paid.chainFile ?? DEFAULT_CHAIN_FILE;
    // Checked here, once: a chain that is not running is one clear error, not N nodes failing to start.
    const chain = await loadChain({ file: chainFile });
    const price = options.paid.price ?? CLUSTER_PRICE;
    const perGiB = String(price << 30n);
    pay.push("--chain", chain.rpc, "--chain-file", chainFile, "--price-served", perGiB);
    // Devnet money, and nodes that trust each other: they pay their own price for files of any size.
    const plenty = String(10n ** 21n);
    pay.push("--max-price", perGiB, "--max-spend-file", plenty, "--max-spend-day", plenty);
  }
  const drills = options.drills ?? [];
  const args = (i: number) => [
    "--data",
    `${dir}/node-${i}`,
    ...(options.basePort ? ["--port", String(options.basePort + i)] : []),
    ...pay,
    ...(options.args ?? []),
    ...(i >= count ? ["--drill", drills[i - count]!] : []),
  ];
  const nodes: NodeProcess[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    const spawn = { stderr: options.stderr, cli: options.cli };
    nodes.push(await spawnNode(args(0), spawn));
    const first = nodes[0]!.multiaddrs.find((a) => a.includes("/tcp/") && !a.includes("/ws"));
    if (!first) throw new Error("node 0 printed no TCP mesh address");
    const rest = await Promise.all(
      Array.from(
        { length: count - 1 + drills.length },
        (_, i) => spawnNode([...args(i + 1), "--bootstrap", first], spawn),
      ),
    );
    nodes.push(...rest);
    await Promise.all(nodes.map((n) => waitForPeers(n.url, nodes.length > 1 ? 1 : 0)));
  } catch (e) {
    await stop();
    throw e;
  }
  return { nodes, stop, [Symbol.asyncDispose]: stop };
}

/** Polls a node's /readyz until it reports at least `peers` connected peers (at most 15 s). */
export async function waitForPeers(url: string, peers: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ready = await (await fetch(`${url}/readyz`)).json();
    if ((ready.mesh?.peers ?? 0) >= peers) return;
    if (Date.now() > deadline) {
      throw new Error(`${url} sees ${ready.mesh?.peers ?? 0} peers, wanted ${peers}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
