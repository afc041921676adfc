/**
 * The `meshgate` command line: serve a node, put and get content.
 *
 * Settings come from flags, then MESH_* environment variables, then defaults; `--help` lists them.
 * Exit codes: 0 done, 1 the operation failed, 2 the command line was wrong.
 */
import http from "node:http";
import { parseArgs } from "node:util";
import { MeshgateNode } from "./node.ts";
import { ChunkStore } from "./store/store.ts";
import { type RepairReport, repairStore } from "./store/repair.ts";
import { createGateway } from "../edge/app.ts";
import { MeshError } from "./errors.ts";
import type { PaidDeliveryInit } from "./pay/mod.ts";
import { loadPay, type Pay } from "./pay/load.ts";
import { DEFAULT_LISTEN } from "./mesh/node.ts";
import { startCluster } from "./cluster.ts";

class UsageError extends Error {
  override name = "UsageError";
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  kib: 1024,
  m: 1e6,
  mb: 1e6,
  mib: 1024 ** 2,
  g: 1e9,
  gb: 1e9,
  gib: 1024 ** 3,
  t: 1e12,
  tb: 1e12,
  tib: 1024 ** 4,
};

/** Parses "512MiB", "10GB", "1048576" into bytes. */
export function parseSize(text: string, what: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = match && UNITS[match[2]!.toLowerCase()];
  if (!match || unit === undefined) {
    throw new UsageError(`${what} "${text}" is not a size (examples: 1048576, 512MiB, 10GB)`);
  }
  return Math.floor(Number(match[1]) * unit!);
}

function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** A progress bar on stderr, drawn only on a terminal, at most 10 times a second. */
function progressBar(label: string, total: number | undefined, format = formatBytes) {
  const tty = Deno.stderr.isTerminal();
  const started = performance.now();
  let last = 0;
  const enc = new TextEncoder();
  const draw = (done: number, final = false) => {
    const now = performance.now();
    if (!tty || (!final && now - last < 100)) return;
    last = now;
    const rate = done / Math.max(0.001, (now - started) / 1000);
    let line: string;
    if (total) {
      const frac = Math.min(1, done / total);
      const bar = "#".repeat(Math.round(frac * 30)).padEnd(30, ".");
      line = `${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${format(done)}/${
        format(total)
      } ${format(rate)}/s`;
    } else line = `${label} ${format(done)} ${format(rate)}/s`;
    Deno.stderr.writeSync(enc.encode(`\r\x1b[K${line}${final ? "\n" : ""}`));
  };
  return { update: (done: number) => draw(done), done: (done: number) => draw(done, true) };
}

function counting(onBytes: (total: number) => void): TransformStream<Uint8Array, Uint8Array> {
  let total = 0;
  return new TransformStream({
    transform(chunk, controller) {
      total += chunk.length;
      onBytes(total);
      controller.enqueue(chunk);
    },
  });
}

function setting(flag: string | undefined, env: string, fallback: string): string {
  return flag ?? Deno.env.get(env) ?? fallback;
}

