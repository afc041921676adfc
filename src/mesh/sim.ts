/**
 * The mesh at scale, in one process: real mesh nodes ({@link createMeshNode}: kad-dht, the chunk exchange,
 * noise, yamux, identify, ping, a real node's connection limits) over `@libp2p/memory`, with latency and loss
 * injected on every link, and churn. Used by `deno task simulate` (bench/simulate_mesh.ts) and by
 * test/mesh/sim_test.ts.
 *
 * What is measured, and how:
 * - DHT lookups: `findProviders` of a record whose provider is alive, from a random live node, until that
 *   provider is named. Hops are read from kad-dht's own query events: the starting peers (the routing
 *   table's k closest to the key, as the query manager picks them) are hop 1, a peer first named as closer
 *   in a PEER_RESPONSE from a hop-h peer is hop h + 1, and a lookup's hops are those of the peer whose
 *   response named the provider (0 when the asking node had the record itself).
 * - Provider-record availability: the same lookups while nodes leave and join, and once more for every
 *   record afterwards.
 * - Reads: files ingested (k + m stripes) and placed with {@link placeFile} by random nodes, each holder
 *   announcing what it accepted as a real node's provide queue would; after churn each file is read with
 *   {@link readFile} over {@link fetchFromMesh} and a {@link ChunkLocator}, as a node reads, from a node
 *   that is not its uploader (manifest included), time to first byte and byte identity checked. A file is
 *   expected to read when its manifest and k chunks of every stripe still have a live holder.
 * - A light client's cold DHT walk: a fresh client-mode node that knows one peer looks a record up at once.
 *
 * The link model: each node has a one-way "last mile" latency drawn from `latencyMs`; every message a node
 * sends is delivered after its latency, in order (a pipe, not a per-message queue), and a share `loss` of the
 * messages is delivered a retransmission timeout `rtoMs` late, holding back what follows (TCP's head-of-line
 * blocking: a reliable stream loses time, not bytes). A share `dialLoss` of dials fails outright.
 *
 * Time: churn is compressed (`hourMs` of wall time per simulated hour, nodes leaving and joining every
 * simulated minute); the DHT's own timers (self-query every 5 min, republish every hour) are not, so the
 * simulated mesh maintains itself less than a real one would over the same churn.
 *
 * @module
 */
import { type ComponentLogger, ConnectionFailedError, type Logger } from "@libp2p/interface";
import type { SingleKadDHT } from "@libp2p/kad-dht";
import { memory } from "@libp2p/memory";
import { sha256 } from "multiformats/hashes/sha2";
import { type CID, cidOf } from "../content/cid.ts";
import { ingest } from "../content/ingest.ts";
import { decodeManifest, type Manifest } from "../content/manifest.ts";
import { readFile } from "../content/read.ts";
import { MeshError } from "../errors.ts";
import { providerKey } from "./dht.ts";
import type { ChunkSource } from "./exchange.ts";
import { ChunkLocator, fetchFromMesh, type FetchOptions } from "./fetch.ts";
import { createMeshNode, type MeshNode } from "./node.ts";
import { placeFile } from "./place.ts";
import { type DilatedClock, type DilatedClockInit, onDilatedClock } from "./_sim_clock.ts";
import { cpuMs } from "../proc.ts";

/** Options of {@link simulateMesh}. Every field documents its default. */
export interface MeshSimInit {
  /** Nodes in the mesh. Default 1000. */
  nodes?: number;
  /** Wall-clock ms of one simulated hour of churn. Default 60 000 (one simulated minute a second). */
  hourMs?: number;
  /** Share of the nodes that leave (and as many new ones that join) per simulated hour. Default 0.2. */
  churnPerHour?: number;
  /** Range of the one-way latency of each node's link, in ms. Default [5, 40]. */
  latencyMs?: [number, number];
  /** Share of messages delivered a retransmission timeout late. Default 0.01. */
  loss?: number;
  /** The retransmission timeout of a lost message, in ms. Default 200. */
  rtoMs?: number;
  /** Share of dials that fail. Default 0.01. */
  dialLoss?: number;
  /** Peers each node dials when it joins. Default 3. */
  bootstrapPeers?: number;
  /** Rounds of routing-table refresh after start-up (each what a real node does every 5 min), stopping
   * early when the tables stop growing. Default 0: kad-dht's own refresh at start is enough for lookups, and
   * each round costs more than the start-up itself (at 200 nodes, over 4 min of wall time and 8 to 21 MiB
   * per node, as every walk leaves connections open). */
  refreshRounds?: number;
  /** Provider records published (one random CID by one random node each). Default 100. */
  records?: number;
  /** Lookups before churn. Default 200. */
  lookups?: number;
  /** Lookups running at once during churn. Default 4. */
  churnLookupConcurrency?: number;
  /** Pause of each of those between two lookups, ms. Default 0: back to back, so the churn phase's CPU
   * (and, dilated, its wall time) grows with how fast lookups run; a pause bounds it. */
  churnLookupGapMs?: number;
  /** Files placed across the mesh. Default 8. */
  files?: number;
  /** Stripe shape of the files. Default k 10, m 4. */
  k?: number;
  m?: number;
  /** Chunk size of the files, bytes. Default 4096. */
  chunkSize?: number;
  /** Size of each file, bytes. Default 2 stripes of k chunks, less a few bytes. */
  fileSize?: number;
  /** Cold lookups by light clients. Default 20. */
  lightClients?: number;
  /** Deadline of one lookup, ms. Default 10 000. */
  lookupTimeoutMs?: number;
  /** Deadline of one file read, ms. Default 60 000. */
  readTimeoutMs?: number;
  /** Dilated time (see `./_sim_clock.ts`): the simulation's clocks and timers slow down while the one thread
   * cannot keep up, so that measured times are the mesh's, not the thread's. `false` runs on the wall clock.
   * Default: on, dilation 1 to 100. */
  dilation?: false | DilatedClockInit;
  /** Progress lines. Default: none. */
  log?: (line: string) => void;
}

