/**
 * Reads a file's bytes from its manifest, in order, for any byte range: only the chunks the range touches
 * are fetched, a window of later chunks is prefetched while the consumer reads, and a chunk that cannot be
 * had is rebuilt from its stripe.
 */
import type { CID } from "./cid.ts";
import {
  chunkCount,
  chunkLength,
  type Manifest,
  ManifestMismatchError,
  stripeDataCount,
} from "./manifest.ts";
import { rebuildStripe } from "./stripes.ts";
import { MeshError } from "../errors.ts";

/** Fetches one chunk, verified against its CID; null when it cannot be had. */
export type ChunkGetter = (
  cid: CID,
  signal: AbortSignal,
  /** Which stripe of the manifest the chunk belongs to, so getters can work stripe by stripe. */
  stripe: number,
) => Promise<Uint8Array | null>;

export interface ReadOptions {
  /** First byte, inclusive. Default 0. */
  start?: number;
  /** Last byte, exclusive. Default: the file size. */
  end?: number;
  /** Chunks fetched ahead of the consumer. Default: one stripe (k). */
  prefetch?: number;
  signal?: AbortSignal;
  /** Called with every chunk rebuilt from its stripe, so the caller can keep it again. */
  onRepaired?: (cid: CID, bytes: Uint8Array) => void;
}

/** Raised when a stripe has lost more chunks than its parity can rebuild. */
export class UnrecoverableError extends MeshError {
  override name = "UnrecoverableError";
  constructor(stripe: number, have: number, need: number) {
    super(
      "unrecoverable",
      `Stripe ${stripe} cannot be rebuilt: ${have} of its chunks are available, ${need} are needed`,
    );
  }
}

/** A bounded lookahead reader of data chunks, sharing one rebuild per damaged stripe. */
class ChunkReader {
  #stripes = new Map<number, Promise<Uint8Array[]>>();
  /** Positions per stripe already known to be unavailable: not asked again, repaired for sure. */
  #lost = new Map<number, Set<number>>();
  #reported = new Map<number, Set<number>>();
  constructor(
    readonly manifest: Manifest,
    readonly get: ChunkGetter,
    readonly signal: AbortSignal,
    readonly onRepaired?: (cid: CID, bytes: Uint8Array) => void,
  ) {}

  async chunk(index: number): Promise<Uint8Array> {
    const { k } = this.manifest;
    const stripe = Math.floor(index / k);
    const cid = this.manifest.stripes[stripe]![index % k]!;
    const bytes = await this.get(cid, this.signal, stripe);
    if (bytes) {
      // Verified against its CID, so a length other than the declared one is the manifest's lie.
      const length = chunkLength(this.manifest, index);
      if (bytes.length !== length) {
        throw new ManifestMismatchError(cid, stripe, length, bytes.length);
      }
      return bytes;
    }
    let lost = this.#lost.get(stripe);
    if (!lost) this.#lost.set(stripe, lost = new Set());
    lost.add(index % k);
    const full = await this.#rebuild(stripe);
    // The stripe may have been rebuilt for another chunk before this one was known lost.
    this.#repaired(stripe, index % k, full);
    return full[index % k]!;
  }

