/**
 * The node's own chunks: those of its pinned files (its uploads), which eviction must never touch.
 *
 * @module
 */
import { DAG_JSON_CODE } from "../content/cid.ts";
import { decodeManifest } from "../content/manifest.ts";
import type { ChunkStore } from "./store.ts";

/**
 * Every CID (as a string) that a pinned root names: the root itself and, for a manifest, each chunk of
 * each stripe, data and parity. A manifest that cannot be read contributes only itself.
 */
export async function pinnedChunks(store: ChunkStore): Promise<Set<string>> {
  const kept = new Set<string>();
  for (const root of store.pins()) {
    kept.add(root.toString());
    if (root.code !== DAG_JSON_CODE) continue;
    const bytes = await store.get(root);
    if (!bytes) continue;
    try {
      for (const stripe of decodeManifest(bytes).stripes) {
        for (const cid of stripe) kept.add(cid.toString());
      }
    } catch {
      // Not a manifest: nothing more it could name.
    }
  }
  return kept;
}