/** One lookup's outcome. */
export interface LookupResult {
  ok: boolean;
  /** Hops to the peer that named the provider (see the module doc); undefined when it failed. */
  hops?: number;
  ms: number;
  /** How a failed lookup ended: its deadline, the query running out of peers, or an error. */
  why?: "timeout" | "exhausted" | "error";
  /** Peers that answered, and requests that failed (QUERY_ERROR), by error name. */
  answered: number;
  errors: Record<string, number>;
  /** The event loop's worst lag while the lookup ran, ms. */
  lagMs: number;
}

/** A failed lookup, with where its record was at the time (see {@link recordHolders}). */
export interface LookupFailure extends LookupResult {
  holders: number;
  closestHolders: number;
}

/** Count, successes, hops and times of a set of lookups. */
export interface LookupStats {
  count: number;
  ok: number;
  /** Share that succeeded, 0..1 (1 when there were none). */
  success: number;
  hopsMedian: number;
  hopsP95: number;
  msMedian: number;
  msP95: number;
}

/** What {@link simulateMesh} measured. */
export interface MeshSimReport {
  nodes: number;
  churnPerHour: number;
  /** Nodes that left and joined during the simulated hour. */
  left: number;
  joined: number;
  /** The hop bound of the issue: log2(N) / 2 + 2. */
  hopBound: number;
  /** Lookups before churn, during churn, and of every record afterwards (provider-record availability). */
  steady: LookupStats;
  churn: LookupStats;
  after: LookupStats;
  /** Every lookup for an existing record (the three above together). */
  all: LookupStats;
  /** Every failed lookup (light clients' too), with its diagnosis. */
  failures: LookupFailure[];
  /** Records whose provider was still alive at the end, of those published. */
  recordsLive: number;
  records: number;
  /** File reads after churn. */
  files: number;
  /** Files whose manifest and every stripe kept >= k live holders. */
  filesExpected: number;
  /** Of those, read byte-identical; and of the others, read anyway. */
  filesRead: number;
  filesReadAnyway: number;
  ttfbMedianMs: number;
  ttfbP95Ms: number;
  readMedianMs: number;
  /** A light client's cold DHT walk. */
  light: LookupStats;
  /** Memory of the process per node after start-up (RSS and V8 heap growth divided by the node count), MiB. */
  rssPerNodeMiB: number;
  heapPerNodeMiB: number;
  rssTotalMiB: number;
  /** Median connections and routing-table size per node after start-up. */
  connectionsMedian: number;
  routingTableMedian: number;
  /** Seconds of the phases (virtual, when time is dilated), and of the whole run on the wall clock. */
  startSeconds: number;
  totalSeconds: number;
  wallSeconds: number;
  /** Wall ms per virtual ms: on average over the run, and at worst (1 without dilation). */
  dilationMean: number;
  dilationPeak: number;
}

/** Runs the simulation (see the module doc) and stops every node it started. */
export async function simulateMesh(init: MeshSimInit = {}): Promise<MeshSimReport> {
  return await onDilatedClock(init.dilation, (clock) => run(init, clock));
}

