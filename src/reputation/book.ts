/**
 * The reputation book: every operator this node has dealt with, what it saw of each, and their scores, kept in
 * `<data>/reputation.sqlite` so that a name earned (or lost) survives a restart or a crash.
 *
 * Noisy observations (deliveries, failures, dials) are written behind, once a second and at stop: a crash
 * loses at most a second of them. A proof of fraud is written before the call returns: an exclusion is never
 * lost. Each exclusion is one JSON log line with its evidence.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import {
  audited,
  DEFAULT_SCORE_PARAMS,
  defrauded,
  delivered,
  failedDelivery,
  type Fraud,
  lookedUp,
  newRecord,
  type PeerRecord,
  type PeerState,
  rated,
  type Score,
  scoreOf,
  type ScoreParams,
  unreachable,
} from "./score.ts";
import type { Candidate } from "./select.ts";

export const REPUTATION_FILE = "reputation.sqlite";

export interface ReputationInit {
  /** Where `reputation.sqlite` lives. Default: none, in memory only (tests, `--no-store` nodes). */
  dataDir?: string;
  params?: ScoreParams;
  /** Write-behind period for noisy observations, ms. Default 1 000. */
  flushMs?: number;
  /** Peers remembered at most: past it, the least recently seen that is not excluded is forgotten.
   * Default 100 000 (a record is ~300 bytes: ~30 MB). */
  maxPeers?: number;
  /** Told of each exclusion (besides the log line). */
  onExcluded?: (peer: string, fraud: Fraud) => void;
  /** Where the exclusion lines go. Default: stderr. */
  log?: (line: string) => void;
  now?: () => number;
}

/** Counts of known operators by state, for `/metrics`. */
export type StateCounts = Record<PeerState, number>;

export class ReputationBook {
  readonly #params: ScoreParams;
  readonly #records = new Map<string, PeerRecord>();
  readonly #dirty = new Set<string>();
  readonly #dataDir?: string;
  readonly #flushMs: number;
  readonly #maxPeers: number;
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  readonly #onExcluded?: (peer: string, fraud: Fraud) => void;
  #db?: DatabaseSync;
  #put?: StatementSync;
  #del?: StatementSync;
  #timer?: ReturnType<typeof setInterval>;
  #median?: number;
  /** Verified deliveries others attested, weighed by this node's trust in them (`trust.ts`). */
  #vouched = new Map<string, number>();

  constructor(init: ReputationInit = {}) {
    this.#params = init.params ?? DEFAULT_SCORE_PARAMS;
    this.#dataDir = init.dataDir;
    this.#flushMs = init.flushMs ?? 1_000;
    this.#maxPeers = init.maxPeers ?? 100_000;
    this.#now = init.now ?? Date.now;
    this.#log = init.log ?? ((line) => console.error(line));
    this.#onExcluded = init.onExcluded;
  }

  /** Opens the database and loads every record. */
  start(): Promise<void> {
    if (this.#db !== undefined) return Promise.resolve();
    const db = new DatabaseSync(
      this.#dataDir === undefined ? ":memory:" : join(this.#dataDir, REPUTATION_FILE),
    );
    db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("CREATE TABLE IF NOT EXISTS peers (peer TEXT PRIMARY KEY, record TEXT NOT NULL)");
    for (const row of db.prepare("SELECT record FROM peers").all() as { record: string }[]) {
      try {
        const r = JSON.parse(row.record) as PeerRecord;
        if (typeof r.peer === "string") this.#records.set(r.peer, r);
      } catch {
        // A row that does not parse is dropped: it can only be noise, never a proof (those are checked on
        // the way in and written whole).
      }
    }
    this.#put = db.prepare(
      "INSERT INTO peers (peer, record) VALUES (?, ?) ON CONFLICT(peer) DO UPDATE SET record = excluded.record",
    );
    this.#del = db.prepare("DELETE FROM peers WHERE peer = ?");
    this.#db = db;
    this.#timer = setInterval(() => this.flush(), this.#flushMs);
    Deno.unrefTimer(this.#timer);
    return Promise.resolve();
  }

  /** Writes what is pending and closes the database. Idempotent. */
  stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.flush();
    this.#db?.close();
    this.#db = undefined;
    return Promise.resolve();
  }

