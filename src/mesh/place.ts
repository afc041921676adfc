/**
 * Placing a file's stripes on peers after an upload, and what the placement is worth.
 *
 * No copy counts on a promise: each put a peer accepts is followed by a `prove` challenge (exchange.ts)
 * for the same chunks, with a nonce it has not seen, which it can only answer from its copy; the uploader
 * checks each answer against the proof of the bytes it sent. Challenges run beside the next stripes'
 * sends, one at a time per peer (taking every copy accepted meanwhile), and all are settled before the
 * placement is reported. Only proved holders enter `where` (and so
 * `durability` and `drop`); a peer that fails is treated like one that refused: left out of the rest of
 * the file, its unproved chunks placed again elsewhere (and proved), or kept here. This catches peers that accept and store nothing; a peer that keeps the bytes only until it is
 * challenged is a matter for later audits (reputation, issue 11).
 *
 * Diversity: a stripe is not left to one address prefix nor to new identities (see placement.ts):
 * {@link peerGroups} puts each connected peer in its /24 (IPv4) or /48 (IPv6) group, as the connection's
 * remote address says, and in the group "new" while connected for less than `minAgeMs`. Loopback peers
 * have no prefix group (every node of a local cluster or test is 127.0.0.1), so the prefix rule is off on
 * loopback; private ranges are grouped like any other (a LAN is one fault domain).
 */
import type { CID } from "../content/cid.ts";
import type { Manifest } from "../content/manifest.ts";
import type { MeshNode } from "./node.ts";
import { chunkProof } from "./exchange.ts";
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
  /** A peer connected for less than this (ms) counts as a new identity for diversity. Default:
   * {@link DEFAULT_MIN_AGE_MS}. */
  minAgeMs?: number;
  /** Of the connected peers, those that may keep chunks, chosen by what this node knows of them (the node:
   * reputation × price); XOR closeness then decides among them. Default: every connected peer. */
  candidates?: (peers: readonly string[]) => string[];
}

/** How long a peer must have been connected not to count as new: 10 min. */
export const DEFAULT_MIN_AGE_MS = 10 * 60_000;
const NONCE_BYTES = 32;
/** Rounds of placing again the chunks of peers that failed their challenge; what is left stays here. */
const PROOF_ROUNDS = 2;

/**
 * The diversity groups of the peers connected now (see the module doc): `ip4:a.b.c` or `ip6:x:y:z` by the
 * connection's remote address (none on loopback), and `new` while the oldest connection is younger than
 * `minAgeMs`. A peer not connected is `new` and has no prefix.
 */
export function peerGroups(
  mesh: MeshNode,
  minAgeMs = DEFAULT_MIN_AGE_MS,
  now = Date.now(),
): (peer: string) => string[] {
  const seen = new Map<string, { since: number; prefix?: string }>();
  for (const c of mesh.libp2p.getConnections()) {
    const peer = c.remotePeer.toString();
    const prefix = addressPrefix(c.remoteAddr.getComponents());
    const open = c.timeline.open ?? now;
    const was = seen.get(peer);
    if (!was || open < was.since) seen.set(peer, { since: open, prefix: prefix ?? was?.prefix });
  }
  return (peer) => {
    // This node counts with the new ones: diversity must never make the uploader keep what established
    // peers could not take (with only new peers around, the plan is the one without groups).
    if (peer === mesh.peerId) return ["new"];
    const s = seen.get(peer);
    const groups = s?.prefix ? [s.prefix] : [];
    if (!s || now - s.since < minAgeMs) groups.push("new");
    return groups;
  };
}