async function run(init: MeshSimInit, clock: DilatedClock | undefined): Promise<MeshSimReport> {
  const t0 = performance.now();
  const wall0 = clock?.wallNow() ?? t0;
  const cpu0 = cpuSeconds();
  const n = init.nodes ?? 1000;
  if (!Number.isInteger(n) || n < 10) throw new RangeError(`Nodes "${n}" must be an integer >= 10`);
  const hourMs = init.hourMs ?? 60_000;
  const churnPerHour = init.churnPerHour ?? 0.2;
  const [latMin, latMax] = init.latencyMs ?? [5, 40];
  const k = init.k ?? 10;
  const m = init.m ?? 4;
  const chunkSize = init.chunkSize ?? 4096;
  const fileSize = init.fileSize ?? 2 * k * chunkSize - 7;
  const lookupTimeoutMs = init.lookupTimeoutMs ?? 10_000;
  // Each line ends with the dilation now, and the wall and CPU seconds spent so far (where the run's time goes).
  const log = init.log
    ? (line: string) => {
      const wall = ((clock?.wallNow() ?? performance.now()) - wall0) / 1000;
      const cpu = cpuSeconds() - cpu0;
      const time = clock ? `time x${clock.factor.toFixed(1)}, ` : "";
      init.log!(`${line} [${time}wall ${wall.toFixed(0)} s, cpu ${cpu.toFixed(0)} s]`);
    }
    : () => {};
  const net: LinkModel = {
    loss: init.loss ?? 0.01,
    rtoMs: init.rtoMs ?? 200,
    dialLoss: init.dialLoss ?? 0.01,
  };
  const provides = new Limiter(16);

  const live: SimNode[] = [];
  /** Joined during churn, not live yet (see there). */
  const arriving = new Set<SimNode>();
  const failures: LookupFailure[] = [];
  lagMeter.start();
  /** Connections opened, and closed by reason (not counting nodes leaving). */
  const counters = { opened: 0, closed: new Map<string, number>() };
  const stopping = new Set<string>();
  let seq = 0;
  const spawn = async (bootstrap: number, clientMode = false): Promise<SimNode> => {
    const name = `sim-${seq++}`;
    const latency = latMin + Math.random() * (latMax - latMin);
    const peers = pick(live, bootstrap).map((p) => p.addr);
    const store = new SimStore();
    const mesh = await createMeshNode({
      listen: clientMode ? [] : [`/memory/${name}`],
      transports: [simTransport(net, latency)],
      bootstrap: peers,
      // Public mode: memory addresses are not private, and no address is exempt from the connection limits.
      allowLoopback: false,
      // A real node's limits, without libp2p's connection monitor (see pingIntervalMs).
      connections: { pingIntervalMs: 0 },
      store,
      dht: { clientMode },
      logger: silentLogger,
    });
    const node: SimNode = { name, mesh, store, addr: mesh.multiaddrs()[0] ?? "" };
    mesh.libp2p.addEventListener("connection:open", (e) => {
      counters.opened++;
      const c = e.detail as unknown as EventTarget & { timeline: { open: number } };
      c.addEventListener("close", (ev) => {
        const why = String((ev as Event & { error?: unknown }).error ?? "closed").slice(0, 60);
        if (!stopping.has(name)) counters.closed.set(why, (counters.closed.get(why) ?? 0) + 1);
      }, { once: true });
    });
    store.onPeerPut = (cid) =>
      void provides.run(() => mesh.provide(cid, timeout(30_000))).catch(() => {});
    return node;
  };

  try {
    // Start-up: a first node, then batches that each join through a few of the nodes already up.
    log(`starting ${n} nodes`);
    collectGarbage();
    const base = Deno.memoryUsage();
    live.push(await spawn(0));
    const bootstrap = init.bootstrapPeers ?? 3;
    while (live.length < n) {
      // Small batches: a burst of handshakes on a loaded machine makes identify time out, and a peer
      // whose identify failed never enters the routing table.
      const batch = Math.min(n - live.length, Math.max(1, Math.min(10, live.length)));
      await calm();
      live.push(...await Promise.all(Array.from({ length: batch }, () => spawn(bootstrap))));
      if (live.length % 50 < batch) {
        log(
          `  ${live.length} up, ${median(live.map((x) => x.mesh.routingTableSize()))} in routing ` +
            `tables (median); ${counters.opened} connections opened, closed: ` +
            JSON.stringify(Object.fromEntries(counters.closed)) +
            `; ${
              ((Deno.memoryUsage().rss - base.rss) / live.length / MiB).toFixed(1)
            } MiB RSS per node`,
        );
      }
    }
    // A joining node's first refresh runs while its table is nearly empty; a real node's next ones (every
    // 5 min) fill every bucket. Run those refreshes now, a batch of nodes at a time, until the tables stop
    // growing.
    let before = -1;
    for (let round = 0; round < (init.refreshRounds ?? 0); round++) {
      for (let i = 0; i < live.length; i += 10) {
        for (const x of live.slice(i, i + 10)) {
          void x.mesh.libp2p.services.dht.refreshRoutingTable();
        }
        await sleep(200);
        await calm();
      }
      await sleep(2000);
      const size = median(live.map((x) => x.mesh.routingTableSize()));
      log(`  refresh ${round + 1}: ${size} routing-table peers per node (median)`);
      if (size <= before * 1.05) break;
      before = size;
    }
    const startSeconds = (performance.now() - t0) / 1000;
    collectGarbage();
    const mem = Deno.memoryUsage();
    const rssPerNodeMiB = (mem.rss - base.rss) / n / MiB;
    const heapPerNodeMiB = (mem.heapUsed - base.heapUsed) / n / MiB;
    const connectionsMedian = median(live.map((x) => x.mesh.libp2p.getConnections().length));
    const routingTableMedian = median(live.map((x) => x.mesh.routingTableSize()));
    log(
      `up in ${startSeconds.toFixed(0)} s: ${connectionsMedian} connections and ` +
        `${routingTableMedian} routing-table peers per node (median), ` +
        `${rssPerNodeMiB.toFixed(2)} MiB RSS per node`,
    );

    // Records: one random CID each, provided by a random node.
    const recordCount = init.records ?? 100;
    const records: { cid: CID; by: SimNode }[] = [];
    let publishFailed = 0;
    const provideMs: number[] = [];
    await Promise.all(Array.from({ length: recordCount }, async () => {
      const cid = cidOf(crypto.getRandomValues(new Uint8Array(32)));
      const by = pick(live, 1)[0]!;
      const p0 = performance.now();
      // A provide that does not finish in time may still have stored its record on some peers: it is
      // looked up like the others.
      await by.mesh.provide(cid, timeout(60_000)).catch((e) => {
        if (publishFailed++ < 5) log(`  provide failed: ${(e as Error).message}`);
      });
      provideMs.push(performance.now() - p0);
      records.push({ cid, by });
    }));
    log(
      `${records.length} records published (${publishFailed} provides failed or timed out; ` +
        `${median(provideMs).toFixed(0)} ms median, ${
          Math.max(...provideMs).toFixed(0)
        } ms at most)`,
    );

    // Files: ingested by a random node and placed across its peers.
    const fileCount = init.files ?? 8;
    const files: SimFile[] = [];
    for (let i = 0; i < fileCount; i++) {
      const by = pick(live, 1)[0]!;
      const bytes = randomBytes(fileSize);
      by.store.announce = false;
      const { cid, manifest } = await ingest(
        ReadableStream.from([bytes]),
        (c, b) => by.store.put(c, b),
        { k, m, chunkSize, name: `file-${i}` },
      );
      const report = await placeFile(by.mesh, cid, manifest, (c) => by.store.get(c), {
        minAgeMs: 0, // every peer is minutes old at most here
        signal: AbortSignal.timeout(120_000),
      });
      by.store.announce = true;
      for (const c of report.drop) by.store.chunks.delete(c.toString());
      for (const c of report.local) {
        void provides.run(() => by.mesh.provide(c, timeout(30_000))).catch(() => {});
      }
      files.push({ cid, manifest, bytes, by, where: report.where });
    }
    await provides.idle();
    log(`${files.length} files placed and announced`);

    const liveRecord = () => {
      const alive = new Set(live);
      const ok = records.filter((r) => alive.has(r.by));
      return ok[Math.floor(Math.random() * ok.length)]!;
    };
    const look = async (from: SimNode, r: { cid: CID; by: SimNode }): Promise<LookupResult> => {
      const res = await lookup(from, r.cid, r.by.mesh.peerId, lookupTimeoutMs);
      if (!res.ok) {
        const h = await recordHolders(live, r.cid, r.by.mesh.peerId);
        failures.push({ ...res, ...h });
        log(
          `  lookup failed (${res.why}) after ${res.ms.toFixed(0)} ms: ${res.answered} answered, ` +
            `errors ${JSON.stringify(res.errors)}, worst loop lag ${res.lagMs.toFixed(0)} ms; ` +
            `record on ${h.holders} live nodes, ${h.closestHolders} of the ${h.k} closest; ` +
            `asker's table ${from.mesh.routingTableSize()}`,
        );
      }
      return res;
    };
    const randomLookup = () => look(pick(live, 1)[0]!, liveRecord());

    // Lookups before churn.
    const steady: LookupResult[] = [];
    const lookupLimiter = new Limiter(8);
    await Promise.all(
      Array.from(
        { length: init.lookups ?? 200 },
        () => lookupLimiter.run(async () => steady.push(await randomLookup())),
      ),
    );
    log(`steady lookups: ${fmtStats(stats(steady))}`);

    // One simulated hour of churn, with lookups running throughout.
    const churn: LookupResult[] = [];
    let churning = true;
    const churnOver = new AbortController();
    const lookers = Array.from({ length: init.churnLookupConcurrency ?? 4 }, async () => {
      while (churning) {
        churn.push(await randomLookup());
        // A lookup the asker answers itself runs on microtasks alone: without a turn of the event loop
        // between them these loops would starve every timer, the churn's own included (a 20-node run hung).
        await sleep(Math.max(1, init.churnLookupGapMs ?? 0), churnOver.signal);
      }
    });
    let owed = 0;
    let left = 0;
    let joined = 0;
    const leaving: Promise<void>[] = [];
    const joining: Promise<void>[] = [];
    const minuteMs = hourMs / 60;
    for (let minute = 0; minute < 60; minute++) {
      const tick = sleep(minuteMs);
      owed += n * churnPerHour / 60;
      const count = Math.floor(owed);
      owed -= count;
      for (let i = 0; i < count; i++) {
        const gone = live.splice(Math.floor(Math.random() * live.length), 1)[0]!;
        leaving.push(gone.mesh.stop().catch(() => {}));
        left++;
      }
      // A joining node counts as live (asks lookups, may leave) once its routing table has a peer, as a
      // light client's walk waits below: a lookup from a table still empty (identify and kad-dht's check
      // of its bootstrap peers not done, or its dials lost) measures the join, not the DHT. Joins run in
      // the background: the hour lasts `hourMs`, not 60 joins end to end.
      for (let i = 0; i < count; i++) {
        joining.push((async () => {
          const x = await spawn(bootstrap);
          arriving.add(x);
          await inTable(x.mesh, 10_000);
          arriving.delete(x);
          live.push(x);
          joined++;
        })());
      }
      await tick;
      if (minute % 10 === 9) log(`  minute ${minute + 1}: ${left} left, ${joined} joined`);
    }
    await Promise.all(joining);
    churning = false;
    churnOver.abort();
    await Promise.all(lookers);
    await Promise.all(leaving);
    log(`churn lookups: ${fmtStats(stats(churn))}`);

    // Every record whose provider is alive, once more.
    const alive = new Set(live);
    const after: LookupResult[] = [];
    const kept = records.filter((r) => alive.has(r.by));
    await Promise.all(
      kept.map((r) => lookupLimiter.run(async () => after.push(await look(pick(live, 1)[0]!, r)))),
    );
    log(`records after churn: ${fmtStats(stats(after))}`);

    // Reads of the placed files, by nodes other than their uploaders.
    const aliveIds = new Set(live.map((x) => x.mesh.peerId));
    let filesExpected = 0;
    let filesRead = 0;
    let filesReadAnyway = 0;
    const ttfb: number[] = [];
    const readMs: number[] = [];
    for (const f of files) {
      const held = (c: CID) => [...(f.where.get(c.toString()) ?? [])].some((p) => aliveIds.has(p));
      const expected = held(f.cid) &&
        f.manifest.stripes.every((s) => s.filter(held).length >= Math.min(k, s.length - m));
      if (expected) filesExpected++;
      const reader = pick(live.filter((x) => x !== f.by), 1)[0]!;
      const r = await readOver(reader.mesh, f.cid, init.readTimeoutMs ?? 60_000);
      const same = r.bytes !== undefined && equal(r.bytes, f.bytes);
      if (same) {
        ttfb.push(r.ttfbMs!);
        readMs.push(r.ms);
        if (expected) filesRead++;
        else filesReadAnyway++;
      } else if (expected) {
        log(`  file ${f.cid} did not read: ${r.error ?? "bytes differ"}`);
        await diagnoseRead(live, reader, f, aliveIds, log);
      }
    }
    log(`reads: ${filesRead}/${filesExpected} expected files byte-identical`);

    // Light clients: a fresh client-mode node that knows one peer, looking a record up at once.
    const light: LookupResult[] = [];
    const lightLimiter = new Limiter(4);
    await Promise.all(
      Array.from({ length: init.lightClients ?? 20 }, () =>
        lightLimiter.run(async () => {
          const client = await spawn(1, true);
          try {
            // Its walk starts from the one peer it knows, once that peer is in its table (after identify
            // and kad-dht's check; a lost bootstrap dial is retried, as a node does while isolated).
            await inTable(client.mesh, 40_000);
            const r = liveRecord();
            light.push(await look(client, r));
          } finally {
            await client.mesh.stop();
          }
        })),
    );
    log(`light clients: ${fmtStats(stats(light))}`);

    return {
      nodes: n,
      churnPerHour,
      left,
      joined,
      hopBound: Math.log2(n) / 2 + 2,
      steady: stats(steady),
      churn: stats(churn),
      after: stats(after),
      all: stats([...steady, ...churn, ...after]),
      failures,
      recordsLive: kept.length,
      records: records.length,
      files: files.length,
      filesExpected,
      filesRead,
      filesReadAnyway,
      ttfbMedianMs: median(ttfb),
      ttfbP95Ms: quantile(ttfb, 0.95),
      readMedianMs: median(readMs),
      light: stats(light),
      rssPerNodeMiB,
      heapPerNodeMiB,
      rssTotalMiB: mem.rss / MiB,
      connectionsMedian,
      routingTableMedian,
      startSeconds,
      totalSeconds: (performance.now() - t0) / 1000,
      wallSeconds: ((clock?.wallNow() ?? performance.now()) - wall0) / 1000,
      dilationMean: clock?.meanFactor ?? 1,
      dilationPeak: clock?.peak ?? 1,
    };
  } finally {
    lagMeter.stop();
    await Promise.all([...live, ...arriving].map((x) => x.mesh.stop().catch(() => {})));
  }
}

