/** Turns a byte stream into stored chunks and a manifest: chunk, hash, stripe, parity, seal. */
import { type CID, cidOf } from "./cid.ts";
import { chunkStream, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "./chunker.ts";
import { type Manifest, MAX_MANIFEST_BYTES, sealManifest } from "./manifest.ts";
import { encodeParity } from "./stripes.ts";
import type { ParityPool } from "./parity_pool.ts";
import { MeshError } from "../errors.ts";
import { formatBytes } from "../units.ts";

/** Default chunk size: small enough that a Range starts fast, large enough that per-chunk costs fade. */
export const DEFAULT_CHUNK_SIZE = 256 * 1024;
/** Default stripe: 20 data + 4 parity = 20% overhead; any 4 of a stripe's 24 holders may be lost. */
export const DEFAULT_K = 20;
export const DEFAULT_M = 4;

/** Receives each chunk (data, parity, then the manifest last). Resolves once it is safely kept. */
export type ChunkSink = (cid: CID, bytes: Uint8Array) => Promise<unknown>;

export interface IngestOptions {
  name?: string;
  /** Media type. Default: application/octet-stream. */
  type?: string;
  /** Data chunk size. Default: {@link chooseChunkSize} of `expectedSize`. */
  chunkSize?: number;
  k?: number;
  m?: number;
  /** Declared size, when known (Content-Length): lets the chunk size grow so the manifest fits. */
  expectedSize?: number;
  /** Refuse (413) more bytes than this. */
  maxBytes?: number;
  /** Chunks handed to the sink at once. Default 16. */
  concurrency?: number;
  /** Computes stripe parity on worker threads. Default: on the calling thread, one stripe at a time. */
  parityPool?: Pick<ParityPool, "encode" | "size"> & Partial<Pick<ParityPool, "ready" | "warm">>;
  /** Stripes whose parity may be in the works at once with a pool. Default: the pool's size + 1. */
  stripesInFlight?: number;
  signal?: AbortSignal;
  onProgress?: (bytesRead: number) => void;
  /** Called with each stripe once sealed (data and parity chunks, in order), while the upload goes on: the
   * mesh places it at once. Awaited, so it holds the upload back while it is busy. Default: none. */
  onStripe?: (index: number, cids: CID[], chunks: Uint8Array[]) => Promise<unknown>;
}

export interface IngestResult {
  cid: CID;
  manifest: Manifest;
}

/** Raised when an upload exceeds its size limit. */
export class TooLargeError extends MeshError {
  override name = "TooLargeError";
  constructor(limit: number) {
    super("too_large", `The upload exceeds the ${formatBytes(limit)} limit (${limit} bytes)`);
  }
}

// A CID link costs ~66 bytes in a dag-json manifest.
const LINK_BYTES = 70;

/** The smallest power-of-two chunk size >= the default that keeps a `size`-byte file's manifest in bounds. */
export function chooseChunkSize(size = 0, k = DEFAULT_K, m = DEFAULT_M): number {
  let chunkSize = DEFAULT_CHUNK_SIZE;
  const links = (cs: number) => Math.ceil(size / cs) * (1 + m / k) + m;
  while (chunkSize < MAX_CHUNK_SIZE && links(chunkSize) * LINK_BYTES > MAX_MANIFEST_BYTES * 0.9) {
    chunkSize *= 2;
  }
  return chunkSize;
}

function checkChunkSize(chunkSize: number): void {
  if (!Number.isInteger(chunkSize) || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    throw new MeshError(
      "bad_request",
      `Chunk size "${chunkSize}" is invalid: need an integer in ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE}`,
    );
  }
}

function checkStripe(k: number, m: number): void {
  if (!Number.isInteger(k) || !Number.isInteger(m) || k < 1 || m < 0 || k + m > 256) {
    throw new MeshError(
      "bad_request",
      `Stripe "k=${k}, m=${m}" is invalid: need integers with k >= 1, m >= 0, k + m <= 256`,
    );
  }
}

/** Streams `source` into `sink` as striped chunks; returns the manifest's CID. Holds one stripe in memory. */
export async function ingest(
  source: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
  sink: ChunkSink,
  options: IngestOptions = {},
): Promise<IngestResult> {
  const k = options.k ?? DEFAULT_K;
  const m = options.m ?? DEFAULT_M;
  checkStripe(k, m);
  const chunkSize = options.chunkSize ?? chooseChunkSize(options.expectedSize, k, m);
  checkChunkSize(chunkSize);
  const limit = options.maxBytes ?? Infinity;
  if (options.expectedSize !== undefined && options.expectedSize > limit) {
    throw new TooLargeError(limit);
  }

  const pending = new Set<Promise<unknown>>();
  const concurrency = options.concurrency ?? 16;
  let failure: unknown;
  const emit = async (cid: CID, bytes: Uint8Array) => {
    if (failure) throw failure;
    while (pending.size >= concurrency) await Promise.race(pending);
    if (failure) throw failure;
    const p: Promise<unknown> = sink(cid, bytes).catch((e) => failure ??= e).finally(() =>
      pending.delete(p)
    );
    pending.add(p);
  };

  const stripes: CID[][] = [];
  let data: Uint8Array[] = [];
  let cids: CID[] = [];
  const pool = options.parityPool;
  // Memory stays bounded: at most this many stripes (data + parity) wait for their parity at once.
  const inFlight = pool ? Math.max(1, options.stripesInFlight ?? pool.size + 1) : 1;
  const closing: Promise<void>[] = [];
  const closeStripe = async (last: boolean) => {
    const stripeData = data;
    const stripeCids = cids;
    // Its place in the manifest is taken now; its parity CIDs are appended when they arrive.
    const index = stripes.push(stripeCids) - 1;
    data = [];
    cids = [];
    // Until a worker has started (the first stripes of an upload to a cold pool), the parity is computed
    // here, a few ms a stripe, while the workers start for the stripes to come: one takes hundreds of ms.
    const cold = pool !== undefined && pool.ready !== undefined && pool.ready === 0;
    if (cold && !last) pool.warm?.();
    const parity = pool && !cold
      ? pool.encode(stripeData, m)
      : Promise.resolve(encodeParity(stripeData, m));
    const done = parity.then(async (chunks) => {
      for (const chunk of chunks) {
        const cid = cidOf(chunk);
        stripeCids.push(cid);
        await emit(cid, chunk);
      }
      await options.onStripe?.(index, stripeCids, [...stripeData, ...chunks]);
    });
    done.catch(() => {}); // surfaced by the await below or in finally
    closing.push(done);
    while (closing.length >= inFlight) await closing.shift();
  };

  let size = 0;
  try {
    for await (const chunk of chunkStream(source, chunkSize)) {
      options.signal?.throwIfAborted();
      size += chunk.length;
      if (size > limit) throw new TooLargeError(limit);
      options.onProgress?.(size);
      const cid = cidOf(chunk);
      data.push(chunk);
      cids.push(cid);
      await emit(cid, chunk);
      if (data.length === k) await closeStripe(false);
    }
    if (data.length) await closeStripe(true);
    while (closing.length) await closing.shift();
  } finally {
    // Settle every stripe and write before returning or throwing, so a caller cleaning up sees them all.
    await Promise.allSettled(closing);
    await Promise.allSettled(pending);
  }
  if (failure) throw failure;

  const manifest: Manifest = {
    name: options.name ?? "",
    type: options.type ?? "application/octet-stream",
    size,
    chunkSize,
    k,
    m,
    stripes,
  };
  const sealed = sealManifest(manifest);
  await sink(sealed.cid, sealed.bytes);
  return { cid: sealed.cid, manifest };
}
