/**
 * Paid lookups against a light client's own cold DHT walk, in the in-process mesh of `./sim.ts` (the same
 * nodes, links, latency and loss, over `@libp2p/memory`). `deno task simulate-lookups` prints the table.
 *
 * A light client is a fresh client-mode node that knows one peer. The walk: it joins through a random peer
 * and looks a record up itself (`sim.ts`'s `lookup`, until the record's provider is named). The paid lookup:
 * it joins through a lookup operator and asks it ({@link requestLookup}: one request; the operator answers
 * from its provider records, its own walk and its nearest connected peers' word, the record signed and
 * checked). Each record is a chunk (1 KiB) held, as placement would put it, by the node XOR-nearest to it.
 * Every node signs statements of what it holds, as `src/node.ts`'s nodes do, so a record carries its
 * provider's own word (the operator's default `statementMs`). The operator is a server node of the mesh, up
 * as long as the others, run as a lookup operator would be: k-buckets of 100 and open connections to the
 * peers it knows (up to `operatorConnections`), warmed by walks for `warmWalks` random keys (as answering
 * lookups all day does), so its walks seldom dial. That is what the client pays for; the mesh's other nodes
 * keep libp2p's defaults. Each client looks up a record nobody asked the operator for, so its cache never
 * answers.
 *
 * Timing, both kinds alike: `ms` runs from the moment the client's one connection is up (its peer is in its
 * routing table, identify done: a browser or phone is connected to its gateway before it asks) to the
 * provider being named; `fromSpawn` from the moment the node's start returned, its dial done (the earlier
 * method, which also counted identify). The walk still waits for kad-dht's first self-query (a
 * second after start, then its own walk), which a cold client's first lookup does. The payment is not in the
 * path: the voucher goes out after the named peer delivered (`market/lookups.ts`), so lookups are free here
 * and no chain runs.
 *
 * @module
 */
import { cidOf } from "../content/cid.ts";
import { type DilatedClock, type DilatedClockInit, onDilatedClock } from "./_sim_clock.ts";
import { LookupServer, requestLookup } from "./lookup.ts";
import { createMeshNode, type MeshNode } from "./node.ts";
import { PeerTable } from "./placement.ts";
import {
  calm,
  inTable,
  lookup,
  type LookupResult,
  type LookupStats,
  SimStore,
  simTransport,
  stats,
  type Timed,
} from "./sim.ts";

export interface LookupSimInit {
  /** Nodes in the mesh (the operator one of them). Default 100. */
  nodes?: number;
  /** Light clients of each kind. Default 20. */
  clients?: number;
  /** Range of each node's one-way latency, ms. Default [5, 40]. */
  latencyMs?: [number, number];
  /** Share of messages a retransmission late, and of dials that fail. Default 0.01 each. */
  loss?: number;
  /** Connections the operator keeps open to peers it knows. Default 250 (under libp2p's 300). */
  operatorConnections?: number;
  /** Walks the operator makes before the measurement. Default 20. */
  warmWalks?: number;
  /** Deadline of one lookup, ms. Default 10 000. */
  timeoutMs?: number;
  /** Dilated time, as in `./sim.ts`: the clocks and timers slow down while the one thread cannot keep up, so
   * that a starved thread neither fires deadlines early nor counts its own lag as the mesh's. `false` runs on
   * the wall clock. Default: on, dilation 1 to 100. */
  dilation?: false | DilatedClockInit;
  log?: (line: string) => void;
}

export interface LookupSimReport {
  nodes: number;
  /** The client's own cold DHT walk, timed from its connection being up. */
  walk: LookupStats;
  /** Through the lookup operator, timed from its connection being up. */
  paid: LookupStats;
  /** paid.msMedian / walk.msMedian: the target is at most 1/3. */
  ratio: number;
  /** The same lookups timed from the client's start returning (its dial done, identify included). */
  fromSpawn: { walk: LookupStats; paid: LookupStats; ratio: number };
  /** Wall-clock seconds of the run (the lookups' times are virtual ms when time is dilated). */
  seconds: number;
  /** Wall ms per virtual ms: on average over the run, and at worst (1 without dilation). */
  dilationMean: number;
  dilationPeak: number;
}

/** Runs the comparison (see the module doc) and stops every node. */
export async function simulateLookups(init: LookupSimInit = {}): Promise<LookupSimReport> {
  return await onDilatedClock(init.dilation, (clock) => run(init, clock));
}

