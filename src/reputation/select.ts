/**
 * Choosing operators by reputation and price: whom to ask first for a chunk, and who keeps a stripe.
 *
 * A candidate's weight is its chance of success times how little it costs per success and how soon it answers:
 * `score^r · (p̃ / (p̃ + price/score))^c · (t̃ / (t̃ + ttfb))^l`, where p̃ and t̃ are the candidates' median price
 * and time to first byte (so weights do not depend on units) and r, c, l come from what the request prefers. Picks are drawn at random in proportion to weight, never only the top one (EigenTrust and
 * Sia both found that always taking the best concentrates load and starves newcomers of the chance to prove
 * themselves). Unvetted candidates together get at most `newShare` of the picks (default 5%, Storj's
 * `NewNodeFraction` at launch and EigenTrust's newcomer slot): a fresh identity is neither shut out nor
 * trusted. When one pool runs out, the other fills in.
 *
 * @module
 */

/** What a request prefers. `balanced` is the default. */
export type Prefer = "balanced" | "reliable" | "fast" | "cheap";

export const PREFERENCES: readonly Prefer[] = ["balanced", "reliable", "fast", "cheap"];

/** One operator as selection sees it. */
export interface Candidate {
  peer: string;
  /** Its reputation score in [0, 1] (`score.ts`); 0 is never picked. */
  score: number;
  /** Vetted, or still in the newcomers' share. */
  vetted: boolean;
  /** Its price for what is asked (any unit, the same for every candidate); 0 for volunteers. */
  price?: number;
  /** Its average time to first byte, when known. */
  ttfbMs?: number;
}

/** Exponent of the score, weight of price, weight of latency. */
const TUNING: Record<Prefer, { r: number; c: number; l: number }> = {
  balanced: { r: 1, c: 1, l: 1 },
  reliable: { r: 3, c: 0.5, l: 0.5 },
  fast: { r: 1, c: 0.5, l: 4 },
  cheap: { r: 1, c: 4, l: 0.5 },
};

export interface SelectOptions {
  prefer?: Prefer;
  /** Largest share of picks that go to unvetted candidates. Default 0.05. */
  newShare?: number;
  /** Uniform in [0, 1). Default `Math.random`. */
  random?: () => number;
}

export const DEFAULT_NEW_SHARE = 0.05;

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = xs.slice().sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** The weight of each candidate, in order (0 for a score of 0). */
export function weightsOf(
  candidates: readonly Candidate[],
  prefer: Prefer = "balanced",
): Float64Array {
  const t = TUNING[prefer];
  const prices: number[] = [];
  const ttfbs: number[] = [];
  for (const c of candidates) {
    if (c.price !== undefined && c.price > 0) prices.push(c.price);
    if (c.ttfbMs !== undefined) ttfbs.push(c.ttfbMs);
  }
  const p = median(prices) || 1;
  const l = median(ttfbs) || 1;
  const w = new Float64Array(candidates.length);
  for (let i = 0; i < candidates.length; i++) {
    const c = candidates[i]!;
    if (!(c.score > 0)) continue;
    const cheap = p / (p + (c.price ?? 0) / c.score);
    const soon = l / (l + (c.ttfbMs ?? l));
    w[i] = c.score ** t.r * cheap ** t.c * soon ** t.l;
  }
  return w;
}

/**
 * Weighted draws without replacement from a fixed set of weights: prefix sums and a binary search per draw,
 * so a draw costs O(log n) however many candidates there are. Build once, draw many times.
 */
export class WeightedSampler {
  readonly #prefix: Float64Array;
  readonly #weights: Float64Array;
  readonly total: number;
  /** Candidates with a positive weight. */
  readonly positive: number;

  constructor(weights: Float64Array) {
    this.#weights = weights;
    this.#prefix = new Float64Array(weights.length);
    let sum = 0, positive = 0;
    for (let i = 0; i < weights.length; i++) {
      const w = weights[i]! > 0 ? weights[i]! : 0;
      if (w > 0) positive++;
      sum += w;
      this.#prefix[i] = sum;
    }
    this.total = sum;
    this.positive = positive;
  }

  /** One index in proportion to weight, or -1 when every weight is 0. */
  draw(random: () => number): number {
    if (this.total <= 0) return -1;
    const x = random() * this.total;
    let lo = 0, hi = this.#prefix.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#prefix[mid]! > x) hi = mid;
      else lo = mid + 1;
    }
    // Zero-weight slots share their prefix with the one before: step to a positive one.
    while (this.#weights[lo]! <= 0 && lo < this.#prefix.length - 1) lo++;
    return lo;
  }

