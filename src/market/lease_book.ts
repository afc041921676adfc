/**
 * The lease book: every lease this node signed, as client (what others keep for it) and as holder (what it
 * keeps for others), in `<data>/leases.sqlite`, with each lease's audit record. The client's audit secret
 * lives here too and never leaves the node. Leased chunks have their own table, so the garbage collector
 * asks "is this chunk under a live lease?" with an index, not by reading every lease.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import type { Lease } from "./lease.ts";

export const LEASES_FILE = "leases.sqlite";

export type LeaseRole = "client" | "holder";

/** A lease as the book keeps it. */
export interface LeaseEntry {
  lease: Lease;
  role: LeaseRole;
  /** The client's audit secret (hex); only in the client's book. */
  secret?: string;
  /** Audits passed and failed so far; when the last one ran (ms) and whether it passed. */
  passed: number;
  failed: number;
  lastAudit?: number;
  lastPassed?: boolean;
  /** The holder deleted the chunks after the end (ms). */
  collected?: number;
  /** The id of the lease that renewed this one. */
  renewedBy?: string;
  /** Client side: time proven by passed audit rounds, time forfeited by failed ones (ms), and what the
   * proven periods are worth at the lease's price (wei). */
  provenMs: number;
  forfeitMs: number;
  owedWei: bigint;
  /** Client side: what was paid of it (wei). */
  paidWei: bigint;
}

interface Row {
  id: string;
  role: LeaseRole;
  json: string;
  secret: string | null;
  passed: number;
  failed: number;
  last_audit: number | null;
  last_passed: number | null;
  collected: number | null;
  renewed_by: string | null;
  proven_ms: number;
  forfeit_ms: number;
  owed_wei: string;
  paid_wei: string;
}

function entry(r: Row): LeaseEntry {
  return {
    lease: JSON.parse(r.json),
    role: r.role,
    ...(r.secret !== null ? { secret: r.secret } : {}),
    passed: r.passed,
    failed: r.failed,
    ...(r.last_audit !== null ? { lastAudit: r.last_audit } : {}),
    ...(r.last_passed !== null ? { lastPassed: r.last_passed === 1 } : {}),
    ...(r.collected !== null ? { collected: r.collected } : {}),
    ...(r.renewed_by !== null ? { renewedBy: r.renewed_by } : {}),
    provenMs: r.proven_ms,
    forfeitMs: r.forfeit_ms,
    owedWei: BigInt(r.owed_wei),
    paidWei: BigInt(r.paid_wei),
  };
}

