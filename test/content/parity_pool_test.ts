import assert from "node:assert/strict";
import { ParityPool } from "../../src/content/parity_pool.ts";
import { encodeParity } from "../../src/content/stripes.ts";
import { MeshError } from "../../src/errors.ts";
import { randomBytes } from "../_util.ts";

/** A small deterministic generator, so a failing case can be replayed from its seed. */
function rng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

function shared(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(new SharedArrayBuffer(bytes.length));
  out.set(bytes);
  return out;
}

/** k chunks of `size` bytes, the last `last` bytes long. */
function stripe(k: number, size: number, last = size): Uint8Array[] {
  return Array.from({ length: k }, (_, i) => randomBytes(i === k - 1 ? last : size));
}

async function withPool(fn: (pool: ParityPool) => Promise<void>, size = 2) {
  const pool = new ParityPool(size);
  try {
    await fn(pool);
  } finally {
    pool.close();
  }
}

Deno.test("ParityPool.encode() gives encodeParity's parity for random stripes, plain and shared", () =>
  withPool(async (pool) => {
    const next = rng(7);
    for (let n = 0; n < 40; n++) {
      const k = 1 + next(40);
      const m = 1 + next(8);
      const size = [1, 64, 1000, 4096, 65536, 100_003][next(6)]!;
      const last = next(3) === 0 ? size : 1 + next(size);
      const data = stripe(k, size, last);
      const copy = data.map((d) => d.slice());
      const input = n % 2 ? data.map(shared) : data;
      const got = await pool.encode(input, m);
      const what = `case ${n}: k=${k} m=${m} size=${size} last=${last} ${
        n % 2 ? "shared" : "plain"
      }`;
      assert.deepEqual(got, encodeParity(data, m), what);
      assert.ok(got.length === m && got.every((p) => p.length === data[0]!.length), what);
      assert.deepEqual(data, copy, `${what}: the caller's chunks are untouched`);
    }
  }));

Deno.test("ParityPool.encode() zero-pads a short chunk in a reused stripe buffer", () =>
  withPool(async (pool) => {
    // Same shape twice: the second stripe is packed into the buffer the first one came back in.
    const full = stripe(6, 5000);
    await pool.encode(full, 3);
    const short = stripe(6, 5000, 17);
    assert.deepEqual(await pool.encode(short, 3), encodeParity(short, 3));
    const shortFirst = [randomBytes(5000), randomBytes(3), randomBytes(4999), ...stripe(3, 5000)];
    assert.deepEqual(await pool.encode(shortFirst, 3), encodeParity(shortFirst, 3));
  }, 1));

Deno.test("ParityPool.encode() with many stripes in flight resolves each with its own parity", () =>
  withPool(async (pool) => {
    const next = rng(11);
    const jobs = Array.from({ length: 48 }, (_, n) => {
      const k = 1 + next(24);
      const m = 1 + next(6);
      const size = 1 + next(40_000);
      const data = stripe(k, size, 1 + next(size));
      return { data: n % 3 ? data : data.map(shared), m, want: encodeParity(data, m) };
    });
    const results = jobs.map(({ data, m }) => pool.encode(data, m));
    assert.equal(pool.pending, 48);
    assert.equal(pool.workers, 2, "the work is spread over the pool");
    const got = await Promise.all(results);
    got.forEach((parity, n) => assert.deepEqual(parity, jobs[n]!.want, `stripe ${n}`));
    assert.equal(pool.pending, 0);
  }));

