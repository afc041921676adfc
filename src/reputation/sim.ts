/**
 * The reputation layer at scale, in one process: the real scoring (`score.ts`), selection (`select.ts`) and
 * trust (`trust.ts`) code over a thousand or more simulated operators with behaviour models instead of
 * processes. `deno task simulate:reputation` prints, per round, the share of requests that went to bad operators, honest
 * operators wrongly suspended or excluded, and how long newcomers take to be vetted.
 *
 * The world: `operators` operators, a share of them malicious (half liars that send bytes failing their CID,
 * half droppers that accept requests and never answer); the rest honest, a tenth of those failing 2% of
 * requests. The first `clients` honest operators also read: each round each makes `fetches` reads of a chunk
 * held by `holders` operators drawn at random, asking holders in the order selection gives until one delivers.
 * Bytes that fail their CID are a proof of fraud every client receives at once; clients attest their
 * experience to each other each round, and weigh the attestations by their own EigenTrust. Optionally
 * `sybils` attester identities per honest operator praise every malicious operator and each other.
 *
 * @module
 */
import {
  DEFAULT_SCORE_PARAMS,
  defrauded,
  delivered,
  failedDelivery,
  newRecord,
  type PeerRecord,
  scoreOf,
} from "./score.ts";
import { type Candidate, order } from "./select.ts";
import { type Attested, TrustGraph, vouched } from "./trust.ts";

export type Behaviour = "honest" | "flaky" | "liar" | "dropper";

export interface SimOptions {
  operators?: number;
  /** Share of operators that are malicious (liars and droppers, half each). */
  malicious?: number;
  clients?: number;
  fetches?: number;
  holders?: number;
  rounds?: number;
  /** Attester identities per honest operator that praise the malicious (0: none). */
  sybils?: number;
  /** Honest newcomers joining halfway, whose vetting time is measured. */
  newcomers?: number;
  seed?: number;
  /** The newcomers' share of first asks (`select.ts`; default 5%). */
  newShare?: number;
}

export interface RoundStats {
  round: number;
  /** Reads whose first request went to a malicious operator, over the reads that had an honest holder
   * (EigenTrust's measure: where a download goes when it could go right). */
  badShare: number;
  /** Requests asked of malicious operators, over all requests (reads with only bad holders ask them all). */
  badAskShare: number;
  /** Reads that got no verified bytes (with random holders at 70% malicious, 0.7^8 ≈ 5.8% have no honest
   * one: placement by reputation, not modelled here, is what avoids that). */
  failedReads: number;
  /** Honest operators suspended or excluded by any client. */
  wronglyOut: number;
  /** Honest operators vetted, on average over clients. */
  vettedHonest: number;
  /** Malicious operators vetted, on average over clients (a Sybil past the newcomers' share). */
  vettedMalicious: number;
}

export interface SimResult {
  rounds: RoundStats[];
  /** Mean rounds a newcomer took to be vetted by a client (undefined: none were added). */
  newcomerVetRounds?: number;
  /** Most ranks (by trust from client 0's side, at the end) any honest operator lost to the Sybils' words. */
  maxRankLoss: number;
  behaviours: Behaviour[];
}

/** mulberry32: small, fast, seeded. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const CHUNK = 256 * 1024;

class Client {
  readonly book = new Map<number, PeerRecord>();
  /** Deliveries vouched for by others, weighed. */
  vouched = new Map<number, number>();

  constructor(readonly id: number) {}

  record(op: number, now: number): PeerRecord {
    let r = this.book.get(op);
    if (r === undefined) this.book.set(op, r = newRecord(String(op), now));
    return r;
  }

  score(op: number, now: number) {
    return scoreOf(
      this.record(op, now),
      undefined,
      DEFAULT_SCORE_PARAMS,
      this.vouched.get(op) ?? 0,
    );
  }

  vetted(op: number): boolean {
    return this.book.has(op) && this.score(op, 0).state === "vetted";
  }

  candidate(op: number, now: number): Candidate {
    const s = this.score(op, now);
    const out = s.state === "excluded" || s.state === "suspended";
    return { peer: String(op), score: out ? 0 : s.score, vetted: s.state === "vetted" };
  }
}

