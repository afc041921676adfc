/**
 * Finding a chunk that is not held locally: where it is (ChunkLocator), and fetching it (fetchFromMesh).
 */
import type { CID } from "../content/cid.ts";
import type { SpendBudget } from "./exchange.ts";
import type { MeshNode } from "./node.ts";
import { meshPeers, meshTable } from "./peers.ts";
import { defaultStanding, type PeerStanding } from "./health.ts";
import { warn } from "./_log.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("mesh:fetch", msg, fields);

/** Holders remembered per chunk: enough to pick the cheapest of a few. */
const HOLDERS_PER_CHUNK = 4;

/**
 * Where chunks are, learned by asking every known peer at once which of a batch it holds (one round trip,
 * in parallel), instead of probing peers one by one per chunk. Remembers up to 100 000 chunks, and up to
 * {@link HOLDERS_PER_CHUNK} holders of each, quickest first.
 */
export class ChunkLocator {
  #where = new Map<string, string[]>();
  readonly standing: PeerStanding;

  /**
   * `standing` (default: {@link defaultStanding} of the mesh) says whom not to ask; `price` (paid delivery:
   * the operator's quote, wei per byte) orders a chunk's holders cheapest first. Default: quickest first.
   */
  constructor(
    readonly mesh: MeshNode,
    readonly limit = 100_000,
    standing?: PeerStanding,
    readonly price?: (peer: string) => Promise<bigint>,
  ) {
    this.standing = standing ?? defaultStanding(mesh.libp2p);
  }

