/**
 * Verified bytes kept in memory for hot content: chunks a gateway serves again and again, and decoded
 * manifests. Bounded by total byte length, least recently used first out.
 */

/** Least-recently-used map bounded by the total byte length of its values. */
export class ByteCache<V extends { byteLength: number }> {
  #map = new Map<string, V>();
  #bytes = 0;
  constructor(readonly maxBytes: number) {}

  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    if (value.byteLength > this.maxBytes / 8) return; // one object must not flush the cache
    const old = this.#map.get(key);
    if (old) this.#bytes -= old.byteLength;
    this.#map.delete(key);
    this.#map.set(key, value);
    this.#bytes += value.byteLength;
    for (const [k, v] of this.#map) {
      if (this.#bytes <= this.maxBytes) break;
      this.#map.delete(k);
      this.#bytes -= v.byteLength;
    }
  }

  delete(key: string): void {
    const old = this.#map.get(key);
    if (old) this.#bytes -= old.byteLength;
    this.#map.delete(key);
  }

  /** Bytes held now. */
  get bytes(): number {
    return this.#bytes;
  }
}
