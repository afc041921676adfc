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
import { createGateway, onServeError } from "../edge/app.ts";
import { isLoopback, loadApiToken, TOKEN_FILE } from "../edge/auth.ts";
import { MeshError } from "./errors.ts";
import type { ChainConfig, PaidDeliveryInit } from "./pay/mod.ts";
import { loadPay, type Pay } from "./pay/load.ts";
import { DEFAULT_LISTEN } from "./mesh/node.ts";
import { isPrivateAddress } from "./mesh/gater.ts";
import { multiaddr } from "@multiformats/multiaddr";
import { startCluster } from "./cluster.ts";
import { type Drill, parseDrill } from "./mesh/drill.ts";
import { formatBytes, typeFromName } from "./units.ts";
import { PREFERENCES } from "./reputation/select.ts";

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

/** Bytes in a GiB: prices on the command line are per GiB, the desk counts per byte. */
const GIB = 1n << 30n;

/** A whole number of wei per GiB from a flag or variable, as wei per byte (rounded down). */
function perByte(v: string, what: string): bigint {
  if (!/^\d{1,50}$/.test(v)) {
    throw new UsageError(`${what} "${v}" must be a whole number of wei per GiB`);
  }
  return BigInt(v) / GIB;
}

/** A price of the offer (whole wei, from a flag or variable); 0 when unset. */
function weiSetting(flag: string | undefined, env: string, what: string): bigint {
  return weiFlag(flag, env, what, 50) ?? 0n;
}

/** Whole wei from a flag, else a variable (at most `digits` digits); undefined when neither is set. */
function weiFlag(
  flag: string | undefined,
  env: string,
  what: string,
  digits = 40,
): bigint | undefined {
  const v = flag ?? Deno.env.get(env);
  if (v !== undefined && !new RegExp(`^\\d{1,${digits}}$`).test(v)) {
    throw new UsageError(`${what} "${v}" must be a whole number of wei`);
  }
  return v === undefined ? undefined : BigInt(v);
}

/** The relay flags of `serve`: a relay's limits, the relays to reserve on, paid relaying's settings. */
function relayFlags(values: {
  relay?: boolean;
  "relay-reservations"?: string;
  "relay-reservation-ttl"?: string;
  "relay-circuit-data"?: string;
  "relay-circuit-time"?: string;
  "relay-pay-wait"?: string;
  "no-listen"?: boolean;
  "relay-via"?: string[];
  "relay-max-spend"?: string;
}) {
  const count = (v: string | undefined, what: string) => {
    if (v === undefined) return undefined;
    if (!/^[1-9]\d{0,9}$/.test(v)) {
      throw new UsageError(`${what} "${v}" must be a positive whole number`);
    }
    return Number(v);
  };
  const relayVia = values["relay-via"] ?? [];
  const limits = {
    maxReservations: count(values["relay-reservations"], "--relay-reservations"),
    reservationTtlMs: count(values["relay-reservation-ttl"], "--relay-reservation-ttl"),
    dataBytes: values["relay-circuit-data"] === undefined
      ? undefined
      : parseSize(values["relay-circuit-data"], "--relay-circuit-data"),
    durationMs: count(values["relay-circuit-time"], "--relay-circuit-time"),
  };
  const set = Object.fromEntries(Object.entries(limits).filter(([, v]) => v !== undefined));
  if (!values.relay && Object.keys(set).length > 0) {
    throw new UsageError("The --relay-* limits need --relay");
  }
  const wait = count(values["relay-pay-wait"], "--relay-pay-wait");
  const maxSpend = weiFlag(values["relay-max-spend"], "MESH_RELAY_MAX_SPEND", "--relay-max-spend");
  return {
    mesh: {
      ...(values.relay ? { relay: { limits: set } } : {}),
      ...(relayVia.length ? { relayVia } : {}),
    },
    pay: {
      ...(wait ? { paymentWaitMs: wait } : {}),
      ...(maxSpend !== undefined ? { maxSpend } : {}),
    },
  };
}

/** Paid delivery settings from --price-served and the pay key (see `src/pay/account.ts` for where it is looked for). */
async function payConfig(
  { resolvePayAccount, fundDevAccount }: Pay,
  values: {
    "price-served"?: string;
    "pay-key"?: string;
    "pay-key-file"?: string;
    "max-unpaid"?: string;
    "max-price"?: string;
    "max-spend-file"?: string;
    "max-spend-day"?: string;
    "idle-close"?: string;
  },
  dataDir: string,
  chain: ChainConfig,
): Promise<Omit<PaidDeliveryInit, "chain">> {
  const price = perByte(setting(values["price-served"], "MESH_PRICE_SERVED", "0"), "Price");
  const maxUnpaid = setting(values["max-unpaid"], "MESH_MAX_UNPAID", "");
  if (maxUnpaid !== "" && !/^[1-9]\d{0,14}$/.test(maxUnpaid)) {
    throw new UsageError(`Max unpaid "${maxUnpaid}" must be a positive whole number of bytes`);
  }
  const found = await resolvePayAccount({
    dataDir,
    chainId: chain.chainId,
    key: values["pay-key"],
    keyFile: values["pay-key-file"] ?? Deno.env.get("MESH_PAY_KEY_FILE"),
    envKey: Deno.env.get("MESH_PAY_KEY"),
    onWarning: (msg, fields) =>
      console.error(JSON.stringify({ level: "warn", component: "pay", msg, ...fields })),
  });
  if (found.derived) await fundDevAccount(chain.rpc, found.account.address);
  // The client's limits (defaults and their reasons: src/pay/limits.ts); unset ones keep the defaults.
  const maxSet = values["max-price"] ?? Deno.env.get("MESH_MAX_PRICE");
  const maxPrice = maxSet === undefined ? undefined : perByte(maxSet, "Price ceiling");
  const maxSpendPerFile = weiFlag(values["max-spend-file"], "MESH_MAX_SPEND_FILE", "Per-file cap");
  const maxSpendPerDay = weiFlag(values["max-spend-day"], "MESH_MAX_SPEND_DAY", "Per-day cap");
  const idle = values["idle-close"] ?? Deno.env.get("MESH_IDLE_CLOSE");
  if (idle !== undefined && !/^\d{1,12}$/.test(idle)) {
    throw new UsageError(`Idle close "${idle}" must be a whole number of ms`);
  }
  return {
    account: found.account,
    price,
    ...(found.source === "file" ? { keyFile: found.path } : {}), // one desk per key file
    ...(maxPrice !== undefined ? { maxPrice } : {}),
    ...(maxSpendPerFile !== undefined ? { maxSpendPerFile } : {}),
    ...(maxSpendPerDay !== undefined ? { maxSpendPerDay } : {}),
    ...(idle !== undefined ? { idleCloseMs: Number(idle) } : {}),
    ...(maxUnpaid !== "" ? { maxUnpaidBytes: Number(maxUnpaid) } : {}),
  };
}

