/**
 * The desk's durable memory: per channel, the latest voucher accepted (with its signature and receipts) and the
 * amount redeemed, in one SQLite file (`node:sqlite`, built into Deno), `<dataDir>/pay.sqlite`.
 *
 * A voucher is written before the credit it buys is granted, so a desk killed at any moment can still redeem
 * every voucher it served for, and after a restart a client's last voucher is not new (a replay earns no
 * credit). The file is held in SQLite's exclusive locking mode for as long as the ledger is open: a second
 * desk on the same data directory (the same account, by default `<dataDir>/pay.key`) is refused at once with
 * {@link DeskLockedError}, and a killed process's lock goes with it (the OS releases it).
 *
 * Without a data directory the ledger lives in memory (unit tests): it forgets everything on stop.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import type { Address, Hex } from "viem";
import { MeshError } from "../errors.ts";
import type { Receipt } from "./receipts.ts";
import type { Voucher } from "./voucher.ts";

/** The ledger's file in a data directory. */
export const LEDGER_FILE = "pay.sqlite";

/** Another desk holds the ledger of this data directory. */
export class DeskLockedError extends MeshError {
  constructor(readonly path: string, keyFile?: string) {
    super(
      "desk_locked",
      keyFile === undefined
        ? `Another payment desk is running on "${path}": one data directory (one pay account) serves one desk`
        : `Another payment desk is running with the pay key "${keyFile}" (locked in "${path}"): one pay account serves one desk`,
    );
    this.name = "DeskLockedError";
  }
}

/** One channel as the ledger keeps it. */
export interface LedgerChannel {
  channel: Hex;
  /** The peer it is bound to. */
  peer: string;
  payer: Address;
  /** The deposit last read. */
  deposit: bigint;
  /** Cumulative amount of the latest accepted voucher, and what was redeemed of it on-chain. */
  accepted: bigint;
  redeemed: bigint;
  latest?: { voucher: Voucher; signature: Hex; receipts: readonly Receipt[] };
  /** Of `accepted`, the wei the payer said paid for storage (desk.ts). */
  storage?: bigint;
}

interface Row {
  channel: string;
  peer: string;
  payer: string;
  deposit: string;
  accepted: string;
  redeemed: string;
  voucher: string | null;
  signature: string | null;
  receipts: string | null;
  storage: string | null;
}

/** The desk's vouchers and redeems, one row per channel. */
export class PayLedger {
  readonly #db: DatabaseSync;
  /** Held while open when the key is a file of its own: the lock that keeps its account to one desk. */
  #keyLock: DatabaseSync | undefined;
  readonly #put: StatementSync;
  readonly #redeem: StatementSync;
  readonly #get: StatementSync;

  private constructor(db: DatabaseSync) {
    this.#db = db;
    this.#put = db.prepare(
      `INSERT INTO channels
         (channel, peer, payer, deposit, accepted, redeemed, voucher, signature, receipts, storage)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (channel) DO UPDATE SET peer = excluded.peer, payer = excluded.payer,
         deposit = excluded.deposit, accepted = excluded.accepted, redeemed = excluded.redeemed,
         voucher = excluded.voucher, signature = excluded.signature, receipts = excluded.receipts,
         storage = excluded.storage`,
    );
    this.#redeem = db.prepare(`UPDATE channels SET redeemed = ? WHERE channel = ?`);
    this.#get = db.prepare(`SELECT * FROM channels WHERE channel = ?`);
  }

  /** Opens (or creates) `<dataDir>/pay.sqlite` and locks it; in memory without `dataDir`. With `keyFile`
   * (a pay key kept outside the data directory), locks `<keyFile>.lock` too, so that data directories
   * sharing the key cannot both run a desk. Throws {@link DeskLockedError} when another desk (in this process
   * or another) holds either. */
  static open(dataDir?: string, keyFile?: string): PayLedger {
    const keyLock = keyFile === undefined ? undefined : lockedDb(`${keyFile}.lock`, keyFile);
    let ledger: PayLedger;
    try {
      ledger = new PayLedger(
        lockedDb(dataDir === undefined ? ":memory:" : join(dataDir, LEDGER_FILE)),
      );
    } catch (e) {
      keyLock?.close();
      throw e;
    }
    ledger.#keyLock = keyLock;
    return ledger;
  }

  /** Records `c` (its latest voucher, or only its binding). Synchronous: on disk when it returns. */
  put(c: LedgerChannel): void {
    this.#put.run(
      c.channel,
      c.peer,
      c.payer,
      c.deposit.toString(),
      c.accepted.toString(),
      c.redeemed.toString(),
      c.latest ? JSON.stringify(c.latest.voucher, bigints) : null,
      c.latest?.signature ?? null,
      c.latest ? JSON.stringify(c.latest.receipts, bigints) : null,
      c.storage?.toString() ?? null,
    );
  }

  /** Records that `channel` was redeemed up to `amount`. */
  redeemed(channel: Hex, amount: bigint): void {
    if (!this.#db.isOpen) return; // a redeem that outlived stop: the chain has it
    this.#redeem.run(amount.toString(), channel);
  }

  get(channel: Hex): LedgerChannel | undefined {
    const row = this.#get.get(channel) as Row | undefined;
    return row && fromRow(row);
  }

  /** Channels whose latest voucher is not redeemed in full: the money still owed. */
  pending(): LedgerChannel[] {
    const rows = this.#db.prepare(`SELECT * FROM channels`).all() as unknown as Row[];
    return rows.map(fromRow).filter((c) => c.latest !== undefined && c.accepted > c.redeemed);
  }

  /** Releases the file (and its lock). Idempotent. */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
    if (this.#keyLock?.isOpen) this.#keyLock.close();
  }
}

