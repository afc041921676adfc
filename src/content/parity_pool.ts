/**
 * Stripe parity on a pool of Web Workers, each with its own instance of the erasure kernel, so that the
 * Reed–Solomon arithmetic of several stripes runs on several cores while the main thread reads, hashes
 * and writes.
 *
 * A stripe's data chunks are copied into one buffer (zero-padded to the first chunk's length, as
 * `encodeParity` pads them) and that buffer is transferred, not cloned: the caller keeps its chunks
 * untouched and may hand them to a sink at the same time. Parity comes back as transferred buffers, and
 * the packed buffer returns to be filled again by the next stripe.
 *
 * Chunks that all live in SharedArrayBuffers skip the copy: the worker reads them in place. That is
 * faster, but a worker's isolate keeps each shared buffer alive until its own garbage collector runs,
 * which it seldom does: measured in a server taking a 200 MiB upload, ~40 MiB more resident memory than
 * with copies. Ordinary chunks are the safe default.
 *
 * Workers start on the first job and stop after `idleTimeout` without work: Deno's `Worker` has no
 * `unref()`, so an idle worker would otherwise keep the process alive. Call {@link ParityPool.close}
 * when done all the same (tests' sanitizers require it).
 *
 * @module
 */
import { MeshError } from "../errors.ts";

/**
 * A job for a worker: a packed stripe; chunks on shared memory, read in place; or, for arguments that
 * cannot be sent either way, the arguments as given.
 */
export type ParityRequest =
  | { id: number; kind: "stripe"; buffer: ArrayBuffer; count: number; size: number; m: number }
  | { id: number; kind: "shared"; data: Uint8Array[]; m: number }
  | { id: number; kind: "args"; data: unknown; m: unknown };

/** A worker's answer: ready to take jobs, parity for job `id`, or the error the job threw. */
export type ParityReply =
  | { ready: true }
  | { id: number; parity: ArrayBuffer[]; buffer?: ArrayBuffer }
  | { id: number; error: { name: string; message: string }; buffer?: ArrayBuffer };

export interface ParityPoolOptions {
  /**
   * Milliseconds without work after which the workers stop (they start again on the next job).
   * Default 1000; `Infinity` keeps them until {@link ParityPool.close}.
   */
  idleTimeout?: number;
}

interface Slot {
  worker: Worker;
  ready: boolean;
  /** Jobs posted before the worker said it was ready. */
  waiting: { req: ParityRequest; transfer: ArrayBuffer[] }[];
  /** Bytes of the jobs given to this worker and not answered yet: how busy it is. */
  load: number;
  jobs: Set<number>;
}

interface Job {
  slot: Slot;
  bytes: number;
  resolve: (parity: Uint8Array[]) => void;
  reject: (error: Error) => void;
}

const WORKER_URL = new URL("./_parity_worker.ts", import.meta.url);

function rebuildError({ name, message }: { name: string; message: string }): Error {
  const error = name === "TypeError"
    ? new TypeError(message)
    : name === "RangeError"
    ? new RangeError(message)
    : new Error(message);
  if (error.name !== name) error.name = name;
  return error;
}

/**
 * How a stripe can travel to a worker: "shared" when every chunk lives in a SharedArrayBuffer (the worker
 * reads it in place), "packed" when the chunks are valid but not shared (copied into one buffer), or
 * "args" when `encodeParity` would reject them.
 */
function shapeOf(data: unknown, m: unknown): "shared" | "packed" | "args" {
  if (!Array.isArray(data) || data.length === 0) return "args";
  if (typeof m !== "number" || !Number.isInteger(m) || m < 1 || data.length + m > 256) {
    return "args";
  }
  const first = data[0];
  if (!(first instanceof Uint8Array) || first.length === 0) return "args";
  let shared = true;
  for (const d of data) {
    if (!(d instanceof Uint8Array) || d.length > first.length) return "args";
    shared &&= d.buffer instanceof SharedArrayBuffer;
  }
  return shared ? "shared" : "packed";
}

/**
 * A pool of workers computing the same parity as `encodeParity` (stripes.ts), several stripes at once.
 *
 * @example
 * ```ts
 * const pool = new ParityPool(2);
 * try {
 *   const parity = await pool.encode(dataChunks, 4); // 4 parity chunks, as encodeParity(dataChunks, 4)
 * } finally {
 *   pool.close();
 * }
 * ```
 */
