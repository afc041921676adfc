/**
 * A dilated clock for the mesh simulation (./sim.ts): while installed, `setTimeout`, `setInterval`,
 * `AbortSignal.timeout`, `performance.now` and `Date.now` run on a virtual time that advances `factor` times
 * slower than the wall clock, and the factor follows the event loop's lag.
 *
 * Why: a thousand nodes share one thread (and this machine is shared). Starved of CPU, every timer of every
 * node fires at once, late: pings, handshakes and DHT requests time out by the thousand, which measures the
 * thread, not the mesh (a diagnosed 200-node run lost lookups with 5-43 s of loop lag and no answer at all).
 * Slowing time until the thread keeps up gives each node, in virtual time, the CPU a machine of its own would
 * have; latencies, timeouts and churn all scale together, and measured times are virtual milliseconds.
 *
 * @module
 */

interface Timer {
  id: number;
  /** Virtual time it is due. */
  due: number;
  fn: () => void;
  /** Period of an interval, virtual ms. */
  every?: number;
  /** Insertion order, to run timers due at the same time in the order they were set. */
  seq: number;
}

/** Options of {@link DilatedClock}. */
export interface DilatedClockInit {
  /** Smallest and largest dilation (wall ms per virtual ms). Default 1 and 100. */
  min?: number;
  max?: number;
  /** Dilation at install. Default `min`. */
  initial?: number;
  /** Loop lag (virtual ms) above which time slows further, and below which it speeds up. Default 20, 5. */
  slowLagMs?: number;
  fastLagMs?: number;
}

/** See the module doc. One may be installed at a time. */
export class DilatedClock {
  readonly min: number;
  readonly max: number;
  readonly slowLagMs: number;
  readonly fastLagMs: number;
  #factor: number;
  #realNow = performance.now.bind(performance);
  #realDateNow = Date.now;
  #realSetTimeout = globalThis.setTimeout;
  #realClearTimeout = globalThis.clearTimeout;
  #realSetInterval = globalThis.setInterval;
  #realClearInterval = globalThis.clearInterval;
  #realAbortTimeout = AbortSignal.timeout;
  #realPerfNow = performance.now;
  /** Virtual and wall time at the last change of factor. */
  #vAnchor = 0;
  #rAnchor = 0;
  #dateOffset = 0;
  #heap: Timer[] = [];
  #live = new Map<number, Timer>();
  #ids = 1;
  #seq = 0;
  #armed: ReturnType<typeof setTimeout> | undefined;
  #armedFor = Infinity;
  #control: ReturnType<typeof setInterval> | undefined;
  #installed = false;
  /** Worst dilation used, and the wall-time integral of the dilation (for its mean). */
  #peak = 1;
  #since = 0;

  constructor(init: DilatedClockInit = {}) {
    this.min = init.min ?? 1;
    this.max = init.max ?? 100;
    this.slowLagMs = init.slowLagMs ?? 20;
    this.fastLagMs = init.fastLagMs ?? 5;
    this.#factor = init.initial ?? this.min;
  }

  /** Wall ms per virtual ms now. */
  get factor(): number {
    return this.#factor;
  }

  /** The worst dilation since install. */
  get peak(): number {
    return this.#peak;
  }

  /** Virtual ms elapsed per wall ms elapsed since install (1 / mean dilation). */
  get meanFactor(): number {
    const wall = this.#realNow() - this.#since;
    const virt = this.now() - this.#vSince;
    return virt > 0 ? wall / virt : this.#factor;
  }

  #vSince = 0;

  /** The wall clock's `performance.now()`, installed or not. */
  wallNow(): number {
    return this.#realNow();
  }

  /** Virtual time, ms (continuous with the wall clock's `performance.now()` at install). */
  now(): number {
    return this.#vAnchor + (this.#realNow() - this.#rAnchor) / this.#factor;
  }