const SERVE_HELP = `Usage: deno task serve [options]

Starts a Meshgate node: a chunk store on disk and the HTTP gateway.

Options (flag, then environment variable, then default):
  --port N            MESH_PORT         port of the gateway                 [8080]
  --host ADDR         MESH_HOST         address to listen on; 0.0.0.0 for all interfaces  [127.0.0.1]
  --data DIR          MESH_DATA_DIR     data directory (chunks, pins)       [.meshgate]
  --max-upload SIZE   MESH_MAX_UPLOAD   largest accepted upload             [1 GiB]
  --max-store SIZE    MESH_MAX_STORE    store size cap                      [10 GiB]
  --cache SIZE        MESH_CACHE        memory for chunks read lately, so hot content is not fetched
                                        again; 0 turns it off  [64 MiB]
  --volunteer-quota SIZE  MESH_VOLUNTEER_QUOTA  most bytes kept for each peer that puts chunks here;
                                        0 keeps none   [1 GiB: a tenth of the default store]
  --volunteer-chunks N  MESH_VOLUNTEER_CHUNKS  most chunks (files) kept for each peer  [4096]
  --public-url URL    MESH_PUBLIC_URL   base URL in upload answers          [the request's origin]
  --listen ADDR       MESH_LISTEN       mesh multiaddr to listen on; repeat for more
                                        [/ip4/0.0.0.0/tcp/4001 and /ip4/0.0.0.0/tcp/4002/ws]
  --bootstrap ADDR    MESH_BOOTSTRAP    peer to join through (/ip4/…/p2p/<id>); repeat for more  [none]
  --no-mesh                             serve only this node's store, join no mesh
  --relay                               relay circuits for nodes that cannot be dialled, charging the
                                        --price-relayed (with --chain) to the node that reserved   [off]
  --relay-reservations N                most reservations held at once                  [64]
  --relay-reservation-ttl MS            life of a reservation before its holder renews it  [3600000]
  --relay-circuit-data SIZE             most bytes one circuit carries, both ways       [1 GiB]
  --relay-circuit-time MS               longest life of one circuit                     [600000]
  --relay-pay-wait MS                   wait for a voucher before cutting a circuit past its credit  [10000]
  --no-listen                           listen on no address (a node behind NAT): it dials out, and
                                        is reachable through --relay-via only
  --relay-via ADDR                      relay to reserve a slot on (/ip4/…/p2p/<id>), announcing
                                        <relay>/p2p-circuit/p2p/<self>; repeat for more; with --chain
                                        this node pays the relay for the bytes it carries   [none]
  --relay-max-spend WEI                 most wei paid to relays in all; past it, no more  [no cap]
  --local             MESH_LOCAL=1      local mesh (one host or a LAN, as deno task cluster runs): keep and dial
                                        loopback and private addresses, exempt loopback peers from connection
                                        limits   [off: public mode, for a node reachable from the internet]
  --find-timeout MS   MESH_FIND_TIMEOUT longest search of the mesh for an unknown CID before 404  [3000]
  --market                              take part in the market: post intents, answer them from listings,
                                        over /api/market/*   [off]
  --audit-every MS    MESH_AUDIT_EVERY  how often each lease of this node's uploads is audited  [3600000]
  --audit-challenges N  MESH_AUDIT_CHALLENGES  blocks challenged per lease in each audit  [4]
  --lease-min-term MS MESH_LEASE_MIN_TERM  shortest term left a lease proposed here may have  [60000]
  --drill KIND                          misbehave on purpose, to watch a mesh catch it: liar (flips a bit
                                        in what it serves), slow (10x), flaky (fails 30%), offline (away
                                        20 s a minute)   [none: an honest node]
  --api-token TOKEN   MESH_API_TOKEN    bearer token that uploads and other writes need; prefer the
                                        variable (argv is visible to other users)
                                        [on loopback: none; beyond it: made into DATA/api.token]
  --chain RPC         MESH_CHAIN        EVM JSON-RPC URL: turns payments on [off: volunteer mode]
  --chain-file FILE   MESH_CHAIN_FILE   contract addresses (deno task devnet writes it)  [.meshgate/chain.json]
  --price-served WEI  MESH_PRICE_SERVED wei per GiB served, with --chain (charged per byte, rounded down
                                        to whole wei; in this node's signed offer)
                                        [0: serve for free, still pay]
  --pay-http          MESH_PAY_HTTP=1   HTTP readers pay too: content answers ask x402 vouchers (README,
                                        "Pay as you go over HTTP"); needs --price-served   [off: free]
  --price-stored WEI  MESH_PRICE_STORED wei per GiB-month stored, in the offer            [0]
  --price-lookups WEI MESH_PRICE_LOOKUPS wei per 1,000 lookups answered, in the offer     [0]
  --price-relayed WEI MESH_PRICE_RELAYED wei per GiB relayed, in the offer                [0]
  --lookup            MESH_LOOKUP       offer lookups (/meshgate/lookup/1.0.0) at --price-lookups; priced
                                        ones are paid per delivered lookup, with --chain    [off]
  --max-price WEI     MESH_MAX_PRICE    highest price paid per GiB; dearer holders are not asked
                                        [1073741824000000000: 1 gwei a byte, the --paid cluster's price]
  --max-spend-file WEI MESH_MAX_SPEND_FILE  most wei paid for one file   [1e17: 0.1 ETH]
  --max-spend-day WEI MESH_MAX_SPEND_DAY  most wei paid in any 24 h      [1e18: 1 ETH]
  --idle-close MS     MESH_IDLE_CLOSE   close a channel unused this long; 0 keeps them  [600000: 10 min]
  --max-unpaid BYTES  MESH_MAX_UNPAID   most bytes served ahead of payment to all peers together  [268435456]
  --pay-key-file FILE MESH_PAY_KEY_FILE file holding the 0x private key of the account that pays and is
                                        paid (mode 600)   [<data>/pay.key when present]
                    MESH_PAY_KEY      the key itself, from the environment
  --pay-key dev:N                       anvil's public test account N (a raw 0x key works too, but is
                                        visible in the process list: warned)
                                        [on a local anvil (chain 31337): a dev account derived from --data,
                                        funded at start]
  -h, --help                            show this help

Routes: GET /mesh/<cid> (also /ipfs/<cid>, and http://<cid>.mesh.localhost:PORT/ as its own origin),
POST /mesh, GET /livez, /readyz, /metrics, and / for people.
While it runs, DIR/gateway.json names the gateway's URL, so put and get find it (also with --port 0).
`;

