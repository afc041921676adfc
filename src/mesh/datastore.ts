/**
 * The libp2p datastore of a node with a data directory: one SQLite file (`node:sqlite`, built into Deno), so
 * the peer store (and with it the DHT routing table's peers), the provider records this node keeps for others
 * and its own provide list survive a restart. Without a data directory libp2p keeps them in memory.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { BaseDatastore } from "datastore-core";
import {
  type Batch,
  type Datastore,
  Key,
  type KeyQuery,
  type Pair,
  type Query,
} from "interface-datastore";
import { NotFoundError } from "interface-store";
import type { AbortOptions } from "@libp2p/interface";
import { MeshError } from "../errors.ts";

/** File name of the datastore inside the data directory. */
export const DATASTORE_FILE = "mesh.sqlite";

/** Keys are read in pages, so a caller that deletes while iterating (kad-dht's record sweep) is safe. */
const PAGE = 512;
/** Sorts after every key that starts with a given prefix (SQLite compares UTF-8 bytes). */
const TOP = "\u{10FFFF}";

/**
 * An `interface-datastore` over one SQLite table. Writes are synchronous and durable at the WAL level
 * (`synchronous = NORMAL`: a power cut may lose the last writes, never corrupt the file), which is what
 * routing hints need. Not Startable on purpose: the mesh node closes it after libp2p has stopped writing.
 */
export class SqliteDatastore extends BaseDatastore {
  #db: DatabaseSync | undefined;
  #stmts = new Map<string, StatementSync>();

  constructor(readonly path: string) {
    super();
    this.open();
  }

  /** Opens the file (creating it); a no-op while open. */
  open(): void {
    if (this.#db) return;
    const db = new DatabaseSync(this.path);
    db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; " +
        "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
    );
    this.#db = db;
  }

  /** Closes the file; a no-op when closed. */
  close(): void {
    this.#stmts.clear();
    this.#db?.close();
    this.#db = undefined;
  }

  #stmt(sql: string): StatementSync {
    let stmt = this.#stmts.get(sql);
    if (!stmt) {
      if (!this.#db) throw new Error(`The datastore ${this.path} is closed`);
      this.#stmts.set(sql, stmt = this.#db.prepare(sql));
    }
    return stmt;
  }

  override put(key: Key, value: Uint8Array, options?: AbortOptions): Key {
    options?.signal?.throwIfAborted();
    this.#stmt("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)").run(key.toString(), value);
    return key;
  }

  override get(key: Key, options?: AbortOptions): Uint8Array {
    options?.signal?.throwIfAborted();
    const row = this.#stmt("SELECT value FROM kv WHERE key = ?").get(key.toString());
    if (!row) throw new NotFoundError(`No value for ${key}`);
    return row.value as Uint8Array;
  }

  override has(key: Key, options?: AbortOptions): boolean {
    options?.signal?.throwIfAborted();
    return this.#stmt("SELECT 1 FROM kv WHERE key = ?").get(key.toString()) !== undefined;
  }

  override delete(key: Key, options?: AbortOptions): void {
    options?.signal?.throwIfAborted();
    this.#stmt("DELETE FROM kv WHERE key = ?").run(key.toString());
  }

  /** One transaction per batch: puts and deletes land together or not at all. */
  override batch(): Batch {
    const ops: ({ key: Key; value: Uint8Array } | { key: Key; value?: undefined })[] = [];
    return {
      put: (key, value) => void ops.push({ key, value }),
      delete: (key) => void ops.push({ key }),
      commit: (options) => {
        options?.signal?.throwIfAborted();
        this.#stmt("BEGIN").run();
        try {
          for (const op of ops) {
            if (op.value) this.put(op.key, op.value);
            else this.delete(op.key);
          }
          this.#stmt("COMMIT").run();
        } catch (e) {
          this.#stmt("ROLLBACK").run();
          throw e;
        }
        ops.length = 0;
        return Promise.resolve();
      },
    };
  }

  /** Rows whose key starts with `prefix`, in key order, a page at a time. */
  *#rows(prefix: string, withValues: boolean, options?: AbortOptions) {
    const cols = withValues ? "key, value" : "key";
    const first = `SELECT ${cols} FROM kv WHERE key >= ? AND key < ? ORDER BY key LIMIT ${PAGE}`;
    const next = `SELECT ${cols} FROM kv WHERE key > ? AND key < ? ORDER BY key LIMIT ${PAGE}`;
    let after: string | undefined;
    for (;;) {
      options?.signal?.throwIfAborted();
      const rows = this.#stmt(after === undefined ? first : next).all(
        after ?? prefix,
        prefix + TOP,
      );
      yield* rows;
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.key as string;
    }
  }

  override *_all(q: Query, options?: AbortOptions): Generator<Pair> {
    for (const row of this.#rows(q.prefix ?? "", true, options)) {
      yield { key: new Key(row.key as string), value: row.value as Uint8Array };
    }
  }

  override *_allKeys(q: KeyQuery, options?: AbortOptions): Generator<Key> {
    for (const row of this.#rows(q.prefix ?? "", false, options)) yield new Key(row.key as string);
  }
}

/** Where kad-dht keeps provider records: `/dht/provider/<key base32>/<peer id>` (its default prefix). */
const PROVIDER_PREFIX = "/dht/provider/";
/** Default of {@link ProviderLimits.maxPerPeer}: a full default store (10 GiB) of 256 KiB chunks is 40 960. */
export const MAX_PROVIDER_RECORDS_PER_PEER = 50_000;
/** Default of {@link ProviderLimits.maxTotal}: ~100 MB of SQLite rows (or of memory, without a data dir). */
export const MAX_PROVIDER_RECORDS = 500_000;

