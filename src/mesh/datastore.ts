/**
 * The libp2p datastore of a node with a data directory: one SQLite file (`node:sqlite`, built into Deno), so
 * the peer store (and with it the DHT routing table's peers), the provider records this node keeps for others
 * and its own provide list survive a restart. Without a data directory libp2p keeps them in memory.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { BaseDatastore } from "datastore-core";
import { type Batch, Key, type KeyQuery, type Pair, type Query } from "interface-datastore";
import { NotFoundError } from "interface-store";
import type { AbortOptions } from "@libp2p/interface";

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
