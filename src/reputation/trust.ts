/**
 * Trust in other nodes' word, from this node's side: personalized EigenTrust (Kamvar et al., 2003) with this
 * node as the only pre-trusted peer.
 *
 * Each attester i says how satisfied it was with each peer j (`s_ij`, e.g. verified deliveries minus failures).
 * Local trust `c_ij = max(s_ij, 0) / Σ_j max(s_ij, 0)`; global trust iterates `t ← (1−a)·Cᵀt + a·p`, where `p` is
 * all on this node. A row with no positive trust (a node that attested nothing good) gives its mass back to `p`.
 * Trust flows only along paths that start at this node's own experience: a crowd of fresh identities that
 * praise each other, or one another's victims' rivals, has no path in and gets (almost) nothing, and negative
 * words count for nothing at all (only proofs of fraud sink a name, and they are checked, not weighed).
 *
 * The graph is kept as compressed rows (CSR): one iteration is one pass over the edges.
 *
 * @module
 */

/** One attester's word about one peer. */
export interface Attested {
  from: string;
  about: string;
  /** Satisfaction: positive is good; negative is ignored (treated as none). */
  satisfaction: number;
}

/** Restart probability: the share of trust that returns to this node each step. 0.15 is PageRank's damping
 * and lies in EigenTrust's tested range; higher keeps trust closer to this node's own experience. */
export const DEFAULT_RESTART = 0.15;

export interface TrustOptions {
  restart?: number;
  /** Iterations at most. EigenTrust converges in under 10. Default 20. */
  maxIterations?: number;
  /** Stop when the L1 change is below this. Default 1e-6. */
  tolerance?: number;
}

/** A trust graph over named nodes, with this node (`self`) at index 0. */
export class TrustGraph {
  readonly ids: string[] = [];
  readonly #index = new Map<string, number>();
  #rowPtr = new Int32Array(1);
  #col = new Int32Array(0);
  #val = new Float64Array(0);

  constructor(readonly self: string, attested: Iterable<Attested> = []) {
    this.#id(self);
    this.set(attested);
  }

  #id(name: string): number {
    let i = this.#index.get(name);
    if (i === undefined) {
      i = this.ids.length;
      this.ids.push(name);
      this.#index.set(name, i);
    }
    return i;
  }

  indexOf(name: string): number | undefined {
    return this.#index.get(name);
  }

  get size(): number {
    return this.ids.length;
  }

  /** Replaces every edge with `attested` (rows normalised; the latest word of an attester about a peer
   * counts, an attester about itself does not). */
  set(attested: Iterable<Attested>): void {
    const rows = new Map<number, Map<number, number>>();
    for (const a of attested) {
      if (a.from === a.about || !(a.satisfaction > 0)) {
        this.#id(a.from);
        this.#id(a.about);
        continue;
      }
      const i = this.#id(a.from), j = this.#id(a.about);
      let row = rows.get(i);
      if (row === undefined) rows.set(i, row = new Map());
      row.set(j, a.satisfaction);
    }
    const n = this.ids.length;
    const rowPtr = new Int32Array(n + 1);
    let edges = 0;
    for (let i = 0; i < n; i++) {
      rowPtr[i] = edges;
      edges += rows.get(i)?.size ?? 0;
    }
    rowPtr[n] = edges;
    const col = new Int32Array(edges), val = new Float64Array(edges);
    for (const [i, row] of rows) {
      let at = rowPtr[i]!, sum = 0;
      for (const s of row.values()) sum += s;
      for (const [j, s] of row) {
        col[at] = j;
        val[at++] = s / sum;
      }
    }
    this.#rowPtr = rowPtr;
    this.#col = col;
    this.#val = val;
  }

  /** Edges in the graph. */
  get edges(): number {
    return this.#col.length;
  }

  /** One step of `t ← (1−a)·Cᵀt + a·p` from `t` into `out` (both of length `size`); returns the L1 change. */
  step(t: Float64Array, out: Float64Array, restart = DEFAULT_RESTART): number {
    const n = this.ids.length;
    out.fill(0);
    const rowPtr = this.#rowPtr, col = this.#col, val = this.#val;
    let dangling = 0;
    for (let i = 0; i < n; i++) {
      const ti = t[i]!;
      if (ti === 0) continue;
      const a = rowPtr[i]!, b = rowPtr[i + 1]!;
      if (a === b) {
        dangling += ti;
        continue;
      }
      const m = (1 - restart) * ti;
      for (let e = a; e < b; e++) out[col[e]!]! += m * val[e]!;
    }
    // The restart mass and what dangling rows hold go back to this node.
    out[0]! += restart * (1 - dangling) + dangling;
    let change = 0;
    for (let i = 0; i < n; i++) change += Math.abs(out[i]! - t[i]!);
    return change;
  }

  /** Global trust from this node's side: sums to 1, index as {@link ids}. */
  trust(options: TrustOptions = {}): Float64Array {
    const n = this.ids.length;
    let t = new Float64Array(n), next = new Float64Array(n);
    t[0] = 1;
    const max = options.maxIterations ?? 20, tol = options.tolerance ?? 1e-6;
    for (let k = 0; k < max; k++) {
      const change = this.step(t, next, options.restart);
      [t, next] = [next, t];
      if (change < tol) break;
    }
    return t;
  }
}

/**
 * What others vouch for, from `self`'s side: each attester's positive words about a peer, weighed by the
 * trust that reaches the attester (one with the average trust counts fully, below it in proportion; a
 * stranger, nothing). `self`'s own words, and words about `self`, do not count.
 */
export function vouched(
  self: string,
  attested: readonly Attested[],
  options: TrustOptions = {},
): Map<string, number> {
  const graph = new TrustGraph(self, attested);
  const t = graph.trust(options);
  let positive = 0;
  for (const x of t) if (x > 0) positive++;
  const out = new Map<string, number>();
  for (const a of attested) {
    if (a.from === self || a.about === self || !(a.satisfaction > 0)) continue;
    const w = Math.min(1, t[graph.indexOf(a.from)!]! * positive);
    if (w > 0) out.set(a.about, (out.get(a.about) ?? 0) + w * a.satisfaction);
  }
  return out;
}
