/** Per-key concurrency limit with a FIFO wait queue: requests over the limit wait for a slot, at most until a
 * deadline (a peer that holds every slot and never answers must not queue everyone behind it forever). */

interface Slot {
  active: number;
  waiting: Array<() => void>;
}

/** Limits how many operations run at once for each key (a peer ID). */
export class KeyedLimiter {
  readonly #limit: number;
  readonly #slots = new Map<string, Slot>();

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`The in-flight limit must be a positive integer, got "${limit}"`);
    }
    this.#limit = limit;
  }

  /** Operations running now for `key`. */
  active(key: string): number {
    return this.#slots.get(key)?.active ?? 0;
  }

  /**
   * Waits for a free slot for `key` (first come, first served) and returns its release function, which is safe
   * to call more than once. Rejects with the signal's reason if `signal` aborts while waiting, and with
   * `timeout()` when no slot frees within `timeoutMs` (default: no deadline).
   */
  async acquire(
    key: string,
    signal?: AbortSignal,
    timeoutMs?: number,
    timeout: () => unknown = () => new Error(`No slot for "${key}" freed within ${timeoutMs} ms`),
  ): Promise<() => void> {
    signal?.throwIfAborted();
    let slot = this.#slots.get(key);
    if (slot === undefined) {
      slot = { active: 0, waiting: [] };
      this.#slots.set(key, slot);
    }
    if (slot.active < this.#limit) {
      slot.active++;
    } else {
      const s = slot;
      await new Promise<void>((resolve, reject) => {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grant = () => {
          signal?.removeEventListener("abort", onAbort);
          clearTimeout(timer);
          resolve();
        };
        const leave = (reason: unknown) => {
          const i = s.waiting.indexOf(grant);
          if (i >= 0) s.waiting.splice(i, 1);
          signal?.removeEventListener("abort", onAbort);
          clearTimeout(timer);
          reject(reason);
        };
        const onAbort = () => leave(signal!.reason);
        s.waiting.push(grant);
        signal?.addEventListener("abort", onAbort, { once: true });
        if (timeoutMs !== undefined) timer = setTimeout(() => leave(timeout()), timeoutMs);
      });
      // The releaser handed its slot straight to us: `active` did not change.
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#release(key);
    };
  }

  #release(key: string): void {
    const slot = this.#slots.get(key);
    if (slot === undefined) return;
    const next = slot.waiting.shift();
    if (next !== undefined) {
      next();
      return;
    }
    slot.active--;
    if (slot.active === 0) this.#slots.delete(key);
  }
}
