/**
 * One operator's track record as this node saw it, and the score it earns. Pure functions over plain records,
 * so that the node, the simulation and the benchmarks run the same code.
 *
 * - **Noisy faults decay.** Deliveries feed two beta scores with forgetting (Storj's audit score: per event
 *   `α ← λα + w·s`, `β ← λβ + w·(1−s)`, score `α/(α+β)`): a long one (λ 0.999, ~1,000 events of memory) that
 *   decides suspension (below 0.96: Storj's line, which tolerates 2% failures forever and suspends at ~4%),
 *   and a short one (λ 0.98, ~50 events) that weighs selection, so a peer that starts failing loses its traffic
 *   within tens of requests while its name is decided over hundreds.
 * - **Provable faults are binary**: bytes that failed their CID under the peer's signature, a forged voucher.
 *   One is enough; the peer is excluded with its evidence, and stays excluded.
 * - **Factors multiply, each floored at 0.1** (Sia renterd's rule): one weak factor costs at most 10x in
 *   selection weight; only proof, or suspension, takes a peer out.
 * - **New identities are unvetted** until they have made {@link ScoreParams.vetDeliveries} verified
 *   deliveries; selection gives the unvetted together a bounded share (`select.ts`).
 *
 * @module
 */

/** A beta score with forgetting: successes and failures, both decayed. */
export interface Beta {
  alpha: number;
  beta: number;
}

/** Every constant of the model, with its reason in {@link DEFAULT_SCORE_PARAMS}. */
export interface ScoreParams {
  /** Forgetting of the long reliability score, the one that suspends. */
  lambdaLong: number;
  /** Forgetting of the short reliability score, the one that weighs selection. */
  lambdaShort: number;
  /** Forgetting of the dial score (uptime). */
  lambdaUptime: number;
  /** Long reliability below this suspends the peer. */
  suspendBelow: number;
  /** Deliveries observed before suspension may be decided: too few say nothing. */
  suspendAfter: number;
  /** Verified deliveries before a peer is vetted. */
  vetDeliveries: number;
  /** Exponent of the short reliability in its factor: sharpens 0.9 into 0.35. */
  reliabilitySharpness: number;
  /** Lowest value of any factor (short of exclusion or suspension). */
  floor: number;
  /** Smoothing of throughput and time-to-first-byte averages (weight of the newest sample). */
  speedSmoothing: number;
  /** Forgetting of the audit score (storage proofs passed against failed). */
  lambdaAudit: number;
  /** Forgetting of the trade score (ratings of settled deals, weighed by value). */
  lambdaTrade: number;
  /** Forgetting of the lookup score (paid lookups whose named peer delivered, against those that failed). */
  lambdaLookup: number;
}

/**
 * - λ long 0.999 and the 0.96 line: Storj's 2022 retune (memory ~1,000 events; ≤2% failures never suspended,
 *   ≥4% always, eventually; 41 straight failures from a perfect record).
 * - λ short 0.98: ~50 events, fast enough that a peer that turns bad loses its share within a few dozen asks.
 * - λ uptime 0.95: ~20 dials, like Storj's suspension score (uptime is noisy: restarts, NAT).
 * - suspendAfter 50: too few requests say nothing (the long score's perfect prior already makes early
 *   failures weigh little).
 * - vetDeliveries 20: each is a verified chunk (up to 1 MiB, checked against its CID), so 20 is 20 checks a
 *   Sybil must pass honestly before leaving the newcomers' share; Storj asks 100 audits of a node that will
 *   hold data for months, a read needs less.
 * - sharpness 10: Sia's interactions factor is ((30+s)/(31+s+f))^10, the same shape.
 * - floor 0.1: Sia renterd's clamp (PR #1626).
 * - speedSmoothing 0.1: an average over ~10 deliveries.
 * - λ audit 0.999: Storj's audit score itself (α/(α+β), λ 0.999); its factor is sharpened like reliability's,
 *   so a holder failing 4% of audits weighs 0.66 and one failing a third of them sits at the floor.
 * - λ trade 0.99: ~100 rated deals; a rating weighs by the deal's value (see `rated`), so many small deals
 *   between friends cannot outweigh one large honest one.
 * - λ lookup 0.98: ~50 lookups, as the short reliability; a lookup operator answers many small requests, so
 *   one that starts naming peers that do not deliver loses its share within a few dozen (sharpened the same
 *   way: a third of them failed puts it at the floor).
 */
export const DEFAULT_SCORE_PARAMS: Readonly<ScoreParams> = Object.freeze({
  lambdaLong: 0.999,
  lambdaShort: 0.98,
  lambdaUptime: 0.95,
  suspendBelow: 0.96,
  suspendAfter: 50,
  vetDeliveries: 20,
  reliabilitySharpness: 10,
  floor: 0.1,
  speedSmoothing: 0.1,
  lambdaAudit: 0.999,
  lambdaTrade: 0.99,
  lambdaLookup: 0.98,
});