/** Paid delivery settings from --price and --pay-key (or their env); the key defaults only on anvil. */
function payConfig(
  { payAccount }: Pay,
  priceFlag: string | undefined,
  keyFlag: string | undefined,
  chainId: number,
): Omit<PaidDeliveryInit, "chain"> {
  const price = setting(priceFlag, "MESH_PRICE", "0");
  if (!/^\d{1,40}$/.test(price)) {
    throw new UsageError(`Price "${price}" must be a whole number of wei per byte`);
  }
  const key = keyFlag ?? Deno.env.get("MESH_PAY_KEY") ?? (chainId === 31337 ? "dev:1" : undefined);
  if (key === undefined) {
    throw new UsageError("Payments need an account: --pay-key or MESH_PAY_KEY");
  }
  try {
    return { account: payAccount(key), price: BigInt(price) };
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

const SERVE_HELP = `Usage: deno task serve [options]

Starts a Meshgate node: a chunk store on disk and the HTTP gateway.

Options (flag, then environment variable, then default):
  --port N            MESH_PORT         port of the gateway                 [8080]
  --host ADDR         MESH_HOST         address to listen on; 0.0.0.0 for all interfaces  [127.0.0.1]
  --data DIR          MESH_DATA_DIR     data directory (chunks, pins)       [.meshgate]
  --max-upload SIZE   MESH_MAX_UPLOAD   largest accepted upload             [1GiB]
  --max-store SIZE    MESH_MAX_STORE    store size cap                      [10GiB]
  --public-url URL    MESH_PUBLIC_URL   base URL in upload answers          [the request's origin]
  --listen ADDR       MESH_LISTEN       mesh multiaddr to listen on; repeat for more
                                        [/ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/tcp/4002/ws]
  --bootstrap ADDR    MESH_BOOTSTRAP    peer to join through (/ip4/…/p2p/<id>); repeat for more  [none]
  --no-mesh                             serve only this node's store, join no mesh
  --chain RPC         MESH_CHAIN        EVM JSON-RPC URL: turns payments on [off: volunteer mode]
  --chain-file FILE   MESH_CHAIN_FILE   contract addresses (deno task devnet writes it)  [.meshgate/chain.json]
  --price WEI         MESH_PRICE        wei per byte served, with --chain   [0: serve for free, still pay]
  --pay-key KEY       MESH_PAY_KEY      account that pays and is paid: a 0x private key, or dev:N for
                                        anvil's test account N   [dev:1 on a local anvil chain (id 31337)]
  -h, --help                            show this help

Routes: GET /mesh/<cid> (also /ipfs/<cid>), POST /mesh, GET /livez, /readyz, /metrics, and / for people.
`;

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      data: { type: "string" },
      "max-upload": { type: "string" },
      "max-store": { type: "string" },
      "public-url": { type: "string" },
      chain: { type: "string" },
      "chain-file": { type: "string" },
      price: { type: "string" },
      "pay-key": { type: "string" },
      listen: { type: "string", multiple: true },
      bootstrap: { type: "string", multiple: true },
      "no-mesh": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(SERVE_HELP);
    return 0;
  }
  const port = Number(setting(values.port, "MESH_PORT", "8080"));
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`Port "${values.port ?? Deno.env.get("MESH_PORT")}" must be 0-65535`);
  }
  const hostname = setting(values.host, "MESH_HOST", "127.0.0.1");
  const dataDir = setting(values.data, "MESH_DATA_DIR", ".meshgate");
  const maxUploadBytes = parseSize(
    setting(values["max-upload"], "MESH_MAX_UPLOAD", "1GiB"),
    "--max-upload",
  );
  const maxStoreBytes = parseSize(
    setting(values["max-store"], "MESH_MAX_STORE", "10GiB"),
    "--max-store",
  );
  const publicUrl = values["public-url"] ?? Deno.env.get("MESH_PUBLIC_URL");

  const rpc = values.chain ?? Deno.env.get("MESH_CHAIN");
  const chainFile = values["chain-file"] ?? Deno.env.get("MESH_CHAIN_FILE"); // else the default
  const payModule = rpc ? await loadPay() : undefined; // viem loads only in paid mode
  const chain = rpc ? await payModule!.loadChain({ rpc, file: chainFile }) : undefined;
  const pay = chain
    ? payConfig(payModule!, values.price, values["pay-key"], chain.chainId)
    : undefined;

  const list = (flag: string[] | undefined, env: string) =>
    flag ?? Deno.env.get(env)?.split(",").map((a) => a.trim()).filter(Boolean);
  const mesh = values["no-mesh"] ? undefined : {
    listen: list(values.listen, "MESH_LISTEN") ?? [...DEFAULT_LISTEN],
    bootstrap: list(values.bootstrap, "MESH_BOOTSTRAP") ?? [],
  };

  const node = await MeshgateNode.create({ dataDir, maxStoreBytes, chain, mesh, pay });
  const gateway = createGateway(node, { maxUploadBytes, publicUrl });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({ port, hostname, onListen: resolve }, gateway.app.fetch);
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  const stats = node.store.stats();
  console.log(`Meshgate ${host === "0.0.0.0" ? "listening on all interfaces" : "ready"}`);
  console.log(`gateway: http://${host}:${addr.port}/`);
  if (node.mesh) {
    console.log(`peer:    ${node.mesh.peerId}`);
    for (const a of node.mesh.multiaddrs()) console.log(`mesh:    ${a}`);
  } else console.log("mesh:    off (--no-mesh)");
  console.log(
    chain
      ? `payments: on (chain ${chain.chainId} via ${chain.rpc}, ChannelHub ${chain.contracts.channelHub})`
      : "payments: off (volunteer mode; --chain RPC turns them on)",
  );
  // Printed last: scripts wait for this line.
  console.log(
    `data:    ${dataDir} (${stats.chunks} chunks, ${formatBytes(stats.bytes)} of ${
      formatBytes(stats.maxBytes)
    })`,
  );

  const { promise: stopped, resolve: stop } = Promise.withResolvers<string>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => stop(sig));
  const signal = await Promise.race([stopped, server.finished.then(() => "server closed")]);
  console.error(JSON.stringify({ level: "info", msg: "shutting down", signal }));
  gateway.ready = false;
  const deadline = setTimeout(() => {
    console.error(JSON.stringify({ level: "error", msg: "shutdown took over 10 s; exiting" }));
    Deno.exit(1);
  }, 10_000);
  await server.shutdown();
  await node.stop();
  clearTimeout(deadline);
  return 0;
}

