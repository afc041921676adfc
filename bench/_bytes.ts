/** Bytes for the mesh benches: a random file, and a stream of it in 1 MiB pieces (an upload's body). */

const MiB = 1024 * 1024;

/** `size` random bytes (getRandomValues fills at most 64 KiB a call). */
export function randomFile(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  }
  return out;
}

/** `bytes` as a stream of 1 MiB views, pulled as the reader asks. */
export function streamOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      c.enqueue(bytes.subarray(at, at += MiB));
    },
  });
}