/** Provable wrongdoing, portable: anyone can check `evidence` without trusting the reporter. */
export interface Fraud {
  kind: "bad_bytes" | "forged_voucher" | "forged_evidence" | "forged_lookup";
  /** When it was seen (ms since epoch). */
  at: number;
  /** The proof, as its checker reads it (a signed delivery, a voucher). */
  evidence: unknown;
}

/** Everything this node remembers of one peer. Plain data: stored as JSON. */
export interface PeerRecord {
  peer: string;
  /** First seen (ms since epoch). */
  firstSeen: number;
  lastSeen: number;
  /** Delivery outcomes: verified chunks against timeouts and failures. */
  long: Beta;
  short: Beta;
  /** Dial outcomes. */
  uptime: Beta;
  deliveries: number;
  failures: number;
  /** Bytes received verified. */
  bytes: number;
  /** Averages of throughput (bytes/ms) and time to first byte (ms), over verified deliveries. */
  throughput?: number;
  ttfbMs?: number;
  fraud?: Fraud;
  /** Storage audits passed against failed (absent until the first audit). */
  audit?: Beta;
  audits?: { passed: number; failed: number };
  /** Trade ratings in [0, 1], each weighed by its deal's value (absent until the first rating). */
  trade?: Beta;
  ratings?: number;
  /** Paid lookups answered by this operator: the named peer delivered, against not (absent until one). */
  lookup?: Beta;
  lookups?: { good: number; bad: number };
}

export type PeerState = "new" | "vetted" | "suspended" | "excluded";

/** A score and the factors it multiplies, each in [floor, 1] (0 when excluded). */
export interface Score {
  peer: string;
  state: PeerState;
  /** Product of the factors; 0 when excluded or suspended. */
  score: number;
  factors: {
    reliability: number;
    speed: number;
    uptime: number;
    audit: number;
    trade: number;
    lookup: number;
  };
  /** The long reliability, the number that decides suspension. */
  reliabilityLong: number;
  /** Why the score is what it is, in words. */
  reasons: string[];
}

export function newRecord(
  peer: string,
  now: number,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
): PeerRecord {
  return {
    peer,
    firstSeen: now,
    lastSeen: now,
    // The long score starts perfect with a full memory's weight (Storj's α₀ = 1,000 = 1/(1−λ)), so a handful
    // of early failures cannot suspend an honest newcomer; the short one with one event's, so they still
    // weigh on selection at once.
    long: { alpha: 1 / (1 - p.lambdaLong), beta: 0 },
    short: { alpha: 1, beta: 0 },
    uptime: { alpha: 1, beta: 0 },
    deliveries: 0,
    failures: 0,
    bytes: 0,
    throughput: undefined,
    ttfbMs: undefined,
  };
}

function update(b: Beta, success: boolean, lambda: number): void {
  b.alpha = lambda * b.alpha + (success ? 1 : 0);
  b.beta = lambda * b.beta + (success ? 0 : 1);
}

export const betaValue = (b: Beta): number => b.alpha / (b.alpha + b.beta);

/** A verified delivery of `bytes`, its first byte after `ttfbMs` and the whole after `ms`. */
export function delivered(
  r: PeerRecord,
  bytes: number,
  ms: number,
  ttfbMs: number,
  now: number,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
): void {
  update(r.long, true, p.lambdaLong);
  update(r.short, true, p.lambdaShort);
  update(r.uptime, true, p.lambdaUptime);
  r.deliveries++;
  r.bytes += bytes;
  r.lastSeen = now;
  const thr = bytes / Math.max(ms, 0.01);
  const s = p.speedSmoothing;
  r.throughput = r.throughput === undefined ? thr : (1 - s) * r.throughput + s * thr;
  r.ttfbMs = r.ttfbMs === undefined ? ttfbMs : (1 - s) * r.ttfbMs + s * ttfbMs;
}

/** A request the peer accepted and did not answer in time, or answered with an error. */
export function failedDelivery(
  r: PeerRecord,
  now: number,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
): void {
  update(r.long, false, p.lambdaLong);
  update(r.short, false, p.lambdaShort);
  r.failures++;
  r.lastSeen = now;
}

/** A dial that failed (the peer was away): uptime only, not reliability. */
export function unreachable(r: PeerRecord, p: ScoreParams = DEFAULT_SCORE_PARAMS): void {
  update(r.uptime, false, p.lambdaUptime);
}

/** A storage audit of `r`, passed or failed. */
export function audited(
  r: PeerRecord,
  passed: boolean,
  now: number,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
): void {
  r.audit ??= { alpha: 1, beta: 0 };
  update(r.audit, passed, p.lambdaAudit);
  r.audits ??= { passed: 0, failed: 0 };
  if (passed) r.audits.passed++;
  else r.audits.failed++;
  r.lastSeen = now;
}