  /** Asks all known peers in good standing which of `cids` they hold. Failures only make a peer skipped. */
  async locate(cids: readonly CID[], signal?: AbortSignal): Promise<void> {
    const peers = (await meshPeers(this.mesh)).filter((p) =>
      !this.standing.avoided(p) && !this.standing.skipped(p)
    );
    await Promise.all(peers.map(async (peer) => {
      try {
        const held = await this.mesh.hasChunks(peer, cids, { signal });
        this.standing.answered(peer);
        held.forEach((has, i) => has && this.#remember(cids[i]!.toString(), peer));
      } catch (e) {
        if (signal?.aborted) return;
        this.standing.failed(peer, e);
      }
    }));
  }

  holder(cid: CID): string | undefined {
    return this.#where.get(cid.toString())?.[0];
  }

  /** The known holders of `cid`: cheapest first with a `price`, else quickest first. A holder whose quote
   * fails goes last. */
  holders(cid: CID): Promise<string[]> {
    const peers = [...this.#where.get(cid.toString()) ?? []];
    return this.price ? cheapestFirst(peers, this.price, peers.length) : Promise.resolve(peers);
  }

  /** Forgets `peer` as a holder of `cid`, or every holder. */
  forget(cid: CID, peer?: string): void {
    const key = cid.toString();
    const left = peer === undefined ? [] : (this.#where.get(key) ?? []).filter((p) => p !== peer);
    if (left.length > 0) this.#where.set(key, left);
    else this.#where.delete(key);
  }

  /** Peers are kept in the order they answer: the first is the quickest to reach. */
  #remember(key: string, peer: string): void {
    const known = this.#where.get(key);
    if (known) {
      if (known.length < HOLDERS_PER_CHUNK && !known.includes(peer)) known.push(peer);
      return;
    }
    this.#where.set(key, [peer]);
    if (this.#where.size > this.limit) this.#where.delete(this.#where.keys().next().value!);
  }
}

/** Longest wait for a peer's price when ordering candidates, in ms: a slow quote only loses its rank. */
const PRICE_WAIT_MS = 2000;

/**
 * `peers` with the first `n` stably ordered cheapest first by `price` (the rest keep their place after
 * them); a peer whose price fails or takes over {@link PRICE_WAIT_MS} goes after the priced ones.
 */
export async function cheapestFirst(
  peers: readonly string[],
  price: (peer: string) => Promise<bigint>,
  n: number,
): Promise<string[]> {
  const head = peers.slice(0, n);
  if (head.length < 2) return [...peers];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slow = new Promise<undefined>((r) => timer = setTimeout(() => r(undefined), PRICE_WAIT_MS));
  const prices = await Promise.all(
    head.map((p) => Promise.race([price(p).catch(() => undefined), slow])),
  ).finally(() => clearTimeout(timer));
  const rank = (i: number) => prices[i] ?? (1n << 255n);
  const order = head.map((_, i) => i).sort((a, b) =>
    rank(a) < rank(b) ? -1 : rank(a) > rank(b) ? 1 : a - b
  );
  return [...order.map((i) => head[i]!), ...peers.slice(n)];
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
  /** Whom to avoid and whom to ask last. Default: the locator's, else {@link defaultStanding} of the mesh. */
  standing?: PeerStanding;
  /** What the file this chunk belongs to has cost so far (paid delivery caps it). Default: none. */
  budget?: SpendBudget;
}

/** The payer's refusals to ask a peer (price above the ceiling, a spending cap): not the peer's failure. */
export const PAYER_REFUSALS: ReadonlySet<string> = new Set(["price_above_cap", "spending_cap"]);

/**
 * A chunk from the mesh, verified, or null when no peer asked has it. Asks the XOR-nearest known peers
 * first (where placement puts chunks), then the providers the DHT knows; peers skipped for failing
 * recently (one may be back from a restart) are asked after the others of each group, so every candidate
 * is tried before the chunk counts as lost. Peers caught sending bad bytes are not asked (the exchange
 * reports them to `standing`). A holder this node's payer refuses to pay (price above its ceiling, a spending
 * cap reached) is passed over; when no other peer has the chunk, that refusal is thrown.
 */
export async function fetchFromMesh(
  mesh: MeshNode,
  cid: CID,
  options: FetchOptions = {},
): Promise<Uint8Array | null> {
  const standing = options.standing ?? options.locator?.standing ?? defaultStanding(mesh.libp2p);
  const tried = new Set<string>([mesh.peerId]);
  /** Candidates passed over for their recent failures, asked at the end. */
  const later = new Map<string, string | { peerId: string; multiaddrs: string[] }>();
  /** Why a holder of the chunk was not asked for it (too dear, or a cap reached): thrown if none serves it. */
  let refusal: unknown;
  /** Holders passed over for that reason: still holders. */
  const refused = new Set<string>();
  /** The chunk from `peer`, null when it lacks it, undefined when it was not or could not be asked. */
  const attempt = async (
    peer: string | { peerId: string; multiaddrs: string[] },
    deferSkipped = true,
  ) => {
    const id = typeof peer === "string" ? peer : peer.peerId;
    if (tried.has(id) || standing.avoided(id)) return undefined;
    if (deferSkipped && standing.skipped(id)) {
      if (!later.has(id) || typeof peer !== "string") later.set(id, peer);
      return undefined;
    }
    tried.add(id);
    try {
      const bytes = await mesh.fetchChunk(peer, cid, {
        signal: options.signal,
        ...(options.budget ? { budget: options.budget } : {}),
      });
      standing.answered(id);
      return bytes;
    } catch (e) {
      if (options.signal?.aborted) throw e;
      if (PAYER_REFUSALS.has((e as { code?: string }).code ?? "")) {
        // Asking whether it holds the chunk is free: the refusal is only worth reporting for a holder.
        const [held] = await mesh.hasChunks(peer, [cid], { signal: options.signal }).catch(
          () => [false],
        );
        if (held) {
          refusal ??= e;
          refused.add(id);
        }
        return held ? undefined : null;
      }
      standing.failed(id, e);
      const code = (e as { code?: string }).code;
      // The exchange reports bad bytes through onMisbehaviour; this also covers a standing not wired there.
      if (code === "chunk_mismatch" && !standing.avoided(id)) {
        standing.misbehaved(id, { kind: "bad_bytes", cid, at: Date.now() });
      }
      if (code === "chunk_mismatch") {
        log("peer sent bad bytes; avoided from now on", { peer: id, cid: cid.toString() });
      } else if (code !== "peer_unreachable") {
        log("peer failed; asked last until it reconnects", {
          peer: id,
          cid: cid.toString(),
          error: describe(e),
        });
      }
      return undefined;
    }
  };
  for (const located of await options.locator?.holders(cid) ?? []) {
    const bytes = await attempt(located);
    if (bytes) return bytes;
    if (bytes === null || (bytes === undefined && !later.has(located) && !refused.has(located))) {
      options.locator!.forget(cid, located);
    }
  }
  // Peers that are gone do not count against the budget: keep going down the list until enough answered.
  const near = await meshTable(mesh);
  let answered = 0;
  let nearest = near.closest(cid.multihash.digest, near.peers.length);
  // Paid delivery: of the nearest, the cheapest are asked first (quotes are asked once per peer, kept).
  const price = options.locator?.price;
  if (price) nearest = await cheapestFirst(nearest, price, options.nearest ?? 8);
  for (const peer of nearest) {
    const bytes = await attempt(peer);
    if (bytes) return bytes;
    if (bytes === null && ++answered >= (options.nearest ?? 8)) break;
  }
  // Known peers that failed recently go before the DHT lookup, which can take seconds: a restarted holder
  // is found at once.
  const askLater = async () => {
    const peers = [...later.values()];
    later.clear();
    for (const peer of peers) {
      const bytes = await attempt(peer, false);
      if (bytes) return bytes;
    }
    return null;
  };
  const back = await askLater();
  if (back) return back;
  let asked = 0;
  const timeout = AbortSignal.timeout(options.lookupTimeoutMs ?? 10_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    for await (const provider of mesh.findProviders(cid, { signal })) {
      const bytes = await attempt(provider);
      if (bytes) return bytes;
      // As above: providers already asked (the near round) or gone do not use up the budget.
      if (bytes === null && ++asked >= (options.providers ?? 4)) break;
    }
  } catch (e) {
    // A caller's deadline during the lookup: a holder refused for its price is still the answer.
    if (options.signal?.aborted) throw refusal ?? e;
  }
  const last = await askLater();
  if (last === null && refusal !== undefined) throw refusal;
  return last;
}

/** A readable cause: a stream reset arrives as a bare DOM `Event`, whose String() is "[object Event]". */
function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  if (typeof Event !== "undefined" && e instanceof Event) return `stream ${e.type || "closed"}`;
  return String(e);
}
