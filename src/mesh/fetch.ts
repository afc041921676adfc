/**
 * Finding a chunk that is not held locally: where it is (ChunkLocator), and fetching it (fetchFromMesh).
 */
import type { CID } from "../content/cid.ts";
import type { SpendBudget } from "./exchange.ts";
import type { MeshNode } from "./node.ts";
import { meshPeers, meshTable } from "./peers.ts";
import { defaultStanding, type PeerStanding } from "./health.ts";
import { PeerDeniedError, PeerTimeoutError } from "./errors.ts";
import { warn } from "./_log.ts";
import { MeshError } from "../errors.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("mesh:fetch", msg, fields);

/** Shortest and longest hedge deadline, in ms, and the one used before {@link MIN_SAMPLES} fetches were seen. */
export const HEDGE_FLOOR_MS = 100;
export const HEDGE_CEILING_MS = 3000;
export const HEDGE_COLD_MS = 1000;
const MIN_SAMPLES = 8;
const SAMPLES = 128;

/**
 * How long chunk fetches take here: the last {@link SAMPLES} successful ones. Its {@link hedgeMs} is the
 * deadline after which a request still unanswered is hedged (the next candidate is asked too): the 95th
 * percentile, so about one request in twenty is hedged, kept within {@link HEDGE_FLOOR_MS} and
 * {@link HEDGE_CEILING_MS} ({@link HEDGE_COLD_MS} until a few fetches were seen).
 */
export class FetchLatency {
  readonly #samples: number[] = [];
  #next = 0;

  record(ms: number): void {
    if (this.#samples.length < SAMPLES) this.#samples.push(ms);
    else this.#samples[this.#next] = ms;
    this.#next = (this.#next + 1) % SAMPLES;
  }

  hedgeMs(): number {
    if (this.#samples.length < MIN_SAMPLES) return HEDGE_COLD_MS;
    const sorted = [...this.#samples].sort((a, b) => a - b);
    const p95 = sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))]!;
    return Math.min(HEDGE_CEILING_MS, Math.max(HEDGE_FLOOR_MS, Math.ceil(p95)));
  }
}

/** The latency used when a caller passes none: one per mesh node. */
const latencies = new WeakMap<object, FetchLatency>();
export function defaultLatency(mesh: MeshNode): FetchLatency {
  let latency = latencies.get(mesh);
  if (!latency) latencies.set(mesh, latency = new FetchLatency());
  return latency;
}