/** A paid lookup `r` answered: good when a peer it named delivered a verified chunk. */
export function lookedUp(
  r: PeerRecord,
  good: boolean,
  now: number,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
): void {
  // A prior of ten good lookups: one peer gone away since its record was made costs an honest operator
  // a share (0.38), not everything; a few in a row put a liar at the floor.
  r.lookup ??= { alpha: 10, beta: 0 };
  update(r.lookup, good, p.lambdaLookup ?? DEFAULT_SCORE_PARAMS.lambdaLookup);
  r.lookups ??= { good: 0, bad: 0 };
  if (good) r.lookups.good++;
  else r.lookups.bad++;
  r.lastSeen = now;
}

/**
 * A rating of a settled deal with `r`: `value` in [0, 1] (1 = fully satisfied), `weight` ≥ 0 the rating's
 * weight (the caller's: the deal's value, discounted for small deals and raters with no history).
 */
export function rated(
  r: PeerRecord,
  value: number,
  weight: number,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
): void {
  if (!(value >= 0 && value <= 1) || !(weight >= 0) || !Number.isFinite(weight)) {
    throw new RangeError(
      `a rating is a value in [0, 1] with a finite weight >= 0, got ${value}, ${weight}`,
    );
  }
  r.trade ??= { alpha: 1, beta: 0 };
  // A weighed event: the memory decays once, then the rating adds its weight split by its value.
  r.trade.alpha = p.lambdaTrade * r.trade.alpha + weight * value;
  r.trade.beta = p.lambdaTrade * r.trade.beta + weight * (1 - value);
  r.ratings = (r.ratings ?? 0) + 1;
}

/** Provable fraud: excluded from now on. The first proof is kept. */
export function defrauded(r: PeerRecord, fraud: Fraud): void {
  r.fraud ??= fraud;
}

const clamp = (x: number, floor: number) => Math.min(1, Math.max(floor, x));

/**
 * The score of `r`. `medianThroughput` is the median over the peers this node knows (speed is relative: a
 * peer as fast as the typical one scores 1, one ten times slower the floor). `vouched`: verified deliveries
 * others attested, already weighed by this node's trust in them (`trust.ts`); they count toward vetting.
 */
export function scoreOf(
  r: PeerRecord,
  medianThroughput: number | undefined,
  p: ScoreParams = DEFAULT_SCORE_PARAMS,
  vouched = 0,
): Score {
  const reliabilityLong = betaValue(r.long);
  const reliability = clamp(betaValue(r.short) ** p.reliabilitySharpness, p.floor);
  const speed = r.throughput === undefined || !medianThroughput
    ? 1
    : clamp(r.throughput / medianThroughput, p.floor);
  const uptime = clamp(betaValue(r.uptime) ** 4, p.floor);
  const audit = r.audit === undefined
    ? 1
    : clamp(betaValue(r.audit) ** p.reliabilitySharpness, p.floor);
  const trade = r.trade === undefined ? 1 : clamp(betaValue(r.trade) ** 2, p.floor);
  const lookup = r.lookup === undefined
    ? 1
    : clamp(betaValue(r.lookup) ** p.reliabilitySharpness, p.floor);
  const factors = { reliability, speed, uptime, audit, trade, lookup };
  const reasons: string[] = [];
  if (r.fraud !== undefined) {
    reasons.push(`excluded: ${r.fraud.kind.replace("_", " ")} (proof kept)`);
    return { peer: r.peer, state: "excluded", score: 0, factors, reliabilityLong, reasons };
  }
  const observed = r.deliveries + r.failures;
  if (observed >= p.suspendAfter && reliabilityLong < p.suspendBelow) {
    reasons.push(
      `suspended: reliability ${
        reliabilityLong.toFixed(3)
      } below ${p.suspendBelow} over ${observed} requests`,
    );
    return { peer: r.peer, state: "suspended", score: 0, factors, reliabilityLong, reasons };
  }
  if (reliability < 1) {
    reasons.push(`recent failures: ${r.failures} of ${observed} requests failed`);
  }
  if (speed < 1) reasons.push(`slower than the typical peer (${speed.toFixed(2)}x)`);
  if (uptime < 1) reasons.push("unreachable at times");
  if (audit < 1) {
    reasons.push(
      `failed storage audits: ${r.audits?.failed ?? 0} of ${
        (r.audits?.failed ?? 0) + (r.audits?.passed ?? 0)
      }`,
    );
  }
  if (trade < 1) {
    reasons.push(`trade ratings below full (${trade.toFixed(2)} over ${r.ratings ?? 0} deals)`);
  }
  if (lookup < 1) {
    reasons.push(
      `paid lookups that did not deliver: ${r.lookups?.bad ?? 0} of ${
        (r.lookups?.bad ?? 0) + (r.lookups?.good ?? 0)
      }`,
    );
  }
  const seen = r.deliveries + vouched;
  const state: PeerState = seen >= p.vetDeliveries ? "vetted" : "new";
  if (state === "new") {
    reasons.push(`new: ${Math.floor(seen)} of ${p.vetDeliveries} verified deliveries`);
  }
  return {
    peer: r.peer,
    state,
    score: reliability * speed * uptime * audit * trade * lookup,
    factors,
    reliabilityLong,
    reasons,
  };
}
