/**
 * Content-addressed chunk store on disk.
 *
 * Layout under the data directory:
 *   chunks/<xy>/<cid>   one file per chunk; <xy> = the CID's last two characters (the first ones are constant)
 *   tmp/                writes in progress; emptied at open, so a crash never leaves a partial chunk visible
 *   corrupt/            chunks that failed verification on read, kept as evidence, never served
 *   pins.json           CIDs the node keeps
 *
 * Writes are atomic: temp file, fsync, rename, fsync of the directory. Reads verify the bytes against the CID.
 */
import { CID, matchesCid, parseCid } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import { blockCost, formatBytes } from "../units.ts";

/** Raised when a write would take the store over its size cap. */
export class StoreFullError extends MeshError {
  override name = "StoreFullError";
  constructor(need: number, used: number, max: number) {
    super(
      "store_full",
      `The store is full: ${formatBytes(need)} more would exceed its ${formatBytes(max)} cap (${
        formatBytes(used)
      } used)`,
    );
  }
}

export interface StoreOptions {
  /** Refuse writes past this many bytes of chunks, counted in whole 4 KiB blocks per chunk (`blockCost`:
   * what a chunk takes on disk), so tiny chunks cannot exhaust the disk's inodes. Default: 10 GiB. */
  maxBytes?: number;
}

export interface StoreStats {
  chunks: number;
  /** Content bytes of the chunks. */
  bytes: number;
  /** What they count toward `maxBytes`: whole 4 KiB blocks per chunk, at least one. */
  usedBytes: number;
  maxBytes: number;
  /** Chunks found corrupt on read since open (moved to corrupt/). */
  corrupt: number;
  pins: number;
}

export const DEFAULT_MAX_STORE_BYTES = 10 * 1024 ** 3;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

/**
 * Writes `bytes` to `path` atomically via `tmpDir`: after a crash, `path` is either absent or whole.
 * The rename itself is made durable by syncing the directory, now or (`syncDirectory: false`) by the caller.
 */
export async function writeFileAtomic(
  tmpDir: string,
  path: string,
  bytes: Uint8Array,
  syncDirectory = true,
): Promise<void> {
  const tmp = `${tmpDir}/${crypto.randomUUID()}`;
  const file = await Deno.open(tmp, { write: true, createNew: true });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.syncData();
  } finally {
    file.close();
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  if (syncDirectory) await syncDir(path.slice(0, path.lastIndexOf("/")));
}

export class ChunkStore {
  readonly dir: string;
  readonly maxBytes: number;
  #bytes = 0;
  /** Block cost of the chunks: what the cap counts. */
  #used = 0;
  #chunks = 0;
  #corrupt = 0;
  #pins = new Set<string>();
  /** Writes in flight per CID, so concurrent puts of one chunk write it once and count it once. */
  #writing = new Map<string, Promise<boolean>>();
  /** Bytes promised to writes in flight, so concurrent puts cannot overshoot the cap together. */
  #reserved = 0;
  #pinWrite: Promise<void> = Promise.resolve();
  /** One eviction at a time: concurrent writes past the cap wait for it rather than evict twice. */
  #reclaiming: Promise<unknown> = Promise.resolve();
  /**
   * Called when a write would take the store over its cap: frees at least `need` bytes (block cost) of
   * evictable chunks, if it can, and resolves with the bytes freed. Absent: nothing is evictable, and a full
   * store refuses writes. See `VolunteerQuota.evict` for what is evictable.
   */
  reclaim?: (need: number) => Promise<number>;
  /** Shard directories known to exist, and those with renames not yet synced. */
  #dirs = new Set<string>();
  #unsynced = new Set<string>();
  /** The directory syncs under way (one round at a time): a flush waits for it, as it may hold its rename. */
  #syncing?: Promise<void>;

  private constructor(dir: string, maxBytes: number) {
    this.dir = dir;
    this.maxBytes = maxBytes;
  }

