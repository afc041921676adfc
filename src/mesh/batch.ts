/**
 * Batched chunk reads: the chunks a read asks for at once go to their located holders as a few multi-chunk
 * `get` requests (one stream each, answers in order), instead of one stream and one round trip per chunk.
 *
 * A 64 MiB read is 256 chunks; one request per chunk cost a stream, a protocol negotiation and a window
 * ramp-up each, and each request waited for the one before it on its holder's slots. Here the chunks asked
 * in one tick (a reader fills its lookahead window synchronously) are grouped by their first located
 * holder, {@link REQUEST_BYTES} of chunks per request in file order, so that several requests run per
 * holder. The head of a read goes first and alone: the rest wait for it (at most {@link HEAD_START_MS}),
 * so that its first byte does not share the link with the whole window. A chunk the batch cannot give (not located, the holder lacks it or
 * fails, or it is late) resolves null, and the caller fetches it the usual way (`fetch.ts`: hedged, every
 * candidate): the batch is a fast path, never the only path.
 */
import type { CID } from "../content/cid.ts";
import type { SpendBudget } from "./exchange.ts";
import type { ChunkLocator, RequestBudget } from "./fetch.ts";
import { HEDGE_CEILING_MS, PAYER_REFUSALS } from "./fetch.ts";
import type { PeerStanding } from "./health.ts";
import type { MeshNode } from "./node.ts";

/** Bytes asked per request: enough to amortize a stream, its negotiation and its window's ramp-up (each
 * request cost the reader about 2 ms of CPU: 2 MiB requests, 49 for a 64 MiB read, took 15% more of its CPU
 * than 4 MiB ones, 26), few enough that a late holder delays little. A read tops its window up a quarter
 * at a time (`readFile`), so with the default stripe of 20 chunks of 256 KiB one top-up is one request. */
export const REQUEST_BYTES = 4 * 1024 * 1024;
/** Chunks per request when the chunk size is not known. */
export const MAX_PER_REQUEST = 5;
/** Longest wait (ms) of a read's first batch for its head chunk before the rest is asked too: sent at
 * once, the rest would share the holder's link with the head and delay the first byte by their share. */
export const HEAD_START_MS = 20;

export interface BatchReaderInit {
  mesh: MeshNode;
  locator: ChunkLocator;
  standing: PeerStanding;
  /** True when the chunk is here already (memory or disk): left to the caller. */
  held: (cid: CID) => boolean | Promise<boolean>;
  /** Finds the holders of stripe `stripe` (once per stripe and read). */
  locate: (cid: CID, signal: AbortSignal, stripe: number) => Promise<void>;
  /** The read's budget of mesh requests: each batch takes one, each delivered chunk earns. */
  requests?: RequestBudget;
  /** What the file has cost (paid delivery). */
  budget?: SpendBudget;
  /** The file's chunk size, when known: requests are then sized by {@link REQUEST_BYTES}. */
  chunkBytes?: number;
  /** A chunk not delivered within this (ms) resolves null, and the caller asks elsewhere. Default:
   * {@link HEDGE_CEILING_MS}. */
  lateMs?: number;
}

interface Ask {
  cid: CID;
  stripe: number;
  signal: AbortSignal;
  done: (bytes: Uint8Array | null) => void;
}

/** One read's batcher (see the module doc). */
export class BatchReader {
  #pending: Ask[] = [];
  #head = true;
  readonly #lateMs: number;
  readonly #perRequest: number;

  constructor(readonly init: BatchReaderInit) {
    this.#lateMs = init.lateMs ?? HEDGE_CEILING_MS;
    this.#perRequest = init.chunkBytes
      ? Math.max(1, Math.floor(REQUEST_BYTES / init.chunkBytes))
      : MAX_PER_REQUEST;
  }

