/**
 * Announcing held chunks in the DHT, and withdrawing them.
 */
import type { CID } from "../content/cid.ts";
import type { MeshNode } from "./node.ts";
import { cancelProvide, ownProviderEntries, providerEntryName } from "./dht.ts";
import { warn } from "./_log.ts";
import type { MeshError } from "../errors.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("mesh:provide", msg, fields);

export interface ProvideQueueInit {
  /** Announcements run at once. Each is a DHT walk to the key's closest peers plus an ADD_PROVIDER to each
   * of them. Default 2. */
  concurrency?: number;
  /** Longest wait for one announcement, in ms. Default 30 000. */
  timeoutMs?: number;
  /** Announcing waits until the node has been quiet this long, in ms: no new chunk to announce and no chunk
   * served (see {@link ProvideQueue.touch}). Each announcement is ~2 RPCs per peer near the key (on a small
   * mesh, every peer), which competes with transfers for CPU. Default 1000. */
  settleMs?: number;
  /** Longest an announcement defers to activity, in ms; past it, it runs anyway (so a busy node still
   * announces, at least `concurrency` per this period). Default 10 000. */
  maxDeferMs?: number;
  /** Announcements waiting at most; past it new ones are dropped (and logged) until the next start, which
   * finds every held chunk that has no record. Default 65 536. */
  maxPending?: number;
  /** An announcement that reached no peer ("provide_unreached": a walk that found nobody, every ADD_PROVIDER
   * failed) is queued again this long later, twice at most, the wait doubling. Default 30 000. */
  retryMs?: number;
  /** Every CID this node holds (its store), read by {@link ProvideQueue.start}. Default: none. */
  held?: () => AsyncIterable<CID>;
}

/** What announcing has cost so far. */
export interface ProvideStats {
  /** Waiting or running now. */
  pending: number;
  provided: number;
  failed: number;
  withdrawn: number;
  dropped: number;
  /** Sum of the wall time of finished announcements, in ms (divide by `provided + failed` for one's). */
  ms: number;
}

/**
 * Announces held chunks in the DHT in the background: at most `concurrency` at once, each within
 * `timeoutMs`. Provider records are hints (placement already put chunks where readers look first), so
 * failures are logged, not thrown; while the routing table is empty the queue waits instead of failing.
 *
 * Republishing is kad-dht's: every announcement also writes this node's own entry in the datastore, and its
 * reprovider republishes own entries before they expire, across restarts too. {@link withdraw} removes the
 * entry when the chunk goes away.
 */
export class ProvideQueue {
  readonly concurrency: number;
  readonly timeoutMs: number;
  readonly maxPending: number;
  readonly settleMs: number;
  readonly maxDeferMs: number;
  readonly retryMs: number;
  /** Retries so far of announcements that reached no peer, by CID. */
  #retries = new Map<string, number>();
  #lastActivity = 0;
  #held?: () => AsyncIterable<CID>;
  #queue = new Map<string, CID>();
  /** Running now, and whether they were withdrawn meanwhile (their entry must go again when they end). */
  #running = new Map<string, boolean>();
  #workers = 0;
  #idle = Promise.withResolvers<void>();
  #stopping = new AbortController();
  #reported = { done: 0, ms: 0 };
  #stats: ProvideStats = { pending: 0, provided: 0, failed: 0, withdrawn: 0, dropped: 0, ms: 0 };

  constructor(readonly mesh: MeshNode, init: ProvideQueueInit = {}) {
    this.concurrency = init.concurrency ?? 2;
    this.timeoutMs = init.timeoutMs ?? 30_000;
    this.maxPending = init.maxPending ?? 65_536;
    this.settleMs = init.settleMs ?? 1000;
    this.maxDeferMs = init.maxDeferMs ?? 10_000;
    this.retryMs = init.retryMs ?? 30_000;
    this.#held = init.held;
    this.#idle.resolve();
  }

