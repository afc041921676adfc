/**
 * The volunteer quota: how many bytes of chunks, and how many chunks (files), this node keeps for each peer
 * that hands them over with `put` on the chunk exchange. Without it any peer could fill the store up to its
 * cap, for free; without the count of files, with chunks of a few bytes each it could use up the disk's
 * inodes (and two fsyncs per chunk) while its bytes stayed far under the quota. Each chunk is charged its
 * block cost (`blockCost`: whole 4 KiB blocks, at least one), as the store counts it.
 *
 * Usage is counted per peer ID in `<dataDir>/volunteer.sqlite` (Deno's `node:sqlite`, WAL mode: a crash of
 * the process loses nothing; a power cut may lose the last few counts), so a restart does not reset it.
 *
 * Every chunk kept for a peer is also listed there, oldest first: these are the store's evictable chunks.
 * There are no leases yet, so "unleased" means exactly this: a chunk some peer handed over for free. When
 * the store is full, {@link VolunteerQuota.evict} deletes the oldest of them and gives the peer its quota
 * back; chunks of the node's own uploads, of pinned files and of uploads in progress are never evicted (a
 * volunteered chunk that turns out to be one of those leaves the list and stays). A per-peer bound does not
 * stop a peer that makes many identities; the store cap stays the bound on the total, and eviction keeps
 * such peers from crowding out later ones.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import { CID } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import { BLOCK_BYTES, blockCost } from "../units.ts";

/**
 * Default bytes kept per peer: 1 GiB. A tenth of the default 10 GiB store, so no single peer can take more
 * than that, while a peer placing its share of a multi-GiB upload across a small mesh still fits.
 */
export const DEFAULT_VOLUNTEER_QUOTA = 1024 ** 3;

/**
 * Default chunks kept per peer: 4096, as many as the default byte quota holds chunks of the default 256 KiB
 * size, so tiny chunks buy a peer no more files than full ones would.
 */
export const DEFAULT_VOLUNTEER_QUOTA_CHUNKS = 4096;

/** Least bytes charged per chunk: each one costs a file and its fsyncs whatever its size. */
export const MIN_CHARGE_BYTES = BLOCK_BYTES;