/** The /24 or /48 of a multiaddr's IP component; undefined for loopback or no IP. */
export function addressPrefix(
  components: readonly { name: string; value?: string }[],
): string | undefined {
  const ip = components.find((c) => c.name === "ip4" || c.name === "ip6");
  if (!ip?.value) return undefined;
  let v = ip.value;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(v);
  if (ip.name === "ip4" || mapped) {
    v = mapped ? mapped[1]! : v;
    return v.startsWith("127.") ? undefined : `ip4:${v.split(".").slice(0, 3).join(".")}`;
  }
  const [head, tail = ""] = v.toLowerCase().split("::");
  const left = head ? head.split(":") : [];
  const right = v.includes("::") && tail ? tail.split(":") : [];
  const full = v.includes("::")
    ? [...left, ...Array(8 - left.length - right.length).fill("0"), ...right]
    : left;
  if (full.every((h, i) => Number.parseInt(h, 16) === (i === 7 ? 1 : 0))) return undefined; // ::1
  return `ip6:${full.slice(0, 3).map((h) => Number.parseInt(h, 16).toString(16)).join(":")}`;
}

const sameBytes = (a: Uint8Array | null | undefined, b: Uint8Array) =>
  !!a && a.length === b.length && a.every((x, i) => x === b[i]);

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
  const placing = await startPlacement(mesh, manifest.m, read, options);
  for (const [i, stripe] of manifest.stripes.entries()) await placing.add(stripe, i);
  return await placing.finish(manifestCid, manifest);
}

/** A placement under way, fed stripe by stripe while an upload still arrives (see {@link startPlacement}). */
export interface StripePlacement {
  /**
   * Starts placing stripe `index` (`bytes`: its chunks in order when at hand; else they are read). Resolves
   * once fewer than `concurrency` stripes are being placed, so the upload waits for the mesh (back-pressure);
   * rejects with the first failure (an abort).
   */
  add(stripe: CID[], index: number, bytes?: readonly Uint8Array[]): Promise<void>;
  /** Waits for the stripes added, places the manifest, settles every challenge, and reports. */
  finish(manifestCid: CID, manifest: Manifest): Promise<PlacementReport>;
  /** Stops placing (the upload failed): sends under way are cancelled. */
  abort(reason?: unknown): void;
}

/**
 * {@link placeFile} in steps, so that placement streams a file's stripes to their holders while the upload
 * is still arriving, instead of after it: `add` each stripe as it is sealed (its parity known), then
 * `finish` with the manifest. `m` is the stripes' parity count.
 */