/** The summary table of a report, as Markdown. */
export function formatReport(r: MeshSimReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const lk = (s: LookupStats) =>
    `${pct(s.success)} of ${s.count}; hops median ${s.hopsMedian}, p95 ${s.hopsP95}; ` +
    `${s.msMedian.toFixed(0)} ms median, ${s.msP95.toFixed(0)} ms p95`;
  const rows: [string, string][] = [
    [
      "nodes",
      `${r.nodes} (${r.connectionsMedian} connections, ${r.routingTableMedian} routing-table peers per node, median)`,
    ],
    ["churn", `${pct(r.churnPerHour)} per hour, compressed: ${r.left} left, ${r.joined} joined`],
    ["DHT lookups, before churn", lk(r.steady)],
    ["DHT lookups, during churn", lk(r.churn)],
    [
      "provider records after churn",
      `${lk(r.after)} (${r.recordsLive} of ${r.records} providers alive)`,
    ],
    [
      "all lookups for existing records",
      `${
        pct(r.all.success)
      } of ${r.all.count}; hops median ${r.all.hopsMedian} (bound log2(N)/2+2 = ${
        r.hopBound.toFixed(2)
      })`,
    ],
    [
      "file reads after churn",
      `${r.filesRead} of ${r.filesExpected} files with >= k live holders per stripe byte-identical (${r.files} placed; ${r.filesReadAnyway} others read too)`,
    ],
    [
      "time to first byte",
      `${r.ttfbMedianMs.toFixed(0)} ms median, ${r.ttfbP95Ms.toFixed(0)} ms p95 (whole file ${
        r.readMedianMs.toFixed(0)
      } ms median)`,
    ],
    ["light client, cold DHT walk", lk(r.light)],
    [
      "memory per node",
      `${r.rssPerNodeMiB.toFixed(2)} MiB RSS, ${r.heapPerNodeMiB.toFixed(2)} MiB V8 heap (${
        r.rssTotalMiB.toFixed(0)
      } MiB RSS in all)`,
    ],
    [
      "time",
      `${r.startSeconds.toFixed(0)} s to start, ${r.totalSeconds.toFixed(0)} s in all; ${
        r.wallSeconds.toFixed(0)
      } s of wall time (time dilated ${r.dilationMean.toFixed(1)}x on average, ${
        r.dilationPeak.toFixed(1)
      }x at worst)`,
    ],
  ];
  const w = Math.max(...rows.map(([a]) => a.length));
  return [
    `| ${"measure".padEnd(w)} | result |`,
    `| ${"-".repeat(w)} | ------ |`,
    ...rows.map(([a, b]) => `| ${a.padEnd(w)} | ${b} |`),
  ].join("\n");
}