/**
 * Writes over HTTP are the operator's: the token they need, if any, and how `serve` describes it. A token
 * given is always required; beyond loopback one is required anyway, made into the data directory on first
 * start and shown that once.
 */
export async function apiTokenFor(
  hostname: string,
  dataDir: string,
  given: string | undefined,
): Promise<{ token?: string; note?: string }> {
  if (given !== undefined) {
    if (!/^[\x21-\x7e]{16,}$/.test(given)) {
      throw new UsageError("The API token must be at least 16 visible ASCII characters, no spaces");
    }
    return { token: given, note: "from --api-token / MESH_API_TOKEN" };
  }
  if (isLoopback(hostname)) return {};
  const { token, created } = await loadApiToken(dataDir);
  const note = created
    ? `${token} (new, saved in ${dataDir}/${TOKEN_FILE}; send it as Authorization: Bearer …)`
    : `in ${dataDir}/${TOKEN_FILE}`;
  return { token, note };
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      data: { type: "string" },
      "max-upload": { type: "string" },
      "max-store": { type: "string" },
      cache: { type: "string" },
      "volunteer-quota": { type: "string" },
      "volunteer-chunks": { type: "string" },
      "public-url": { type: "string" },
      chain: { type: "string" },
      "chain-file": { type: "string" },
      "price-served": { type: "string" },
      "pay-http": { type: "boolean" },
      "price-stored": { type: "string" },
      "price-lookups": { type: "string" },
      "price-relayed": { type: "string" },
      "max-price": { type: "string" },
      "max-spend-file": { type: "string" },
      "max-spend-day": { type: "string" },
      "idle-close": { type: "string" },
      "max-unpaid": { type: "string" },
      "pay-key": { type: "string" },
      "pay-key-file": { type: "string" },
      listen: { type: "string", multiple: true },
      bootstrap: { type: "string", multiple: true },
      "no-mesh": { type: "boolean" },
      relay: { type: "boolean" },
      "relay-reservations": { type: "string" },
      "relay-reservation-ttl": { type: "string" },
      "relay-circuit-data": { type: "string" },
      "relay-circuit-time": { type: "string" },
      "relay-pay-wait": { type: "string" },
      "no-listen": { type: "boolean" },
      "relay-via": { type: "string", multiple: true },
      "relay-max-spend": { type: "string" },
      local: { type: "boolean" },
      "find-timeout": { type: "string" },
      "audit-every": { type: "string" },
      "audit-challenges": { type: "string" },
      "lease-min-term": { type: "string" },
      "api-token": { type: "string" },
      drill: { type: "string" },
      market: { type: "boolean" },
      lookup: { type: "boolean" },
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
  const cacheBytes = parseSize(setting(values.cache, "MESH_CACHE", "64MiB"), "--cache");
  const volunteerQuotaBytes = parseSize(
    setting(values["volunteer-quota"], "MESH_VOLUNTEER_QUOTA", "1GiB"),
    "--volunteer-quota",
  );
  const volunteerChunks = setting(values["volunteer-chunks"], "MESH_VOLUNTEER_CHUNKS", "4096");
  if (!/^\d{1,9}$/.test(volunteerChunks)) {
    throw new UsageError(`Volunteer chunks "${volunteerChunks}" must be a whole number of chunks`);
  }
  const publicUrl = values["public-url"] ?? Deno.env.get("MESH_PUBLIC_URL");
  const drill = values.drill === undefined ? undefined : drillOf(values.drill);
  const findTimeout = setting(values["find-timeout"], "MESH_FIND_TIMEOUT", "3000");
  if (!/^\d{1,7}$/.test(findTimeout)) {
    throw new UsageError(`Find timeout "${findTimeout}" must be a whole number of milliseconds`);
  }
  const auditEvery = setting(values["audit-every"], "MESH_AUDIT_EVERY", "3600000");
  if (!/^[1-9]\d{0,9}$/.test(auditEvery)) {
    throw new UsageError(`Audit interval "${auditEvery}" must be a whole number of milliseconds`);
  }
  const challenges = setting(values["audit-challenges"], "MESH_AUDIT_CHALLENGES", "4");
  if (!/^[1-9]\d{0,3}$/.test(challenges)) {
    throw new UsageError(`Audit challenges "${challenges}" must be a whole number from 1 to 9999`);
  }
  const minTerm = setting(values["lease-min-term"], "MESH_LEASE_MIN_TERM", "60000");
  if (!/^\d{1,10}$/.test(minTerm)) {
    throw new UsageError(`Lease minimum term "${minTerm}" must be a whole number of milliseconds`);
  }
  const { token: apiToken, note: tokenNote } = await apiTokenFor(
    hostname,
    dataDir,
    values["api-token"] ?? Deno.env.get("MESH_API_TOKEN"),
  );

  const rpc = values.chain ?? Deno.env.get("MESH_CHAIN");
  const chainFile = values["chain-file"] ?? Deno.env.get("MESH_CHAIN_FILE"); // else the default
  const payModule = rpc ? await loadPay() : undefined; // viem loads only in paid mode
  const chain = rpc ? await payModule!.loadChain({ rpc, file: chainFile }) : undefined;
  const pay = chain ? await payConfig(payModule!, values, dataDir, chain) : undefined;
  const payHttp = values["pay-http"] ?? ["1", "true"].includes(Deno.env.get("MESH_PAY_HTTP") ?? "");
  if (payHttp && ((pay?.price ?? 0n) <= 0n || values["no-mesh"])) {
    throw new UsageError("--pay-http needs --chain, a --price-served above 0 and the mesh");
  }

  const list = (flag: string[] | undefined, env: string) =>
    flag ?? Deno.env.get(env)?.split(",").map((a) => a.trim()).filter(Boolean);
  // Public mode unless told otherwise: a node on the internet must not trust loopback (a local TLS proxy makes
  // every peer look like 127.0.0.1) nor let peers steer its dials into private networks.
  const local = values.local ?? ["1", "true"].includes(Deno.env.get("MESH_LOCAL") ?? "");
  const bootstrap = list(values.bootstrap, "MESH_BOOTSTRAP") ?? [];
  for (const addr of local ? [] : bootstrap) {
    let isPrivate = false;
    try {
      isPrivate = isPrivateAddress(multiaddr(addr));
    } catch { /* not a multiaddr: the mesh node says so */ }
    if (isPrivate) {
      throw new UsageError(
        `Bootstrap address "${addr}" is loopback or private, which public mode never dials: ` +
          "pass --local for a mesh on one host or a LAN",
      );
    }
  }
  const relaying = relayFlags(values);
  const mesh = values["no-mesh"] ? undefined : {
    listen: values["no-listen"] ? [] : list(values.listen, "MESH_LISTEN") ?? [...DEFAULT_LISTEN],
    bootstrap,
    allowLoopback: local,
    ...relaying.mesh,
  };

  const node = await MeshgateNode.create({
    dataDir,
    maxStoreBytes,
    cacheBytes,
    volunteerQuotaBytes,
    volunteerQuotaChunks: Number(volunteerChunks),
    chain,
    mesh,
    pay,
    findTimeoutMs: Number(findTimeout),
    leases: {
      auditEveryMs: Number(auditEvery),
      challenges: Number(challenges),
      minTermMs: Number(minTerm),
    },
    ...(drill ? { drill } : {}),
    offer: {
      storedPerGiBMonth: weiSetting(values["price-stored"], "MESH_PRICE_STORED", "--price-stored"),
      per1000Lookups: weiSetting(values["price-lookups"], "MESH_PRICE_LOOKUPS", "--price-lookups"),
      relayedPerGiB: weiSetting(values["price-relayed"], "MESH_PRICE_RELAYED", "--price-relayed"),
    },
    ...(values.market ? { market: true } : {}),
    relayPay: relaying.pay,
    ...(values.lookup || Deno.env.get("MESH_LOOKUP") === "1" ? { serveLookups: true } : {}),
  });
  const x402 = payHttp
    ? new payModule!.HttpPaywall({ desk: node.delivery!.desk!, chainId: chain!.chainId })
    : undefined;
  const gateway = createGateway(node, { maxUploadBytes, publicUrl, apiToken, x402 });
  const { promise: listening, resolve } = Promise.withResolvers<Deno.NetAddr>();
  let server: Deno.HttpServer;
  try {
    server = Deno.serve(
      { port, hostname, onListen: resolve, onError: onServeError },
      gateway.app.fetch,
    );
  } catch (e) {
    await node.stop().catch(() => {});
    throw listenError(e, hostname, port);
  }
  const addr = await listening;
  const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
  await writeGatewayFile(dataDir, addr).catch((e) => {
    // put/get still work with --gateway; say why they will not find this node by itself.
    console.error(
      JSON.stringify({ level: "warn", msg: "cannot write gateway.json", error: String(e) }),
    );
  });
  const stats = node.store.stats();
  const wildcard = host === "0.0.0.0" || host === "[::]";
  console.log(`Meshgate ${wildcard ? "listening on all interfaces" : "ready"}`);
  // A wildcard address is not a URL anyone can open: name this machine's loopback, which it also serves.
  console.log(
    `gateway: http://${wildcard ? (host === "[::]" ? "[::1]" : "127.0.0.1") : host}:${addr.port}/`,
  );
  if (node.mesh) {
    console.log(`peer:    ${node.mesh.peerId}`);
    for (const a of node.mesh.multiaddrs()) console.log(`mesh:    ${a}`);
  } else console.log("mesh:    off (--no-mesh)");
  console.log(
    chain
      ? `payments: on (chain ${chain.chainId} via ${chain.rpc}, ChannelHub ${chain.contracts.channelHub})`
      : "payments: off (volunteer mode; --chain RPC turns them on)",
  );
  if (chain && pay) {
    console.log(
      `account: ${pay.account.address} (price ${
        (pay.price ?? 0n) * GIB
      } wei/GiB = ${pay.price} wei/byte)`,
    );
    const low = await payModule!.lowPriceWarning(chain, pay.price ?? 0n);
    if (low) console.error(JSON.stringify({ level: "warn", component: "pay", ...low }));
  }
  console.log(`writes:  ${tokenNote ? `need the API token, ${tokenNote}` : "open on loopback"}`);
  if (drill) {
    console.log(`drill:   ${drill} (this node misbehaves on purpose; never run it for real)`);
    console.error(JSON.stringify({ level: "warn", component: "drill", msg: "drill node", drill }));
  }
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
  try {
    await server.shutdown();
    await node.stop();
  } finally {
    await removeGatewayFile(dataDir);
  }
  clearTimeout(deadline);
  return 0;
}