export class ParityPool {
  /** Most workers the pool runs at once. */
  readonly size: number;
  readonly idleTimeout: number;
  #slots: Slot[] = [];
  #jobs = new Map<number, Job>();
  #nextId = 1;
  #closed = false;
  #idle: ReturnType<typeof setTimeout> | undefined;
  /**
   * Packed-stripe buffers back from the workers, for the next stripes of the same shape: filling a fresh
   * buffer costs several times more than filling a used one (page faults). At most as many as jobs were
   * in flight at once, and dropped when the pool goes idle.
   */
  #spare: ArrayBuffer[] = [];
  #peak = 0;

  /**
   * @param size number of workers, default `navigator.hardwareConcurrency`
   * @throws {RangeError} if size is not an integer in 1..256 or the idle timeout is negative
   */
  constructor(size: number = navigator.hardwareConcurrency, options: ParityPoolOptions = {}) {
    if (!Number.isInteger(size) || size < 1 || size > 256) {
      throw new RangeError(`Pool size "${size}" must be an integer in 1..256`);
    }
    const idleTimeout = options.idleTimeout ?? 1000;
    if (!(idleTimeout >= 0)) {
      throw new RangeError(`Idle timeout "${idleTimeout}" must be a number of milliseconds >= 0`);
    }
    this.size = size;
    this.idleTimeout = idleTimeout;
  }

  /** Workers running now (they start on demand and stop when idle). */
  get workers(): number {
    return this.#slots.length;
  }

  /** Workers started and ready to take a job now. */
  get ready(): number {
    return this.#slots.filter((s) => s.ready).length;
  }