// --- lookups and reads ---

/**
 * Looks up the providers of `cid` from `node` until `provider` is named, counting hops from kad-dht's query
 * events (see the module doc).
 */
export async function lookup(
  node: SimNode,
  cid: CID,
  provider: string,
  timeoutMs: number,
): Promise<LookupResult> {
  const t0 = performance.now();
  const dht = node.mesh.libp2p.services.dht as SingleKadDHT;
  const key = await providerKey(cid);
  const hop = new Map<string, number>();
  // The query starts from the routing table's k closest peers to the key, as kad-dht's query manager does.
  const kadId = (await sha256.digest(key.multihash.bytes)).digest;
  // kad-dht's own routing table has closestPeers() and kBucketSize; its public type does not say so.
  const table = dht.routingTable as unknown as {
    closestPeers(id: Uint8Array, o: { count: number }): { toString(): string }[];
    kBucketSize: number;
  };
  for (const p of table.closestPeers(kadId, { count: table.kBucketSize })) {
    hop.set(p.toString(), 1);
  }
  const signal = AbortSignal.timeout(timeoutMs);
  const errors: Record<string, number> = {};
  let answered = 0;
  const done = (r: Pick<LookupResult, "ok" | "hops" | "why">): LookupResult => {
    const t1 = performance.now();
    return { ...r, ms: t1 - t0, answered, errors, lagMs: lagMeter.max(t0, t1) };
  };
  try {
    for await (const ev of dht.findProviders(key, { signal })) {
      if (ev.name === "QUERY_ERROR") {
        const name = (ev.error as Error)?.name ?? "Error";
        errors[name] = (errors[name] ?? 0) + 1;
      }
      if (ev.name !== "PEER_RESPONSE") continue;
      answered++;
      const from = ev.from.toString();
      const h = from === node.mesh.peerId ? 0 : hop.get(from) ?? 1;
      for (const c of ev.closer) {
        const id = c.id.toString();
        if (!hop.has(id)) hop.set(id, h + 1);
      }
      if (ev.providers.some((p) => p.id.toString() === provider)) {
        return done({ ok: true, hops: h });
      }
    }
  } catch {
    return done({ ok: false, why: signal.aborted ? "timeout" : "error" });
  }
  return done({ ok: false, why: signal.aborted ? "timeout" : "exhausted" });
}

