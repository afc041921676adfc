/**
 * Moving content across the mesh: placing a file's stripes on distinct peers after an upload, and finding
 * a chunk that is not held locally.
 */
import type { CID } from "../content/cid.ts";
import type { Manifest } from "../content/manifest.ts";
import type { MeshNode } from "./node.ts";
import { PeerTable } from "./placement.ts";
import { CHUNK_PROTOCOL } from "./exchange.ts";

const known = new WeakMap<MeshNode, { at: number; peers: Promise<string[]> }>();
/** Peers that failed to answer, and until when they are not asked again (ms since epoch). */
const unreachable = new WeakMap<MeshNode, Map<string, number>>();
const UNREACHABLE_MS = 30_000;

function isUnreachable(mesh: MeshNode, peer: string): boolean {
  const until = unreachable.get(mesh)?.get(peer);
  return until !== undefined && until > Date.now();
}

function markUnreachable(mesh: MeshNode, peer: string): void {
  let map = unreachable.get(mesh);
  if (!map) unreachable.set(mesh, map = new Map());
  map.set(peer, Date.now() + UNREACHABLE_MS);
}

/**
 * Peers that speak the chunk protocol: connected now, or known with addresses (met through the DHT).
 * Placement and lookup rank the same set by XOR, so a reader asks first where a writer put. The peer
 * store is scanned at most every 2 s; connections are read fresh each time, so a peer that just joined
 * counts at once.
 */
export async function meshPeers(mesh: MeshNode): Promise<string[]> {
  let hit = known.get(mesh);
  if (!hit || Date.now() - hit.at >= 2000) {
    const scan = (async () => {
      const found: string[] = [];
      for (const peer of await mesh.libp2p.peerStore.all()) {
        if (peer.protocols.includes(CHUNK_PROTOCOL) && peer.addresses.length) {
          found.push(peer.id.toString());
        }
      }
      return found;
    })();
    known.set(mesh, hit = { at: Date.now(), peers: scan });
  }
  const found = new Set([...mesh.connectedPeers(), ...await hit.peers]);
  found.delete(mesh.peerId);
  return [...found].sort();
}

/** {@link meshPeers} packed for XOR ranking, rebuilt only when the set of peers changes. */
const tables = new WeakMap<MeshNode, { key: string; table: PeerTable }>();
async function meshTable(mesh: MeshNode): Promise<PeerTable> {
  const peers = await meshPeers(mesh);
  const key = peers.join(",");
  let entry = tables.get(mesh);
  if (entry?.key !== key) tables.set(mesh, entry = { key, table: new PeerTable(peers) });
  return entry.table;
}

export interface PlacementReport {
  /** Chunks now held by another peer (the local copy may go). */
  remote: Map<string, string>;
  /** Chunks this node keeps: placed on itself, or refused elsewhere. */
  local: CID[];
}

export interface PlaceOptions {
  /** Peers besides the holders of a stripe that also keep the manifest. Default 3. */
  manifestReplicas?: number;
  /** Stripes placed at once. Default 4. */
  concurrency?: number;
  /** Where to queue DHT announcements of the chunks that stay here. Default: none made. */
  provide?: ProvideQueue;
  signal?: AbortSignal;
}

function log(msg: string, fields: Record<string, unknown>) {
  console.error(JSON.stringify({ level: "warn", component: "mesh:distribute", msg, ...fields }));
}

/**
 * Sends each stripe's chunks to distinct peers nearest to them (this node included), then announces what
 * stays here. A peer that refuses or fails leaves its chunks here. `read` supplies chunk bytes.
 */
export async function placeFile(
  mesh: MeshNode,
  manifestCid: CID,
  manifest: Manifest,
  read: (cid: CID) => Promise<Uint8Array | null>,
  options: PlaceOptions = {},
): Promise<PlacementReport> {
  const self = mesh.peerId;
  const table = new PeerTable([self, ...await meshPeers(mesh)]);
  const report: PlacementReport = { remote: new Map(), local: [] };

  const send = async (peer: string, cids: CID[]) => {
    if (peer === self) return void report.local.push(...cids);
    const chunks = [];
    for (const cid of cids) {
      const bytes = await read(cid);
      if (bytes) chunks.push({ cid, bytes });
    }
    try {
      const results = await mesh.storeChunks(peer, chunks, { signal: options.signal });
      for (const r of results) {
        if (r.accepted) report.remote.set(r.cid.toString(), peer);
        else report.local.push(r.cid);
      }
    } catch (e) {
      log("peer did not take chunks; keeping them here", { peer, error: String(e) });
      report.local.push(...cids);
    }
  };

  const placeStripe = async (stripe: CID[]) => {
    const holders = table.placeStripe(stripe);
    const byPeer = new Map<string, CID[]>();
    holders.forEach((peer, i) => byPeer.set(peer, [...(byPeer.get(peer) ?? []), stripe[i]!]));
    await Promise.all([...byPeer].map(([peer, cids]) => send(peer, cids)));
  };

  const queue = [...manifest.stripes];
  const workers = Array.from({ length: options.concurrency ?? 4 }, async () => {
    for (let stripe = queue.shift(); stripe; stripe = queue.shift()) {
      options.signal?.throwIfAborted();
      await placeStripe(stripe);
    }
  });
  await Promise.all(workers);

  // The manifest stays here (pinned) and goes to the peers nearest to it as well.
  const replicas = table.closest(manifestCid.multihash.digest, (options.manifestReplicas ?? 3) + 1)
    .filter((p) => p !== self);
  await Promise.all(replicas.map((peer) => send(peer, [manifestCid])));
  if (!report.local.some((c) => c.equals(manifestCid))) report.local.push(manifestCid);

  options.provide?.add(report.local);
  return report;
}