/** A database at `path` in exclusive locking mode, its lock taken by a first write: held until closed (or
 * the process ends). Throws {@link DeskLockedError} when another connection holds it. */
function lockedDb(path: string, keyFile?: string): DatabaseSync {
  let db: DatabaseSync | undefined;
  try {
    // Opening can meet the other desk's lock too (it may be creating the file): the same refusal.
    db = new DatabaseSync(path);
    // Exclusive mode: the first write takes the file's lock and keeps it until close (or death).
    db.exec("PRAGMA locking_mode = EXCLUSIVE");
    db.exec("PRAGMA journal_mode = WAL");
    // WAL with NORMAL sync survives a killed process (not a power cut) at one write per voucher.
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec(`CREATE TABLE IF NOT EXISTS channels (
      channel TEXT PRIMARY KEY, peer TEXT NOT NULL, payer TEXT NOT NULL, deposit TEXT NOT NULL,
      accepted TEXT NOT NULL, redeemed TEXT NOT NULL, voucher TEXT, signature TEXT, receipts TEXT,
      storage TEXT)`);
    // A ledger from before storage pay: the column added (no storage said is none).
    const columns = db.prepare(`PRAGMA table_info(channels)`).all() as { name: string }[];
    if (!columns.some((c) => c.name === "storage")) {
      db.exec(`ALTER TABLE channels ADD COLUMN storage TEXT`);
    }
    db.exec(`CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY, pid INTEGER, at INTEGER)`);
    db.prepare(`INSERT OR REPLACE INTO holder (id, pid, at) VALUES (1, ?, ?)`).run(
      Deno.pid,
      Date.now(),
    );
  } catch (e) {
    db?.close();
    if (/locked|busy/i.test(String((e as Error).message))) throw new DeskLockedError(path, keyFile);
    throw e;
  }
  return db;
}

function bigints(_key: string, value: unknown): unknown {
  if (typeof value === "bigint") return { $n: value.toString() };
  if (value instanceof Uint8Array) return { $b: btoa(String.fromCharCode(...value)) };
  return value;
}

function revive(_key: string, value: unknown): unknown {
  if (value !== null && typeof value === "object" && "$n" in value) {
    return BigInt((value as { $n: string }).$n);
  }
  if (value !== null && typeof value === "object" && "$b" in value) {
    return Uint8Array.from(atob((value as { $b: string }).$b), (c) => c.charCodeAt(0));
  }
  return value;
}

function fromRow(row: Row): LedgerChannel {
  return {
    channel: row.channel as Hex,
    peer: row.peer,
    payer: row.payer as Address,
    deposit: BigInt(row.deposit),
    accepted: BigInt(row.accepted),
    redeemed: BigInt(row.redeemed),
    ...(row.storage !== null ? { storage: BigInt(row.storage) } : {}),
    ...(row.voucher !== null
      ? {
        latest: {
          voucher: JSON.parse(row.voucher, revive) as Voucher,
          signature: row.signature as Hex,
          receipts: JSON.parse(row.receipts ?? "[]", revive) as Receipt[],
        },
      }
      : {}),
  };
}