  /** Writes the noisy observations not written yet. */
  flush(): void {
    if (this.#db === undefined || this.#dirty.size === 0) return;
    this.#db.exec("BEGIN");
    try {
      for (const peer of this.#dirty) {
        const r = this.#records.get(peer);
        if (r) this.#put!.run(peer, JSON.stringify(r));
        else this.#del!.run(peer);
      }
      this.#db.exec("COMMIT");
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
    this.#dirty.clear();
  }

  #record(peer: string): PeerRecord {
    let r = this.#records.get(peer);
    if (r === undefined) {
      if (this.#records.size >= this.#maxPeers) this.#forgetOne();
      r = newRecord(peer, this.#now(), this.#params);
      this.#records.set(peer, r);
    }
    this.#dirty.add(peer);
    return r;
  }

  #forgetOne(): void {
    let oldest: PeerRecord | undefined;
    for (const r of this.#records.values()) {
      if (r.fraud === undefined && (oldest === undefined || r.lastSeen < oldest.lastSeen)) {
        oldest = r;
      }
    }
    if (oldest) {
      this.#records.delete(oldest.peer);
      this.#dirty.add(oldest.peer);
    }
  }

  /** A chunk from `peer` that matched its CID: `bytes` in `ms`, the first after `ttfbMs`. */
  delivered(peer: string, bytes: number, ms: number, ttfbMs = ms): void {
    delivered(this.#record(peer), bytes, ms, ttfbMs, this.#now(), this.#params);
    this.#median = undefined;
  }

  /** A request `peer` accepted and did not answer in time (or answered with an error). */
  failed(peer: string): void {
    failedDelivery(this.#record(peer), this.#now(), this.#params);
  }

  /** A storage audit of `peer` (`src/market` leases): passed or failed. */
  audited(peer: string, passed: boolean): void {
    audited(this.#record(peer), passed, this.#now(), this.#params);
  }

  /** A paid lookup answered by `peer`: good when a peer it named delivered (`market/lookups.ts`). */
  lookedUp(peer: string, good: boolean): void {
    lookedUp(this.#record(peer), good, this.#now(), this.#params);
  }

  /** A rating of a settled deal with `peer`, `value` in [0, 1] weighed by `weight` (see score.ts `rated`). */
  rated(peer: string, value: number, weight: number): void {
    rated(this.#record(peer), value, weight, this.#params);
  }

  /** A dial to `peer` that failed. */
  unreachable(peer: string): void {
    unreachable(this.#record(peer), this.#params);
  }

  /**
   * Proven fraud (checked by the caller: `evidence.ts` for bad bytes, the desk for vouchers): excluded now,
   * on disk before this returns, and one log line. Returns false if the peer was excluded already.
   */
  excluded(peer: string, fraud: Fraud): boolean {
    const r = this.#record(peer);
    if (r.fraud !== undefined) return false;
    defrauded(r, fraud);
    this.#dirty.delete(peer);
    this.#put?.run(peer, JSON.stringify(r));
    this.#log(JSON.stringify({
      level: "warn",
      component: "reputation",
      msg: "operator excluded",
      peer,
      kind: fraud.kind,
      evidence: fraud.evidence,
    }));
    this.#onExcluded?.(peer, fraud);
    return true;
  }

  /** Replaces the vouched-for deliveries (from the last trust computation). */
  setVouched(vouched: Map<string, number>): void {
    this.#vouched = vouched;
  }

  #scoreOf(r: PeerRecord, median: number | undefined): Score {
    return scoreOf(r, median, this.#params, this.#vouched.get(r.peer) ?? 0);
  }

  isExcluded(peer: string): boolean {
    return this.#records.get(peer)?.fraud !== undefined;
  }

  #medianThroughput(): number | undefined {
    if (this.#median !== undefined) return this.#median;
    const xs: number[] = [];
    for (const r of this.#records.values()) if (r.throughput !== undefined) xs.push(r.throughput);
    if (xs.length === 0) return undefined;
    xs.sort((a, b) => a - b);
    return this.#median = xs[xs.length >> 1];
  }

  /** The score of `peer` (a fresh record's if unknown). */
  score(peer: string): Score {
    const r = this.#records.get(peer) ?? newRecord(peer, this.#now(), this.#params);
    return this.#scoreOf(r, this.#medianThroughput());
  }

  record(peer: string): Readonly<PeerRecord> | undefined {
    return this.#records.get(peer);
  }

  /** Every known operator's score, best first. */
  scores(): Score[] {
    const median = this.#medianThroughput();
    return [...this.#records.values()]
      .map((r) => this.#scoreOf(r, median))
      .sort((a, b) => b.score - a.score);
  }

  /** `peer` as selection sees it. */
  candidate(peer: string, extra: { price?: number } = {}): Candidate {
    const s = this.score(peer);
    const out = s.state === "excluded" || s.state === "suspended";
    return {
      peer,
      score: out ? 0 : s.score,
      vetted: s.state === "vetted",
      price: extra.price,
      ttfbMs: this.#records.get(peer)?.ttfbMs,
    };
  }

  counts(): StateCounts {
    const c: StateCounts = { new: 0, vetted: 0, suspended: 0, excluded: 0 };
    const median = this.#medianThroughput();
    for (const r of this.#records.values()) c[this.#scoreOf(r, median).state]++;
    return c;
  }

  get size(): number {
    return this.#records.size;
  }
}
