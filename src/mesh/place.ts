/**
 * Placing a file's stripes on peers after an upload, and what the placement is worth.
 */
import type { CID } from "../content/cid.ts";
import type { Manifest } from "../content/manifest.ts";
import type { MeshNode } from "./node.ts";
import { type Durability, durabilityOf, PeerTable } from "./placement.ts";
import { meshPeers } from "./peers.ts";
import type { ProvideQueue } from "./provide.ts";
import { warn } from "./_log.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("mesh:place", msg, fields);

export interface PlacementReport {
  /** Blocks this node keeps: placed on itself, refused elsewhere, and the manifest. */
  local: CID[];
  /** Chunks whose local copy may go: other holders have them and the placement does not need them here. */
  drop: CID[];
  /** Chunk copies peers accepted. */
  placed: number;
  /** Where each block of the file is now, by CID: the holders with a copy, this node included. */
  where: Map<string, Set<string>>;
  /** What this placement survives, computed from `where`, with a warning when it is less than planned
   * or than the stripe alone would promise. */
  durability: Durability;
  /** Refusals by peers, per peer and reason (e.g. `quota_exceeded`): those chunks went elsewhere or stayed. */
  refused: { peer: string; reason: string; chunks: number; message?: string }[];
}

export interface PlaceOptions {
  /** Peers that also keep the manifest. Default max(3, m): with this node, m + 1 copies, so the manifest
   * survives as many lost holders as a stripe can. */
  manifestReplicas?: number;
  /** Stripes placed at once. Default 4. */
  concurrency?: number;
  /** Where to queue DHT announcements of the chunks that stay here. Default: none made. */
  provide?: ProvideQueue;
  signal?: AbortSignal;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * Sends each stripe's chunks to the peers nearest to them (this node included, see
 * {@link PeerTable.placeStripe}), so that no holder is the only one with more than m chunks of a stripe
 * where the mesh allows it. A peer that refuses or fails is not asked again for this file, and the
 * stripe's chunks it did not take are placed once more on the others; what still finds no taker stays
 * here. Then announces what stays here. `read` supplies chunk bytes.
 */