const PUT_HELP = `Usage: deno task put FILE [options]

Uploads FILE through a gateway and prints its CID and URL.

Options:
  --gateway URL   MESH_GATEWAY   gateway to upload to             [http://127.0.0.1:8080]
  --name NAME                    file name to record              [FILE's base name]
  --type TYPE                    media type                       [from the extension]
  --k N  --m N                   data and parity chunks per stripe [the node's default]
  -h, --help
`;

const TYPES: Record<string, string> = {
  txt: "text/plain; charset=utf-8",
  html: "text/html; charset=utf-8",
  json: "application/json",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  svg: "image/svg+xml",
  mp4: "video/mp4",
  webm: "video/webm",
  mp3: "audio/mpeg",
  ogg: "audio/ogg",
  pdf: "application/pdf",
  zip: "application/zip",
};

async function errorFrom(res: Response): Promise<Error> {
  const text = await res.text();
  try {
    const { message } = JSON.parse(text);
    if (message) return new Error(`${message} (HTTP ${res.status})`);
  } catch {
    // not JSON: fall through
  }
  return new Error(`HTTP ${res.status} ${res.statusText}${text ? `: ${text.slice(0, 200)}` : ""}`);
}

/**
 * POSTs a stream with node:http: Deno's fetch sends a streamed body several times slower (measured here:
 * ~40 MB/s against ~110 MB/s), and uploads are where a person waits.
 */
export function upload(
  url: URL,
  body: ReadableStream<Uint8Array>,
  headers: Record<string, string>,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: "POST", headers }, (res) => {
      const parts: Uint8Array[] = [];
      res.on("data", (d: Uint8Array) => parts.push(d));
      res.on("error", reject);
      res.on("end", () => {
        resolve(
          new Response(new Blob(parts as Uint8Array<ArrayBuffer>[]), {
            status: res.statusCode,
            statusText: res.statusMessage,
          }),
        );
      });
    });
    req.on("error", reject);
    (async () => {
      for await (const piece of body) {
        if (!req.write(piece)) await new Promise((r) => req.once("drain", r));
      }
      req.end();
    })().catch((e) => {
      req.destroy(e);
      reject(e);
    });
  });
}