  /**
   * Brings the node's own provide list in line with what it holds, in the background: held chunks with no
   * entry (announced by a run that crashed or a queue that overflowed) are queued; entries of chunks no longer
   * held (deleted while the mesh was down) are dropped.
   */
  start(): Promise<void> {
    const done = this.#reconcile().catch((e) => {
      if (!this.#stopping.signal.aborted) log("reconcile failed", { error: String(e) });
    });
    return done;
  }

  async #reconcile(): Promise<void> {
    if (!this.#held) return;
    const held = new Map<string, CID>();
    for await (const cid of this.#held()) {
      this.#stopping.signal.throwIfAborted();
      held.set(await providerEntryName(cid), cid);
    }
    const listed = new Set<string>();
    for await (const entry of ownProviderEntries(this.mesh.datastore, this.mesh.peerId)) {
      if (held.has(entry.name)) listed.add(entry.name);
      else await entry.remove();
    }
    this.add([...held].filter(([name]) => !listed.has(name)).map(([, cid]) => cid));
  }

  /** Queues announcements of `cids` (each once while pending). */
  add(cids: Iterable<CID>): void {
    if (this.#stopping.signal.aborted) return;
    for (const cid of cids) {
      const key = cid.toString();
      if (this.#queue.has(key)) continue;
      if (this.#queue.size >= this.maxPending) {
        if (this.#stats.dropped++ === 0) log("queue full; dropping announcements", { key });
        continue;
      }
      this.#queue.set(key, cid);
      this.touch();
    }
    while (this.#workers < this.concurrency && this.#queue.size) void this.#work();
  }

  /**
   * Stops announcing `cids`: drops pending announcements and this node's own entries, so they are neither
   * republished nor named by this node any more. Records on other peers lapse within their validity.
   */
  async withdraw(cids: Iterable<CID>): Promise<void> {
    const dht = this.mesh.libp2p.services.dht;
    const list = [...cids];
    // A few at once: an upload's answer waits for the withdrawal of the chunks it placed elsewhere.
    for (let i = 0; i < list.length; i += 16) {
      await Promise.all(
        list.slice(i, i + 16).map(async (cid) => {
          const key = cid.toString();
          this.#queue.delete(key);
          this.#retries.delete(key);
          if (this.#running.has(key)) this.#running.set(key, true);
          await cancelProvide(dht, cid).catch((e) =>
            log("withdraw failed", { cid: key, error: String(e) })
          );
          this.#stats.withdrawn++;
        }),
      );
    }
  }

  /** Queues an announcement that reached no peer again, later (see {@link ProvideQueueInit.retryMs}). */
  #retry(key: string, cid: CID): void {
    const n = this.#retries.get(key) ?? 0;
    // Stopped (a provide cut short by stop fails unreached too): a timer now would outlive the node.
    if (n >= 2 || this.#running.get(key) || this.#stopping.signal.aborted) {
      return void this.#retries.delete(key);
    }
    this.#retries.set(key, n + 1);
    const timer = setTimeout(() => {
      this.#stopping.signal.removeEventListener("abort", cancel);
      // Withdrawn meanwhile: the retry count is gone with it.
      if (this.#retries.has(key)) this.add([cid]);
    }, this.retryMs * 2 ** n);
    const cancel = () => clearTimeout(timer);
    this.#stopping.signal.addEventListener("abort", cancel, { once: true });
  }

  /** Marks the node busy (it just served or received a chunk): announcements wait for `settleMs` of quiet. */
  touch(): void {
    this.#lastActivity = performance.now();
  }

  /** Resolves when no announcement is pending or running. */
  idle(): Promise<void> {
    return this.#idle.promise;
  }

  stats(): ProvideStats {
    return { ...this.#stats, pending: this.#queue.size + this.#running.size };
  }

  /** Drops what is pending and aborts what runs; own entries stay, so the next start republishes them. */
  stop(): void {
    this.#stopping.abort();
    this.#queue.clear();
  }

  /** One line per drained queue: how many were announced since the last line, and what each cost. */
  #report(): void {
    const s = this.#stats;
    const done = s.provided + s.failed - this.#reported.done;
    if (done === 0 || this.#stopping.signal.aborted) return;
    const ms = s.ms - this.#reported.ms;
    this.#reported = { done: s.provided + s.failed, ms: s.ms };
    console.error(JSON.stringify({
      level: "info",
      component: "mesh:provide",
      msg: "announced",
      count: done,
      failed: s.failed,
      msEach: Math.round(ms / done),
    }));
  }

  /** Until the routing table has a peer and the node was quiet for `settleMs` (or `maxDeferMs` passed). */
  async #waitForTurn(): Promise<void> {
    const signal = this.#stopping.signal;
    const started = performance.now();
    for (;;) {
      const now = performance.now();
      const quiet = now - started >= this.maxDeferMs ? 0 : this.#lastActivity + this.settleMs - now;
      const wait = this.mesh.routingTableSize() === 0 ? 500 : quiet;
      if (wait <= 0 || signal.aborted) return;
      await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 250)));
    }
  }

  async #work(): Promise<void> {
    if (this.#workers++ === 0) this.#idle = Promise.withResolvers<void>();
    try {
      for (;;) {
        await this.#waitForTurn();
        const next = this.#queue.entries().next();
        if (next.done || this.#stopping.signal.aborted) break;
        const [key, cid] = next.value;
        this.#queue.delete(key);
        this.#running.set(key, false);
        const t0 = performance.now();
        const signal = AbortSignal.any([
          this.#stopping.signal,
          AbortSignal.timeout(this.timeoutMs),
        ]);
        try {
          await this.mesh.provide(cid, { signal });
          this.#stats.provided++;
          this.#retries.delete(key);
        } catch (e) {
          this.#stats.failed++;
          if (!this.#stopping.signal.aborted) log("provide failed", { cid: key, error: String(e) });
          if ((e as MeshError).code === "provide_unreached") this.#retry(key, cid);
        }
        this.#stats.ms += performance.now() - t0;
        if (this.#running.get(key)) {
          await cancelProvide(this.mesh.libp2p.services.dht, cid).catch(() => {});
        }
        this.#running.delete(key);
      }
    } finally {
      if (--this.#workers === 0) {
        this.#idle.resolve();
        this.#report();
      }
    }
  }
}
