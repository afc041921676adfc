/**
 * Manifests: what a file is made of. Encoded as canonical dag-json (sorted keys, CIDs as links), so equal
 * files with equal options always get the same manifest CID.
 *
 * ```json
 * { "chunkSize": 262144, "k": 20, "m": 4, "meshgate": 1, "name": "clip.mp4", "size": 1234567,
 *   "stripes": [[{"/": "bafkr4…"}, …]], "type": "video/mp4" }
 * ```
 *
 * Each stripe lists its data chunks, then its `m` parity chunks. Every stripe holds `k` data chunks except
 * the last, which holds the rest; so the data count of stripe i follows from size, chunkSize and k.
 */
import * as dagJson from "@ipld/dag-json";
import { BLAKE3_CODE, CID, cidOf, DAG_JSON_CODE, RAW_CODE } from "./cid.ts";
import { MAX_CHUNK_SIZE } from "./chunker.ts";
import { MeshError } from "../errors.ts";

/** Largest encoded manifest, the same as any chunk: a manifest travels and is stored as one. */
export const MAX_MANIFEST_BYTES = MAX_CHUNK_SIZE;

export interface Manifest {
  /** File name for Content-Disposition; may be empty. */
  name: string;
  /** Media type for Content-Type. */
  type: string;
  /** File size in bytes. */
  size: number;
  /** Size of every data chunk but the last. */
  chunkSize: number;
  /** Data chunks per full stripe. */
  k: number;
  /** Parity chunks per stripe. */
  m: number;
  /** Per stripe: its data chunk CIDs, then its parity chunk CIDs. */
  stripes: CID[][];
}

/** Raised when bytes claiming to be a manifest are not a valid one. */
export class InvalidManifestError extends MeshError {
  override name = "InvalidManifestError";
  constructor(reason: string, cause?: unknown) {
    super("invalid_manifest", `Invalid manifest: ${reason}`, { cause });
  }
}

/**
 * Raised when a manifest's declared sizes disagree with its chunks: a chunk, verified against its CID, is
 * not as long as the manifest says. Such a manifest is refused: zero-padding the chunk to the declared
 * length would give bytes that do not match its CID.
 */
export class ManifestMismatchError extends MeshError {
  override name = "ManifestMismatchError";
  constructor(readonly cid: CID, stripe: number, declared: number, actual: number) {
    super(
      "manifest_mismatch",
      `The manifest disagrees with its chunks: it declares ${cid} (stripe ${stripe}) as ${declared} bytes, but that chunk is ${actual} bytes`,
    );
  }
}

/** Number of data chunks in the whole file. */
export function chunkCount(m: Pick<Manifest, "size" | "chunkSize">): number {
  return Math.ceil(m.size / m.chunkSize);
}

/** Number of data chunks in stripe `index`. */
export function stripeDataCount(
  m: Pick<Manifest, "size" | "chunkSize" | "k">,
  index: number,
): number {
  return Math.min(m.k, chunkCount(m) - index * m.k);
}

/** Byte length of data chunk `chunk` (0-based over the whole file). */
export function chunkLength(m: Pick<Manifest, "size" | "chunkSize">, chunk: number): number {
  return Math.min(m.chunkSize, m.size - chunk * m.chunkSize);
}

/** Canonical dag-json bytes of a manifest. */
export function encodeManifest(manifest: Manifest): Uint8Array {
  const { name, type, size, chunkSize, k, m, stripes } = manifest;
  return dagJson.encode({ meshgate: 1, name, type, size, chunkSize, k, m, stripes });
}

/** The manifest's CID (dag-json codec) and its bytes. */
export function sealManifest(manifest: Manifest): { cid: CID; bytes: Uint8Array } {
  const bytes = encodeManifest(manifest);
  if (bytes.length > MAX_MANIFEST_BYTES) {
    throw new MeshError(
      "too_large",
      `The manifest would be ${bytes.length} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit: use a larger chunk size`,
    );
  }
  return { cid: cidOf(bytes, DAG_JSON_CODE), bytes };
}

function isCount(v: unknown, min: number, max: number): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= min && v <= max;
}

/** Decodes and fully validates manifest bytes: every later computation may trust the result. */
export function decodeManifest(bytes: Uint8Array): Manifest {
  let raw: Record<string, unknown>;
  try {
    raw = dagJson.decode(bytes);
  } catch (e) {
    throw new InvalidManifestError("not dag-json", e);
  }
  if (typeof raw !== "object" || raw === null || raw.meshgate !== 1) {
    throw new InvalidManifestError('missing "meshgate": 1');
  }
  const { name, type, size, chunkSize, k, m, stripes } = raw;
  if (typeof name !== "string" || typeof type !== "string") {
    throw new InvalidManifestError('"name" and "type" must be strings');
  }
  if (!isCount(size, 0, Number.MAX_SAFE_INTEGER)) throw new InvalidManifestError('bad "size"');
  if (!isCount(chunkSize, 1, MAX_CHUNK_SIZE)) throw new InvalidManifestError('bad "chunkSize"');
  if (!isCount(k, 1, 256) || !isCount(m, 0, 255) || k + m > 256) {
    throw new InvalidManifestError('"k" and "m" must satisfy k >= 1, m >= 0, k + m <= 256');
  }
  const shape = { size, chunkSize, k };
  const stripeCount = Math.ceil(chunkCount(shape) / k);
  if (!Array.isArray(stripes) || stripes.length !== stripeCount) {
    throw new InvalidManifestError(`expected ${stripeCount} stripes`);
  }
  stripes.forEach((stripe, i) => {
    const want = stripeDataCount(shape, i) + m;
    if (!Array.isArray(stripe) || stripe.length !== want) {
      throw new InvalidManifestError(`stripe ${i} must list ${want} CIDs`);
    }
    for (const cid of stripe) {
      if (
        !(cid instanceof CID) || cid.version !== 1 || cid.code !== RAW_CODE ||
        cid.multihash.code !== BLAKE3_CODE || cid.multihash.size !== 32
      ) {
        throw new InvalidManifestError(`stripe ${i} holds something other than a raw BLAKE3 CIDv1`);
      }
    }
  });
  return { name, type, size, chunkSize, k, m, stripes: stripes as CID[][] };
}
