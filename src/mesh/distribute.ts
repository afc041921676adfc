/**
 * Moving content across the mesh: placing a file's stripes on distinct peers after an upload, and finding
 * a chunk that is not held locally.
 */
import type { CID } from "../content/cid.ts";
import type { Manifest } from "../content/manifest.ts";
import type { MeshNode } from "./node.ts";
import { PeerTable } from "./placement.ts";

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
  signal?: AbortSignal;
}

function log(msg: string, fields: Record<string, unknown>) {
  console.error(JSON.stringify({ level: "warn", component: "mesh:placement", msg, ...fields }));
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
  const table = new PeerTable([self, ...mesh.connectedPeers()]);
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

  await provideAll(mesh, report.local, options.signal);
  return report;
}

/**
 * Announces `cids` in the DHT, a few at a time, each within 30 s; failures are logged, not thrown (records
 * are hints). A node with an empty routing table has no one to tell, and skips the work.
 */
export async function provideAll(mesh: MeshNode, cids: CID[], signal?: AbortSignal): Promise<void> {
  if (mesh.routingTableSize() === 0) return;
  const queue = [...cids];
  await Promise.all(Array.from({ length: 8 }, async () => {
    for (let cid = queue.shift(); cid; cid = queue.shift()) {
      if (signal?.aborted) return;
      const timeout = AbortSignal.timeout(30_000);
      const bounded = signal ? AbortSignal.any([signal, timeout]) : timeout;
      await mesh.provide(cid, { signal: bounded }).catch((e) =>
        log("provide failed", { cid: cid!.toString(), error: String(e) })
      );
    }
  }));
}

export interface FetchOptions {
  signal?: AbortSignal;
  /** Connected peers asked directly before the DHT: placement puts chunks on the XOR-nearest. Default 3. */
  nearest?: number;
  /** Providers tried from the DHT. Default 4. */
  providers?: number;
  /** Longest wait for the DHT lookup, in ms. Default 10 000. */
  lookupTimeoutMs?: number;
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
  const attempt = async (peer: string | { peerId: string; multiaddrs: string[] }) => {
    const id = typeof peer === "string" ? peer : peer.peerId;
    if (tried.has(id)) return null;
    tried.add(id);
    try {
      return await mesh.fetchChunk(peer, cid, { signal: options.signal });
    } catch (e) {
      if (options.signal?.aborted) throw e;
      return null;
    }
  };
  const near = new PeerTable(mesh.connectedPeers());
  if (near.peers.length) {
    for (const peer of near.closest(cid.multihash.digest, options.nearest ?? 3)) {
      const bytes = await attempt(peer);
      if (bytes) return bytes;
    }
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