/** A timer as a promise, with a way to clear it early (no timer outlives its use). */
function timer(ms: number): { promise: Promise<void>; cancel: () => void } {
  let id: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<void>((resolve) => id = setTimeout(resolve, ms));
  return { promise, cancel: () => clearTimeout(id) };
}

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
  /** Fetch times here: a peer that has not answered within its hedge deadline is not waited for. */
  latency: FetchLatency;

  /**
   * `standing` (default: {@link defaultStanding} of the mesh) says whom not to ask; `price` (paid delivery:
   * the operator's quote, wei per byte) and `rank` (reputation) order a chunk's holders (see
   * {@link ranked}). Default: quickest first.
   */
  constructor(
    readonly mesh: MeshNode,
    readonly limit = 100_000,
    standing?: PeerStanding,
    readonly price?: (peer: string) => Promise<bigint>,
    readonly rank?: RankPeers,
  ) {
    this.standing = standing ?? defaultStanding(mesh.libp2p);
    this.latency = defaultLatency(mesh);
  }

  /**
   * Asks all known peers in good standing which of `cids` they hold. Failures only make a peer skipped.
   * Waits at most the hedge deadline once some peer has answered; answers that come later are still
   * remembered, and a peer silent for a few deadlines more counts as timed out (skipped until it answers).
   */
  async locate(cids: readonly CID[], signal?: AbortSignal): Promise<void> {
    const peers = (await meshPeers(this.mesh)).filter((p) =>
      !this.standing.avoided(p) && !this.standing.skipped(p)
    );
    const pending = new Set(peers);
    const first = Promise.withResolvers<void>();
    const all = Promise.all(peers.map(async (peer) => {
      try {
        const held = await this.mesh.hasChunks(peer, cids, { signal });
        pending.delete(peer);
        this.standing.answered(peer);
        held.forEach((has, i) => has && this.#remember(cids[i]!.toString(), peer));
        first.resolve();
      } catch (e) {
        pending.delete(peer);
        if (signal?.aborted) return;
        this.standing.failed(peer, e);
      }
    }));
    const hedgeMs = this.latency.hedgeMs();
    const deadline = timer(hedgeMs);
    await Promise.race([all, deadline.promise]).finally(deadline.cancel);
    if (signal?.aborted || pending.size === 0) return;
    // Nobody answered in time: wait for the first answer, the one to compare the silent ones against.
    await Promise.race([all, first.promise]);
    if (signal?.aborted || pending.size === 0) return;
    // Late is not silent: only a peer still unanswered well past the deadline counts as timed out (one
    // marked too soon would have its chunks looked for everywhere else first).
    const stallMs = Math.min(HEDGE_CEILING_MS, Math.max(1000, 4 * hedgeMs));
    const stall = timer(stallMs);
    void Promise.race([all.then(() => false), stall.promise.then(() => true)]).then((late) => {
      stall.cancel();
      if (!late || signal?.aborted) return;
      for (const peer of pending) this.standing.failed(peer, new PeerTimeoutError(peer, stallMs));
    });
  }

  holder(cid: CID): string | undefined {
    return this.#where.get(cid.toString())?.[0];
  }

  /** The known holders of `cid`, in the order to ask them (see {@link ranked}). */
  holders(cid: CID, prefer?: string): Promise<string[]> {
    const peers = [...this.#where.get(cid.toString()) ?? []];
    return ranked(peers, peers.length, this.price, this.rank, prefer);
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
 * Orders candidates to ask, by what this node knows of them (reputation × price: `reputation/select.ts`,
 * wired by the node; the mesh knows no scores). `prices`: the quotes that came in time, wei per byte.
 * `prefer`: the request's `?prefer=`. Returns every peer given, in the order to ask them.
 */
export type RankPeers = (
  peers: readonly string[],
  prices: ReadonlyMap<string, bigint>,
  prefer?: string,
) => string[];

/**
 * `peers` with the first `n` in the order to ask them (the rest keep their place after them): by `rank`
 * when given, else stably cheapest first by `price`, else as they are. Prices are asked at once; one that
 * fails or takes over {@link PRICE_WAIT_MS} counts as unknown (last, cheapest-first).
 */
export async function ranked(
  peers: readonly string[],
  n: number,
  price?: (peer: string) => Promise<bigint>,
  rank?: RankPeers,
  prefer?: string,
): Promise<string[]> {
  const head = peers.slice(0, n);
  if (head.length < 2 || (!price && !rank)) return [...peers];
  const prices = new Map<string, bigint>();
  if (price) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const slow = new Promise<undefined>((r) =>
      timer = setTimeout(() => r(undefined), PRICE_WAIT_MS)
    );
    const got = await Promise.all(
      head.map((p) => Promise.race([price(p).catch(() => undefined), slow])),
    ).finally(() => clearTimeout(timer));
    got.forEach((x, i) => x !== undefined && prices.set(head[i]!, x));
  }
  let first: string[];
  if (rank) first = rank(head, prices, prefer);
  else {
    const unknown = 1n << 255n;
    first = head.map((p, i) => ({ p, i, x: prices.get(p) ?? unknown }))
      .sort((a, b) => a.x < b.x ? -1 : a.x > b.x ? 1 : a.i - b.i)
      .map((e) => e.p);
  }
  return [...first, ...peers.slice(n)];
}

/** What one read may still ask of the mesh before it is refused (audit finding 9: a manifest naming
 * thousands of chunks nobody has must not turn one GET into thousands of requests). */
export const DEFAULT_READ_REQUESTS = 256;
/** Requests a delivered chunk earns back: an honest read, whose chunks arrive, never runs out. */
export const REQUESTS_PER_DELIVERY = 16;
/** What a DHT lookup costs from the budget: it sends many requests itself. */
export const LOOKUP_COST = 8;

/** The mesh requests (chunk asks, DHT lookups) one read may still cause. */
export class RequestBudget {
  constructor(public left = DEFAULT_READ_REQUESTS, readonly perDelivery = REQUESTS_PER_DELIVERY) {}

  /** Takes `n` requests, or throws {@link RequestBudgetError} when the read has used them up. */
  take(n = 1): void {
    if (this.left < n) throw new RequestBudgetError();
    this.left -= n;
  }

  earn(): void {
    this.left += this.perDelivery;
  }
}

/** A read asked the mesh more than its budget allows without getting chunks back. */
export class RequestBudgetError extends MeshError {
  override name = "RequestBudgetError";
  constructor() {
    super(
      "mesh_budget",
      "This read asked the mesh too often without finding chunks: its manifest names chunks nobody has",
    );
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
  /** Whom to avoid and whom to ask last. Default: the locator's, else {@link defaultStanding} of the mesh. */
  standing?: PeerStanding;
  /** What the file this chunk belongs to has cost so far (paid delivery caps it). Default: none. */
  budget?: SpendBudget;
  /** Fetch times, for the hedge deadline. Default: the locator's, else one per mesh node. */
  latency?: FetchLatency;
  /** The read's budget of mesh requests. Default: none (a single fetch is bounded by its signal). */
  requests?: RequestBudget;
  /** What the request prefers (`?prefer=`: reliable, fast, cheap; default balanced), for the ranking. */
  prefer?: string;
  /** Filled in: how many asked peers failed to answer (unreachable, timed out, errors). A null result with
   * none failed means every peer asked answered that it lacks the chunk. `lookupTimedOut`: the DHT search
   * for providers ran out its deadline (`lookupTimeoutMs`), so a holder may exist that was not found.
   * `providers`: how many providers the DHT search gave; `errors`: the failed answers' codes, counted. */
  outcome?: {
    failed: number;
    lookupTimedOut?: boolean;
    providers?: number;
    errors?: Record<string, number>;
  };
}

/** What a hedged step returns when its candidate has not answered within the deadline (still running). */
const SLOW: unique symbol = Symbol("slow");

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
  const standing: PeerStanding = options.standing ?? options.locator?.standing ??
    defaultStanding(mesh.libp2p);
  const latency = options.latency ?? options.locator?.latency ?? defaultLatency(mesh);
  const hedgeMs = latency.hedgeMs();
  /** Aborted once some peer delivered the chunk: the attempts still running are not needed. */
  const hedge = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, hedge.signal]) : hedge.signal;
  const tried = new Set<string>([mesh.peerId]);
  /** Candidates passed over for their recent failures, asked at the end. */
  const later = new Map<string, string | { peerId: string; multiaddrs: string[] }>();
  /** Why a holder of the chunk was not asked for it (too dear, or a cap reached): thrown if none serves it. */
  let refusal: unknown;
  /** Holders passed over for that reason: still holders. */
  const refused = new Set<string>();
  /** Peers that answered they lack the chunk: a provider record of theirs for it says otherwise. */
  const denied = new Set<string>();
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
    options.requests?.take(); // throws past the budget: the whole fetch ends
    const t0 = performance.now();
    try {
      const bytes = await mesh.fetchChunk(peer, cid, {
        signal,
        ...(options.budget ? { budget: options.budget } : {}),
      });
      standing.answered(id);
      if (bytes === null) denied.add(id);
      else standing.delivered?.(id, bytes.length, performance.now() - t0);
      return bytes;
    } catch (e) {
      if (options.signal?.aborted) throw e;
      if (hedge.signal.aborted) return undefined; // another peer delivered it first
      if (PAYER_REFUSALS.has((e as { code?: string }).code ?? "")) {
        // Asking whether it holds the chunk is free: the refusal is only worth reporting for a holder.
        const [held] = await mesh.hasChunks(peer, [cid], { signal }).catch(
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
      if (options.outcome) {
        options.outcome.failed++;
        const errors = options.outcome.errors ??= {};
        const key = code ?? (e as Error).name ?? "error";
        errors[key] = (errors[key] ?? 0) + 1;
      }
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
  // Hedging: a candidate that has not answered within the hedge deadline keeps running while the next is
  // asked; the first to deliver wins, the others are cancelled, and those that had let the deadline pass
  // count as timed out (skipped until they answer again), so a silent peer costs one deadline, not 30 s.
  let won: Uint8Array | undefined;
  let thrown: unknown;
  const running = new Set<{ id: string; started: number; done: Promise<unknown> }>();
  const step = async (
    peer: string | { peerId: string; multiaddrs: string[] },
    deferSkipped = true,
  ): Promise<Uint8Array | null | undefined | typeof SLOW> => {
    const id = typeof peer === "string" ? peer : peer.peerId;
    const asks = !tried.has(id) && !standing.avoided(id) && !(deferSkipped && standing.skipped(id));
    const started = performance.now();
    const token = { id, started, done: Promise.resolve() as Promise<unknown> };
    const done = attempt(peer, deferSkipped).then((bytes) => {
      running.delete(token);
      if (bytes && won === undefined) {
        won = bytes;
        options.requests?.earn();
        latency.record(performance.now() - started);
        const now = performance.now();
        for (const r of running) {
          if (now - r.started >= hedgeMs) {
            standing.failed(r.id, new PeerTimeoutError(r.id, hedgeMs));
          }
        }
        hedge.abort();
      }
      return bytes;
    }, (e) => {
      running.delete(token);
      thrown ??= e;
      return undefined;
    });
    if (!asks) return await done;
    token.done = done;
    running.add(token);
    const deadline = timer(hedgeMs);
    const r = await Promise.race([done, deadline.promise.then((): typeof SLOW => SLOW)]).finally(
      deadline.cancel,
    );
    if (thrown !== undefined) throw thrown;
    return r;
  };
  /** Waits until the attempts running now have settled, or the hedge ceiling; true once one delivered. */
  const settle = async () => {
    const wait = timer(HEDGE_CEILING_MS);
    const ending = Promise.all([...running].map((r) => r.done)).then(() => {});
    if (running.size > 0) await Promise.race([wait.promise, ending]).finally(wait.cancel);
    else wait.cancel();
    if (thrown !== undefined) throw thrown;
    return won !== undefined;
  };
  for (const located of await options.locator?.holders(cid, options.prefer) ?? []) {
    const bytes = await step(located);
    if (won) return won;
    if (bytes === SLOW) continue;
    if (bytes === null || (bytes === undefined && !later.has(located) && !refused.has(located))) {
      options.locator!.forget(cid, located);
    }
  }
  // A located holder said it has the chunk: it is hedged only with the other located holders, and waited
  // for (up to the hedge ceiling) before every near peer is asked too: under load that would add requests.
  if (await settle()) return won!;
  // Peers that are gone do not count against the budget: keep going down the list until enough answered.
  const near = await meshTable(mesh);
  let answered = 0;
  let nearest = near.closest(cid.multihash.digest, near.peers.length);
  // Of the nearest, the best by reputation and price are asked first (quotes are asked once per peer, kept).
  const locator = options.locator;
  nearest = await ranked(
    nearest,
    options.nearest ?? 8,
    locator?.price,
    locator?.rank,
    options.prefer,
  );
  for (const peer of nearest) {
    const bytes = await step(peer);
    if (won) return won;
    if (bytes === null && ++answered >= (options.nearest ?? 8)) break;
  }
  // Known peers that failed recently go before the DHT lookup, which can take seconds: a restarted holder
  // is found at once.
  const askLater = async () => {
    const peers = [...later.values()];
    later.clear();
    for (const peer of peers) {
      await step(peer, false);
      if (won) return won;
    }
    return null;
  };
  const back = await askLater();
  if (back) return back;
  // A lookup costs seconds and many DHT requests: a hedged-past candidate still running may deliver first.
  if (await settle()) return won!;
  let asked = 0;
  options.requests?.take(LOOKUP_COST);
  const timeout = AbortSignal.timeout(options.lookupTimeoutMs ?? 10_000);
  try {
    for await (
      const provider of mesh.findProviders(cid, { signal: AbortSignal.any([signal, timeout]) })
    ) {
      if (options.outcome) options.outcome.providers = (options.outcome.providers ?? 0) + 1;
      if (denied.has(provider.peerId)) {
        standing.failed(provider.peerId, new PeerDeniedError(provider.peerId, cid.toString()));
        log("peer denied a chunk its provider record names; asked last", {
          peer: provider.peerId,
          cid: cid.toString(),
        });
      }
      const bytes = await step(provider);
      if (won) return won;
      // As above: providers already asked (the near round) or gone do not use up the budget.
      if (bytes === null && ++asked >= (options.providers ?? 4)) break;
    }
  } catch (e) {
    // A caller's deadline during the lookup: a holder refused for its price is still the answer.
    if (options.signal?.aborted) throw refusal ?? e;
    if (timeout.aborted && options.outcome) options.outcome.lookupTimedOut = true;
  }
  if (won) return won;
  const last = await askLater();
  if (last) return last;
  // Hedged-past attempts still running may yet deliver.
  while (running.size > 0 && won === undefined) {
    await Promise.race([...running].map((r) => r.done));
  }
  if (thrown !== undefined) throw thrown;
  if (won) return won;
  if (refusal !== undefined) throw refusal;
  return null;
}

/** A readable cause: a stream reset arrives as a bare DOM `Event`, whose String() is "[object Event]". */
function describe(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  if (typeof Event !== "undefined" && e instanceof Event) return `stream ${e.type || "closed"}`;
  return String(e);
}