/** Why the gateway cannot listen, naming the address and what to do (Deno's own message names neither). */
function listenError(e: unknown, hostname: string, port: number): Error {
  if (e instanceof Deno.errors.AddrInUse) {
    return new Error(
      `Port ${port} on ${hostname} is in use (another serve?): pass --port N for another one, ` +
        "or --port 0 for any free one",
    );
  }
  if (e instanceof Deno.errors.AddrNotAvailable || /lookup address/.test(String(e))) {
    return new Error(
      `--host "${hostname}" is no address of this machine: use 127.0.0.1 (this machine only) or ` +
        "0.0.0.0 (all interfaces)",
    );
  }
  return e instanceof Error ? e : new Error(String(e));
}

const DEFAULT_GATEWAY = "http://127.0.0.1:8080";
const GATEWAY_FILE = "gateway.json";

/** Written by `serve` once it listens and removed when it stops, so put and get find it on any port. */
async function writeGatewayFile(dataDir: string, addr: Deno.NetAddr): Promise<void> {
  // A wildcard address is not one to connect to: the same machine reaches it on loopback.
  const host = addr.hostname === "0.0.0.0"
    ? "127.0.0.1"
    : addr.hostname === "::"
    ? "[::1]"
    : addr.hostname.includes(":")
    ? `[${addr.hostname}]`
    : addr.hostname;
  const body = { url: `http://${host}:${addr.port}`, pid: Deno.pid };
  await Deno.writeTextFile(`${dataDir}/${GATEWAY_FILE}`, JSON.stringify(body) + "\n");
}