/** Caps on the provider records a node keeps for others. */
export interface ProviderLimits {
  /** Most records naming one peer. Default: {@link MAX_PROVIDER_RECORDS_PER_PEER}. */
  maxPerPeer?: number;
  /** Most records in all, this node's own excluded. Default: {@link MAX_PROVIDER_RECORDS}. */
  maxTotal?: number;
}

/** A new provider record over a {@link ProviderLimits} cap: kad-dht resets the sender's stream. */
export class ProviderRecordsFullError extends MeshError {
  override name = "ProviderRecordsFullError";
  constructor(message: string) {
    super("provider_records_full", message);
  }
}

/**
 * A datastore that keeps at most so many provider records per peer and overall, over another datastore.
 * kad-dht stores every ADD_PROVIDER it is sent, for any key, with no cap of its own: here a new record past a cap
 * throws {@link ProviderRecordsFullError} (the sender's stream is reset), while refreshes of records already held
 * and this node's own records (`self`) always pass. Counts are taken from the inner store on first use.
 */
export class ProviderLimitedDatastore extends BaseDatastore {
  readonly #inner: Datastore;
  readonly #self: string;
  readonly #maxPerPeer: number;
  readonly #maxTotal: number;
  #counts: Promise<Map<string, number>> | undefined;
  #total = 0;

  constructor(inner: Datastore, self: string, limits: ProviderLimits = {}) {
    super();
    this.#inner = inner;
    this.#self = self;
    this.#maxPerPeer = limits.maxPerPeer ?? MAX_PROVIDER_RECORDS_PER_PEER;
    this.#maxTotal = limits.maxTotal ?? MAX_PROVIDER_RECORDS;
  }

  /** The inner datastore. */
  get inner(): Datastore {
    return this.#inner;
  }

  /** Records held for others: in all, and naming `peer`. */
  async providerRecords(peer?: string): Promise<number> {
    const counts = await this.#load();
    return peer === undefined ? this.#total : counts.get(peer) ?? 0;
  }

  #load(): Promise<Map<string, number>> {
    return this.#counts ??= (async () => {
      const counts = new Map<string, number>();
      for await (const key of this.#inner.queryKeys({ prefix: PROVIDER_PREFIX })) {
        const peer = providerOf(key);
        if (peer === undefined || peer === this.#self) continue;
        counts.set(peer, (counts.get(peer) ?? 0) + 1);
        this.#total++;
      }
      return counts;
    })();
  }

  override async put(key: Key, value: Uint8Array, options?: AbortOptions): Promise<Key> {
    const peer = providerOf(key);
    if (peer !== undefined && peer !== this.#self && !(await this.#inner.has(key, options))) {
      const counts = await this.#load();
      const mine = counts.get(peer) ?? 0;
      if (mine >= this.#maxPerPeer) {
        throw new ProviderRecordsFullError(
          `Peer "${peer}" already has ${mine} provider records here (the cap per peer)`,
        );
      }
      if (this.#total >= this.#maxTotal) {
        throw new ProviderRecordsFullError(
          `This node keeps ${this.#total} provider records (its cap)`,
        );
      }
      // Counted before the write, so that concurrent puts cannot overshoot the caps.
      counts.set(peer, mine + 1);
      this.#total++;
      try {
        await this.#inner.put(key, value, options);
      } catch (e) {
        counts.set(peer, (counts.get(peer) ?? 1) - 1);
        this.#total--;
        throw e;
      }
      return key;
    }
    await this.#inner.put(key, value, options);
    return key;
  }

  override get(key: Key, options?: AbortOptions): Promise<Uint8Array> {
    return Promise.resolve(this.#inner.get(key, options));
  }

  override has(key: Key, options?: AbortOptions): Promise<boolean> {
    return Promise.resolve(this.#inner.has(key, options));
  }

  override async delete(key: Key, options?: AbortOptions): Promise<void> {
    const peer = providerOf(key);
    if (peer !== undefined && peer !== this.#self && (await this.#inner.has(key, options))) {
      await this.#inner.delete(key, options);
      const counts = await this.#load();
      const left = (counts.get(peer) ?? 1) - 1;
      if (left > 0) counts.set(peer, left);
      else counts.delete(peer);
      this.#total = Math.max(0, this.#total - 1);
      return;
    }
    await this.#inner.delete(key, options);
  }

  /** Provider records go through {@link put} and {@link delete} (counted); the rest is the inner batch. */
  override batch(): Batch {
    const inner = this.#inner.batch();
    const counted: (() => Promise<void>)[] = [];
    return {
      put: (key, value) => {
        if (providerOf(key) === undefined) inner.put(key, value);
        else counted.push(() => this.put(key, value).then(() => {}));
      },
      delete: (key) => {
        if (providerOf(key) === undefined) inner.delete(key);
        else counted.push(() => this.delete(key));
      },
      commit: async (options) => {
        await inner.commit(options);
        for (const op of counted.splice(0)) await op();
      },
    };
  }

  override async *_all(q: Query, options?: AbortOptions): AsyncGenerator<Pair> {
    yield* this.#inner.query({ prefix: q.prefix }, options);
  }

  override async *_allKeys(q: KeyQuery, options?: AbortOptions): AsyncGenerator<Key> {
    yield* this.#inner.queryKeys({ prefix: q.prefix }, options);
  }
}

/** The peer a provider-record key names, or `undefined` for any other key. */
function providerOf(key: Key): string | undefined {
  const s = key.toString();
  if (!s.startsWith(PROVIDER_PREFIX)) return undefined;
  const parts = s.slice(PROVIDER_PREFIX.length).split("/");
  return parts.length === 2 && parts[1] !== "" ? parts[1] : undefined;
}