  /**
   * Starts the workers the pool may run, without a job: a worker takes a while to start (hundreds of ms on
   * a loaded machine), which an upload spends on its first stripes (`ingest` computes parity on the calling
   * thread until one is {@link ready}). They stop again after `idleTimeout` if no job comes. No-op once closed.
   */
  warm(): void {
    if (this.#closed) return;
    while (this.#slots.length < this.size) this.#spawn();
    if (this.#jobs.size === 0) this.#armIdle();
  }

  /** Jobs handed to workers and not answered yet. */
  get pending(): number {
    return this.#jobs.size;
  }

  /**
   * The m parity chunks of one stripe, byte-identical to `encodeParity(data, m)`: the data chunks, the
   * first the longest, shorter ones zero-padded for the arithmetic only. Several calls may be in flight,
   * each resolving with its own stripe's parity. The chunks are never changed. Ordinary chunks are copied
   * at the call; chunks that all live in SharedArrayBuffers are read in place by the worker, so they must
   * not change until the promise settles (and cost the calling thread nothing).
   * Rejects with the error `encodeParity` throws for the same arguments, with the message of an error
   * inside a worker, or with a `MeshError` ("pool_closed") once {@link close} was called.
   */
  encode(data: Uint8Array[], m: number): Promise<Uint8Array[]> {
    if (this.#closed) {
      return Promise.reject(new MeshError("pool_closed", "The parity pool is closed"));
    }
    const shape = shapeOf(data, m);
    if (shape === "args" && (m === 0 || (Array.isArray(data) && data.length === 0))) {
      return Promise.resolve([]);
    }
    const id = this.#nextId++;
    let req: ParityRequest;
    let transfer: ArrayBuffer[] = [];
    // Load counts the stripe's data bytes; an arguments job is expected to fail fast.
    const bytes = shape === "args" ? 1 : data.length * data[0]!.length;
    if (shape === "shared") req = { id, kind: "shared", data, m };
    else if (shape === "packed") {
      const buffer = this.#pack(data, data[0]!.length);
      req = { id, kind: "stripe", buffer, count: data.length, size: data[0]!.length, m };
      transfer = [buffer];
    } else {
      // Let the worker run encodeParity's own steps on a copy, so that it fails the same way.
      req = { id, kind: "args", data, m };
    }
    const slot = this.#pick();
    const { promise, resolve, reject } = Promise.withResolvers<Uint8Array[]>();
    this.#jobs.set(id, { slot, bytes, resolve, reject });
    this.#peak = Math.max(this.#peak, this.#jobs.size);
    slot.jobs.add(id);
    slot.load += bytes;
    clearTimeout(this.#idle);
    this.#idle = undefined;
    if (slot.ready) this.#post(slot, req, transfer);
    else slot.waiting.push({ req, transfer });
    return promise;
  }

  #post(slot: Slot, req: ParityRequest, transfer: ArrayBuffer[]): void {
    try {
      slot.worker.postMessage(req, transfer);
    } catch (e) {
      // Only arguments can fail to clone (functions, symbols): that is this job's error alone.
      this.#settle(req.id)?.reject(e as Error);
    }
  }

  /** Stops every worker now; jobs not answered yet reject. Further calls to encode reject. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#stopAll(
      new MeshError("pool_closed", "The parity pool was closed before the job finished"),
    );
  }

  #pack(data: Uint8Array[], size: number): ArrayBuffer {
    const bytes = data.length * size;
    const at = this.#spare.findIndex((b) => b.byteLength === bytes);
    const reused = at >= 0;
    const buffer = reused ? this.#spare.splice(at, 1)[0]! : new ArrayBuffer(bytes);
    const view = new Uint8Array(buffer);
    for (let i = 0; i < data.length; i++) {
      const d = data[i]!;
      view.set(d, i * size);
      // A fresh buffer is zeros; a reused one still holds the last stripe's bytes past a short chunk.
      if (reused && d.length < size) view.fill(0, i * size + d.length, (i + 1) * size);
    }
    return buffer;
  }

  /** The least busy worker, starting a new one while the pool is below its size and all are busy. */
  #pick(): Slot {
    let best: Slot | undefined;
    for (const slot of this.#slots) if (!best || slot.load < best.load) best = slot;
    if (best && (best.load === 0 || this.#slots.length >= this.size)) return best;
    return this.#spawn();
  }

  #spawn(): Slot {
    const worker = new Worker(WORKER_URL, { type: "module" });
    const slot: Slot = { worker, ready: false, waiting: [], load: 0, jobs: new Set() };
    worker.onmessage = (event: MessageEvent<ParityReply>) => this.#onReply(slot, event.data);
    worker.onerror = (event: ErrorEvent) => {
      // Handled here: unhandled, a worker's error would end the whole process.
      event.preventDefault();
      this.#fail(slot, new Error(event.message || "A parity worker failed"));
    };
    worker.onmessageerror = () => {
      this.#fail(slot, new Error("A parity worker's answer could not be read"));
    };
    this.#slots.push(slot);
    return slot;
  }

  #onReply(slot: Slot, reply: ParityReply): void {
    if ("ready" in reply) {
      slot.ready = true;
      for (const { req, transfer } of slot.waiting) this.#post(slot, req, transfer);
      slot.waiting = [];
      return;
    }
    const job = this.#settle(reply.id);
    if (reply.buffer) {
      // Newest kept, oldest dropped: when the stripe shape changes, the old shape's buffers go first.
      this.#spare.push(reply.buffer);
      if (this.#spare.length > this.#peak) this.#spare.shift();
    }
    if (!job) return;
    if ("error" in reply) job.reject(rebuildError(reply.error));
    else job.resolve(reply.parity.map((b) => new Uint8Array(b)));
  }

  /** Forgets job `id`; starts the idle countdown when it was the last one. */
  #settle(id: number): Job | undefined {
    const job = this.#jobs.get(id);
    if (!job) return undefined;
    this.#jobs.delete(id);
    job.slot.jobs.delete(id);
    job.slot.load -= job.bytes;
    if (this.#jobs.size === 0) this.#armIdle();
    return job;
  }

  /** Stops the workers after `idleTimeout` unless a job comes first. */
  #armIdle(): void {
    if (this.#closed || !Number.isFinite(this.idleTimeout)) return;
    clearTimeout(this.#idle);
    this.#idle = setTimeout(() => {
      this.#idle = undefined;
      if (this.#jobs.size === 0) this.#stopAll(new Error("unreachable: no jobs"));
    }, this.idleTimeout);
  }

  /** A worker died: its jobs reject with its message; the next job starts a fresh worker. */
  #fail(slot: Slot, error: Error): void {
    slot.worker.terminate();
    this.#slots = this.#slots.filter((s) => s !== slot);
    for (const id of [...slot.jobs]) this.#settle(id)?.reject(error);
  }

  #stopAll(error: Error): void {
    clearTimeout(this.#idle);
    this.#idle = undefined;
    const slots = this.#slots;
    this.#slots = [];
    this.#spare = [];
    this.#peak = 0;
    for (const slot of slots) {
      slot.worker.terminate();
      for (const id of [...slot.jobs]) this.#settle(id)?.reject(error);
    }
    // #settle may have armed the idle timer while rejecting; nothing is left to stop.
    clearTimeout(this.#idle);
    this.#idle = undefined;
  }
}