  #rebuild(stripe: number): Promise<Uint8Array[]> {
    let pending = this.#stripes.get(stripe);
    if (!pending) {
      pending = this.#fetchAndRebuild(stripe);
      this.#stripes.set(stripe, pending);
    }
    return pending;
  }

  /**
   * Asks for every chunk of the stripe at once and rebuilds from the first k that arrive; the slower
   * requests are then cancelled. Chunks that were reported missing are handed to `onRepaired`.
   */
  /** Hands a rebuilt chunk to `onRepaired`, once per stripe position. */
  #repaired(stripe: number, position: number, full: Uint8Array[]): void {
    let done = this.#reported.get(stripe);
    if (!done) this.#reported.set(stripe, done = new Set());
    if (done.has(position)) return;
    done.add(position);
    this.onRepaired?.(this.manifest.stripes[stripe]![position]!, full[position]!);
  }

  async #fetchAndRebuild(stripe: number): Promise<Uint8Array[]> {
    const cids = this.manifest.stripes[stripe]!;
    const need = stripeDataCount(this.manifest, stripe);
    const have: (Uint8Array | null)[] = cids.map(() => null);
    const lost = this.#lost.get(stripe) ?? new Set<number>();
    const missing = cids.map((_, i) => lost.has(i));
    const spares = new AbortController();
    const signal = AbortSignal.any([this.signal, spares.signal]);
    let count = 0;
    let settled = 0;
    const asks: Promise<Uint8Array | null>[] = [];
    await new Promise<void>((resolve) => {
      cids.forEach((cid, i) => {
        const ask = missing[i] ? Promise.resolve(null) : this.get(cid, signal, stripe);
        asks.push(ask);
        ask.then(
          (bytes) => {
            if (!bytes) missing[i] = true;
            else if (count < need) (have[i] = bytes, count++);
          },
          () => {},
        ).finally(() => {
          if (count >= need || ++settled === cids.length) resolve();
        });
      });
    });
    spares.abort();
    this.signal.throwIfAborted();
    if (count < need) {
      // One more round for the positions that failed before the stripe counts as lost: a holder that was
      // down a moment ago (restarting) may be back.
      await Promise.all(cids.map(async (cid, i) => {
        if (have[i]) return;
        const bytes = await this.get(cid, this.signal, stripe).catch(() => null);
        if (bytes && count < need) (have[i] = bytes, missing[i] = false, count++);
      }));
      this.signal.throwIfAborted();
    }
    if (count < need) throw new UnrecoverableError(stripe, count, need);
    const full = rebuildStripe(this.manifest, stripe, have);
    // Every chunk that turns out missing gets its rebuilt bytes, also those whose answer comes late.
    asks.forEach((ask, i) => {
      if (missing[i]) this.#repaired(stripe, i, full);
      else if (!have[i]) ask.then((bytes) => bytes || this.#repaired(stripe, i, full), () => {});
    });
    return full;
  }
}

/** Streams bytes [start, end) of the file described by `manifest`. */
export function readFile(
  manifest: Manifest,
  get: ChunkGetter,
  options: ReadOptions = {},
): ReadableStream<Uint8Array> {
  const start = options.start ?? 0;
  const end = options.end ?? manifest.size;
  if (!(start >= 0 && start <= end && end <= manifest.size)) {
    throw new RangeError(`Byte range "${start}-${end}" is outside 0-${manifest.size}`);
  }
  const { chunkSize } = manifest;
  const first = Math.floor(start / chunkSize);
  const last = end > start ? Math.min(Math.ceil(end / chunkSize), chunkCount(manifest)) : first;
  const window = Math.max(1, options.prefetch ?? manifest.k);
  const abort = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, abort.signal]) : abort.signal;
  const reader = new ChunkReader(manifest, get, signal, options.onRepaired);
  const queue: Promise<Uint8Array>[] = [];
  let next = first;
  // The window is topped up a quarter at a time, not chunk by chunk: chunks asked together go out
  // together (a getter may batch them into one request per holder, see mesh/batch.ts).
  const step = Math.max(1, Math.floor(window / 4));
  const fill = () => {
    if (queue.length > 0 && window - queue.length < step) return;
    while (next < last && queue.length < window) {
      const p = reader.chunk(next++);
      p.catch(() => {}); // surfaced when its turn comes
      queue.push(p);
    }
  };
  let index = first;

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (index >= last) {
        controller.close();
        return;
      }
      fill();
      const bytes = await queue.shift()!;
      const offset = index * chunkSize;
      const from = Math.max(0, start - offset);
      const to = Math.min(chunkLength(manifest, index), end - offset);
      index++;
      controller.enqueue(from === 0 && to === bytes.length ? bytes : bytes.subarray(from, to));
      fill();
    },
    cancel(reason) {
      abort.abort(reason);
    },
  }, { highWaterMark: 0 });
}
