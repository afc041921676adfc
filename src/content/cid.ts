/** CIDs of Meshgate content: CIDv1, BLAKE3-256 multihash, raw codec for chunks, dag-json for manifests. */
import { CID } from "multiformats/cid";
import * as Digest from "multiformats/hashes/digest";
import { blake3 } from "../kernels/blake3.ts";
import { MeshError } from "../errors.ts";

export { CID };

/** Multihash code of BLAKE3-256. */
export const BLAKE3_CODE = 0x1e;
/** Multicodec of raw bytes: every chunk. */
export const RAW_CODE = 0x55;
/** Multicodec of dag-json: manifests. */
export const DAG_JSON_CODE = 0x0129;

/** The CID of `bytes` under `codec` (raw by default). */
export function cidOf(bytes: Uint8Array, codec: number = RAW_CODE): CID {
  return CID.createV1(codec, Digest.create(BLAKE3_CODE, blake3(bytes)));
}

/** Raised for a string that is not a CID Meshgate can serve. */
export class InvalidCidError extends MeshError {
  override name = "InvalidCidError";
  constructor(input: string, reason: string, cause?: unknown) {
    super("invalid_cid", `Invalid CID "${input.slice(0, 100)}": ${reason}`, { cause });
  }
}

/** Parses a CID string, accepting only CIDv1 with a BLAKE3-256 multihash and a raw or dag-json codec. */
export function parseCid(input: string): CID {
  let cid: CID;
  try {
    cid = CID.parse(input);
  } catch (e) {
    throw new InvalidCidError(input, "not a multibase CID string", e);
  }
  if (cid.version !== 1) throw new InvalidCidError(input, "only CIDv1 is supported");
  if (cid.multihash.code !== BLAKE3_CODE || cid.multihash.size !== 32) {
    throw new InvalidCidError(input, "the multihash must be BLAKE3-256 (0x1e)");
  }
  if (cid.code !== RAW_CODE && cid.code !== DAG_JSON_CODE) {
    throw new InvalidCidError(input, "the codec must be raw (0x55) or dag-json (0x0129)");
  }
  return cid;
}

/** Raised when bytes do not hash to the CID they were fetched or stored under. */
export class ChunkMismatchError extends MeshError {
  override name = "ChunkMismatchError";
  constructor(readonly cid: CID, readonly source: string) {
    super("chunk_mismatch", `Bytes for ${cid} from ${source} do not match the CID`);
  }
}

/** True when `bytes` hash to `cid`'s digest. */
export function matchesCid(cid: CID, bytes: Uint8Array): boolean {
  const want = cid.multihash.digest;
  const got = blake3(bytes);
  if (want.length !== got.length) return false;
  let diff = 0;
  for (let i = 0; i < got.length; i++) diff |= want[i]! ^ got[i]!;
  return diff === 0;
}

/** Throws {@link ChunkMismatchError} unless `bytes` hash to `cid`. `source` names where they came from. */
export function verifyChunk(cid: CID, bytes: Uint8Array, source: string): void {
  if (!matchesCid(cid, bytes)) throw new ChunkMismatchError(cid, source);
}
