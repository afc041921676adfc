/**
 * Stripe parity on the worker pool against `encodeParity` on the calling thread: eight stripes of
 * 256 KiB chunks per iteration, all in flight at once on the pool, one after another on the single thread.
 * Groups end with the data bytes per iteration. Run: `deno bench -A bench/parity_pool_bench.ts`.
 *
 * "meshgate pool" gets ordinary chunks, as ingest makes them: the pool copies each stripe into one
 * transferable buffer on the calling thread. "shared chunks" gets chunks that live in SharedArrayBuffers,
 * which the workers read in place with no copy (faster here, but see parity_pool.ts on memory).
 *
 * The pool is never closed here: Deno.bench has no teardown hook, and its workers stop by themselves one
 * second after the last job, which lets the process end.
 */
import { ParityPool } from "../src/content/parity_pool.ts";
import { encodeParity } from "../src/content/stripes.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const STRIPES = 8;
const CHUNK = 256 * KiB;

function randomBytes(size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) {
    crypto.getRandomValues(out.subarray(at, Math.min(size, at + 65536)));
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

const pool = new ParityPool(2);

function sharedCopy(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(bytes.length));
  out.set(bytes);
  return out;
}

for (const [k, m] of [[10, 4], [40, 6]] as const) {
  const stripes = Array.from(
    { length: STRIPES },
    () => Array.from({ length: k }, () => randomBytes(CHUNK)),
  );
  const shared = stripes.map((data) => data.map(sharedCopy));
  // Check once that all agree (and start the workers) before anything is timed.
  const want = encodeParity(stripes[0]!, m);
  for (const data of [stripes[0]!, shared[0]!]) {
    const got = await pool.encode(data, m);
    if (!got.every((p, i) => sameBytes(p, want[i]!))) {
      throw new Error(`pool parity differs from encodeParity on ${k}+${m}`);
    }
  }
  const group = `stripe parity ${k}+${m} x 256 KiB, ${STRIPES} stripes · ${
    (STRIPES * k * CHUNK) / MiB
  } MiB`;

  Deno.bench({
    name: `meshgate pool (${pool.size} workers)`,
    group,
    baseline: true,
    async fn() {
      await Promise.all(stripes.map((data) => pool.encode(data, m)));
    },
  });

  Deno.bench({
    name: `meshgate pool, shared chunks (${pool.size} workers)`,
    group,
    async fn() {
      await Promise.all(shared.map((data) => pool.encode(data, m)));
    },
  });

  Deno.bench({
    name: "single thread",
    group,
    fn() {
      for (const data of stripes) encodeParity(data, m);
    },
  });
}