  /** Opens (creating if needed) the store in `dir`, clears unfinished writes and counts usage. */
  static async open(dir: string, options: StoreOptions = {}): Promise<ChunkStore> {
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_STORE_BYTES;
    if (!(maxBytes > 0)) throw new RangeError(`Store size cap "${maxBytes}" must be positive`);
    const store = new ChunkStore(dir, maxBytes);
    for (const sub of ["chunks", "tmp", "corrupt"]) {
      await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
    }
    for await (const entry of Deno.readDir(`${dir}/tmp`)) {
      await Deno.remove(`${dir}/tmp/${entry.name}`, { recursive: true });
    }
    for await (const { dir, bytes } of store.#walk()) {
      store.#dirs.add(dir); // known to exist: no mkdir on its next write
      store.#chunks++;
      store.#bytes += bytes;
      store.#used += blockCost(bytes);
    }
    try {
      const pins = JSON.parse(await Deno.readTextFile(`${dir}/pins.json`));
      for (const pin of pins) store.#pins.add(parseCid(pin).toString());
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        throw new MeshError("store_corrupt", `Cannot read ${dir}/pins.json: ${e}`, { cause: e });
      }
    }
    return store;
  }

  #path(key: string): string {
    return `${this.dir}/chunks/${key.slice(-2)}/${key}`;
  }

  async *#walk(): AsyncGenerator<{ key: string; bytes: number; dir: string }> {
    for await (const shard of Deno.readDir(`${this.dir}/chunks`)) {
      if (!shard.isDirectory) continue;
      const dir = `${this.dir}/chunks/${shard.name}`;
      for await (const entry of Deno.readDir(dir)) {
        if (!entry.isFile) continue;
        const { size } = await Deno.stat(`${dir}/${entry.name}`);
        yield { key: entry.name, bytes: size, dir };
      }
    }
  }

  /** Every CID in the store, in no particular order. */
  async *cids(): AsyncGenerator<CID> {
    for await (const { key } of this.#walk()) {
      try {
        yield parseCid(key);
      } catch {
        // A stray file that is not a chunk: not ours to serve or delete.
      }
    }
  }

  has(cid: CID): Promise<boolean> {
    return exists(this.#path(cid.toString()));
  }

  /**
   * The chunk's bytes, verified against its CID; null when absent. A chunk that fails verification is moved
   * to corrupt/ (kept as evidence, never served) and reported as absent, so callers repair or refetch it.
   */
  async get(cid: CID): Promise<Uint8Array | null> {
    const key = cid.toString();
    const path = this.#path(key);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    if (matchesCid(cid, bytes)) return bytes;
    try {
      const evidence = `${this.dir}/corrupt/${key}.${Date.now()}`;
      await Deno.rename(path, evidence);
      this.#chunks--;
      this.#bytes -= bytes.length;
      this.#used -= blockCost(bytes.length);
      this.#corrupt++;
      // The operator's disk is failing or was tampered with: worth a line, once per chunk.
      console.error(JSON.stringify({
        level: "warn",
        component: "store",
        msg: "chunk on disk is corrupt; moved aside, to be rebuilt",
        cid: key,
        evidence,
      }));
    } catch (e) {
      // Another reader moved it first.
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return null;
  }

  /**
   * Stores a chunk after checking it against its CID. Returns true when newly written, false when it was
   * already there. Throws {@link StoreFullError} past the cap and `ChunkMismatchError` for wrong bytes.
   * `verified: true` skips hashing again when the caller has just checked `bytes` against `cid` itself
   * (it computed the CID from them, or received them through a verifying exchange).
   */
  put(cid: CID, bytes: Uint8Array, options: { verified?: boolean } = {}): Promise<boolean> {
    const key = cid.toString();
    const pending = this.#writing.get(key);
    if (pending) return pending.then(() => false);
    const write = this.#write(cid, key, bytes, options.verified ?? false).finally(() =>
      this.#writing.delete(key)
    );
    this.#writing.set(key, write);
    return write;
  }

  async #write(cid: CID, key: string, bytes: Uint8Array, verified: boolean): Promise<boolean> {
    if (!verified && !matchesCid(cid, bytes)) {
      throw new MeshError("chunk_mismatch", `Refusing to store bytes that do not match ${key}`);
    }
    const path = this.#path(key);
    if (await exists(path)) return false;
    const cost = blockCost(bytes.length);
    let used = this.#used + this.#reserved;
    // (A chunk larger than the whole cap would evict everything and still not fit.)
    if (used + cost > this.maxBytes && cost <= this.maxBytes && this.reclaim) {
      // Free some room ahead (16 default chunks' worth), so that a stream of puts into a full store does
      // not evict one chunk per write.
      const need = Math.max(
        used + cost - this.maxBytes,
        Math.min(4 * 1024 ** 2, this.maxBytes / 16),
      );
      const reclaim = this.reclaim;
      const run = this.#reclaiming.catch(() => {}).then(() =>
        this.#used + this.#reserved + cost > this.maxBytes ? reclaim(need) : 0
      );
      this.#reclaiming = run;
      await run;
      used = this.#used + this.#reserved;
    }
    if (used + cost > this.maxBytes) {
      throw new StoreFullError(cost, used, this.maxBytes);
    }
    this.#reserved += cost;
    const dir = path.slice(0, path.lastIndexOf("/"));
    try {
      if (!this.#dirs.has(dir)) {
        await Deno.mkdir(dir, { recursive: true });
        this.#dirs.add(dir);
      }
      try {
        await writeFileAtomic(`${this.dir}/tmp`, path, bytes, false);
      } catch (e) {
        // The shard directory went away under us (an operator cleaning up): make it again, once.
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        await Deno.mkdir(dir, { recursive: true });
        await writeFileAtomic(`${this.dir}/tmp`, path, bytes, false);
      }
      this.#unsynced.add(dir);
    } finally {
      this.#reserved -= cost;
    }
    this.#chunks++;
    this.#bytes += bytes.length;
    this.#used += cost;
    return true;
  }

  /**
   * Makes every write so far durable: syncs the directories that received chunks. A chunk is never visible
   * partially written either way; until flush, a power loss may forget a recent one entirely.
   */
  async flush(): Promise<void> {
    // Group commit: a round under way may have taken the directory of a rename made before this call
    // without having synced it yet, so wait for it; the renames made meanwhile, by every caller, are then
    // synced in one next round (a holder flushes after each chunk of a put, several at once).
    while (this.#syncing) await this.#syncing.catch(() => {});
    if (!this.#unsynced.size) return;
    const dirs = [...this.#unsynced];
    this.#unsynced.clear();
    const round = Promise.all(dirs.map(syncDir)).then(
      () => {},
      (e) => {
        for (const dir of dirs) this.#unsynced.add(dir); // not known durable: the next flush tries again
        throw e;
      },
    ).finally(() => this.#syncing = undefined);
    this.#syncing = round;
    await round;
  }

  /** Removes a chunk. Returns whether it was there. */
  async delete(cid: CID): Promise<boolean> {
    const path = this.#path(cid.toString());
    let size: number;
    try {
      size = (await Deno.stat(path)).size;
      await Deno.remove(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
    this.#chunks--;
    this.#bytes -= size;
    this.#used -= blockCost(size);
    return true;
  }

  async pin(cid: CID): Promise<void> {
    const key = cid.toString();
    if (this.#pins.has(key)) return;
    this.#pins.add(key);
    await this.#savePins();
  }

  async unpin(cid: CID): Promise<void> {
    if (this.#pins.delete(cid.toString())) await this.#savePins();
  }

  pins(): CID[] {
    return [...this.#pins].map((key) => CID.parse(key));
  }

  isPinned(cid: CID): boolean {
    return this.#pins.has(cid.toString());
  }

  #savePins(): Promise<void> {
    // Chained so that an older snapshot of the set can never be renamed over a newer one.
    this.#pinWrite = this.#pinWrite.catch(() => {}).then(() => {
      const bytes = new TextEncoder().encode(JSON.stringify([...this.#pins], null, 1));
      return writeFileAtomic(`${this.dir}/tmp`, `${this.dir}/pins.json`, bytes);
    });
    return this.#pinWrite;
  }

  stats(): StoreStats {
    return {
      chunks: this.#chunks,
      bytes: this.#bytes,
      usedBytes: this.#used,
      maxBytes: this.maxBytes,
      corrupt: this.#corrupt,
      pins: this.#pins.size,
    };
  }

  /** Waits for writes in flight. The store holds no open files between calls, so nothing else to release. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#writing.values(), this.#pinWrite]);
    await this.flush();
  }
}