async function run(init: LookupSimInit, clock: DilatedClock | undefined): Promise<LookupSimReport> {
  const wall0 = clock?.wallNow() ?? performance.now();
  const n = init.nodes ?? 100;
  const clients = init.clients ?? 20;
  const [latMin, latMax] = init.latencyMs ?? [5, 40];
  const net = { loss: init.loss ?? 0.01, rtoMs: 200, dialLoss: init.loss ?? 0.01 };
  const timeoutMs = init.timeoutMs ?? 10_000;
  const log = init.log
    ? (line: string) => init.log!(clock ? `${line} [time x${clock.factor.toFixed(1)}]` : line)
    : () => {};
  const live: { mesh: MeshNode; addr: string; store: SimStore }[] = [];
  const extra: MeshNode[] = [];
  const servers: LookupServer[] = [];
  let seq = 0;
  const spawn = async (
    bootstrap: string[],
    clientMode = false,
    dataDir?: string,
    kBucketSize?: number,
  ) => {
    const name = `lk-${seq++}`;
    const store = new SimStore();
    const mesh = await createMeshNode({
      listen: clientMode ? [] : [`/memory/${name}`],
      transports: [simTransport(net, latMin + Math.random() * (latMax - latMin))],
      bootstrap,
      allowLoopback: false,
      connections: { pingIntervalMs: 0 },
      store,
      dht: { clientMode, ...(kBucketSize ? { kBucketSize } : {}) },
      ...(dataDir ? { dataDir } : {}),
    });
    if (!clientMode && !dataDir) {
      // Statements of what it holds, as every node of src/node.ts signs (the operator serves its own below).
      const statements = new LookupServer({
        mesh,
        privateKey: mesh.privateKey,
        has: (cid) => store.has(cid),
      });
      await statements.start(mesh.libp2p);
      servers.push(statements);
    }
    return { mesh, store, addr: mesh.multiaddrs()[0] ?? "" };
  };
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(Math.random() * xs.length)]!;
  const dir = await Deno.makeTempDir({ prefix: "sim-lookup-" });
  let server: LookupServer | undefined;
  try {
    // The operator first (so it is as old as the mesh), then the rest joining through 3 peers each.
    const op = await spawn([], false, dir, 100);
    live.push(op);
    while (live.length < n) {
      const batch = Math.min(n - live.length, Math.max(1, Math.min(10, live.length)));
      live.push(
        ...await Promise.all(Array.from({ length: batch }, () => {
          const peers = new Set(Array.from({ length: 3 }, () => pick(live).addr));
          return spawn([...peers]);
        })),
      );
    }
    for (const x of live) void x.mesh.libp2p.services.dht.refreshRoutingTable();
    await new Promise((r) => setTimeout(r, 3000));
    // The operator keeps connections to the peers it knows (8 dials at a time).
    const known = (await op.mesh.libp2p.peerStore.all()).map((p) => p.id)
      .slice(0, init.operatorConnections ?? 250);
    for (let i = 0; i < known.length; i += 8) {
      await Promise.all(
        known.slice(i, i + 8).map((id) =>
          op.mesh.libp2p.dial(id, { signal: AbortSignal.timeout(5000) }).catch(() => {})
        ),
      );
    }
    await op.mesh.libp2p.services.dht.refreshRoutingTable();
    for (let i = 0; i < (init.warmWalks ?? 20); i++) {
      const key = cidOf(crypto.getRandomValues(new Uint8Array(32)));
      try {
        for await (const _ of op.mesh.findProviders(key, { signal: AbortSignal.timeout(3000) })) {
          // nobody provides a random key: the walk is the point
        }
      } catch {
        // its deadline
      }
    }
    log(
      `${n} nodes up; the operator has ${op.mesh.routingTableSize()} routing-table peers and ` +
        `${op.mesh.libp2p.getConnections().length} connections`,
    );
    server = new LookupServer({
      mesh: op.mesh,
      privateKey: op.mesh.privateKey, // the key it loaded from its data directory
      has: (cid) => op.store.has(cid),
      serve: true,
    });
    await server.start(op.mesh.libp2p);

    // Records: two per client (one for each kind), each a chunk a random node other than the operator holds
    // and announces.
    const records = await Promise.all(Array.from({ length: 2 * clients }, async () => {
      const bytes = crypto.getRandomValues(new Uint8Array(1024));
      const cid = cidOf(bytes);
      // Where placement puts a chunk: the XOR-nearest node (the operator aside).
      const nearest = new PeerTable(live.slice(1).map((x) => x.mesh.peerId))
        .closest(cid.multihash.digest, 1)[0];
      const by = live.find((x) => x.mesh.peerId === nearest)!;
      by.store.chunks.set(cid.toString(), bytes);
      await by.mesh.provide(cid, { signal: AbortSignal.timeout(30_000) }).catch(() => {});
      return { cid, by };
    }));
    log(`${records.length} records published`);

    const walk: LookupResult[] = [];
    const paid: Timed[] = [];
    const walkSpawn: Timed[] = [];
    const paidSpawn: Timed[] = [];
    for (let i = 0; i < clients; i++) {
      // Alternate, so that load on the machine weighs on both alike; each starts once the event loop keeps
      // up (a hundred nodes share one thread: a starved loop times the machine, not the mesh).
      await calm(50, 5000);
      const w = records[2 * i]!;
      const c1 = await spawn([pick(live.slice(1)).addr], true);
      const s1 = performance.now();
      extra.push(c1.mesh);
      const up1 = await connected(c1.mesh);
      const sim = { name: "light", mesh: c1.mesh, store: new SimStore(), addr: "" };
      const wr = await lookup(sim, w.cid, w.by.mesh.peerId, timeoutMs);
      walk.push(wr);
      walkSpawn.push({ ...wr, ms: wr.ms + up1 - s1 });
      await c1.mesh.stop();

      await calm(50, 5000);
      const p = records[2 * i + 1]!;
      const c2 = await spawn([op.addr], true);
      const s2 = performance.now();
      extra.push(c2.mesh);
      // As a client of an operator does (market/lookups.ts): a lookup stream to it negotiated ahead.
      const client = new LookupServer({ mesh: c2.mesh, privateKey: c2.mesh.privateKey });
      await client.start(c2.mesh.libp2p);
      client.keepWarm(op.mesh.peerId);
      const t = await connected(c2.mesh);
      try {
        const { record } = await requestLookup(client.dialer, op.mesh.peerId, p.cid, {
          signal: AbortSignal.timeout(timeoutMs),
        });
        const ok = record.providers.some((x) => x.peerId === p.by.mesh.peerId);
        paid.push({ ok, ...(ok ? { hops: 1 } : {}), ms: performance.now() - t });
      } catch {
        paid.push({ ok: false, ms: performance.now() - t });
      }
      paidSpawn.push({ ...paid.at(-1)!, ms: paid.at(-1)!.ms + t - s2 });
      log(
        `client ${i + 1}: walk ${wr.ok ? "ok" : wr.why} ${wr.ms.toFixed(0)} ms (+${
          (up1 - s1).toFixed(0)
        } ms to connect), ${wr.hops ?? "-"} hops, ${wr.answered} answers; paid ${
          paid.at(-1)!.ok ? "ok" : "failed"
        } ${paid.at(-1)!.ms.toFixed(0)} ms (+${(t - s2).toFixed(0)} ms to connect)`,
      );
      await client.stop();
      await c2.mesh.stop();
    }
    const report: LookupSimReport = {
      nodes: n,
      walk: stats(walk),
      paid: stats(paid),
      ratio: NaN,
      fromSpawn: { walk: stats(walkSpawn), paid: stats(paidSpawn), ratio: NaN },
      seconds: ((clock?.wallNow() ?? performance.now()) - wall0) / 1000,
      dilationMean: clock?.meanFactor ?? 1,
      dilationPeak: clock?.peak ?? 1,
    };
    report.ratio = report.paid.msMedian / report.walk.msMedian;
    report.fromSpawn.ratio = report.fromSpawn.paid.msMedian / report.fromSpawn.walk.msMedian;
    return report;
  } finally {
    await server?.stop();
    await Promise.all(servers.map((x) => x.stop()));
    await Promise.all([...live.map((x) => x.mesh), ...extra].map((m) => m.stop().catch(() => {})));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** The report as two rows of `sim.ts`'s table. */
export function formatLookupReport(r: LookupSimReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const row = (s: LookupStats) =>
    `${pct(s.success)} of ${s.count}; ${s.msMedian.toFixed(0)} ms median, ${
      s.msP95.toFixed(0)
    } ms p95`;
  return [
    `| measure (${r.nodes} nodes) | result |`,
    "| --- | --- |",
    `| light client, cold DHT walk | ${row(r.walk)} |`,
    `| light client, paid lookup | ${row(r.paid)} (${
      r.ratio.toFixed(2)
    }x the walk's median; target <= 0.33) |`,
    `| the same from the client's start (identify in) | walk ${row(r.fromSpawn.walk)}; paid ${
      row(r.fromSpawn.paid)
    } (${r.fromSpawn.ratio.toFixed(2)}x) |`,
    `| run | ${r.seconds.toFixed(0)} s of wall time (time dilated ${
      r.dilationMean.toFixed(1)
    }x on average, ${r.dilationPeak.toFixed(1)}x at worst) |`,
  ].join("\n");
}

/** When `mesh`'s one peer is in its routing table (identify done), waiting at most 5 s. */
async function connected(mesh: MeshNode): Promise<number> {
  await inTable(mesh, 5000, 5);
  return performance.now();
}