async function put(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      gateway: { type: "string" },
      name: { type: "string" },
      type: { type: "string" },
      k: { type: "string" },
      m: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(PUT_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("put takes exactly one FILE (see --help)");
  const path = positionals[0]!;
  const gateway = setting(values.gateway, "MESH_GATEWAY", "http://127.0.0.1:8080");
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path);
  } catch (e) {
    throw new UsageError(`Cannot read "${path}": ${(e as Error).message}`);
  }
  const { size } = await file.stat();
  const name = values.name ?? path.split("/").pop()!;
  const ext = name.includes(".") ? name.split(".").pop()!.toLowerCase() : "";
  const url = new URL("/mesh", gateway);
  url.searchParams.set("name", name);
  if (values.k) url.searchParams.set("k", values.k);
  if (values.m) url.searchParams.set("m", values.m);
  const bar = progressBar(`put ${name}`, size);
  let sent = 0;
  const res = await upload(url, file.readable.pipeThrough(counting((n) => bar.update(sent = n))), {
    "Content-Type": values.type ?? TYPES[ext] ?? "application/octet-stream",
    "Content-Length": String(size),
  }).catch((e) => {
    throw new Error(`Cannot reach the gateway at ${gateway}: ${e.message}`);
  });
  bar.done(sent);
  if (!res.ok) throw await errorFrom(res);
  const answer = await res.json();
  console.log(answer.cid);
  console.log(answer.url);
  return 0;
}

const GET_HELP = `Usage: deno task get CID [-o FILE] [options]

Downloads content by CID through a gateway, to FILE or to standard output.

Options:
  -o, --output FILE              write here (atomically: a failed download leaves no file)
  --gateway URL   MESH_GATEWAY   gateway to download from   [http://127.0.0.1:8080]
  -h, --help
`;