  /** The verified bytes of `cid` from a batched request, or null: the caller then fetches it itself. */
  get(cid: CID, stripe: number, signal: AbortSignal): Promise<Uint8Array | null> {
    if (signal.aborted) return Promise.resolve(null);
    return new Promise((resolve) => {
      let settled = false;
      const timer = setTimeout(() => done(null), this.#lateMs);
      const onAbort = () => done(null);
      const done = (bytes: Uint8Array | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve(bytes);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      if (this.#pending.push({ cid, stripe, signal, done }) === 1) {
        queueMicrotask(() => void this.#flush().catch(() => {}));
      }
    });
  }

  async #flush(): Promise<void> {
    const asks = this.#pending;
    this.#pending = [];
    const { locator, standing } = this.init;
    const held = await Promise.all(asks.map((a) => Promise.resolve(this.init.held(a.cid))));
    const wanted = asks.filter((a, i) => {
      if (held[i] || a.signal.aborted) a.done(null);
      return !held[i] && !a.signal.aborted;
    });
    // One locate round per stripe not located yet (the caller's locate keeps each to one per read).
    const stripes = new Map<number, Ask>();
    for (const a of wanted) if (!locator.holder(a.cid)) stripes.set(a.stripe, a);
    await Promise.all(
      [...stripes.values()].map((a) => this.init.locate(a.cid, a.signal, a.stripe).catch(() => {})),
    );
    const byPeer = new Map<string, Ask[]>();
    for (const a of wanted) {
      const peer = (await locator.holders(a.cid)).find((p) =>
        !standing.avoided(p) && !standing.skipped(p)
      );
      if (peer === undefined) {
        a.done(null);
        continue;
      }
      if (!byPeer.has(peer)) byPeer.set(peer, []);
      byPeer.get(peer)!.push(a);
    }
    // The head of the read goes alone, and first: its first byte waits for one chunk, not for a share of
    // the link with the rest of the window.
    const head = this.#head ? wanted[0] : undefined;
    this.#head = false;
    let headDone: Promise<void> | undefined;
    if (head) {
      const peer = [...byPeer].find(([, list]) => list[0] === head)?.[0];
      if (peer) {
        byPeer.get(peer)!.shift();
        headDone = this.#request(peer, [head]);
      }
    }
    if (headDone) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const wait = new Promise((r) => timer = setTimeout(r, HEAD_START_MS));
      await Promise.race([headDone, wait]).finally(() => clearTimeout(timer));
    }
    const per = this.#perRequest;
    for (const [peer, list] of byPeer) {
      for (let i = 0; i < list.length; i += per) void this.#request(peer, list.slice(i, i + per));
    }
  }

  /** One `get` of several chunks from `peer`; every ask ends resolved, with bytes or null. */
  async #request(peer: string, asks: Ask[]): Promise<void> {
    const { mesh, standing, requests, budget } = this.init;
    // The request ends when every chunk in it was delivered, or nobody waits for the rest.
    const stop = new AbortController();
    let waiting = asks.length;
    const leave = () => --waiting === 0 && stop.abort();
    for (const a of asks) a.signal.addEventListener("abort", leave, { once: true });
    let at = 0;
    try {
      requests?.take();
      const t0 = performance.now();
      let last = t0;
      for await (
        const got of mesh.fetchChunks(peer, asks.map((a) => a.cid), {
          signal: stop.signal,
          ...(budget ? { budget } : {}),
        })
      ) {
        const ask = asks[at++]!;
        if (got.bytes === null) {
          this.init.locator.forget(ask.cid, peer);
        } else {
          requests?.earn();
          const now = performance.now();
          standing.delivered?.(peer, got.bytes.length, now - t0);
          // What each answer took after the one before is one fetch's time: hedge deadlines are drawn
          // from it (fetches not seen would leave them at the cold default).
          this.init.locator.latency.record(now - last);
          last = now;
        }
        ask.done(got.bytes);
      }
      standing.answered(peer);
    } catch (e) {
      // Not the holder's fault when nobody waits any more, the read's budget is spent or the payer refused;
      // else it failed these, and is asked last.
      const code = (e as { code?: string }).code ?? "";
      if (!stop.signal.aborted && code !== "mesh_budget" && !PAYER_REFUSALS.has(code)) {
        standing.failed(peer, e);
      }
    } finally {
      for (const a of asks) {
        a.signal.removeEventListener("abort", leave);
        a.done(null);
      }
    }
  }
}
