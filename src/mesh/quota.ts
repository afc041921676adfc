/**
 * The volunteer quota: how many bytes of chunks this node keeps for each peer that hands them over with `put`
 * on the chunk exchange. Without it any peer could fill the store up to its cap, for free.
 *
 * Usage is counted per peer ID in `<dataDir>/volunteer.sqlite` (Deno's `node:sqlite`, WAL mode: a crash of
 * the process loses nothing; a power cut may lose the last few counts), so a restart does not reset it. The
 * counts only grow for now: nothing deletes chunks kept for peers yet (leases, a later issue, will release
 * them). A per-peer bound does not stop a peer that makes many identities; the store cap stays the bound on
 * the total.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import type { CID } from "../content/cid.ts";
import { MeshError } from "../errors.ts";

/**
 * Default bytes kept per peer: 1 GiB. A tenth of the default 10 GiB store, so no single peer can take more
 * than that, while a peer placing its share of a multi-GiB upload across a small mesh still fits.
 */
export const DEFAULT_VOLUNTEER_QUOTA = 1024 ** 3;

/** Least bytes charged per chunk: each one costs a file and its fsyncs whatever its size. */
export const MIN_CHARGE_BYTES = 4096;

/** A peer's `put` would take it past its volunteer quota on this node. */
export class QuotaExceededError extends MeshError {
  override name = "QuotaExceededError";
  constructor(readonly peer: string, readonly used: number, readonly quota: number) {
    super(
      "quota_exceeded",
      `Peer "${peer}" has used ${size(used)} of its ${size(quota)} volunteer quota on this node`,
    );
  }
}

function size(n: number): string {
  const [unit, div] = n >= 1024 ** 3
    ? ["GiB", 1024 ** 3]
    : n >= 1024 ** 2
    ? ["MiB", 1024 ** 2]
    : ["KiB", 1024];
  return `${+(n / div).toFixed(1)} ${unit}`;
}

/** Per-peer byte counts of volunteered chunks, persisted in the data directory. */
export class VolunteerQuota {
  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #add: StatementSync;
  /** Bytes of writes in progress per peer, so that concurrent puts cannot overshoot together. */
  readonly #pending = new Map<string, number>();

  private constructor(db: DatabaseSync, readonly bytesPerPeer: number) {
    this.#db = db;
    db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS volunteer (peer TEXT PRIMARY KEY, bytes INTEGER NOT NULL) STRICT`);
    this.#get = db.prepare("SELECT bytes FROM volunteer WHERE peer = ?");
    this.#add = db.prepare(
      `INSERT INTO volunteer (peer, bytes) VALUES (?, ?)
       ON CONFLICT (peer) DO UPDATE SET bytes = bytes + excluded.bytes`,
    );
  }

  /** Opens (or creates) the counts in `dataDir`. `bytesPerPeer`: 0 refuses every peer's puts. */
  static open(dataDir: string, bytesPerPeer = DEFAULT_VOLUNTEER_QUOTA): VolunteerQuota {
    if (!Number.isSafeInteger(bytesPerPeer) || bytesPerPeer < 0) {
      throw new RangeError(
        `Volunteer quota "${bytesPerPeer}" must be a whole number of bytes >= 0`,
      );
    }
    return new VolunteerQuota(new DatabaseSync(join(dataDir, "volunteer.sqlite")), bytesPerPeer);
  }

  /** Bytes charged to `peer` so far. */
  used(peer: string): number {
    const row = this.#get.get(peer) as { bytes: number } | undefined;
    return row?.bytes ?? 0;
  }

  /**
   * Runs `write` (which stores a chunk of `bytes` bytes for `peer` and resolves true when it newly wrote it)
   * within the peer's quota, and charges it when written. Throws {@link QuotaExceededError} without writing
   * when the chunk would not fit.
   */
  async charge(peer: string, bytes: number, write: () => Promise<boolean>): Promise<boolean> {
    const cost = Math.max(bytes, MIN_CHARGE_BYTES);
    const pending = this.#pending.get(peer) ?? 0;
    const used = this.used(peer) + pending;
    if (used + cost > this.bytesPerPeer) {
      throw new QuotaExceededError(peer, used, this.bytesPerPeer);
    }
    this.#pending.set(peer, pending + cost);
    try {
      const written = await write();
      if (written) this.#add.run(peer, cost);
      return written;
    } finally {
      const left = (this.#pending.get(peer) ?? cost) - cost;
      if (left > 0) this.#pending.set(peer, left);
      else this.#pending.delete(peer);
    }
  }

  /**
   * The `put` of a chunk source whose chunks from peers are charged: `from` (the sending peer) pays for what
   * `has` says is not held yet; chunks without a sender (this node's own) are free.
   */
  charged(
    store: {
      has(cid: CID): Promise<boolean>;
      put(cid: CID, bytes: Uint8Array): Promise<boolean>;
    },
  ): (cid: CID, bytes: Uint8Array, from?: string) => Promise<boolean> {
    return async (cid, bytes, from) => {
      if (from === undefined || await store.has(cid)) return await store.put(cid, bytes);
      return await this.charge(from, bytes.length, () => store.put(cid, bytes));
    };
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