/** Runs the simulation; `onRound` sees each round's numbers as they come. */
export function simulate(options: SimOptions = {}, onRound?: (s: RoundStats) => void): SimResult {
  const n = options.operators ?? 1000;
  const malicious = options.malicious ?? 0.7;
  const clientCount = options.clients ?? 20;
  const fetches = options.fetches ?? 400;
  const holderCount = options.holders ?? 8;
  const rounds = options.rounds ?? 20;
  const sybilsPer = options.sybils ?? 0;
  const newcomers = options.newcomers ?? 10;
  const random = rng(options.seed ?? 1);

  // Behaviours: honest first (the first `clientCount` of them read), then the malicious.
  const bad = Math.round(n * malicious);
  const honest = n - bad;
  const behaviours: Behaviour[] = [];
  for (let i = 0; i < honest; i++) behaviours.push(i % 10 === 9 ? "flaky" : "honest");
  for (let i = 0; i < bad; i++) behaviours.push(i % 2 === 0 ? "liar" : "dropper");
  const isBad = (op: number) => behaviours[op] === "liar" || behaviours[op] === "dropper";
  const clients = Array.from({ length: Math.min(clientCount, honest) }, (_, i) => new Client(i));
  // Operators that hold chunks; newcomers join halfway.
  const active: number[] = behaviours.map((_, i) => i);
  const joinRound = Math.floor(rounds / 2);
  const newcomerIds: number[] = [];
  const vettedAt = new Map<string, number>();

  const sybilCount = sybilsPer * honest;
  const sybilAttestations: Attested[] = [];
  const sybilRandom = rng((options.seed ?? 1) + 1);
  for (let s = 0; s < sybilCount; s++) {
    const from = `sybil-${s}`;
    for (let j = honest; j < n; j++) {
      if (sybilRandom() < 0.05) {
        sybilAttestations.push({ from, about: String(j), satisfaction: 1000 });
      }
    }
    sybilAttestations.push({ from, about: `sybil-${(s + 1) % sybilCount}`, satisfaction: 1000 });
  }

  const stats: RoundStats[] = [];
  let now = 0;
  for (let round = 1; round <= rounds; round++) {
    if (round === joinRound && newcomers > 0) {
      for (let i = 0; i < newcomers; i++) {
        const id = behaviours.length;
        behaviours.push("honest");
        active.push(id);
        newcomerIds.push(id);
      }
    }
    let asks = 0, badAsks = 0, failedReads = 0, fair = 0, badFirst = 0;
    for (const client of clients) {
      for (let f = 0; f < fetches; f++) {
        now += 10;
        const holders = new Set<number>();
        while (holders.size < holderCount) {
          const op = active[Math.floor(random() * active.length)]!;
          if (op !== client.id) holders.add(op);
        }
        const ordered = order([...holders].map((op) => client.candidate(op, now)), {
          random,
          newShare: options.newShare,
        });
        if ([...holders].some((op) => !isBad(op))) {
          fair++;
          if (ordered.length > 0 && isBad(Number(ordered[0]!.peer))) badFirst++;
        }
        let got = false;
        for (const c of ordered) {
          const op = Number(c.peer);
          asks++;
          if (isBad(op)) badAsks++;
          const r = client.record(op, now);
          const b = behaviours[op]!;
          if (b === "liar") {
            // The bytes fail their CID under the operator's signature: a proof every client gets.
            const proof = { kind: "bad_bytes" as const, at: now, evidence: { op } };
            for (const other of clients) defrauded(other.record(op, now), proof);
            continue;
          }
          const fails = b === "dropper" ? 1 : b === "flaky" ? 0.02 : 0.001;
          if (random() < fails) {
            failedDelivery(r, now);
            continue;
          }
          delivered(r, CHUNK, 20 + random() * 10, 5 + random() * 5, now);
          got = true;
          break;
        }
        if (!got) failedReads++;
      }
    }

    // Attestations: each client's word about every operator it knows, weighed by each client's trust.
    const attested: Attested[] = [...sybilAttestations];
    for (const c of clients) {
      for (const [op, r] of c.book) {
        if (r.fraud) continue;
        attested.push({
          from: String(c.id),
          about: String(op),
          satisfaction: r.deliveries - r.failures,
        });
      }
    }
    for (const c of clients) {
      c.vouched.clear();
      for (const [peer, v] of vouched(String(c.id), attested)) {
        const op = Number(peer);
        if (Number.isInteger(op)) c.vouched.set(op, v);
      }
    }

    let wronglyOut = 0, vettedHonest = 0, vettedMalicious = 0;
    for (let op = 0; op < behaviours.length; op++) {
      const out = clients.some((c) => {
        const r = c.book.get(op);
        if (r === undefined) return false;
        const s = scoreOf(r, undefined).state;
        return s === "suspended" || s === "excluded";
      });
      if (!isBad(op) && out) wronglyOut++;
      for (const c of clients) {
        if (!c.vetted(op)) continue;
        if (isBad(op)) vettedMalicious++;
        else vettedHonest++;
      }
      if (newcomerIds.includes(op)) {
        for (const c of clients) {
          const key = `${c.id}:${op}`;
          if (!vettedAt.has(key) && c.vetted(op)) vettedAt.set(key, round - joinRound + 1);
        }
      }
    }
    const s: RoundStats = {
      round,
      badShare: badFirst / fair,
      badAskShare: badAsks / asks,
      failedReads: failedReads / (clients.length * fetches),
      wronglyOut,
      vettedHonest: vettedHonest / clients.length,
      vettedMalicious: vettedMalicious / clients.length,
    };
    stats.push(s);
    onRound?.(s);
  }

  // Honest operators' ranks by trust from client 0's side, without and with the Sybils' attestations, over
  // the same observations: what the Sybils' words alone moved.
  const words: Attested[] = [];
  for (const c of clients) {
    for (const [op, r] of c.book) {
      if (r.fraud) continue;
      words.push({
        from: String(c.id),
        about: String(op),
        satisfaction: r.deliveries - r.failures,
      });
    }
  }
  const ranks = (attested: Attested[]) => {
    const graph = new TrustGraph("0", attested);
    const t = graph.trust();
    const ops = [...graph.ids.keys()].filter((i) => i > 0 && /^\d+$/.test(graph.ids[i]!));
    ops.sort((a, b) => t[b]! - t[a]!);
    const out = new Map<number, number>();
    ops.forEach((i, rank) => {
      const op = Number(graph.ids[i]);
      if (!isBad(op)) out.set(op, rank);
    });
    return out;
  };
  const before = ranks(words);
  const after = sybilCount > 0 ? ranks([...words, ...sybilAttestations]) : before;
  let maxRankLoss = 0;
  for (const [op, rank] of before) maxRankLoss = Math.max(maxRankLoss, (after.get(op) ?? n) - rank);
  const times = [...vettedAt.values()];
  return {
    rounds: stats,
    newcomerVetRounds: times.length ? times.reduce((a, b) => a + b, 0) / times.length : undefined,
    maxRankLoss,
    behaviours,
  };
}