export async function placeFile(
  mesh: MeshNode,
  manifestCid: CID,
  manifest: Manifest,
  read: (cid: CID) => Promise<Uint8Array | null>,
  options: PlaceOptions = {},
): Promise<PlacementReport> {
  const self = mesh.peerId;
  const peers = await meshPeers(mesh);
  const { k, m } = manifest;
  const signal = options.signal;
  /** Peers that refused or failed: left out of this file's later placements. */
  const out = new Set<string>();
  const table0 = new PeerTable([self, ...peers]);
  let table = table0;
  let tableOut = 0;
  const current = () => {
    if (out.size !== tableOut) {
      tableOut = out.size;
      table = new PeerTable([self, ...peers.filter((p) => !out.has(p))]);
    }
    return table;
  };
  const where = new Map<string, Set<string>>();
  const hold = (cid: CID, peer: string) => {
    const key = cid.toString();
    let set = where.get(key);
    if (!set) where.set(key, set = new Set());
    set.add(peer);
  };
  let placed = 0;
  const refusals: PlacementReport["refused"] = [];

  /** Hands `cids` to `peer`; resolves with those it did not take. */
  const send = async (peer: string, cids: CID[]): Promise<CID[]> => {
    const chunks = [];
    const left = [];
    for (const cid of cids) {
      const bytes = await read(cid);
      if (bytes) chunks.push({ cid, bytes });
      else left.push(cid);
    }
    try {
      const results = await mesh.storeChunks(peer, chunks, { signal });
      const refused = results.filter((r) => !r.accepted);
      for (const r of results) if (r.accepted) hold(r.cid, peer), placed++;
      const reasons = new Map<string, { chunks: number; message?: string }>();
      for (const r of refused) {
        const seen = reasons.get(r.reason ?? "error");
        if (seen) seen.chunks++;
        else reasons.set(r.reason ?? "error", { chunks: 1, message: r.message });
      }
      for (const [reason, { chunks, message }] of reasons) {
        refusals.push({ peer, reason, chunks, ...(message ? { message } : {}) });
      }
      if (refused.length && !out.has(peer)) {
        out.add(peer);
        log("peer refused chunks; placing them elsewhere", {
          peer,
          refused: refused.length,
          reason: refused[0]!.reason,
          message: refused[0]!.message,
        });
      }
      return [...left, ...refused.map((r) => r.cid)];
    } catch (e) {
      if (signal?.aborted) throw e;
      if (!out.has(peer)) {
        log("peer did not take chunks; placing them elsewhere", { peer, error: `${e}` });
      }
      out.add(peer);
      return cids;
    }
  };

  /** The first plan of each stripe, before any refusal: what the mesh could have given. */
  const planned: string[][][] = [];
  const placeStripe = async (stripe: CID[], index: number) => {
    let existing: string[][] | undefined;
    for (let round = 0;; round++) {
      const plan = current().placeStripe(stripe, { m, self, existing });
      if (round === 0) planned[index] = plan;
      const byPeer = new Map<string, Map<string, CID>>();
      plan.forEach((holders, i) => {
        const cid = stripe[i]!;
        for (const h of holders) {
          if (h === self) hold(cid, self);
          else if (!where.get(cid.toString())?.has(h)) {
            if (!byPeer.has(h)) byPeer.set(h, new Map());
            byPeer.get(h)!.set(cid.toString(), cid);
          }
        }
      });
      const left = (await Promise.all([...byPeer].map(([p, cids]) => send(p, [...cids.values()]))))
        .flat();
      if (!left.length) return;
      if (round === 1) return left.forEach((cid) => hold(cid, self)); // no taker: it stays here
      existing = stripe.map((cid) => [...(where.get(cid.toString()) ?? [])]);
    }
  };

  const queue = manifest.stripes.map((stripe, i) => [stripe, i] as const);
  const workers = Array.from({ length: options.concurrency ?? 4 }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) {
      signal?.throwIfAborted();
      await placeStripe(...next);
    }
  });
  await Promise.all(workers);

  // The manifest stays here (pinned) and goes to the peers nearest to it as well.
  hold(manifestCid, self);
  const replicas = options.manifestReplicas ?? Math.max(3, m);
  const nearest = (t: PeerTable) =>
    t.closest(manifestCid.multihash.digest, replicas + 1).filter((p) => p !== self).slice(
      0,
      replicas,
    );
  const plannedReplicas = nearest(table0);
  await Promise.all(nearest(current()).map((peer) => send(peer, [manifestCid])));

  const local: CID[] = [];
  const drop: CID[] = [];
  const seen = new Set<string>();
  for (const cid of [manifestCid, ...manifest.stripes.flat()]) {
    const key = cid.toString();
    if (seen.has(key)) continue;
    seen.add(key);
    const holders = where.get(key)!;
    if (holders.has(self)) local.push(cid);
    else drop.push(cid);
  }

  const holdersOf = (cid: CID) => [...(where.get(cid.toString()) ?? [])];
  const durability = durabilityOf(manifestCid, manifest, holdersOf);
  const warnings = [];
  if (!peers.length) {
    warnings.push("No peers: the file is only on this node, and is lost with it.");
  } else {
    const plannedCopies = new Map<string, Set<string>>();
    planned.forEach((plan, s) =>
      plan.forEach((holders, i) => {
        const key = manifest.stripes[s]![i]!.toString();
        if (!plannedCopies.has(key)) plannedCopies.set(key, new Set());
        for (const h of holders) plannedCopies.get(key)!.add(h);
      })
    );
    plannedCopies.set(manifestCid.toString(), new Set([self, ...plannedReplicas]));
    const best = durabilityOf(
      manifestCid,
      manifest,
      (cid) => [...(plannedCopies.get(cid.toString()) ?? [])],
    ).survives;
    const reduced = durability.survives < best;
    const n = current().peers.length; // the holders left after refusals
    const widest = Math.max(0, ...manifest.stripes.map((s) => s.length));
    const pct = Math.round(durability.overhead * 100);
    const outcome = reduced
      ? "."
      : `, so it survives the loss of any ${plural(durability.survives, "holder")}.`;
    const copied = manifest.stripes.some((st) => st.some((c) => where.get(`${c}`)!.size > 1));
    if (!copied) {
      // Nothing was copied: the refusal below (if any) says what happened.
    } else if (m === 0) {
      warnings.push(
        `Stripes without parity (m = 0): each chunk is kept on two holders (${pct}% space overhead)${outcome}`,
      );
    } else if (widest > n * m) {
      const enough = Math.ceil(widest / m);
      warnings.push(
        `${n} holders are too few to spread stripes of ${k}+${m} chunks at most ${m} per holder ` +
          `(that takes ${enough}): extra copies are kept (${pct}% space overhead)${outcome}`,
      );
    }
    if (reduced) {
      const who = plural(out.size, "peer");
      const lost = plural(durability.survives, "holder");
      warnings.push(
        `${who} refused or failed to take chunks: the file survives the loss of ${lost}, ${best} planned.`,
      );
    }
  }
  if (warnings.length) {
    durability.warning = warnings.join(" ");
    log("file placed with reduced durability", { cid: manifestCid.toString(), ...durability });
  }

  options.provide?.add(local);
  return { local, drop, placed, where, durability, refused: refusals };
}
