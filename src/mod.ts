/**
 * Meshgate as a library: the kernels, the content format, the chunk store and the node.
 *
 * ```ts
 * import { MeshgateNode } from "./src/mod.ts";
 * const node = await MeshgateNode.create({ dataDir: ".meshgate" });
 * const { cid } = await node.put(ReadableStream.from([new TextEncoder().encode("hello")]), { name: "hi.txt" });
 * const bytes = await new Response(node.read(await node.manifest(cid))).text();
 * ```
 *
 * @module
 */
export * from "./kernels/mod.ts";
export {
  ChunkMismatchError,
  CID,
  cidOf,
  InvalidCidError,
  parseCid,
  verifyChunk,
} from "./content/cid.ts";
export { chunkStream, MAX_CHUNK_SIZE } from "./content/chunker.ts";
export {
  decodeManifest,
  encodeManifest,
  InvalidManifestError,
  type Manifest,
  sealManifest,
} from "./content/manifest.ts";
export {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_K,
  DEFAULT_M,
  ingest,
  type IngestOptions,
  type IngestResult,
  TooLargeError,
} from "./content/ingest.ts";
export {
  type ChunkGetter,
  readFile,
  type ReadOptions,
  UnrecoverableError,
} from "./content/read.ts";
export {
  BlockTooLargeError,
  verifiedFetch,
  VerifiedFetchError,
  type VerifiedFetchEvent,
  type VerifiedFetchOptions,
} from "./client/verified_fetch.ts";
export {
  type Eip1193Provider,
  X402Client,
  type X402ClientInit,
  X402Error,
  type X402Event,
} from "./client/x402.ts";
export { ChunkStore, StoreFullError, type StoreOptions, type StoreStats } from "./store/store.ts";
export { MeshgateNode, type NodeComponents, type NodeConfig, NotFoundError } from "./node.ts";
export { type Service, ServiceList } from "./service.ts";
export { MeshError } from "./errors.ts";