  /** Patches the global timers and clocks. */
  install(): void {
    if (this.#installed) throw new Error("The clock is installed already");
    this.#installed = true;
    this.#rAnchor = this.#realNow();
    this.#vAnchor = this.#rAnchor;
    this.#since = this.#rAnchor;
    this.#vSince = this.#vAnchor;
    this.#dateOffset = this.#realDateNow() - this.#rAnchor;
    const g = globalThis as unknown as Record<string, unknown>;
    g.setTimeout = (fn: unknown, ms?: number, ...args: unknown[]) => this.#add(fn, ms, args, false);
    g.setInterval = (fn: unknown, ms?: number, ...args: unknown[]) => this.#add(fn, ms, args, true);
    g.clearTimeout = g.clearInterval = (id?: number) => this.#cancel(id);
    performance.now = () => this.now();
    Date.now = () => Math.floor(this.now() + this.#dateOffset);
    AbortSignal.timeout = (ms: number) => {
      const c = new AbortController();
      this.#add(
        () => c.abort(new DOMException("The operation timed out.", "TimeoutError")),
        ms,
        [],
        false,
      );
      return c.signal;
    };
    // The controller runs on the wall clock: every 100 ms it sees how late it woke (smoothed over ~1 s), and
    // slows time while that lag is over `slowLagMs` of virtual time, speeds it up while under `fastLagMs`
    // (fast while under a fifth of it).
    let expected = this.#realNow() + 100;
    let smooth = 0;
    this.#control = this.#realSetInterval.call(globalThis, () => {
      const now = this.#realNow();
      smooth = 0.8 * smooth + 0.2 * Math.max(0, now - expected);
      expected = now + 100;
      const virtualLag = smooth / this.#factor;
      if (virtualLag > this.slowLagMs) this.#setFactor(Math.min(this.max, this.#factor * 1.2));
      else if (virtualLag < this.fastLagMs / 5) {
        // Nearly idle: speed up as fast as it slows down. At /1.05 a tick, leaving a busy phase at x15
        // took 5.5 s of wall time with the thread waiting on slowed timers (idle was 6-11% of a run).
        this.#setFactor(Math.max(this.min, this.#factor / 1.2));
      } else if (virtualLag < this.fastLagMs) {
        this.#setFactor(Math.max(this.min, this.#factor / 1.05));
      }
    }, 100);
  }

  /** Restores the global timers and clocks; virtual timers still pending are dropped. */
  uninstall(): void {
    if (!this.#installed) return;
    this.#installed = false;
    const g = globalThis as unknown as Record<string, unknown>;
    g.setTimeout = this.#realSetTimeout;
    g.setInterval = this.#realSetInterval;
    g.clearTimeout = this.#realClearTimeout;
    g.clearInterval = this.#realClearInterval;
    performance.now = this.#realPerfNow;
    Date.now = this.#realDateNow;
    AbortSignal.timeout = this.#realAbortTimeout;
    this.#realClearInterval.call(globalThis, this.#control);
    if (this.#armed !== undefined) this.#realClearTimeout.call(globalThis, this.#armed);
    this.#armed = undefined;
    this.#heap = [];
    this.#live.clear();
  }

  #setFactor(f: number): void {
    if (f === this.#factor) return;
    const v = this.now();
    this.#rAnchor = this.#realNow();
    this.#vAnchor = v;
    this.#factor = f;
    this.#peak = Math.max(this.#peak, f);
    this.#armedFor = Infinity; // re-arm at the new rate
    this.#arm();
  }

  #add(fn: unknown, ms: number | undefined, args: unknown[], repeat: boolean): number {
    if (typeof fn !== "function") throw new TypeError("The callback must be a function");
    const delay = Math.max(0, Number(ms) || 0);
    const t: Timer = {
      id: this.#ids++,
      due: this.now() + delay,
      fn: () => (fn as (...a: unknown[]) => void)(...args),
      seq: this.#seq++,
      ...(repeat ? { every: Math.max(1, delay) } : {}),
    };
    this.#live.set(t.id, t);
    this.#push(t);
    this.#arm();
    return t.id;
  }

  #cancel(id?: number): void {
    if (id !== undefined) this.#live.delete(id); // lazily dropped from the heap
  }

  /** One wall-clock timer, for the earliest virtual timer. */
  #arm(): void {
    while (this.#heap.length > 0 && !this.#live.has(this.#heap[0]!.id)) this.#pop();
    const next = this.#heap[0];
    if (next === undefined) return;
    if (this.#armed !== undefined && next.due >= this.#armedFor) return;
    if (this.#armed !== undefined) this.#realClearTimeout.call(globalThis, this.#armed);
    this.#armedFor = next.due;
    // Capped: a far timer (a 48 h record expiry, dilated) would overflow setTimeout's 32-bit delay and fire
    // at once; waking every minute just re-arms.
    const wait = Math.min(60_000, Math.max(0, (next.due - this.now()) * this.#factor));
    this.#armed = this.#realSetTimeout.call(globalThis, () => this.#fire(), wait);
  }

  #fire(): void {
    this.#armed = undefined;
    this.#armedFor = Infinity;
    const now = this.now();
    // Only what is due now: timers set by these callbacks run in a later turn, as with real timers.
    const due: Timer[] = [];
    while (this.#heap.length > 0 && this.#heap[0]!.due <= now) {
      const t = this.#pop()!;
      if (this.#live.has(t.id)) due.push(t);
    }
    for (const t of due) {
      if (!this.#live.has(t.id)) continue; // cleared by an earlier callback of this batch
      if (t.every === undefined) this.#live.delete(t.id);
      else {
        t.due = Math.max(t.due + t.every, now);
        t.seq = this.#seq++;
        this.#push(t);
      }
      try {
        t.fn();
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
    this.#arm();
  }

  // A binary min-heap on (due, seq).

  #less(a: Timer, b: Timer): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  #push(t: Timer): void {
    const h = this.#heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  #pop(): Timer | undefined {
    const h = this.#heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last !== undefined) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.#less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.#less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

/**
 * Runs `fn` on a {@link DilatedClock} made from `dilation` (installed before, uninstalled after, whatever
 * `fn` does), or on the wall clock when `dilation` is `false` (`fn` gets no clock then).
 */
export async function onDilatedClock<T>(
  dilation: false | DilatedClockInit | undefined,
  fn: (clock: DilatedClock | undefined) => Promise<T>,
): Promise<T> {
  const clock = dilation === false ? undefined : new DilatedClock(dilation);
  clock?.install();
  try {
    return await fn(clock);
  } finally {
    clock?.uninstall();
  }
}
