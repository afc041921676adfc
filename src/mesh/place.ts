/**
 * Placing a file's stripes on distinct peers after an upload.
 */
import type { CID } from "../content/cid.ts";
import type { Manifest } from "../content/manifest.ts";
import type { MeshNode } from "./node.ts";
import { PeerTable } from "./placement.ts";
import { meshPeers } from "./peers.ts";
import type { ProvideQueue } from "./provide.ts";
import { warn } from "./_log.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("mesh:place", msg, fields);

export interface PlacementReport {
  /** Chunks now held by another peer (the local copy may go). */
  remote: Map<string, string>;
  /** Chunks this node keeps: placed on itself, or refused elsewhere. */
  local: CID[];
  /** Refusals by peers, per peer and reason (e.g. `quota_exceeded`): those chunks stayed here. */
  refused: { peer: string; reason: string; chunks: number; message?: string }[];
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
  const report: PlacementReport = { remote: new Map(), local: [], refused: [] };

  const send = async (peer: string, cids: CID[]) => {
    if (peer === self) return void report.local.push(...cids);
    const chunks = [];
    for (const cid of cids) {
      const bytes = await read(cid);
      if (bytes) chunks.push({ cid, bytes });
    }
    try {
      const results = await mesh.storeChunks(peer, chunks, { signal: options.signal });
      const refused = new Map<string, { chunks: number; message?: string }>();
      for (const r of results) {
        if (r.accepted) report.remote.set(r.cid.toString(), peer);
        else {
          report.local.push(r.cid);
          const seen = refused.get(r.reason ?? "error");
          if (seen) seen.chunks++;
          else refused.set(r.reason ?? "error", { chunks: 1, message: r.message });
        }
      }
      for (const [reason, { chunks, message }] of refused) {
        log("peer refused chunks; keeping them here", { peer, reason, chunks, message });
        report.refused.push({ peer, reason, chunks, ...(message ? { message } : {}) });
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