/**
 * Why an expected read failed, one line per stripe: for each chunk, its live holders, and for each of those
 * whether the reader knew it (peer store), was connected to it, and on how many live nodes its provider
 * record for the chunk was, the holder's connections, and what a direct request for it gives now
 * (`h<known><connected>:<records>/c<connections>/<ok|null|error>`, e.g. `h+-:0/c61/ok` known, not
 * connected, no record, 61 connections, delivered when asked directly).
 */
async function diagnoseRead(
  live: readonly SimNode[],
  reader: SimNode,
  f: SimFile,
  aliveIds: ReadonlySet<string>,
  log: (line: string) => void,
): Promise<void> {
  const connected = new Set(reader.mesh.connectedPeers());
  const known = new Set((await reader.mesh.libp2p.peerStore.all()).map((p) => p.id.toString()));
  for (const [i, stripe] of f.manifest.stripes.entries()) {
    const cells = await Promise.all(stripe.map(async (c) => {
      const holders = [...(f.where.get(c.toString()) ?? [])].filter((p) => aliveIds.has(p));
      const marks = await Promise.all(holders.map(async (h) => {
        const { holders: records } = await recordHolders(live, c, h);
        const holder = live.find((x) => x.mesh.peerId === h);
        // Asked again now, directly: what stopped the read from this holder, if anything still does.
        const now = await reader.mesh.fetchChunk(h, c, { signal: AbortSignal.timeout(10_000) })
          .then(
            (b) => b ? "ok" : "null",
            (e) => (e as { code?: string }).code ?? (e as Error).name,
          );
        return `h${known.has(h) ? "+" : "-"}${connected.has(h) ? "+" : "-"}:${records}` +
          `/c${holder?.mesh.connectedPeers().length ?? "?"}/${now}`;
      }));
      return marks.length ? marks.join(",") : "none";
    }));
    log(`    stripe ${i}: ${cells.map((x, j) => `[${j}] ${x}`).join(" ")}`);
  }
}

/**
 * Why a record was not found: how many live nodes keep it, and how many of the K live nodes closest to its
 * key (by XOR of kad IDs, the nodes a provide should reach) keep it.
 */