export async function startPlacement(
  mesh: MeshNode,
  m: number,
  read: (cid: CID) => Promise<Uint8Array | null>,
  options: PlaceOptions = {},
): Promise<StripePlacement> {
  const self = mesh.peerId;
  const connected = await meshPeers(mesh);
  const peers = options.candidates ? options.candidates(connected) : connected;
  const stopper = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, stopper.signal])
    : stopper.signal;
  /** Bytes of the stripes being placed, handed over by the caller (counted: a chunk may repeat). */
  const memory = new Map<string, { bytes: Uint8Array; refs: number }>();
  const readChunk = (cid: CID) => {
    const held = memory.get(cid.toString());
    return held ? Promise.resolve(held.bytes) : read(cid);
  };
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
  /** Proved holders (and this node) of each block. */
  const where = new Map<string, Set<string>>();
  const hold = (cid: CID, peer: string) => {
    const key = cid.toString();
    let set = where.get(key);
    if (!set) where.set(key, set = new Set());
    set.add(peer);
  };
  let placed = 0;
  const refusals: PlacementReport["refused"] = [];
  /** Peers that accepted chunks and then failed to prove they hold them. */
  const unproved = new Set<string>();
  /** Copies accepted and being proved, by block: counted in the spread, not yet in `where`. */
  const claimed = new Map<string, Set<string>>();
  const holdersSoFar = (cid: CID) => [
    ...(where.get(cid.toString()) ?? []),
    ...(claimed.get(cid.toString()) ?? []),
  ];
  /** A challenge being gathered: its nonce (secret until sent) and, per copy, the proof it must give,
   * computed from the bytes sent, so that no chunk is held in memory while it waits. */
  type Batch = { nonce: Uint8Array; copies: [CID, Uint8Array][] };
  const batch = (): Batch => ({
    nonce: crypto.getRandomValues(new Uint8Array(NONCE_BYTES)),
    copies: [],
  });
  /** Per peer, the next challenge and the one under way: at most one per peer, running beside the next
   * stripes' sends and taking, when it starts, every copy accepted meanwhile. */
  const provers = new Map<string, { next: Batch; running?: Promise<void> }>();
  /** Blocks whose copy failed a challenge since the last {@link settle}. */
  let lost = new Set<string>();
  const challenge = (peer: string, taken: { cid: CID; bytes: Uint8Array }[]) => {
    let p = provers.get(peer);
    if (!p) provers.set(peer, p = { next: batch() });
    for (const { cid, bytes } of taken) p.next.copies.push([cid, chunkProof(p.next.nonce, bytes)]);
    const q = p;
    q.running ??= (async () => {
      while (q.next.copies.length) {
        const now = q.next;
        q.next = batch();
        await prove(peer, now);
      }
      q.running = undefined;
    })();
  };

  /** Sends `peer` one challenge and counts the copies that pass. Never rejects: it runs unawaited until
   * settled, and an abort is thrown there. */
  const prove = async (peer: string, { nonce, copies }: Batch) => {
    let proofs: (Uint8Array | null)[] = [];
    try {
      proofs = await mesh.proveChunks(peer, nonce, copies.map(([cid]) => cid), { signal });
    } catch (e) {
      if (!signal?.aborted) log("peer did not answer its proof challenge", { peer, error: `${e}` });
    }
    let failed = 0;
    copies.forEach(([cid, proof], i) => {
      claimed.get(cid.toString())?.delete(peer);
      if (sameBytes(proofs[i], proof)) hold(cid, peer), placed++;
      else failed++, lost.add(cid.toString());
    });
    if (!failed) return;
    refusals.push({ peer, reason: "unproved", chunks: failed });
    if (!unproved.has(peer)) {
      log("peer accepted chunks it cannot prove it holds; placing them elsewhere", {
        peer,
        failed,
        of: copies.length,
      });
    }
    unproved.add(peer);
    out.add(peer);
  };
  const groups = peerGroups(mesh, options.minAgeMs);

  /** Hands `cids` to `peer`; resolves with those it did not take. Those it took are challenged (in the
   * background: see {@link settle}). */
  const send = async (peer: string, cids: CID[]): Promise<CID[]> => {
    const chunks: { cid: CID; bytes: Uint8Array }[] = [];
    const left = [];
    for (const cid of cids) {
      const bytes = await readChunk(cid);
      if (bytes) chunks.push({ cid, bytes });
      else left.push(cid);
    }
    try {
      const results = await mesh.storeChunks(peer, chunks, { signal });
      const refused = results.filter((r) => !r.accepted);
      const taken = chunks.filter((_, i) => results[i]!.accepted);
      for (const { cid } of taken) {
        if (!claimed.has(cid.toString())) claimed.set(cid.toString(), new Set());
        claimed.get(cid.toString())!.add(peer);
      }
      if (taken.length) challenge(peer, taken);
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
  const placeStripe = async (stripe: CID[], index: number, again = false) => {
    let existing = again ? stripe.map(holdersSoFar) : undefined;
    for (let round = 0;; round++) {
      const plan = current().placeStripe(stripe, { m, self, existing, groups });
      if (round === 0 && !again) planned[index] = plan;
      const byPeer = new Map<string, Map<string, CID>>();
      plan.forEach((holders, i) => {
        const cid = stripe[i]!;
        for (const h of holders) {
          if (h === self) hold(cid, self);
          else if (!holdersSoFar(cid).includes(h)) {
            if (!byPeer.has(h)) byPeer.set(h, new Map());
            byPeer.get(h)!.set(cid.toString(), cid);
          }
        }
      });
      const left = (await Promise.all([...byPeer].map(([p, cids]) => send(p, [...cids.values()]))))
        .flat();
      if (!left.length) return;
      if (round === 1) return left.forEach((cid) => hold(cid, self)); // no taker: it stays here
      existing = stripe.map(holdersSoFar);
    }
  };
  const placeStripes = async (list: (readonly [CID[], number])[], again = false) => {
    const queue = [...list];
    const workers = Array.from({ length: options.concurrency ?? 4 }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        signal?.throwIfAborted();
        await placeStripe(next[0], next[1], again);
      }
    });
    await Promise.all(workers);
  };
  /** Waits for every challenge; resolves with the blocks whose copy failed one. */
  const settle = async () => {
    for (let busy = [...provers.values()]; busy.length;) {
      await Promise.all(busy.map((p) => p.running));
      busy = [...provers.values()].filter((p) => p.running);
    }
    signal?.throwIfAborted();
    const failed = lost;
    lost = new Set();
    return failed;
  };

  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  const add = async (stripe: CID[], index: number, bytes?: readonly Uint8Array[]) => {
    if (failure !== undefined) throw failure;
    signal.throwIfAborted();
    const keys = stripe.map(String);
    if (bytes) {
      keys.forEach((key, i) => {
        const held = memory.get(key);
        if (held) held.refs++;
        else if (bytes[i]) memory.set(key, { bytes: bytes[i]!, refs: 1 });
      });
    }
    const placing: Promise<void> = placeStripe(stripe, index)
      .catch((e) => void (failure ??= e))
      .finally(() => {
        inFlight.delete(placing);
        if (!bytes) return;
        for (const key of keys) {
          const held = memory.get(key);
          if (held && --held.refs === 0) memory.delete(key);
        }
      });
    inFlight.add(placing);
    while (inFlight.size >= (options.concurrency ?? 4)) await Promise.race(inFlight);
    if (failure !== undefined) throw failure;
  };

  const finish = async (manifestCid: CID, manifest: Manifest): Promise<PlacementReport> => {
    await Promise.all(inFlight);
    if (failure !== undefined) throw failure;

    // The manifest stays here (pinned) and goes to the peers nearest to it as well.
    hold(manifestCid, self);
    const replicas = options.manifestReplicas ?? Math.max(3, m);
    const nearest = (t: PeerTable) =>
      t.closest(manifestCid.multihash.digest, replicas + 1).filter((p) => p !== self).slice(
        0,
        replicas,
      );
    const plannedReplicas = nearest(table0);
    const replicate = () =>
      Promise.all(
        nearest(current()).filter((p) => !holdersSoFar(manifestCid).includes(p)).map((peer) =>
          send(peer, [manifestCid])
        ),
      );
    await replicate();

    // The chunks of peers that failed a challenge go elsewhere (and are challenged in turn); what still
    // fails after PROOF_ROUNDS stays here.
    for (let round = 0;; round++) {
      const failed = await settle();
      if (!failed.size) break;
      if (round === PROOF_ROUNDS) {
        for (const cid of [manifestCid, ...manifest.stripes.flat()]) {
          if (failed.has(cid.toString())) hold(cid, self);
        }
        break;
      }
      const stripes = manifest.stripes.map((stripe, i) => [stripe, i] as const)
        .filter(([stripe]) => stripe.some((cid) => failed.has(cid.toString())));
      await placeStripes(stripes, true);
      if (failed.has(manifestCid.toString())) await replicate();
    }

    const local: CID[] = [];
    const drop: CID[] = [];
    const seen = new Set<string>();
    for (const cid of [manifestCid, ...manifest.stripes.flat()]) {
      const key = cid.toString();
      if (seen.has(key)) continue;
      seen.add(key);
      if (!where.has(key)) hold(cid, self); // nobody proved it: it stays (never reached, but cheap)
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
          // The widest stripe names itself: a file smaller than one full stripe has a narrower one than k+m.
          `${n} holders are too few to spread stripes of ${
            widest - m
          }+${m} chunks at most ${m} per holder ` +
            `(that takes ${enough}): extra copies are kept (${pct}% space overhead)${outcome}`,
        );
      }
      if (unproved.size) {
        warnings.push(
          `${plural(unproved.size, "peer")} accepted chunks but could not prove they hold them: ` +
            `those copies do not count, and were placed again or kept here.`,
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
  };
  return { add, finish, abort: (reason) => stopper.abort(reason) };
}
