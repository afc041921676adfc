/**
 * Stripes: every k data chunks get m parity chunks (Reed–Solomon), so any k of the k+m rebuild the rest.
 * Shards of a stripe must be equal in length: the stripe's shorter last chunk is zero-padded for the
 * arithmetic only, never stored padded, so the only waste is parity the size of one full chunk.
 */
import { rsEncode, rsReconstruct } from "../kernels/erasure.ts";
import { type CID, verifyChunk } from "./cid.ts";
import { chunkLength, type Manifest, ManifestMismatchError, stripeDataCount } from "./manifest.ts";

function padded(bytes: Uint8Array, size: number): Uint8Array {
  if (bytes.length === size) return bytes;
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

/** Parity chunks for one stripe's data chunks (the first is the longest). */
export function encodeParity(data: Uint8Array[], m: number): Uint8Array[] {
  if (m === 0 || data.length === 0) return [];
  const size = data[0]!.length;
  const shards = data.map((d) => padded(d, size));
  for (let i = 0; i < m; i++) shards.push(new Uint8Array(size));
  rsEncode(shards, data.length, m);
  return shards.slice(data.length);
}

/**
 * Rebuilds the missing chunks of stripe `index` from `have` (its k+m chunks in manifest order, null where
 * missing) and checks every chunk it returns against its CID, the present ones included: a caller caches
 * and stores all of them as verified. Returns the full list. Throws {@link ManifestMismatchError} when a
 * present chunk's length is not the one the manifest declares (it would come back zero-padded), a
 * `ChunkMismatchError` when a chunk does not hash to its CID, and when fewer than the stripe's data count
 * are present.
 */
export function rebuildStripe(
  manifest: Manifest,
  index: number,
  have: (Uint8Array | null)[],
): Uint8Array[] {
  const k = stripeDataCount(manifest, index);
  const cids = manifest.stripes[index]!;
  const first = index * manifest.k;
  const size = chunkLength(manifest, first);
  const lengths = cids.map((_, i) => i < k ? chunkLength(manifest, first + i) : size);
  have.forEach((bytes, i) => {
    if (bytes && bytes.length !== lengths[i]) {
      throw new ManifestMismatchError(cids[i] as CID, index, lengths[i]!, bytes.length);
    }
  });
  const shards = have.map((bytes) => bytes && padded(bytes, size));
  rsReconstruct(shards, k, manifest.m);
  return shards.map((shard, i) => {
    const bytes = shard!.length === lengths[i] ? shard! : shard!.slice(0, lengths[i]);
    // One BLAKE3 per chunk: present chunks were checked by whoever fetched them, but what this returns
    // is trusted downstream, so it is checked here whatever the caller did.
    verifyChunk(cids[i] as CID, bytes, have[i] ? "stripe" : "reconstruction");
    return bytes;
  });
}
