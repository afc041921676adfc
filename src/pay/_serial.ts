/** Runs async tasks one at a time, in the order they were queued; a failing task does not stop the next. */
export class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  /** Queues `fn`; resolves or rejects like it, once every task queued before has settled. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn, fn);
    this.#tail = result.catch(() => {});
    return result;
  }

  /** Resolves once every task queued so far has settled. */
  idle(): Promise<void> {
    return this.#tail.then(() => {});
  }
}