Deno.test("ParityPool.encode() rejects bad arguments with the errors encodeParity throws", () =>
  withPool(async (pool) => {
    const ok = stripe(3, 100);
    const cases: [string, unknown, unknown][] = [
      ["m = -1", ok, -1],
      ["m = 1.5", ok, 1.5],
      ["m = NaN", ok, NaN],
      ['m = "2"', ok, "2"],
      ["k + m = 257", stripe(250, 8), 7],
      ["a null chunk", [randomBytes(10), null, randomBytes(10)], 2],
      ["an array as chunk", [[1, 2, 3], randomBytes(3)], 2],
      ["an empty first chunk", [new Uint8Array(0), new Uint8Array(0)], 2],
      ["a chunk longer than the first", [randomBytes(10), randomBytes(11)], 2],
      ["data = null", null, 2],
      ["data = a string", "abc", 2],
    ];
    for (const [what, data, m] of cases) {
      let want: Error | undefined;
      try {
        encodeParity(data as Uint8Array[], m as number);
      } catch (e) {
        want = e as Error;
      }
      assert.ok(want, `${what}: encodeParity throws`);
      await assert.rejects(pool.encode(data as Uint8Array[], m as number), (e: Error) => {
        assert.equal(e.constructor, want!.constructor, what);
        assert.equal(e.name, want!.name, what);
        assert.equal(e.message, want!.message, what);
        return true;
      });
    }
    // What encodeParity lets through, the pool does too, with the same result.
    const odd = [randomBytes(10), 5 as unknown as Uint8Array];
    assert.deepEqual(await pool.encode(odd, 2), encodeParity(odd, 2));
    const unclonable = [() => 1, randomBytes(3)] as unknown as Uint8Array[];
    await assert.rejects(pool.encode(unclonable, 2), (e: Error) => e.name === "DataCloneError");
    assert.deepEqual(await pool.encode(ok, 0), []);
    assert.deepEqual(await pool.encode([], 4), []);
    // A failed job leaves the pool working.
    assert.deepEqual(await pool.encode(ok, 2), encodeParity(ok, 2));
  }));

Deno.test("ParityPool.close() stops the workers and rejects jobs in flight and later calls", async () => {
  const pool = new ParityPool(2);
  const data = stripe(40, 256 * 1024);
  const jobs = Array.from({ length: 6 }, () => pool.encode(data, 6));
  assert.equal(pool.workers, 2);
  pool.close();
  assert.equal(pool.workers, 0);
  assert.equal(pool.pending, 0);
  for (const job of jobs) {
    await assert.rejects(job, (e: unknown) => e instanceof MeshError && e.code === "pool_closed");
  }
  await assert.rejects(pool.encode(data, 2), /The parity pool is closed/);
  pool.close(); // twice is fine
});

Deno.test("ParityPool starts workers on demand and stops them when idle", async () => {
  const pool = new ParityPool(3, { idleTimeout: 50 });
  try {
    assert.equal(pool.workers, 0, "no worker before the first job");
    const data = stripe(4, 1000);
    assert.deepEqual(await pool.encode(data, 2), encodeParity(data, 2));
    assert.equal(pool.workers, 1, "one job needs one worker");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(pool.workers, 0, "idle workers stopped");
    assert.deepEqual(await pool.encode(data, 3), encodeParity(data, 3), "and start again");
  } finally {
    pool.close();
  }
});

Deno.test("new ParityPool() checks its size and timeout", () => {
  assert.throws(() => new ParityPool(0), /Pool size "0" must be an integer in 1..256/);
  assert.throws(() => new ParityPool(1.5), RangeError);
  assert.throws(() => new ParityPool(2, { idleTimeout: -1 }), /Idle timeout "-1"/);
  const pool = new ParityPool();
  assert.equal(pool.size, navigator.hardwareConcurrency);
  pool.close();
});

Deno.test("ingest with a cold pool: the first stripe's parity does not wait for a worker to start", () =>
  withPool(async (pool) => {
    const { ingest } = await import("../../src/content/ingest.ts");
    const file = randomBytes(4 * 8 * 1024);
    const readyAtStripe: number[] = [];
    const sealed = new Map<string, Uint8Array>();
    const withPoolResult = await ingest(
      ReadableStream.from([file]),
      (cid, bytes) => Promise.resolve(void sealed.set(cid.toString(), bytes)),
      {
        chunkSize: 1024,
        k: 8,
        m: 2,
        parityPool: pool,
        onStripe: (i) => Promise.resolve(void (readyAtStripe[i] = pool.ready)),
      },
    );
    // Computed here while the workers started: none was ready when the first stripe was sealed.
    assert.equal(readyAtStripe[0], 0, `${readyAtStripe[0]} workers ready at the first stripe`);
    assert.equal(pool.workers, 2, "the workers were started for the stripes to come");
    // The same file, parity and all, as without a pool.
    const plain = await ingest(ReadableStream.from([file]), () => Promise.resolve(), {
      chunkSize: 1024,
      k: 8,
      m: 2,
    });
    assert.equal(withPoolResult.cid.toString(), plain.cid.toString());
  }));
