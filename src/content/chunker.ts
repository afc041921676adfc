/** Cuts a byte stream into fixed-size chunks without ever holding more than one chunk. */

/** Largest chunk Meshgate accepts from anyone: the ecosystem-safe block limit is 2 MiB, ours is 1 MiB. */
export const MAX_CHUNK_SIZE = 1 << 20;
/** Smallest chunk size an upload may ask for. */
export const MIN_CHUNK_SIZE = 1 << 10;

/**
 * Yields `chunkSize`-byte chunks of `source` in order; only the last may be shorter. An empty source yields
 * nothing. Each yielded array is freshly allocated, so consumers may keep it.
 */
export async function* chunkStream(
  source: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
  chunkSize: number,
): AsyncGenerator<Uint8Array> {
  if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_CHUNK_SIZE) {
    throw new RangeError(`Chunk size "${chunkSize}" must be an integer in 1..${MAX_CHUNK_SIZE}`);
  }
  let chunk = new Uint8Array(chunkSize);
  let filled = 0;
  for await (const piece of source as AsyncIterable<Uint8Array>) {
    let offset = 0;
    while (offset < piece.length) {
      const n = Math.min(chunkSize - filled, piece.length - offset);
      chunk.set(piece.subarray(offset, offset + n), filled);
      filled += n;
      offset += n;
      if (filled === chunkSize) {
        yield chunk;
        chunk = new Uint8Array(chunkSize);
        filled = 0;
      }
    }
  }
  if (filled > 0) yield chunk.slice(0, filled);
}
