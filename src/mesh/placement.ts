/**
 * Where a stripe's chunks go, and what a placement survives.
 *
 * Each chunk goes to the peer nearest to it by XOR distance (kernel `XorTable`), spread evenly, so losing
 * one holder costs a stripe as few chunks as the mesh allows. A stripe of d data + m parity chunks is
 * readable from any d of them, so no holder may be the only one with more than m of them: when the mesh
 * has too few holders for that (fewer than ceil((d+m)/m)), the chunks over m get a second holder (the
 * uploader, which has them already; for the uploader's own, another peer).
 *
 * Diversity: peers may share a fault domain or an owner (the same /24, identities that just appeared). Each
 * such group (see {@link PlaceStripeOptions.groups}) takes at most m chunks of a stripe, where the peers
 * outside it can take the rest at m each; where they cannot, the group takes only the remainder
 * (chunks − m × peers outside it), so diversity never costs extra copies. Storj selects by /24 the same way.
 */
import { blake3, XorTable } from "../kernels/mod.ts";
import type { CID } from "../content/cid.ts";
import { chunkLength, type Manifest, stripeDataCount } from "../content/manifest.ts";

const utf8 = new TextEncoder();

/** The 32-byte key of a peer in XOR space: BLAKE3 of its peer ID text. */
export function peerKey(peerId: string): Uint8Array {
  return blake3(utf8.encode(peerId));
}

export interface PlaceStripeOptions {
  /** Parity chunks of the stripe: the most chunks one holder may be the only holder of. */
  m: number;
  /** The uploader, if it is in the table: it already has every chunk, so it takes the second copies. */
  self?: string;
  /** Holders that already have a chunk, per position (kept, and counted in the spread). */
  existing?: readonly (readonly string[] | undefined)[];
  /** The groups each peer counts in (an address prefix, "new"): none of them is given more than
   * max(m, chunks − m × peers outside it) of the stripe's chunks while a peer outside has room. Default:
   * none. */
  groups?: (peer: string) => readonly string[];
}

/** A set of candidate holders, with their keys packed once for the kernel. */
export class PeerTable {
  readonly peers: readonly string[];
  #table: XorTable;

  constructor(peers: Iterable<string>) {
    this.peers = [...new Set(peers)];
    const ids = new Uint8Array(this.peers.length * 32);
    this.peers.forEach((p, i) => ids.set(peerKey(p), i * 32));
    this.#table = new XorTable(ids);
  }