/**
 * Announces held chunks in the DHT in the background, two at a time, each within 30 s. Provider records are
 * hints (placement already put chunks where readers look first), so failures are logged, not thrown, and
 * a node with an empty routing table skips the work.
 */
export class ProvideQueue {
  #queue: CID[] = [];
  #queued = new Set<string>();
  #running = 0;
  #idle = Promise.withResolvers<void>();
  #stopped = false;

  constructor(readonly mesh: MeshNode, readonly concurrency = 2) {
    this.#idle.resolve();
  }

  add(cids: Iterable<CID>): void {
    if (this.#stopped || this.mesh.routingTableSize() === 0) return;
    for (const cid of cids) {
      const key = cid.toString();
      if (this.#queued.has(key)) continue;
      this.#queued.add(key);
      this.#queue.push(cid);
    }
    while (this.#running < this.concurrency && this.#queue.length) this.#run();
  }

  /** Resolves when every queued announcement has finished. */
  idle(): Promise<void> {
    return this.#idle.promise;
  }

  stop(): void {
    this.#stopped = true;
    this.#queue.length = 0;
  }

  async #run(): Promise<void> {
    if (this.#running++ === 0) this.#idle = Promise.withResolvers<void>();
    for (let cid = this.#queue.shift(); cid && !this.#stopped; cid = this.#queue.shift()) {
      this.#queued.delete(cid.toString());
      await this.mesh.provide(cid, { signal: AbortSignal.timeout(30_000) }).catch((e) =>
        log("provide failed", { cid: cid!.toString(), error: String(e) })
      );
    }
    if (--this.#running === 0) this.#idle.resolve();
  }
}

/**
 * Where chunks are, learned by asking every known peer at once which of a batch it holds (one round trip,
 * in parallel), instead of probing peers one by one per chunk. Remembers up to 100 000 locations.
 */
export class ChunkLocator {
  #where = new Map<string, string>();

  constructor(readonly mesh: MeshNode, readonly limit = 100_000) {}

  /** Asks all reachable known peers which of `cids` they hold. Failures only make a peer skipped. */
  async locate(cids: readonly CID[], signal?: AbortSignal): Promise<void> {
    const peers = (await meshPeers(this.mesh)).filter((p) => !isUnreachable(this.mesh, p));
    await Promise.all(peers.map(async (peer) => {
      try {
        const held = await this.mesh.hasChunks(peer, cids, { signal });
        held.forEach((has, i) => has && this.#remember(cids[i]!.toString(), peer));
      } catch (e) {
        if (signal?.aborted) return;
        if ((e as { code?: string }).code === "peer_unreachable") markUnreachable(this.mesh, peer);
      }
    }));
  }

  holder(cid: CID): string | undefined {
    return this.#where.get(cid.toString());
  }

  forget(cid: CID): void {
    this.#where.delete(cid.toString());
  }

  /** The first peer to answer is kept: it is the quickest to reach. */
  #remember(key: string, peer: string): void {
    if (this.#where.has(key)) return;
    this.#where.set(key, peer);
    if (this.#where.size > this.limit) this.#where.delete(this.#where.keys().next().value!);
  }
}

export interface FetchOptions {
  signal?: AbortSignal;
  /** Known peers asked directly before the DHT, nearest first (placement puts chunks there). Default 8. */
  nearest?: number;
  /** Providers tried from the DHT. Default 4. */
  providers?: number;
  /** Longest wait for the DHT lookup, in ms. Default 10 000. */
  lookupTimeoutMs?: number;
  /** Known locations, asked first. */
  locator?: ChunkLocator;
}

/**
 * A chunk from the mesh, verified, or null when no peer asked has it. Asks the XOR-nearest connected peers
 * first (where placement puts chunks), then the providers the DHT knows. A peer that fails or sends bad
 * bytes is skipped (the exchange records bad bytes as misbehaviour).
 */
export async function fetchFromMesh(
  mesh: MeshNode,
  cid: CID,
  options: FetchOptions = {},
): Promise<Uint8Array | null> {
  const tried = new Set<string>([mesh.peerId]);
  /** The chunk from `peer`, null when it lacks it, undefined when it could not be asked. */
  const attempt = async (peer: string | { peerId: string; multiaddrs: string[] }) => {
    const id = typeof peer === "string" ? peer : peer.peerId;
    if (tried.has(id) || isUnreachable(mesh, id)) return undefined;
    tried.add(id);
    try {
      return await mesh.fetchChunk(peer, cid, { signal: options.signal });
    } catch (e) {
      if (options.signal?.aborted) throw e;
      if ((e as { code?: string }).code === "peer_unreachable") markUnreachable(mesh, id);
      else {log("peer failed or sent bad bytes", {
          peer: id,
          cid: cid.toString(),
          error: String(e),
        });}
      return undefined;
    }
  };
  const located = options.locator?.holder(cid);
  if (located) {
    const bytes = await attempt(located);
    if (bytes) return bytes;
    options.locator!.forget(cid);
  }
  // Peers that are gone do not count against the budget: keep going down the list until enough answered.
  const near = await meshTable(mesh);
  let answered = 0;
  for (const peer of near.closest(cid.multihash.digest, near.peers.length)) {
    const bytes = await attempt(peer);
    if (bytes) return bytes;
    if (bytes === null && ++answered >= (options.nearest ?? 8)) break;
  }
  let asked = 0;
  const timeout = AbortSignal.timeout(options.lookupTimeoutMs ?? 10_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    for await (const provider of mesh.findProviders(cid, { signal })) {
      const bytes = await attempt(provider);
      if (bytes) return bytes;
      if (++asked >= (options.providers ?? 4)) break;
    }
  } catch (e) {
    if (options.signal?.aborted) throw e;
  }
  return null;
}