/** What `deno task simulate:reputation` checks, over the rounds after `warmup`. */
export interface SimSummary {
  /** Mean share of reads whose first request went to a malicious operator. */
  badShare: number;
  /** Most honest operators out (suspended or excluded) in any round: the 2% failers included. */
  wronglyOut: number;
  /** Most malicious operators vetted by a client, on average over clients, in any round. */
  vettedMalicious: number;
  maxRankLoss: number;
  newcomerVetRounds?: number;
}

export function summarize(result: SimResult, warmup: number): SimSummary {
  const after = result.rounds.filter((r) => r.round > warmup);
  return {
    badShare: after.reduce((a, r) => a + r.badShare, 0) / Math.max(1, after.length),
    wronglyOut: Math.max(0, ...result.rounds.map((r) => r.wronglyOut)),
    vettedMalicious: Math.max(0, ...result.rounds.map((r) => r.vettedMalicious)),
    maxRankLoss: result.maxRankLoss,
    newcomerVetRounds: result.newcomerVetRounds,
  };
}

if (import.meta.main) {
  const { parseArgs } = await import("node:util");
  const { values } = parseArgs({
    options: {
      operators: { type: "string", default: "1000" },
      malicious: { type: "string", default: "0.7" },
      rounds: { type: "string", default: "12" },
      sybils: { type: "string", default: "10" },
      seed: { type: "string", default: "1" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(
      `deno task simulate:reputation [--operators 1000] [--malicious 0.7] [--rounds 12] [--sybils 10] [--seed 1]

Runs the real reputation, selection and trust code over simulated operators (see src/reputation/sim.ts),
twice: without Sybils, then with --sybils attester identities per honest operator praising the malicious.
Prints each round, then a summary beside the anchors (EigenTrust: ~10% of downloads go bad at 70% malicious).`,
    );
    Deno.exit(0);
  }
  const base: SimOptions = {
    operators: Number(values.operators),
    malicious: Number(values.malicious),
    rounds: Number(values.rounds),
    seed: Number(values.seed),
  };
  const warmup = 3;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const run = (label: string, sybils: number) => {
    console.log(`\n${label}`);
    console.log(
      "round  bad first asks  bad asks  failed reads  honest out  vetted honest  vetted bad",
    );
    const result = simulate({ ...base, sybils }, (s) =>
      console.log(
        `${String(s.round).padStart(5)}  ${pct(s.badShare).padStart(14)}  ${
          pct(s.badAskShare).padStart(8)
        }  ${pct(s.failedReads).padStart(12)}  ${String(s.wronglyOut).padStart(10)}  ${
          s.vettedHonest.toFixed(1).padStart(13)
        }  ${s.vettedMalicious.toFixed(1).padStart(10)}`,
      ));
    return summarize(result, warmup);
  };
  const t0 = performance.now();
  const plain = run(`${base.operators} operators, ${pct(base.malicious!)} malicious`, 0);
  const sybil = run(
    `the same, with ${values.sybils} Sybil attesters per honest operator`,
    Number(values.sybils),
  );
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  console.log(`
summary (after ${warmup} warm-up rounds; ${seconds} s)
  reads first sent to a malicious operator: ${
    pct(plain.badShare)
  } (EigenTrust: ~10% at 70% malicious)
  with Sybils: ${
    pct(sybil.badShare)
  }; malicious operators vetted: ${sybil.vettedMalicious} (newcomers' share holds)
  most ranks an honest operator lost to the Sybils' words: ${sybil.maxRankLoss}
  honest operators suspended or excluded (10% of them fail 2% of requests): ${plain.wronglyOut}, ${sybil.wronglyOut} with Sybils
  a newcomer is vetted after ${
    plain.newcomerVetRounds?.toFixed(1)
  } rounds of ${400} reads per client`);
  console.log(JSON.stringify({ simulate: { plain, sybil } }));
}