  /** Up to `k` peers nearest to `key`, nearest first. */
  closest(key: Uint8Array, k: number): string[] {
    return [...this.#table.closest(key, k)].map((i) => this.peers[i]!);
  }

  /**
   * The holders of each chunk of a stripe, in order (one, or two where needed). First each chunk without
   * an `existing` holder goes to the nearest peer that still has room in an even spread (at most
   * ceil(chunks / peers) each, all distinct when peers >= chunks). Then every holder that would be the only one with more than `m`
   * chunks hands its surplus a second holder: `self` when it is not the holder, else the nearest peer with
   * the fewest of the stripe. With one peer only, nothing can be spread and its chunks stay single.
   */
  placeStripe(chunks: readonly CID[], options: PlaceStripeOptions): string[][] {
    const n = this.peers.length;
    if (n === 0) throw new RangeError("No peers to place chunks on");
    const { m, self } = options;
    if (!Number.isInteger(m) || m < 0) throw new RangeError(`Parity count "${m}" must be >= 0`);
    const holders = chunks.map((_, i) => [...new Set(options.existing?.[i] ?? [])]);
    const load = new Map<string, number>();
    const add = (i: number, peer: string) => {
      holders[i]!.push(peer);
      load.set(peer, (load.get(peer) ?? 0) + 1);
    };
    for (const h of holders.flat()) load.set(h, (load.get(h) ?? 0) + 1);
    const ranked = (i: number) => this.closest(chunks[i]!.multihash.digest, n);
    const leastLoaded = (candidates: string[]) => {
      let best: string | undefined;
      for (const p of candidates) {
        if (best === undefined || load.get(p)! < load.get(best)!) best = p;
      }
      return best;
    };
    for (const p of this.peers) load.set(p, load.get(p) ?? 0);

    // Per group, its members' share so far and its cap (see the module doc). m = 0 keeps two copies of
    // everything anyway: no caps.
    const groupsOf = new Map(this.peers.map((p) => [p, m > 0 ? options.groups?.(p) ?? [] : []]));
    const members = new Map<string, number>();
    for (const gs of groupsOf.values()) {
      for (const g of gs) members.set(g, (members.get(g) ?? 0) + 1);
    }
    const cap = new Map<string, number>();
    for (const [g, count] of members) cap.set(g, Math.max(m, chunks.length - m * (n - count)));
    const share = new Map<string, number>();
    for (const h of holders.flat()) {
      for (const g of groupsOf.get(h) ?? []) share.set(g, (share.get(g) ?? 0) + 1);
    }
    const open = (p: string) => groupsOf.get(p)!.every((g) => (share.get(g) ?? 0) < cap.get(g)!);

    // As even as the count allows: every peer floor(chunks / n), the first (chunks mod n) to get there
    // one more, so no peer is left short while another has a surplus to copy.
    const base = Math.floor(chunks.length / n);
    let over = chunks.length % n;
    const fits = (p: string) => load.get(p)! < base || (load.get(p) === base && over > 0);
    holders.forEach((hs, i) => {
      if (hs.length) return;
      const order = ranked(i);
      const peer = order.find((p) => fits(p) && open(p)) ?? leastLoaded(order.filter(open)) ??
        order.find(fits) ?? leastLoaded(order)!;
      if (load.get(peer) === base) over--;
      add(i, peer);
      for (const g of groupsOf.get(peer)!) share.set(g, (share.get(g) ?? 0) + 1);
    });

    // Surplus of sole holders, in order: a chunk is the sole charge of holders[i][0] when it has no other.
    const sole = new Map<string, number[]>();
    holders.forEach((hs, i) => {
      if (hs.length === 1) sole.set(hs[0]!, [...(sole.get(hs[0]!) ?? []), i]);
    });
    for (const [holder, positions] of sole) {
      for (const i of positions.slice(m)) {
        const second = self !== undefined && holder !== self && this.peers.includes(self)
          ? self
          : leastLoaded(ranked(i).filter((p) => p !== holder));
        if (second === undefined) break; // a table of one: nowhere else to go
        add(i, second);
      }
    }
    return holders;
  }
}

/** Where a stripe's chunks are: per position, the holders that have it, and how many positions it needs. */
export interface StripeHolders {
  /** Positions needed to read the stripe (its data count; 1 for a single block such as a manifest). */
  need: number;
  /** Per position, the holders with a copy (empty: lost). */
  holders: readonly (readonly string[])[];
}

const ENUMERATION_BUDGET = 4_000_000;

function binomial(n: number, k: number): number {
  let r = 1;
  for (let i = 1; i <= k; i++) r = (r * (n - k + i)) / i;
  return r;
}

/**
 * The largest N such that losing any N holders at once leaves every stripe with at least `need` positions
 * that a remaining holder has. Exact (every N-subset of holders is tried) while that takes at most a few
 * million steps; beyond, a conservative bound: a lost position needs all its r holders lost, so each lost
 * holder can cost at most the sum of 1/r over the positions it holds.
 */
export function survivableLosses(stripes: readonly StripeHolders[]): number {
  const index = new Map<string, number>();
  for (const s of stripes) {
    for (const hs of s.holders) for (const h of hs) if (!index.has(h)) index.set(h, index.size);
  }
  const n = index.size;
  // Each stripe as its distinct holder sets (bitmask when n <= 30) with how many positions have each.
  const shapes = new Map<
    string,
    { need: number; sets: { ids: number[]; mask: number; count: number }[] }
  >();
  for (const s of stripes) {
    const sets = new Map<string, { ids: number[]; mask: number; count: number }>();
    let have = 0;
    for (const hs of s.holders) {
      const ids = [...new Set(hs.map((h) => index.get(h)!))].sort((a, b) => a - b);
      if (!ids.length) continue;
      have++;
      const key = ids.join(",");
      const entry = sets.get(key);
      if (entry) entry.count++;
      else sets.set(key, { ids, mask: ids.reduce((a, id) => a | (1 << id), 0), count: 1 });
    }
    if (have < s.need) return 0; // unreadable already (and nothing to lose)
    const list = [...sets.values()];
    shapes.set(`${s.need}|${list.map((e) => `${e.ids}x${e.count}`).sort().join(";")}`, {
      need: s.need,
      sets: list,
    });
  }
  const unique = [...shapes.values()];
  const steps = unique.reduce((a, s) => a + s.sets.length, 0);

  const exact = (lost: number): boolean => {
    // Every `lost`-subset as a bitmask, in increasing order (Gosper's hack).
    for (let set = (1 << lost) - 1; set < 1 << n;) {
      for (const s of unique) {
        let left = 0;
        for (const e of s.sets) if ((e.mask & ~set) !== 0) left += e.count;
        if (left < s.need) return false;
      }
      const c = set & -set;
      const r = set + c;
      set = (((r ^ set) >>> 2) / c) | r;
    }
    return true;
  };
  const bound = (lost: number): boolean => {
    for (const s of unique) {
      const weight = new Array<number>(n).fill(0);
      let have = 0;
      for (const e of s.sets) {
        have += e.count;
        if (e.ids.length > lost) continue; // needs more losses than `lost` to go
        for (const id of e.ids) weight[id]! += e.count / e.ids.length;
      }
      const worst = weight.sort((a, b) => b - a).slice(0, lost).reduce((a, w) => a + w, 0);
      if (have - worst < s.need - 1e-9) return false;
    }
    return true;
  };
  for (let lost = 1; lost <= n; lost++) {
    const ok = n <= 30 && binomial(n, lost) * steps <= ENUMERATION_BUDGET
      ? exact(lost)
      : bound(lost);
    if (!ok) return lost - 1;
  }
  return n;
}

/** What a file's placement is worth: reported by uploads and `/api/files`. */
export interface Durability {
  /** Any this many holders may be lost at once and every stripe (and the manifest) is still readable. */
  survives: number;
  /** Distinct holders of the file's chunks or manifest, the uploader included. */
  holders: number;
  /** Chunk bytes stored across all holders (data, parity, extra copies) over the file size, minus 1. */
  overhead: number;
  /** Why the file is less safe than the stripe suggests (too few holders, refusals); absent when fine. */
  warning?: string;
}

/**
 * The durability of `manifest` (named `manifestCid`) given where each block is (`where(cid)`: the holders
 * with a copy). The manifest counts as a block that one holder must still have; its bytes are not counted
 * in the overhead. A file of 0 bytes costs nothing.
 */
export function durabilityOf(
  manifestCid: CID,
  manifest: Manifest,
  where: (cid: CID) => readonly string[],
): Durability {
  const stripes: StripeHolders[] = [{ need: 1, holders: [where(manifestCid)] }];
  const holders = new Set(where(manifestCid));
  let stored = 0;
  const counted = new Set<string>(); // a holder keeps one copy of a CID however often it occurs
  manifest.stripes.forEach((stripe, s) => {
    const data = stripeDataCount(manifest, s);
    const first = s * manifest.k;
    const perPosition = stripe.map((cid) => where(cid));
    stripes.push({ need: data, holders: perPosition });
    stripe.forEach((cid, i) => {
      const bytes = chunkLength(manifest, i < data ? first + i : first);
      for (const h of perPosition[i]!) {
        holders.add(h);
        const key = `${h} ${cid}`;
        if (!counted.has(key)) counted.add(key), stored += bytes;
      }
    });
  });
  const overhead = manifest.size ? Math.round((stored / manifest.size - 1) * 1e4) / 1e4 : 0;
  return { survives: survivableLosses(stripes), holders: holders.size, overhead };
}

/** The durability of a file that only this node holds, whole: it survives no lost holder. */
export function localDurability(manifestCid: CID, manifest: Manifest): Durability {
  return durabilityOf(manifestCid, manifest, () => ["self"]);
}