  /**
   * Up to `k` distinct indices, each drawn in proportion to weight among those not drawn yet. Rejection while
   * few are taken; past half of the weight, a scan over what is left (k close to n stays exact, not slow).
   */
  sample(k: number, random: () => number, taken = new Set<number>()): number[] {
    const out: number[] = [];
    let takenWeight = 0;
    for (const i of taken) takenWeight += this.#weights[i]! > 0 ? this.#weights[i]! : 0;
    let tries = 0;
    while (out.length < k && taken.size < this.positive) {
      if (takenWeight < this.total / 2 && tries < 64) {
        const i = this.draw(random);
        if (taken.has(i)) {
          tries++;
          continue;
        }
        tries = 0;
        taken.add(i);
        out.push(i);
        takenWeight += this.#weights[i]!;
        continue;
      }
      // Scan the rest.
      let x = random() * (this.total - takenWeight);
      let pick = -1;
      for (let i = 0; i < this.#weights.length; i++) {
        const w = this.#weights[i]!;
        if (w <= 0 || taken.has(i)) continue;
        pick = i;
        x -= w;
        if (x < 0) break;
      }
      if (pick < 0) break;
      taken.add(pick);
      out.push(pick);
      takenWeight += this.#weights[pick]!;
    }
    return out;
  }
}

/**
 * A selection index over many candidates (placement among thousands of operators): weights and samplers
 * built once, `pick(k)` as often as wanted until the scores move.
 */
export class Selection {
  readonly #vetted: number[] = [];
  readonly #fresh: number[] = [];
  readonly #vettedSampler: WeightedSampler;
  readonly #freshSampler: WeightedSampler;

  constructor(readonly candidates: readonly Candidate[], readonly options: SelectOptions = {}) {
    const w = weightsOf(candidates, options.prefer);
    const vw: number[] = [], fw: number[] = [];
    for (let i = 0; i < candidates.length; i++) {
      if (candidates[i]!.vetted) {
        this.#vetted.push(i);
        vw.push(w[i]!);
      } else {
        this.#fresh.push(i);
        fw.push(w[i]!);
      }
    }
    this.#vettedSampler = new WeightedSampler(Float64Array.from(vw));
    this.#freshSampler = new WeightedSampler(Float64Array.from(fw));
  }

  /** `k` distinct candidates (fewer if fewer can be picked), in the order drawn. */
  pick(k: number): Candidate[] {
    const random = this.options.random ?? Math.random;
    const share = this.options.newShare ?? DEFAULT_NEW_SHARE;
    // How many of the k go to newcomers: each pick is theirs with probability `share`.
    let fresh = 0;
    for (let i = 0; i < k; i++) if (random() < share) fresh++;
    const vettedLeft = this.#vettedSampler.positive;
    const freshLeft = this.#freshSampler.positive;
    fresh = Math.min(fresh, freshLeft);
    let vetted = Math.min(k - fresh, vettedLeft);
    fresh = Math.min(k - vetted, freshLeft); // one pool short: the other fills in
    vetted = Math.min(k - fresh, vettedLeft);
    const out: Candidate[] = [];
    for (const i of this.#vettedSampler.sample(vetted, random)) {
      out.push(this.candidates[this.#vetted[i]!]!);
    }
    for (const i of this.#freshSampler.sample(fresh, random)) {
      out.push(this.candidates[this.#fresh[i]!]!);
    }
    return out;
  }
}

/** Every candidate with a positive score, in the order to ask them: drawn by weight, newcomers' share kept
 * (while the vetted serve well: see {@link VETTED_MARGIN}). */
export function order(candidates: readonly Candidate[], options: SelectOptions = {}): Candidate[] {
  const random = options.random ?? Math.random;
  const share = options.newShare ?? DEFAULT_NEW_SHARE;
  const w = weightsOf(candidates, options.prefer);
  const vetted: number[] = [], fresh: number[] = [];
  for (let i = 0; i < candidates.length; i++) {
    if (w[i]! > 0) (candidates[i]!.vetted ? vetted : fresh).push(i);
  }
  const out: Candidate[] = [];
  const take = (pool: number[]) => {
    let total = 0;
    for (const i of pool) total += w[i]!;
    let x = random() * total, at = pool.length - 1;
    for (let j = 0; j < pool.length; j++) {
      x -= w[pool[j]!]!;
      if (x < 0) {
        at = j;
        break;
      }
    }
    out.push(candidates[pool[at]!]!);
    pool.splice(at, 1);
  };
  // The newcomers' share protects vetted operators that serve well from a crowd of new names, not a vetted
  // operator far worse than the newcomers (a slow node that got vetted first because it holds everything):
  // when the best vetted weight is under VETTED_MARGIN of the best newcomer's, all are drawn together.
  const best = (pool: number[]) => pool.reduce((x, i) => Math.max(x, w[i]!), 0);
  if (vetted.length > 0 && fresh.length > 0 && best(vetted) < VETTED_MARGIN * best(fresh)) {
    vetted.push(...fresh.splice(0));
  }
  while (vetted.length + fresh.length > 0) {
    const toFresh = fresh.length > 0 && (vetted.length === 0 || random() < share);
    take(toFresh ? fresh : vetted);
  }
  return out;
}

/** See {@link order}: below this ratio of weights, vetted operators lose the newcomers' share's protection.
 * At 0.5 a newcomer must look twice as good as every vetted candidate (an unknown newcomer weighs 0.5: a
 * perfect score and the median's latency), so a vetted operator that serves well keeps the cap's shelter
 * while one at the floor, or several times slower than its peers, does not. A newcomer that then stalls
 * costs one hedge deadline and its short score; one that lies is excluded by its own signed answer. */
export const VETTED_MARGIN = 0.5;