export async function recordHolders(
  nodes: readonly SimNode[],
  cid: CID,
  provider: string,
): Promise<{ holders: number; closestHolders: number; k: number }> {
  const key = await providerKey(cid);
  const kadId = (await sha256.digest(key.multihash.bytes)).digest;
  const ranked: { node: SimNode; d: Uint8Array }[] = [];
  for (const x of nodes) {
    const id = (await sha256.digest(x.mesh.libp2p.peerId.toMultihash().bytes)).digest;
    ranked.push({ node: x, d: id.map((b, i) => b ^ kadId[i]!) });
  }
  ranked.sort((a, b) => compareBytes(a.d, b.d));
  const keeps = async (x: SimNode) => {
    // kad-dht's provider store; its public type does not show it.
    const providers = (x.mesh.libp2p.services.dht as unknown as {
      providers: { getProviders(k: CID): Promise<{ toString(): string }[]> };
    }).providers;
    return (await providers.getProviders(key)).some((p) => p.toString() === provider);
  };
  const k = 20;
  let holders = 0;
  let closestHolders = 0;
  for (const [i, r] of ranked.entries()) {
    if (await keeps(r.node)) {
      holders++;
      if (i < k) closestHolders++;
    }
  }
  return { holders, closestHolders, k };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** Samples the event loop's lag every 50 ms, so a lookup can say how starved the thread was meanwhile. */
class LagMeter {
  #samples: { at: number; lag: number }[] = [];
  #timer: ReturnType<typeof setTimeout> | undefined;
  #users = 0;

  start(): void {
    if (this.#users++ > 0) return;
    let expected = performance.now() + 50;
    const tick = () => {
      const now = performance.now();
      this.#samples.push({ at: now, lag: Math.max(0, now - expected) });
      if (this.#samples.length > 20_000) this.#samples.splice(0, 10_000);
      expected = now + 50;
      this.#timer = setTimeout(tick, 50);
    };
    this.#timer = setTimeout(tick, 50);
  }

  stop(): void {
    if (--this.#users > 0) return;
    clearTimeout(this.#timer);
    this.#samples = [];
  }

  /** Worst lag sampled between `t0` and `t1` (and the sample just after, which covers the end). */
  max(t0: number, t1: number): number {
    let m = 0;
    for (let i = this.#samples.length - 1; i >= 0; i--) {
      const s = this.#samples[i]!;
      if (s.at < t0) break;
      if (s.at <= t1 + 100) m = Math.max(m, s.lag);
    }
    return m;
  }
}

const lagMeter = new LagMeter();

/** Reads a whole file from the mesh the way a node does: manifest, then stripes over {@link fetchFromMesh}. */
async function readOver(
  mesh: MeshNode,
  cid: CID,
  timeoutMs: number,
): Promise<{ bytes?: Uint8Array; ttfbMs?: number; ms: number; error?: string }> {
  const t0 = performance.now();
  const signal = AbortSignal.timeout(timeoutMs);
  // The chunk fetches that came back null, each with what the fetch saw.
  const misses: string[] = [];
  try {
    const mbytes = await fetchFromMesh(mesh, cid, { signal });
    if (!mbytes) return { ms: performance.now() - t0, error: "manifest not found" };
    const manifest = decodeManifest(mbytes);
    // As `node.read` does (there once per window of stripes; these files are a stripe or two): one round
    // asks every known peer which of the file's chunks it holds; what that does not find is looked for
    // chunk by chunk (near peers, then the DHT).
    const locator = new ChunkLocator(mesh);
    await locator.locate(manifest.stripes.flat(), signal);
    const parts: Uint8Array[] = [];
    let ttfbMs: number | undefined;
    const get = async (c: CID, s: AbortSignal, stripe: number) => {
      const outcome: NonNullable<FetchOptions["outcome"]> = { failed: 0 };
      const t = performance.now();
      // Counted before the fetch, which forgets a located holder that turns out to lack the chunk.
      const located = (await locator.holders(c)).length;
      const bytes = await fetchFromMesh(mesh, c, { signal: s, outcome, locator });
      if (bytes === null && !s.aborted) {
        const at = manifest.stripes[stripe]!.findIndex((x) => x.equals(c));
        misses.push(
          `[${stripe}.${at}] ${Math.round(performance.now() - t)} ms, ${located} located, ` +
            `${outcome.providers ?? 0} ` +
            `providers found${outcome.lookupTimedOut ? " (search out of time)" : ""}, ` +
            `${outcome.failed} failed ${JSON.stringify(outcome.errors ?? {})}`,
        );
      }
      return bytes;
    };
    const stream = readFile(manifest, get, { signal });
    for await (const part of stream) {
      ttfbMs ??= performance.now() - t0;
      parts.push(part);
    }
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) (out.set(p, at), at += p.length);
    return { bytes: out, ttfbMs: ttfbMs ?? performance.now() - t0, ms: performance.now() - t0 };
  } catch (e) {
    const why = misses.length ? `; chunks not found: ${misses.join("; ")}` : "";
    return { ms: performance.now() - t0, error: `${(e as Error).message}${why}` };
  }
}

// --- the nodes and their links ---

/** A node of the simulation. */
export interface SimNode {
  name: string;
  mesh: MeshNode;
  store: SimStore;
  /** Its dialable address, `/memory/<name>/p2p/<id>` (empty for a client that does not listen). */
  addr: string;
}

interface SimFile {
  cid: CID;
  manifest: Manifest;
  bytes: Uint8Array;
  by: SimNode;
  where: Map<string, Set<string>>;
}

/** A node's chunks in memory; a chunk a peer placed here is announced, as a node's provide queue does. */
export class SimStore implements ChunkSource {
  readonly chunks = new Map<string, Uint8Array>();
  /** Announce chunks peers place here. */
  announce = true;
  onPeerPut: (cid: CID) => void = () => {};

  get(cid: CID): Promise<Uint8Array | null> {
    return Promise.resolve(this.chunks.get(cid.toString()) ?? null);
  }

  has(cid: CID): Promise<boolean> {
    return Promise.resolve(this.chunks.has(cid.toString()));
  }

  put(cid: CID, bytes: Uint8Array, from?: string): Promise<void> {
    if (!equal(cidOf(bytes, cid.code).multihash.bytes, cid.multihash.bytes)) {
      return Promise.reject(new MeshError("bad_bytes", "The bytes do not match the CID"));
    }
    const fresh = !this.chunks.has(cid.toString());
    this.chunks.set(cid.toString(), bytes.slice());
    if (fresh && from !== undefined && this.announce) this.onPeerPut(cid);
    return Promise.resolve();
  }
}

/** Loss on the links of the simulation (see the module doc). */
export interface LinkModel {
  loss: number;
  rtoMs: number;
  dialLoss: number;
}

/** The part of a multiaddr connection the link model wraps. */
interface SendingConnection {
  sendData(data: { byteLength: number }): { sentBytes: number; canSendMore: boolean };
  sendClose(options?: unknown): Promise<void>;
  addEventListener(type: "close", fn: () => void, options?: { once: boolean }): void;
}

/**
 * `@libp2p/memory` with this node's link: what the node sends on a connection is delivered `latencyMs`
 * later, in order, a share `loss` of the messages `rtoMs` later still (holding back what follows); a share
 * `dialLoss` of its dials fails.
 */
export function simTransport(net: LinkModel, latencyMs: number) {
  const base = memory();
  const shape = (maConn: SendingConnection) => {
    const send = maConn.sendData.bind(maConn);
    const close = maConn.sendClose.bind(maConn);
    const queue: { at: number; data: { byteLength: number } }[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    let last = 0;
    let drained: PromiseWithResolvers<void> | undefined;
    const flush = () => {
      timer = undefined;
      const now = performance.now();
      while (queue.length > 0 && queue[0]!.at <= now + 0.5) {
        try {
          send(queue.shift()!.data);
        } catch {
          queue.length = 0; // the connection is gone
        }
      }
      if (queue.length > 0) schedule();
      else (drained?.resolve(), drained = undefined);
    };
    const schedule = () => {
      timer = setTimeout(flush, Math.max(0, queue[0]!.at - performance.now()));
    };
    maConn.sendData = (data) => {
      const at = Math.max(
        last,
        performance.now() + latencyMs + (Math.random() < net.loss ? net.rtoMs : 0),
      );
      last = at;
      queue.push({ at, data });
      timer ??= (schedule(), timer);
      return { sentBytes: data.byteLength, canSendMore: true };
    };
    maConn.sendClose = async (options) => {
      if (queue.length > 0) await (drained ??= Promise.withResolvers()).promise;
      return close(options);
    };
    maConn.addEventListener("close", () => {
      clearTimeout(timer);
      queue.length = 0;
      drained?.resolve();
      drained = undefined;
    }, { once: true });
    return maConn;
  };
  type Upgrader = Record<string | symbol, unknown> & {
    upgradeInbound(c: SendingConnection, o: unknown): Promise<unknown>;
    upgradeOutbound(c: SendingConnection, o: unknown): Promise<unknown>;
  };
  const wrap = (up: Upgrader): Upgrader =>
    new Proxy(up, {
      get(target, prop) {
        if (prop === "upgradeInbound" || prop === "upgradeOutbound") {
          return (c: SendingConnection, o: unknown) => target[prop](shape(c), o);
        }
        const v = target[prop];
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
  return (components: Parameters<typeof base>[0]) => {
    const t = base(components);
    const dial = t.dial.bind(t);
    const listen = t.createListener.bind(t);
    t.dial = (ma, options) => {
      if (Math.random() < net.dialLoss) {
        return Promise.reject(new ConnectionFailedError("Dial lost (simulated)"));
      }
      return dial(ma, { ...options, upgrader: wrap(options.upgrader as never) as never });
    };
    t.createListener = (options) =>
      listen({ ...options, upgrader: wrap(options.upgrader as never) as never });
    return t;
  };
}

// --- small helpers ---

/** A libp2p logger that does nothing, shared by every node (see `MeshNodeInit.logger`). */
const silentLog: Logger = Object.assign(() => {}, {
  error() {},
  trace() {},
  enabled: false,
  newScope: () => silentLog,
});
export const silentLogger: ComponentLogger = { forComponent: () => silentLog };

/** CPU seconds this process has used (user and system; 0 where /proc is not there). */
function cpuSeconds(): number {
  try {
    return cpuMs() / 1000;
  } catch {
    return 0;
  }
}

/** A full garbage collection when V8 exposes it (`--v8-flags=--expose-gc`), so memory counts what is kept. */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

const MiB = 1024 * 1024;

/** At most `n` tasks at once. */
class Limiter {
  #running = 0;
  #waiting: (() => void)[] = [];
  #idle = new Set<() => void>();
  constructor(readonly n: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    while (this.#running >= this.n) await new Promise<void>((r) => this.#waiting.push(r));
    this.#running++;
    try {
      return await task();
    } finally {
      this.#running--;
      this.#waiting.shift()?.();
      if (this.#running === 0 && this.#waiting.length === 0) {
        for (const r of this.#idle) r();
        this.#idle.clear();
      }
    }
  }

  idle(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    return new Promise((r) => this.#idle.add(r));
  }
}

function timeout(ms: number) {
  return { signal: AbortSignal.timeout(ms) };
}

/** Once `mesh` has a peer in its routing table (identify and kad-dht's check done), polled every `pollMs`,
 * waiting at most `maxMs`. */
export async function inTable(mesh: MeshNode, maxMs: number, pollMs = 50): Promise<void> {
  const until = Date.now() + maxMs;
  while (mesh.routingTableSize() === 0 && Date.now() < until) await sleep(pollMs);
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((r) => {
    const done = () => (clearTimeout(t), signal?.removeEventListener("abort", done), r());
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** How late a zero timer fires now: the event loop's lag, ms. */
async function lag(): Promise<number> {
  const t0 = performance.now();
  await sleep(0);
  return performance.now() - t0;
}

/**
 * Waits until the event loop keeps up (lag under `lagMs` twice in a row, at most `maxMs`). A thousand nodes
 * share one thread (and this machine is shared): starting them faster than it can serve makes every node's
 * pings and handshakes time out, which measures the machine, not the mesh.
 */
export async function calm(lagMs = 250, maxMs = 2_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let ok = 0;
  while (ok < 2 && Date.now() < deadline) {
    ok = (await lag()) < lagMs ? ok + 1 : 0;
    if (ok < 2) await sleep(100);
  }
}

/** `count` distinct random elements of `xs` (fewer when it is shorter). */
function pick<T>(xs: readonly T[], count: number): T[] {
  const out = new Set<T>();
  while (out.size < Math.min(count, xs.length)) out.add(xs[Math.floor(Math.random() * xs.length)]!);
  return [...out];
}

/** `n` random bytes (getRandomValues gives at most 64 KiB a call). */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** What lookup statistics need of a lookup: a paid one has no DHT query to diagnose. */
export type Timed = Pick<LookupResult, "ok" | "hops" | "ms">;

/** Success, hops and times of lookups (a paid one has no hops of a DHT query: it counts for the rest). */
export function stats(rs: readonly Timed[]): LookupStats {
  const hops = rs.flatMap((r) => r.ok && r.hops !== undefined ? [r.hops] : []);
  const ms = rs.filter((r) => r.ok).map((r) => r.ms);
  const ok = rs.filter((r) => r.ok).length;
  return {
    count: rs.length,
    ok,
    success: rs.length ? ok / rs.length : 1,
    hopsMedian: median(hops),
    hopsP95: quantile(hops, 0.95),
    msMedian: median(ms),
    msP95: quantile(ms, 0.95),
  };
}

function fmtStats(s: LookupStats): string {
  return `${s.ok}/${s.count} ok, hops median ${s.hopsMedian}, ${s.msMedian.toFixed(0)} ms median`;
}
