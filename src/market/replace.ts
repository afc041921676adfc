/**
 * Re-placing chunks a holder lost: the client finds which of a lease's chunks fail (one challenge per
 * chunk), recovers each from another copy in the mesh or rebuilds it from the rest of its stripe, and hands
 * it to a new holder chosen by reputation, away from the peers that hold the stripe's other chunks where it
 * can. The caller then leases them from the new holder for the rest of the term.
 *
 * @module
 */
import { CID, DAG_JSON_CODE } from "../content/cid.ts";
import { decodeManifest, type Manifest } from "../content/manifest.ts";
import { rebuildStripe } from "../content/stripes.ts";

export interface ReplaceDeps {
  /** The client's own store (it keeps each upload's manifest). */
  get(cid: CID): Promise<Uint8Array | null>;
  /** A verified chunk from anywhere in the mesh; null when nobody has it. */
  fetch(cid: CID): Promise<Uint8Array | null>;
  /** Peers that could take a chunk, with their scores (higher first is better). */
  candidates(): { peer: string; score: number }[];
  /** Asks `peer` to keep the chunks; true for each it accepted. */
  store(peer: string, chunks: { cid: CID; bytes: Uint8Array }[]): Promise<boolean[]>;
}

/**
 * The bytes of `cid`, a chunk of file `root`: another copy, or rebuilt from its stripe, whichever comes
 * first. Both are asked at once: a chunk that was lost usually has no other copy, and a search for one can
 * take long before it says so.
 */
export async function recoverChunk(
  deps: Pick<ReplaceDeps, "get" | "fetch">,
  root: CID,
  cid: CID,
): Promise<Uint8Array | null> {
  const copy = deps.fetch(cid).catch(() => null);
  const rebuilt = rebuildFromStripe(deps, root, cid).catch(() => null);
  return await new Promise((resolve) => {
    let left = 2;
    for (const p of [copy, rebuilt]) {
      void p.then((bytes) => {
        if (bytes) resolve(bytes);
        else if (--left === 0) resolve(null);
      });
    }
  });
}

async function rebuildFromStripe(
  deps: Pick<ReplaceDeps, "get" | "fetch">,
  root: CID,
  cid: CID,
): Promise<Uint8Array | null> {
  if (root.code !== DAG_JSON_CODE) return null;
  const bytes = await deps.get(root) ?? await deps.fetch(root);
  if (!bytes) return null;
  const manifest: Manifest = decodeManifest(bytes);
  const s = manifest.stripes.findIndex((stripe) => stripe.some((c) => c.equals(cid)));
  if (s < 0) return null;
  const stripe = manifest.stripes[s]!;
  const have = await Promise.all(
    stripe.map((c) => c.equals(cid) ? null : deps.fetch(c).catch(() => null)),
  );
  try {
    const rebuilt = rebuildStripe(manifest, s, have);
    return rebuilt[stripe.findIndex((c) => c.equals(cid))]!;
  } catch {
    return null; // too few of the stripe left
  }
}

/**
 * Places `lost` (recovered bytes by CID) on new holders: per chunk the best-scored candidate that is not
 * `avoid` nor in `near(cid)` (holders of the same stripe), falling back to any candidate but `avoid`.
 * Returns, per new holder, the CIDs it accepted.
 */
export async function placeLost(
  deps: Pick<ReplaceDeps, "candidates" | "store">,
  lost: Map<string, Uint8Array>,
  avoid: ReadonlySet<string>,
  near: (cid: string) => ReadonlySet<string>,
): Promise<Map<string, string[]>> {
  const ranked = deps.candidates().filter((c) => !avoid.has(c.peer))
    .sort((a, b) => b.score - a.score).map((c) => c.peer);
  const placed = new Map<string, string[]>();
  const tried = new Map<string, string[]>();
  let pending = [...lost.keys()];
  // Two rounds: a refusal (full, quota) sends the chunk to the next candidate.
  for (let round = 0; round < 2 && pending.length; round++) {
    const byPeer = new Map<string, string[]>();
    for (const cid of pending) {
      const away = near(cid);
      const seen = tried.get(cid) ?? [];
      const pick = ranked.find((p) => !away.has(p) && !seen.includes(p)) ??
        ranked.find((p) => !seen.includes(p));
      if (!pick) continue;
      tried.set(cid, [...seen, pick]);
      byPeer.set(pick, [...(byPeer.get(pick) ?? []), cid]);
    }
    const next: string[] = [];
    await Promise.all([...byPeer].map(async ([peer, cids]) => {
      let ok: boolean[];
      try {
        ok = await deps.store(peer, cids.map((c) => ({ cid: CID.parse(c), bytes: lost.get(c)! })));
      } catch {
        ok = cids.map(() => false);
      }
      cids.forEach((c, i) => {
        if (ok[i]) placed.set(peer, [...(placed.get(peer) ?? []), c]);
        else next.push(c);
      });
    }));
    pending = next;
  }
  return placed;
}