/** A peer's `put` would take it past its volunteer quota (in bytes, or in chunks) on this node. */
export class QuotaExceededError extends MeshError {
  override name = "QuotaExceededError";
  constructor(
    readonly peer: string,
    readonly used: number,
    readonly quota: number,
    readonly unit: "bytes" | "chunks" = "bytes",
  ) {
    super(
      "quota_exceeded",
      unit === "bytes"
        ? `Peer "${peer}" has used ${size(used)} of its ${size(quota)} volunteer quota on this node`
        : `Peer "${peer}" has used ${used} of its ${quota} chunks of volunteer quota on this node`,
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

/** Per-peer byte and chunk counts of volunteered chunks, persisted in the data directory. */
export class VolunteerQuota {
  readonly #db: DatabaseSync;
  readonly #get: StatementSync;
  readonly #add: StatementSync;
  readonly #hold: StatementSync;
  readonly #oldest: StatementSync;
  readonly #unhold: StatementSync;
  readonly #refund: StatementSync;
  /** Bytes and chunks of writes in progress per peer, so that concurrent puts cannot overshoot together. */
  readonly #pending = new Map<string, { bytes: number; chunks: number }>();

  private constructor(
    db: DatabaseSync,
    readonly bytesPerPeer: number,
    readonly chunksPerPeer: number,
  ) {
    this.#db = db;
    db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
      CREATE TABLE IF NOT EXISTS volunteer (peer TEXT PRIMARY KEY, bytes INTEGER NOT NULL) STRICT`);
    // Counts written before chunks were counted start at 0 chunks.
    const columns = db.prepare("PRAGMA table_info(volunteer)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "chunks")) {
      db.exec("ALTER TABLE volunteer ADD COLUMN chunks INTEGER NOT NULL DEFAULT 0");
    }
    this.#get = db.prepare("SELECT bytes, chunks FROM volunteer WHERE peer = ?");
    this.#add = db.prepare(
      `INSERT INTO volunteer (peer, bytes, chunks) VALUES (?, ?, 1)
       ON CONFLICT (peer) DO UPDATE SET bytes = bytes + excluded.bytes, chunks = chunks + 1`,
    );
    // The evictable chunks, oldest first (rowid order).
    db.exec(`CREATE TABLE IF NOT EXISTS held (
      cid TEXT PRIMARY KEY, peer TEXT NOT NULL, cost INTEGER NOT NULL, seq INTEGER NOT NULL) STRICT;
      CREATE INDEX IF NOT EXISTS held_seq ON held (seq)`);
    this.#hold = db.prepare(
      `INSERT OR REPLACE INTO held (cid, peer, cost, seq)
       VALUES (?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM held))`,
    );
    this.#oldest = db.prepare("SELECT cid, peer, cost FROM held ORDER BY seq LIMIT 64");
    this.#unhold = db.prepare("DELETE FROM held WHERE cid = ?");
    this.#refund = db.prepare(
      "UPDATE volunteer SET bytes = MAX(0, bytes - ?), chunks = MAX(0, chunks - 1) WHERE peer = ?",
    );
  }

  /**
   * Opens (or creates) the counts in `dataDir`. `bytesPerPeer`, `chunksPerPeer`: 0 refuses every peer's
   * puts.
   */
  static open(
    dataDir: string,
    bytesPerPeer = DEFAULT_VOLUNTEER_QUOTA,
    chunksPerPeer = DEFAULT_VOLUNTEER_QUOTA_CHUNKS,
  ): VolunteerQuota {
    if (!Number.isSafeInteger(bytesPerPeer) || bytesPerPeer < 0) {
      throw new RangeError(
        `Volunteer quota "${bytesPerPeer}" must be a whole number of bytes >= 0`,
      );
    }
    if (!Number.isSafeInteger(chunksPerPeer) || chunksPerPeer < 0) {
      throw new RangeError(
        `Volunteer chunk quota "${chunksPerPeer}" must be a whole number of chunks >= 0`,
      );
    }
    return new VolunteerQuota(
      new DatabaseSync(join(dataDir, "volunteer.sqlite")),
      bytesPerPeer,
      chunksPerPeer,
    );
  }

  /** Bytes charged to `peer` so far. */
  used(peer: string): number {
    return this.#row(peer).bytes;
  }

  /** Chunks charged to `peer` so far. */
  usedChunks(peer: string): number {
    return this.#row(peer).chunks;
  }

  #row(peer: string): { bytes: number; chunks: number } {
    const row = this.#get.get(peer) as { bytes: number; chunks: number } | undefined;
    return row ?? { bytes: 0, chunks: 0 };
  }

  /**
   * Runs `write` (which stores a chunk of `bytes` bytes for `peer` and resolves true when it newly wrote it)
   * within the peer's quota, and charges it when written. Throws {@link QuotaExceededError} without writing
   * when the chunk would not fit.
   */
  async charge(
    peer: string,
    bytes: number,
    write: () => Promise<boolean>,
    /** The chunk written: listed as evictable once written. */
    cid?: CID,
  ): Promise<boolean> {
    const cost = blockCost(bytes);
    const pending = this.#pending.get(peer) ?? { bytes: 0, chunks: 0 };
    const row = this.#row(peer);
    const used = row.bytes + pending.bytes;
    if (used + cost > this.bytesPerPeer) {
      throw new QuotaExceededError(peer, used, this.bytesPerPeer);
    }
    const files = row.chunks + pending.chunks;
    if (files + 1 > this.chunksPerPeer) {
      throw new QuotaExceededError(peer, files, this.chunksPerPeer, "chunks");
    }
    this.#pending.set(peer, { bytes: pending.bytes + cost, chunks: pending.chunks + 1 });
    try {
      const written = await write();
      if (written) {
        this.#add.run(peer, cost);
        if (cid) this.#hold.run(cid.toString(), peer, cost);
      }
      return written;
    } finally {
      const left = this.#pending.get(peer)!;
      left.bytes -= cost;
      left.chunks--;
      if (left.chunks === 0) this.#pending.delete(peer);
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
      if (from === undefined) return await store.put(cid, bytes);
      // A chunk already held costs nothing (the write finds it and is not charged); whether it is held is
      // asked only when the quota would refuse it, so that a put costs one lookup on disk, not two.
      try {
        return await this.charge(from, bytes.length, () => store.put(cid, bytes), cid);
      } catch (e) {
        if (e instanceof QuotaExceededError && await store.has(cid)) {
          return await store.put(cid, bytes);
        }
        throw e;
      }
    };
  }

  /**
   * Frees at least `need` bytes (block cost) by deleting the oldest chunks kept for peers, giving each peer
   * its quota back; `keep(cid)` names chunks that must stay (the node's own), which leave the list. Returns
   * the bytes freed: less than `need` when nothing evictable is left.
   */
  async evict(
    need: number,
    remove: (cid: CID) => Promise<boolean>,
    keep: (cid: string) => boolean,
  ): Promise<number> {
    let freed = 0;
    while (freed < need) {
      const rows = this.#oldest.all() as { cid: string; peer: string; cost: number }[];
      if (rows.length === 0) break;
      for (const row of rows) {
        this.#unhold.run(row.cid);
        if (keep(row.cid)) continue;
        if (await remove(CID.parse(row.cid))) freed += row.cost;
        this.#refund.run(row.cost, row.peer);
        if (freed >= need) break;
      }
    }
    return freed;
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
