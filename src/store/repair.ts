/**
 * Store repair: walks every pinned file stripe by stripe, verifies each chunk on disk, and rebuilds the
 * missing or corrupt ones (data and parity alike) from the rest of their stripe.
 *
 * Reading serves data chunks and writes back what a read had to rebuild, but it never looks at the parity
 * of a healthy stripe, so parity losses accumulate unseen until a stripe has too few chunks left. This pass
 * finds them. It holds one stripe in memory at a time, and reports what it could not rebuild.
 *
 * The store must not be open in another process meanwhile: opening a store clears its tmp/ directory.
 *
 * @module
 */
import { ChunkMismatchError, type CID, DAG_JSON_CODE, RAW_CODE } from "../content/cid.ts";
import { decodeManifest, type Manifest, ManifestMismatchError } from "../content/manifest.ts";
import { rebuildStripe } from "../content/stripes.ts";
import type { ChunkStore } from "./store.ts";

/** One event per stripe checked, for a progress bar. */
export interface RepairProgress {
  /** The file (manifest CID, or a raw chunk's CID) the stripe belongs to. */
  root: string;
  /** Index of the stripe within its file. */
  stripe: number;
  /** Stripes checked so far over all roots, this one included. */
  done: number;
  /** Stripes to check over all roots (those of readable manifests). */
  total: number;
  /** Chunks of this stripe that were absent or corrupt. */
  missing: number;
  /** Of those, how many were rebuilt and stored again. */
  repaired: number;
  /** True when the stripe lost more chunks than its parity can rebuild. */
  unrecoverable: boolean;
}

/** What a repair found and did. Chunk counts are per position in a stripe. */
export interface RepairReport {
  /** Roots looked at. */
  roots: number;
  /** Stripes checked (a raw root counts as one stripe of one chunk). */
  stripes: number;
  /** Chunks read and verified. */
  chunksChecked: number;
  /** Chunks absent or corrupt (corrupt ones are moved to corrupt/ by the store). */
  missing: number;
  /** Chunks rebuilt and stored again. */
  repaired: number;
  /** Stripes that lost more chunks than their parity covers: their lost chunks stay lost. */
  unrecoverable: { root: string; stripe: number }[];
  /** Roots whose manifest is absent, corrupt or not a valid manifest: none of their chunks were checked. */
  manifestsMissing: string[];
}

export interface RepairOptions {
  /** Stops the repair between stripes; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Called after every stripe. */
  onProgress?: (progress: RepairProgress) => void;
  /** Roots to check. Default: every pin of the store. */
  roots?: CID[];
}

/** The manifest a root names; a raw root is a one-chunk file without parity; null when unreadable. */
async function loadManifest(store: ChunkStore, root: CID): Promise<Manifest | null> {
  if (root.code === RAW_CODE) {
    return { name: "", type: "", size: 1, chunkSize: 1, k: 1, m: 0, stripes: [[root]] };
  }
  const bytes = await store.get(root);
  if (!bytes) return null;
  try {
    return decodeManifest(bytes);
  } catch {
    return null;
  }
}

/**
 * Checks every chunk of every stripe of the pinned files (or `options.roots`) and rebuilds and stores
 * again those that are absent or corrupt, as long as their stripe keeps enough chunks.
 *
 * @example
 * ```ts
 * const store = await ChunkStore.open(".meshgate");
 * const report = await repairStore(store, { onProgress: (p) => console.log(`${p.done}/${p.total}`) });
 * if (report.unrecoverable.length || report.manifestsMissing.length) Deno.exitCode = 1;
 * ```
 *
 * @throws {RangeError} for a root that is neither a raw chunk nor a dag-json manifest
 * @throws the signal's reason when aborted, and store errors such as `StoreFullError` (both after
 *   making the chunks already rebuilt durable)
 */
export async function repairStore(
  store: ChunkStore,
  options: RepairOptions = {},
): Promise<RepairReport> {
  const { signal, onProgress } = options;
  const roots = options.roots ?? store.pins();
  for (const root of roots) {
    if (root.code !== RAW_CODE && root.code !== DAG_JSON_CODE) {
      throw new RangeError(`Root "${root}" is neither a raw chunk nor a dag-json manifest`);
    }
  }
  const report: RepairReport = {
    roots: roots.length,
    stripes: 0,
    chunksChecked: 0,
    missing: 0,
    repaired: 0,
    unrecoverable: [],
    manifestsMissing: [],
  };

  // A first pass counts the stripes, so that progress has a total; manifests are read again one at a
  // time below rather than all kept.
  signal?.throwIfAborted();
  const readable: CID[] = [];
  let total = 0;
  for (const root of roots) {
    signal?.throwIfAborted();
    const manifest = await loadManifest(store, root);
    if (manifest) {
      readable.push(root);
      total += manifest.stripes.length;
    } else report.manifestsMissing.push(root.toString());
  }

  try {
    for (const root of readable) {
      const manifest = await loadManifest(store, root);
      if (!manifest) {
        report.manifestsMissing.push(root.toString());
        continue;
      }
      for (let stripe = 0; stripe < manifest.stripes.length; stripe++) {
        signal?.throwIfAborted();
        const result = await repairStripe(store, manifest, stripe);
        report.stripes++;
        report.chunksChecked += manifest.stripes[stripe]!.length;
        report.missing += result.missing;
        report.repaired += result.repaired;
        if (result.unrecoverable) report.unrecoverable.push({ root: `${root}`, stripe });
        onProgress?.({ root: `${root}`, stripe, done: report.stripes, total, ...result });
      }
    }
  } finally {
    await store.flush();
  }
  return report;
}

async function repairStripe(
  store: ChunkStore,
  manifest: Manifest,
  index: number,
): Promise<{ missing: number; repaired: number; unrecoverable: boolean }> {
  const cids = manifest.stripes[index]!;
  const have = await Promise.all(cids.map((cid) => store.get(cid)));
  const lost: number[] = [];
  have.forEach((bytes, i) => bytes || lost.push(i));
  if (lost.length === 0) return { missing: 0, repaired: 0, unrecoverable: false };
  if (lost.length > manifest.m) return { missing: lost.length, repaired: 0, unrecoverable: true };
  let full: Uint8Array[];
  try {
    full = rebuildStripe(manifest, index, have);
  } catch (e) {
    // The present chunks are verified, so a rebuild that misses its CID (or a chunk of another length
    // than declared) means the manifest lists chunks that never formed one stripe: nothing restores them.
    if (e instanceof ChunkMismatchError || e instanceof ManifestMismatchError) {
      return { missing: lost.length, repaired: 0, unrecoverable: true };
    }
    throw e;
  }
  // rebuildStripe checked every chunk it returned against its CID
  await Promise.all(lost.map((i) => store.put(cids[i]!, full[i]!, { verified: true })));
  return { missing: lost.length, repaired: lost.length, unrecoverable: false };
}

/**
 * Keeps a chunk that a read had to rebuild, so the next read finds it on disk. Failures are logged, not
 * thrown: the reader already has its bytes. `verified`: the rebuild checked the bytes against `cid`.
 */
export async function writeBack(store: ChunkStore, cid: CID, bytes: Uint8Array): Promise<boolean> {
  try {
    await store.put(cid, bytes, { verified: true });
    await store.flush();
    return true;
  } catch (e) {
    console.error(
      JSON.stringify({
        level: "warn",
        msg: "repair write-back failed",
        cid: `${cid}`,
        error: `${e}`,
      }),
    );
    return false;
  }
}