async function get(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o" },
      gateway: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(GET_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("get takes exactly one CID (see --help)");
  const gateway = setting(values.gateway, "MESH_GATEWAY", "http://127.0.0.1:8080");
  const res = await fetch(new URL(`/mesh/${encodeURIComponent(positionals[0]!)}`, gateway)).catch(
    (e) => {
      throw new Error(`Cannot reach the gateway at ${gateway}: ${e.message}`);
    },
  );
  if (!res.ok) throw await errorFrom(res);
  const total = Number(res.headers.get("content-length")) || undefined;
  const bar = progressBar(
    `get ${positionals[0]!.slice(0, 16)}…`,
    values.output ? total : undefined,
  );
  let received = 0;
  const body = res.body!.pipeThrough(counting((n) => bar.update(received = n)));
  if (!values.output) {
    await body.pipeTo(Deno.stdout.writable, { preventClose: true });
  } else {
    const tmp = `${values.output}.part-${crypto.randomUUID().slice(0, 8)}`;
    try {
      await body.pipeTo((await Deno.open(tmp, { write: true, createNew: true })).writable);
      if (total !== undefined && received !== total) {
        throw new Error(`Download cut short: ${received} of ${total} bytes`);
      }
      await Deno.rename(tmp, values.output);
    } catch (e) {
      await Deno.remove(tmp).catch(() => {});
      throw e;
    }
  }
  bar.done(received);
  return 0;
}

const REPAIR_HELP = `Usage: deno task repair [options]

Checks every chunk of every pinned file in a node's data directory and rebuilds lost or corrupt ones from
their stripes. Run it while that node is stopped. Exits with 1 when something could not be rebuilt.

Options:
  --data DIR   MESH_DATA_DIR   data directory             [.meshgate]
  --json                       print the report as JSON
  -h, --help
`;

async function repair(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      data: { type: "string" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(REPAIR_HELP);
    return 0;
  }
  const dataDir = setting(values.data, "MESH_DATA_DIR", ".meshgate");
  try {
    await Deno.stat(`${dataDir}/chunks`);
  } catch {
    throw new UsageError(`"${dataDir}" is not a Meshgate data directory (no chunks/ in it)`);
  }
  const store = await ChunkStore.open(dataDir);
  const abort = new AbortController();
  const interrupt = () => abort.abort(new Error("Interrupted; the chunks rebuilt so far are kept"));
  Deno.addSignalListener("SIGINT", interrupt);
  const count = (n: number) => n.toFixed(0);
  let bar: ReturnType<typeof progressBar> | undefined;
  let done = 0;
  let report: RepairReport;
  try {
    report = await repairStore(store, {
      signal: abort.signal,
      onProgress: (p) => {
        bar ??= progressBar("repair: stripes", p.total, count);
        bar.update(done = p.done);
      },
    });
  } finally {
    bar?.done(done);
    Deno.removeSignalListener("SIGINT", interrupt);
    await store.close();
  }
  const failed = report.unrecoverable.length + report.manifestsMissing.length;
  if (values.json) console.log(JSON.stringify(report, null, 2));
  else {
    console.log(
      `${report.roots} file(s), ${report.stripes} stripes, ${report.chunksChecked} chunks checked: ` +
        `${report.missing} missing or corrupt, ${report.repaired} rebuilt`,
    );
    for (const { root, stripe } of report.unrecoverable) {
      console.log(`unrecoverable: stripe ${stripe} of ${root}`);
    }
    for (const root of report.manifestsMissing) console.log(`manifest missing: ${root}`);
  }
  return failed ? 1 : 0;
}

const CLUSTER_HELP = `Usage: deno task cluster [--nodes N] [options]

Starts N real node processes on loopback, joined into one mesh through node 0, prints each gateway URL,
and stops them all on Ctrl-C.

Options:
  --nodes N        how many nodes                                   [4]
  --dir DIR        parent of the nodes' data directories            [.meshgate/cluster]
  --base-port P    gateway of node i listens on P + i               [8080]
  -h, --help
`;

async function cluster(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      nodes: { type: "string", default: "4" },
      dir: { type: "string", default: ".meshgate/cluster" },
      "base-port": { type: "string", default: "8080" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(CLUSTER_HELP);
    return 0;
  }
  const nodes = Number(values.nodes);
  const basePort = Number(values["base-port"]);
  if (!Number.isInteger(nodes) || nodes < 1 || nodes > 64) {
    throw new UsageError(`--nodes "${values.nodes}" must be 1-64`);
  }
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + nodes > 65535) {
    throw new UsageError(`--base-port "${values["base-port"]}" leaves no room for ${nodes} ports`);
  }
  console.error(`starting ${nodes} nodes…`);
  const running = await startCluster({ nodes, dir: values.dir, basePort, stderr: "null" });
  for (const [i, node] of running.nodes.entries()) {
    console.log(`node ${i}  ${node.url}/  peer ${node.peerId}`);
  }
  console.log("Ctrl-C stops them all.");
  const { promise, resolve } = Promise.withResolvers<void>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
  await promise;
  console.error("stopping…");
  await running.stop();
  return 0;
}

const HELP = `Usage: deno run -A src/cli.ts <command> [options]   (or: deno task <command>)

Commands:
  serve          start a node with its gateway
  put FILE       upload a file, print its CID and URL
  get CID        download content by CID
  cluster        start N local nodes in one mesh
  repair         check a stopped node's store and rebuild lost chunks

Run a command with --help for its options.
`;

export async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "serve":
        return await serve(rest);
      case "put":
        return await put(rest);
      case "get":
        return await get(rest);
      case "cluster":
        return await cluster(rest);
      case "repair":
        return await repair(rest);
      case undefined:
      case "help":
      case "-h":
      case "--help":
        console.log(HELP);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`Unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      console.error(`error: ${(e as Error).message}`);
      return 2;
    }
    if (e instanceof MeshError) console.error(`error: ${e.message}`);
    else console.error(`error: ${(e as Error).message ?? e}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