async function removeGatewayFile(dataDir: string): Promise<void> {
  const path = `${dataDir}/${GATEWAY_FILE}`;
  try {
    // Only ours: a later serve on the same directory may have written its own.
    if (JSON.parse(await Deno.readTextFile(path)).pid === Deno.pid) await Deno.remove(path);
  } catch {
    // already gone or unreadable: nothing to clean
  }
}

interface GatewayChoice {
  url: string;
  /** Where the URL came from, to say so when it does not answer. */
  from: "flag" | "env" | "file" | "default" | "url";
  file?: string;
}

/** --gateway, then MESH_GATEWAY, then the gateway.json of a running serve in the data directory, then 8080. */
async function chooseGateway(flag?: string, dataFlag?: string): Promise<GatewayChoice> {
  const given = (url: string, from: "flag" | "env"): GatewayChoice => {
    if (!/^https?:\/\/[^/]/.test(url)) {
      throw new Error(
        `${from === "flag" ? "--gateway" : "MESH_GATEWAY"} "${url}" is not a gateway URL: ` +
          "give one like http://127.0.0.1:8080",
      );
    }
    return { url, from };
  };
  if (flag) return given(flag, "flag");
  const env = Deno.env.get("MESH_GATEWAY");
  if (env) return given(env, "env");
  const dir = setting(dataFlag, "MESH_DATA_DIR", "");
  const file = `${dir || ".meshgate"}/${GATEWAY_FILE}`;
  try {
    const { url } = JSON.parse(await Deno.readTextFile(file));
    if (typeof url === "string" && /^https?:\/\//.test(url)) return { url, from: "file", file };
  } catch {
    // no running serve wrote one here
  }
  // A directory named on purpose that no node runs from is a mistake, not a reason to use another node.
  if (dir) {
    throw new Error(
      `No node is running with --data ${dir} (${file} is missing): start "deno task serve --data ${dir}" ` +
        "or pass --gateway URL",
    );
  }
  return { url: DEFAULT_GATEWAY, from: "default" };
}

function unreachable(gateway: GatewayChoice, e: Error): Error {
  const base = `Cannot reach the gateway at ${gateway.url}: ${e.message}`;
  if (gateway.from === "file") {
    return new Error(
      `${base}. ${gateway.file} names it, but that node seems to have stopped without removing it; ` +
        "start it again or pass --gateway URL",
    );
  }
  if (gateway.from === "default") {
    return new Error(
      `${base}. Is "deno task serve" running? For a node on another port, pass --gateway URL ` +
        "(or MESH_GATEWAY), or --data DIR of that node",
    );
  }
  if (gateway.from === "url") return new Error(base);
  return new Error(`${base} (from ${gateway.from === "flag" ? "--gateway" : "MESH_GATEWAY"})`);
}

const PUT_HELP = `Usage: deno task put FILE [options]

Uploads FILE through a gateway and prints its CID and URL.

Options:
  --gateway URL   MESH_GATEWAY   gateway to upload to   [the running node of --data, else http://127.0.0.1:8080]
  --data DIR      MESH_DATA_DIR  find the gateway that serve --data DIR runs (its gateway.json;
                                 an error if none runs there)  [.meshgate]
  --name NAME                    file name to record              [FILE's base name]
  --type TYPE                    media type                       [from the extension]
  --k N  --m N                   data and parity chunks per stripe [the node's default]
  --prefer P                     who keeps the chunks: balanced, reliable, fast or cheap (reputation
                                 x price x latency, weighed differently)  [balanced]
  --lease DURATION               lease the chunks from their holders for this long (30d, 12h, 90s),
                                 audited on the node's schedule   [none: kept by volunteers, unaudited]
  --api-token T   MESH_API_TOKEN the gateway's API token, when it needs one  [DIR/api.token of the
                                 node found through --data, if it has one]
  -h, --help
`;

async function errorFrom(res: Response): Promise<Error> {
  const text = await res.text();
  try {
    const { message } = JSON.parse(text);
    if (message) return new Error(`${message} (HTTP ${res.status})`);
  } catch {
    // not JSON: fall through
  }
  // A Meshgate gateway answers every error in JSON: anything else is another server on that address.
  return new Error(
    `${
      res.url ? new URL(res.url).origin : "The gateway"
    } answered HTTP ${res.status} ${res.statusText}, not as a Meshgate ` +
      `gateway does: is it one?${text ? ` (${text.slice(0, 200)})` : ""}`,
  );
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
      data: { type: "string" },
      name: { type: "string" },
      type: { type: "string" },
      k: { type: "string" },
      m: { type: "string" },
      prefer: { type: "string" },
      lease: { type: "string" },
      "api-token": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(PUT_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("put takes exactly one FILE (see --help)");
  const path = positionals[0]!;
  const gateway = await chooseGateway(values.gateway, values.data);
  let file: Deno.FsFile;
  let size: number;
  try {
    file = await Deno.open(path);
    const info = await file.stat();
    if (info.isDirectory) {
      file.close();
      throw new UsageError(
        `"${path}" is a directory: put uploads one file (run it once per file)`,
      );
    }
    size = info.size;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`Cannot read "${path}": ${(e as Error).message}`);
  }
  const name = values.name ?? path.split("/").pop()!;
  const url = new URL("/mesh", gateway.url);
  url.searchParams.set("name", name);
  if (values.k) url.searchParams.set("k", values.k);
  if (values.m) url.searchParams.set("m", values.m);
  if (values.prefer) url.searchParams.set("prefer", preferArg(values.prefer));
  if (values.lease) url.searchParams.set("lease", values.lease);
  const bar = progressBar(`put ${name}`, size);
  let sent = 0;
  const token = values["api-token"] ?? Deno.env.get("MESH_API_TOKEN") ??
    await localToken(gateway);
  const res = await upload(url, file.readable.pipeThrough(counting((n) => bar.update(sent = n))), {
    "Content-Type": values.type ?? typeFromName(name) ?? "application/octet-stream",
    "Content-Length": String(size),
    ...(token ? { Authorization: `Bearer ${token}` } : {}),
  }).catch((e) => {
    throw unreachable(gateway, e);
  });
  bar.done(sent);
  if (!res.ok) throw await errorFrom(res);
  const answer = await res.json();
  console.log(answer.cid);
  console.log(answer.url);
  const d = answer.durability;
  if (d) {
    const survives = d.survives > 0
      ? `survives the loss of any ${d.survives} holder${d.survives === 1 ? "" : "s"}`
      : "lost if its one holder is lost";
    console.error(
      `${survives} · ${d.holders} holder${d.holders === 1 ? "" : "s"} · ` +
        `${Math.round(d.overhead * 100)}% space overhead${
          d.warning ? `\nwarning: ${d.warning}` : ""
        }`,
    );
  }
  if (answer.leases) {
    const ok = answer.leases.filter((l: { id?: string }) => l.id).length;
    console.error(
      `leased from ${ok} of ${answer.leases.length} holders${
        answer.leaseEnds ? ` · first lease ends ${answer.leaseEnds}` : ""
      }`,
    );
    for (const l of answer.leases) if (l.error) console.error(`  ${l.holder}: ${l.message}`);
  }
  return 0;
}

/**
 * The token of the node whose gateway.json named the gateway: same data directory, same machine, so it is
 * sent only to that node (never to a --gateway URL, which may be another host).
 */
async function localToken(gateway: GatewayChoice): Promise<string | undefined> {
  if (gateway.from !== "file") return undefined;
  const dir = gateway.file!.slice(0, gateway.file!.lastIndexOf("/"));
  try {
    return (await Deno.readTextFile(`${dir}/${TOKEN_FILE}`)).trim() || undefined;
  } catch {
    return undefined; // a node on loopback without a token has none
  }
}

const GET_HELP = `Usage: deno task get CID|URL [-o FILE] [options]

Downloads content through a gateway, to FILE or to standard output. Name it by CID, /mesh/<cid>,
/ipfs/<cid>, ipfs://<cid>, or a full URL such as the one put prints (fetched from that URL's gateway).

Options:
  -o, --output FILE              write here (atomically: a failed download leaves no file)
  --gateway URL   MESH_GATEWAY   gateway to download from   [the running node of --data, else http://127.0.0.1:8080]
  --data DIR      MESH_DATA_DIR  find the gateway that serve --data DIR runs (its gateway.json;
                                 an error if none runs there)  [.meshgate]
  --prefer P                     whom the mesh asks first: balanced, reliable, fast or cheap  [balanced]
  --lookup-via PEER              find missing chunks through PEER's paid lookups (?lookup=paid&via=),
                                 paid per lookup that delivered; "any" picks the best known offer
  -h, --help
`;

/**
 * What `get` was given: a bare CID, `/mesh/<cid>` or `/ipfs/<cid>`, `ipfs://<cid>`, or a gateway URL (path
 * form, or subdomain form `http://<cid>.mesh.localhost:8080/`). A URL keeps its own origin.
 */
export function parseTarget(text: string): { cid: string; url?: URL } {
  const arg = text.trim();
  const bad = () =>
    new UsageError(`"${text}" names no content: give a CID, /mesh/<cid>, or a gateway URL`);
  if (/^https?:\/\//i.test(arg)) {
    let url: URL;
    try {
      url = new URL(arg);
    } catch {
      throw bad();
    }
    url.hash = "";
    const path = /^\/(?:mesh|ipfs)\/([^/]+)\/?$/.exec(url.pathname);
    if (path) return { cid: decodeURIComponent(path[1]!), url };
    const sub = /^([a-z0-9]+)\.(?:mesh|ipfs)\./i.exec(url.hostname);
    if (sub && (url.pathname === "/" || url.pathname === "")) return { cid: sub[1]!, url };
    throw bad();
  }
  const scheme = /^(?:ipfs|mesh):\/\/([^/?#]+)\/?$/i.exec(arg);
  if (scheme) return { cid: scheme[1]! };
  const path = /^\/?(?:mesh|ipfs)\/([^/?#]+)\/?$/.exec(arg);
  if (path) return { cid: path[1]! };
  if (!arg || /[/?#\s]/.test(arg)) throw bad();
  return { cid: arg };
}

/** `--prefer`, checked here so that a typo is a usage error, not a 400 after connecting. */
function preferArg(v: string): string {
  if (!(PREFERENCES as readonly string[]).includes(v)) {
    throw new UsageError(`--prefer is one of ${PREFERENCES.join(", ")}, not "${v}"`);
  }
  return v;
}

async function get(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: "string", short: "o" },
      gateway: { type: "string" },
      data: { type: "string" },
      prefer: { type: "string" },
      "lookup-via": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(GET_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError("get takes exactly one CID (see --help)");
  const target = parseTarget(positionals[0]!);
  // A full URL names its own gateway; anything else goes to the chosen one.
  const gateway: GatewayChoice = target.url
    ? { url: target.url.origin, from: "url" }
    : await chooseGateway(values.gateway, values.data);
  const url = target.url ?? new URL(`/mesh/${encodeURIComponent(target.cid)}`, gateway.url);
  if (values.prefer) url.searchParams.set("prefer", preferArg(values.prefer));
  const via = values["lookup-via"];
  if (via !== undefined) {
    if (via !== "any" && !/^[1-9A-HJ-NP-Za-km-z]{40,64}$/.test(via)) {
      throw new UsageError(`--lookup-via is a peer ID or "any", not "${via}"`);
    }
    url.searchParams.set("lookup", "paid");
    if (via !== "any") url.searchParams.set("via", via);
  }
  const res = await fetch(url).catch((e) => {
    throw unreachable(gateway, e);
  });
  if (!res.ok) throw await errorFrom(res);
  const total = Number(res.headers.get("content-length")) || undefined;
  const bar = progressBar(
    `get ${target.cid.slice(0, 16)}…`,
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
  --paid           payments on, through the chain of deno task devnet; each node
                   pays and is paid with its own dev account
  --price-served WEI  wei per GiB each node charges, with --paid  [1073741824000000000: 1 gwei a byte]
  --chain-file F   chain file, with --paid                          [.meshgate/chain.json]
  --logs           show the nodes' JSON log lines (stderr) here     [off: only this summary]
  --drill LIST     also start nodes that misbehave on purpose, e.g. liar=1,slow=1,flaky=1,offline=1
                   (see serve --help); they get the ports after the honest ones   [none]
  -h, --help
`;

async function cluster(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      nodes: { type: "string", default: "4" },
      dir: { type: "string", default: ".meshgate/cluster" },
      "base-port": { type: "string", default: "8080" },
      paid: { type: "boolean" },
      "price-served": { type: "string" },
      "chain-file": { type: "string" },
      logs: { type: "boolean" },
      drill: { type: "string" },
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
  const served = values["price-served"];
  if (!values.paid && (served !== undefined || values["chain-file"] !== undefined)) {
    throw new UsageError("--price-served and --chain-file go with --paid");
  }
  const paid = values.paid
    ? {
      chainFile: values["chain-file"],
      price: served === undefined ? undefined : perByte(served, "Price"),
    }
    : undefined;
  const drills = values.drill === undefined ? [] : drillList(values.drill);
  if (basePort + nodes + drills.length > 65535) {
    throw new UsageError(`--base-port "${values["base-port"]}" leaves no room for the drill nodes`);
  }
  console.error(
    `starting ${nodes} ${paid ? "paid " : ""}nodes${
      drills.length ? ` and ${drills.length} drills` : ""
    }…`,
  );
  const running = await startCluster({
    nodes,
    dir: values.dir,
    basePort,
    stderr: values.logs ? "inherit" : "null",
    paid,
    drills,
  });
  for (const [i, node] of running.nodes.entries()) {
    const account = node.account ? `  account ${node.account}` : "";
    const drill = i >= nodes ? `  DRILL: ${drills[i - nodes]}` : "";
    console.log(`node ${i}  ${node.url}/  peer ${node.peerId}${account}${drill}`);
  }
  console.log("Ctrl-C stops them all.");
  const { promise, resolve } = Promise.withResolvers<void>();
  let stopping = false;
  // A node that dies (killed, crashed) is said at once: the others keep serving without it.
  for (const [i, node] of running.nodes.entries()) {
    void node.child.status.then((s) => {
      if (stopping) return;
      const how = s.signal ? `was killed (${s.signal})` : `exited with code ${s.code}`;
      const logs = values.logs || s.signal ? "" : " (--logs shows why)";
      console.error(`node ${i} (pid ${node.pid}) ${how}; the others keep running${logs}`);
    });
  }
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
  await promise;
  stopping = true;
  console.error("stopping…");
  await running.stop();
  return 0;
}

const MARKET_HELP = `Usage: deno task market <action> [options]   (the node's /api/market over HTTP)

Actions:
  want TOPIC ITEM --max PRICE [--quantity N] [--ttl 1h] [--spec k=v]…   post an intent, print its ID
  quotes INTENT                       the quotes opened for it, best first (ID, price, effective, seller)
  sell TOPIC ITEM --price UNIT --stock N [--terms T] [--spec k=v]…        add a listing
  accept QUOTE                        fund the escrow deal of a quote (needs --chain and a pay account)
  release DEAL                        pay the seller
  rate DEAL VALUE                     rate a settled deal, 0 (worst) to 1; spread to the mesh
  deals                               this node's deals, as buyer and seller

Options:
  --currency C                   [wei]
  --gateway URL   MESH_GATEWAY   [the running node of --data, else http://127.0.0.1:8080]
  --data DIR      MESH_DATA_DIR  [.meshgate]
  --api-token T   MESH_API_TOKEN [DIR/api.token of the node found through --data, if it has one]
  -h, --help
`;

/** `5000`, `90s`, `30m`, `12h`, `2d` as ms. */
function durationMs(text: string): number {
  const m = /^(\d+)(ms|s|m|h|d)?$/.exec(text);
  if (!m) throw new UsageError(`"${text}" is no duration (e.g. 90s, 30m, 12h, 2d)`);
  const unit = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[m[2] ?? "ms"]!;
  return Number(m[1]) * unit;
}

async function market(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      max: { type: "string" },
      price: { type: "string" },
      quantity: { type: "string" },
      stock: { type: "string" },
      currency: { type: "string" },
      terms: { type: "string" },
      ttl: { type: "string" },
      spec: { type: "string", multiple: true },
      gateway: { type: "string" },
      data: { type: "string" },
      "api-token": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  const [action, ...rest] = positionals;
  if (values.help || action === undefined) {
    console.log(MARKET_HELP);
    return values.help ? 0 : 2;
  }
  const arity: Record<string, number> = {
    want: 2,
    quotes: 1,
    sell: 2,
    accept: 1,
    release: 1,
    rate: 2,
    deals: 0,
  };
  if (!(action in arity)) throw new UsageError(`Unknown market action "${action}" (see --help)`);
  if (rest.length !== arity[action]) {
    throw new UsageError(`market ${action} takes ${arity[action]} argument(s) (see --help)`);
  }
  const specs = Object.fromEntries((values.spec ?? []).map((kv) => {
    const i = kv.indexOf("=");
    if (i < 1) throw new UsageError(`--spec "${kv}": write key=value`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
  const count = (v: string | undefined, name: string, dflt?: number) => {
    if (v === undefined && dflt !== undefined) return dflt;
    if (v === undefined || !/^\d+$/.test(v)) throw new UsageError(`--${name} N is needed`);
    return Number(v);
  };
  const currency = values.currency ?? "wei";
  const [method, path, body]: [string, string, unknown?] = (() => {
    switch (action) {
      case "want":
        if (!values.max) throw new UsageError("want needs --max PRICE");
        return ["POST", "/api/market/intents", {
          topic: rest[0],
          item: rest[1],
          specs,
          quantity: count(values.quantity, "quantity", 1),
          maxPrice: values.max,
          currency,
          ttlMs: durationMs(values.ttl ?? "1h"),
        }];
      case "quotes":
        return ["GET", `/api/market/quotes?intent=${encodeURIComponent(rest[0]!)}`];
      case "sell":
        if (!values.price) throw new UsageError("sell needs --price UNIT");
        return ["POST", "/api/market/listings", {
          topic: rest[0],
          item: rest[1],
          specs,
          stock: count(values.stock, "stock"),
          currency,
          price: { unit: values.price },
          ...(values.terms !== undefined ? { terms: values.terms } : {}),
        }];
      case "accept":
        return ["POST", `/api/market/quotes/${encodeURIComponent(rest[0]!)}/accept`];
      case "release":
        return ["POST", `/api/market/deals/${encodeURIComponent(rest[0]!)}/release`];
      case "rate":
        return ["POST", `/api/market/deals/${encodeURIComponent(rest[0]!)}/rate`, {
          value: Number(rest[1]),
        }];
      default:
        return ["GET", "/api/market/deals"];
    }
  })();
  const gateway = await chooseGateway(values.gateway, values.data);
  const token = values["api-token"] ?? Deno.env.get("MESH_API_TOKEN") ??
    await localToken(gateway);
  const res = await fetch(new URL(path, gateway.url), {
    method,
    headers: {
      "content-type": "application/json",
      ...(token ? { Authorization: `Bearer ${token}` } : {}),
    },
    ...(body ? { body: JSON.stringify(body) } : {}),
  }).catch((e) => {
    throw unreachable(gateway, e);
  });
  if (!res.ok) throw await errorFrom(res);
  const answer = await res.json();
  if (action === "want") console.log(answer.id);
  else if (action === "quotes") {
    for (const q of answer.quotes) {
      console.log(`${q.id}  ${q.price} ${q.currency}  effective ${q.effective}  ${q.seller}`);
    }
  } else if (action === "deals") {
    for (const d of answer.deals) {
      console.log(
        `${d.id}  ${d.role}  ${d.status}  ${d.amount}${
          d.rated !== undefined ? `  rated ${d.rated}` : ""
        }`,
      );
    }
  } else console.log(JSON.stringify(answer, null, 2));
  return 0;
}

const HELP = `Usage: deno run -A src/cli.ts <command> [options]   (or: deno task <command>)

Commands:
  serve          start a node with its gateway
  put FILE       upload a file, print its CID and URL
  get CID        download content by CID
  cluster        start N local nodes in one mesh
  repair         check a stopped node's store and rebuild lost chunks
  market         want, sell, quotes, accept, release, rate, deals (the node's market API)

Run a command with --help for its options.
`;

const COMMANDS = ["serve", "put", "get", "cluster", "repair", "market"];

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
      case "market":
        return await market(rest);
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
      // node:util's parseArgs advises "--" for an unknown option, which is seldom what was meant.
      const message = (e as Error).message.replace(/\. To specify a positional argument.*$/s, "");
      const hint = command && COMMANDS.includes(command)
        ? `see deno task ${command} --help`
        : `commands: ${COMMANDS.join(", ")}`;
      console.error(`error: ${message} (${hint})`);
      return 2;
    }
    if (e instanceof MeshError) console.error(`error: ${e.message}`);
    else console.error(`error: ${(e as Error).message ?? e}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));

/** `--drill KIND` of serve. */
function drillOf(text: string): Drill {
  try {
    return parseDrill(text);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** `--drill liar=1,slow=2` of cluster: each kind as many times as named (at most 16 in all). */
function drillList(text: string): Drill[] {
  const out: Drill[] = [];
  for (const part of text.split(",")) {
    const m = /^([a-z]+)(?:=(\d{1,2}))?$/.exec(part.trim());
    if (!m) throw new UsageError(`--drill "${text}": write kind=count, e.g. liar=1,slow=1`);
    const drill = drillOf(m[1]!);
    for (let i = 0; i < Number(m[2] ?? 1); i++) out.push(drill);
  }
  if (out.length > 16) throw new UsageError("--drill: at most 16 drill nodes");
  return out;
}