export class LeaseBook {
  readonly #db: DatabaseSync;
  readonly #add: StatementSync;
  readonly #addChunk: StatementSync;
  readonly #get: StatementSync;
  readonly #byRole: StatementSync;
  readonly #audit: StatementSync;
  readonly #live: StatementSync;
  readonly #liveBytes: StatementSync;
  readonly #clientBytes: StatementSync;
  readonly #ended: StatementSync;
  readonly #collect: StatementSync;
  readonly #renew: StatementSync;
  readonly #paid: StatementSync;
  readonly #replace: StatementSync;
  readonly #replacedOf: StatementSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS leases (
        id TEXT NOT NULL, role TEXT NOT NULL, holder TEXT NOT NULL, client TEXT NOT NULL,
        start INTEGER NOT NULL, "end" INTEGER NOT NULL, json TEXT NOT NULL, secret TEXT,
        passed INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,
        last_audit INTEGER, last_passed INTEGER, collected INTEGER, renewed_by TEXT,
        proven_ms INTEGER NOT NULL DEFAULT 0, forfeit_ms INTEGER NOT NULL DEFAULT 0,
        owed_wei TEXT NOT NULL DEFAULT '0', paid_wei TEXT NOT NULL DEFAULT '0',
        PRIMARY KEY (id, role)) STRICT;
      CREATE TABLE IF NOT EXISTS lease_chunks (
        id TEXT NOT NULL, role TEXT NOT NULL, cid TEXT NOT NULL, bytes INTEGER NOT NULL,
        "end" INTEGER NOT NULL, client TEXT NOT NULL, PRIMARY KEY (id, role, cid)) STRICT;
      CREATE INDEX IF NOT EXISTS lease_chunks_cid ON lease_chunks (cid, "end");
      CREATE TABLE IF NOT EXISTS replaced (
        id TEXT NOT NULL, cid TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (id, cid)) STRICT`);
    this.#replace = db.prepare("INSERT OR IGNORE INTO replaced (id, cid, at) VALUES (?, ?, ?)");
    this.#replacedOf = db.prepare("SELECT cid FROM replaced WHERE id = ?");
    this.#add = db.prepare(
      `INSERT OR IGNORE INTO leases (id, role, holder, client, start, "end", json, secret)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#addChunk = db.prepare(
      `INSERT OR IGNORE INTO lease_chunks (id, role, cid, bytes, "end", client) VALUES (?, ?, ?, ?, ?, ?)`,
    );
    this.#get = db.prepare("SELECT * FROM leases WHERE id = ? AND role = ?");
    this.#byRole = db.prepare(`SELECT * FROM leases WHERE role = ? ORDER BY "end" DESC LIMIT ?`);
    this.#audit = db.prepare(
      `UPDATE leases SET passed = passed + ?, failed = failed + ?, last_audit = ?, last_passed = ?,
       proven_ms = proven_ms + ?, forfeit_ms = forfeit_ms + ?, owed_wei = ? WHERE id = ? AND role = 'client'`,
    );
    this.#live = db.prepare(
      `SELECT 1 FROM lease_chunks WHERE cid = ? AND role = 'holder' AND "end" > ? AND id != ? LIMIT 1`,
    );
    // Distinct chunks under live leases: one chunk leased twice takes its room once.
    this.#liveBytes = db.prepare(
      `SELECT COALESCE(SUM(bytes), 0) AS n FROM (SELECT cid, MAX(bytes) AS bytes FROM lease_chunks
       WHERE role = 'holder' AND "end" > ? GROUP BY cid)`,
    );
    this.#clientBytes = db.prepare(
      `SELECT COALESCE(SUM(bytes), 0) AS n FROM (SELECT cid, MAX(bytes) AS bytes FROM lease_chunks
       WHERE role = 'holder' AND "end" > ? AND client = ? GROUP BY cid)`,
    );
    this.#ended = db.prepare(
      `SELECT * FROM leases WHERE role = 'holder' AND "end" <= ? AND collected IS NULL LIMIT 256`,
    );
    this.#collect = db.prepare("UPDATE leases SET collected = ? WHERE id = ? AND role = 'holder'");
    this.#renew = db.prepare("UPDATE leases SET renewed_by = ? WHERE id = ? AND role = ?");
    this.#paid = db.prepare("UPDATE leases SET paid_wei = ? WHERE id = ? AND role = 'client'");
  }

  /** Opens (or creates) `<dataDir>/leases.sqlite`; `":memory:"` for none. */
  static open(dataDir: string | ":memory:"): LeaseBook {
    return new LeaseBook(
      new DatabaseSync(dataDir === ":memory:" ? dataDir : join(dataDir, LEASES_FILE)),
    );
  }

  /** Files a lease signed by both (once: the same id again changes nothing). */
  add(lease: Lease, role: LeaseRole, secret?: string): void {
    this.#db.exec("BEGIN");
    try {
      this.#add.run(
        lease.id,
        role,
        lease.holder,
        lease.client,
        lease.start,
        lease.end,
        JSON.stringify(lease),
        secret ?? null,
      );
      for (const [cid, bytes] of lease.chunks) {
        this.#addChunk.run(lease.id, role, cid, bytes, lease.end, lease.client);
      }
      this.#db.exec("COMMIT");
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  get(id: string, role: LeaseRole): LeaseEntry | undefined {
    const row = this.#get.get(id, role) as Row | undefined;
    return row && entry(row);
  }

  /** Leases in `role`, latest end first. */
  list(role: LeaseRole, limit = 1000): LeaseEntry[] {
    return (this.#byRole.all(role, limit) as unknown as Row[]).map(entry);
  }

  /**
   * One audit round of a client lease: how many challenges passed and failed, and the period it closes:
   * proven (all passed: `owedWei` is the new total owed) or forfeited.
   */
  audited(
    id: string,
    passed: number,
    failed: number,
    at: number,
    period: { provenMs: number; forfeitMs: number; owedWei: bigint } = {
      provenMs: 0,
      forfeitMs: 0,
      owedWei: this.get(id, "client")?.owedWei ?? 0n,
    },
  ): void {
    this.#audit.run(
      passed,
      failed,
      at,
      failed === 0 ? 1 : 0,
      period.provenMs,
      period.forfeitMs,
      period.owedWei.toString(),
      id,
    );
  }

  /** True when `cid` is under a live holder lease other than `except`. */
  leasedElsewhere(cid: string, now: number, except = ""): boolean {
    return this.#live.get(cid, now, except) !== undefined;
  }

  /** Bytes of distinct chunks under live holder leases (all clients, or one). */
  heldBytes(now: number, client?: string): number {
    const row =
      (client === undefined ? this.#liveBytes.get(now) : this.#clientBytes.get(now, client)) as {
        n: number;
      };
    return row.n;
  }

  /** Holder leases that ended and whose chunks were not collected yet. */
  ended(now: number): LeaseEntry[] {
    return (this.#ended.all(now) as unknown as Row[]).map(entry);
  }

  collected(id: string, at: number): void {
    this.#collect.run(at, id);
  }

  /** The client paid lease `id` up to `wei` in all. */
  paid(id: string, wei: bigint): void {
    this.#paid.run(wei.toString(), id);
  }

  renewed(id: string, role: LeaseRole, by: string): void {
    this.#renew.run(by, id, role);
  }

  /** Chunks of client lease `id` that its holder lost and another holder now keeps: no longer audited. */
  replaced(id: string, cids: string[], at: number): void {
    for (const cid of cids) this.#replace.run(id, cid, at);
  }

  replacedOf(id: string): Set<string> {
    return new Set((this.#replacedOf.all(id) as { cid: string }[]).map((r) => r.cid));
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
