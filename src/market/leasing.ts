/**
 * The leasing service of a node, both sides of the storage market:
 *
 * - As client: after an upload, {@link LeaseService.leaseFile} contracts every peer the placement put chunks
 *   on (one lease per holder, signed by both), then audits each live lease every `auditEveryMs` with
 *   `challenges` random blocks (audit.ts); results go to the lease book and to the reputation book's audit
 *   factor; a failed round is one log line. {@link LeaseService.renew} extends a lease of its own.
 * - As holder: answers `terms` and `propose` on `/meshgate/lease/1.0.0` (refusing leases past its capacity
 *   or a volunteer client's quota, on chunks it does not hold, below its price, or on an expired or nearly
 *   expired term) and challenges on `/meshgate/audit/1.0.0`; collects (deletes) chunks whose leases ended,
 *   unless pinned here or under another live lease.
 *
 * Every period is a setting in ms, so a test runs a "month" in seconds.
 *
 * @module
 */
import type { Connection, Libp2p, PrivateKey, Stream } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { CID, DAG_JSON_CODE } from "../content/cid.ts";
import { answerMessage, callPeer } from "../mesh/message.ts";
import type { ChunkStore } from "../store/store.ts";
import type { MeshNode } from "../mesh/node.ts";
import { placeLost, recoverChunk } from "./replace.ts";
import {
  chunkLength,
  decodeManifest,
  type Manifest,
  stripeDataCount,
} from "../content/manifest.ts";
import { pinnedChunks } from "../store/own.ts";
import type { ReputationBook } from "../reputation/book.ts";
import {
  chunkMonthPrice,
  decodeLease,
  type Lease,
  LeaseError,
  type LeaseErrorCode,
  MAX_LEASE_BYTES,
  MONTH_MS,
  signAsClient,
  signAsHolder,
  verifyClientHalf,
  verifyLease,
} from "./lease.ts";
import { LeaseBook, type LeaseEntry } from "./lease_book.ts";
import {
  answer,
  AUDIT_PROTOCOL,
  AuditError,
  Auditor,
  auditSecret,
  beaconIndex,
  type Challenge,
  decodeChallenge,
  MAX_AUDIT_BYTES,
  toHex,
} from "./audit.ts";
import type { Beacon } from "./beacon.ts";

export const LEASE_PROTOCOL = "/meshgate/lease/1.0.0";
/** Challenges of one round in flight at once (times the leases a holder keeps for one client, audited
 * together: within its 32 inbound audit streams for up to 8 leases). */
const AUDIT_PARALLEL = 4;

export interface LeasingSettings {
  /** How often a client audits each lease (the lease's schedule), ms. Default 3 600 000 (an hour). */
  auditEveryMs?: number;
  /** Blocks challenged per lease per audit. Default 4 (see README for the detection odds). */
  challenges?: number;
  /** Bytes this node keeps under leases at most. Default: the store's cap. */
  capacityBytes?: number;
  /** Bytes kept for one client under free (volunteer) leases at most. Default 1 GiB. */
  volunteerBytes?: number;
  /** This node's storage price, wei per GiB-month (its offer's `storedPerGiBMonth`). Default "0". */
  storedPerGiBMonth?: string;
  /** Highest price per chunk-month this node accepts as client; above it a holder is not leased.
   * Default: any. */
  maxPricePerChunkMonth?: bigint;
  /** A lease must have at least this long left when proposed, ms. Default 60 000. */
  minTermMs?: number;
  /** A proposal may start at most this long ago (clocks differ), ms. Default 300 000. */
  maxSkewMs?: number;
  /** How long after its end a lease's chunks stay (time to renew late), ms. Default 3 600 000. */
  graceMs?: number;
  /** A holder that answers no audit for this long has its chunks re-placed, ms. Default 21 600 000 (6 h). */
  offlineGraceMs?: number;
  /** How often ended leases are collected, ms. Default 600 000. */
  gcEveryMs?: number;
  /** How often due audits are looked for, ms. Default min(auditEveryMs / 4, 60 000). */
  tickMs?: number;
  /** One exchange with a peer, ms. Default 10 000. */
  timeoutMs?: number;
  log?: (line: string) => void;
  now?: () => number;
}

export interface LeasingInit extends LeasingSettings {
  dataDir: string;
  store: ChunkStore;
  libp2p: Pick<Libp2p, "handle" | "unhandle" | "dialProtocol">;
  privateKey: PrivateKey;
  peerId: string;
  /** Where audit results count (the audit factor). */
  reputation?: ReputationBook;
  /** Told of every chunk the collector deletes (withdraw its provider record). */
  onDeleted?: (cids: CID[]) => void | Promise<void>;
  /** With both: chunks a holder lost are recovered (`fetchChunk`: a verified chunk from the mesh) and
   * placed on other peers of `mesh`, then leased there. Default: none (failures are only recorded). */
  mesh?: Pick<MeshNode, "connectedPeers" | "storeChunks">;
  fetchChunk?: (cid: CID) => Promise<Uint8Array | null>;
  /** Pays `holder` `wei` for proven periods (a voucher on its channel). Default: none (owed is recorded). */
  pay?: (holder: string, wei: bigint) => Promise<void>;
  /** The chain (paid mode): challenges of paid leases are seeded by a recent block's hash, and a holder
   * refuses those of its paid leases that do not name a real, recent block (beacon.ts). Default: none
   * (every lease audited with the client's committed secret). */
  beacon?: Beacon;
}

/** What {@link LeaseService.replaceLost} did. */
export interface Replacement {
  /** Chunks the holder could not prove, of those challenged. */
  lost: string[];
  /** The new leases, one per new holder. */
  leases: Lease[];
  /** Lost chunks that could not be recovered or placed. */
  unplaced: string[];
}

/** One holder's outcome of {@link LeaseService.leaseFile}. */
export interface LeaseOutcome {
  holder: string;
  chunks: number;
  lease?: Lease;
  /** Why there is no lease (a refusal's code and message). */
  error?: { code: string; message: string };
}

/** A lease as `GET /api/leases` shows it. */
export interface LeaseView {
  id: string;
  role: "client" | "holder";
  holder: string;
  client: string;
  root: string;
  chunks: number;
  bytes: number;
  start: string;
  end: string;
  live: boolean;
  pricePerChunkMonth: string;
  auditEveryMs: number;
  passed: number;
  failed: number;
  lastAudit?: string;
  lastPassed?: boolean;
  collected?: string;
  renewedBy?: string;
  /** Client side: time proven by passed audits and forfeited by failed ones, ms; what the proven time
   * is worth at the lease's price, wei. */
  provenMs: number;
  forfeitMs: number;
  owedWei: string;
  paidWei: string;
}

const LEASE_WIRE = {
  maxBytes: MAX_LEASE_BYTES + 4096,
  what: "lease",
  error: (message: string, cause?: unknown) => new LeaseError("lease_protocol", message, { cause }),
};
const AUDIT_WIRE = {
  maxBytes: MAX_AUDIT_BYTES,
  what: "audit",
  error: (message: string, cause?: unknown) => new AuditError("audit_protocol", message, { cause }),
};
const LEASE_CODES = new Set<string>([
  "lease_malformed",
  "lease_signature",
  "lease_expired",
  "lease_capacity",
  "lease_not_yours",
  "lease_not_found",
  "lease_price",
  "lease_missing",
]);

/** A refusal from the peer as the error it names (or lease_protocol for anything else). */
function refusal(reply: Record<string, unknown>): LeaseError {
  const code = String(reply.error);
  const message = typeof reply.message === "string" ? reply.message.slice(0, 500) : code;
  return new LeaseError(
    LEASE_CODES.has(code) ? code as LeaseErrorCode : "lease_protocol",
    message,
  );
}

/** Runs `fn` over `items`, at most `n` at a time. */
async function inPool<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
}

export class LeaseService {
  readonly book: LeaseBook;
  readonly #init: LeasingInit;
  readonly #auditEveryMs: number;
  readonly #challenges: number;
  readonly #minTermMs: number;
  readonly #maxSkewMs: number;
  readonly #graceMs: number;
  readonly #offlineGraceMs: number;
  /** Since when each lease's holder has answered no audit (in memory: a restart starts the grace again). */
  readonly #silentSince = new Map<string, number>();
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  readonly #auditor = new Auditor();
  /** Challenges answered per lease in its current audit interval (holder side). */
  readonly #answered = new Map<string, { since: number; n: number }>();
  /** Leases being audited now (a slow holder never gets two rounds at once), and being paid. */
  readonly #auditing = new Set<string>();
  readonly #paying = new Set<string>();
  /** Proposals are taken one at a time, so two cannot overshoot the capacity together. */
  #proposals: Promise<unknown> = Promise.resolve();
  #timers: ReturnType<typeof setInterval>[] = [];
  #rounds = new Set<Promise<void>>();
  #started = false;

  constructor(init: LeasingInit) {
    this.#init = init;
    this.book = LeaseBook.open(init.dataDir);
    this.#auditEveryMs = init.auditEveryMs ?? 3_600_000;
    this.#challenges = init.challenges ?? 4;
    this.#minTermMs = init.minTermMs ?? 60_000;
    this.#maxSkewMs = init.maxSkewMs ?? 300_000;
    this.#graceMs = init.graceMs ?? 3_600_000;
    this.#offlineGraceMs = init.offlineGraceMs ?? 6 * 3_600_000;
    this.#now = init.now ?? Date.now;
    this.#log = init.log ?? ((line) => console.error(line));
  }

  get peerId(): string {
    return this.#init.peerId;
  }

  async start(): Promise<void> {
    const net = this.#init.libp2p;
    await net.handle(LEASE_PROTOCOL, this.#handleLease, { maxInboundStreams: 8 });
    await net.handle(AUDIT_PROTOCOL, this.#handleAudit, { maxInboundStreams: 32 });
    this.#started = true;
    const every = (ms: number, run: () => Promise<unknown>) => {
      const t = setInterval(() => {
        const round = run().then(
          () => {},
          (e) => this.#warn("leasing round failed", { error: `${e}` }),
        );
        this.#rounds.add(round);
        void round.finally(() => this.#rounds.delete(round));
      }, ms);
      Deno.unrefTimer(t);
      this.#timers.push(t);
    };
    // A quarter interval: a round that comes due just after a tick waits a quarter, not a whole interval
    // (a tick every interval ran each lease's round every other interval).
    every(
      this.#init.tickMs ?? Math.min(Math.ceil(this.#auditEveryMs / 4), 60_000),
      () => this.auditDue(),
    );
    every(this.#init.gcEveryMs ?? 600_000, () => this.collect());
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    await Promise.allSettled([...this.#rounds]);
    if (this.#started) {
      await this.#init.libp2p.unhandle(LEASE_PROTOCOL).catch(() => {});
      await this.#init.libp2p.unhandle(AUDIT_PROTOCOL).catch(() => {});
      this.#started = false;
    }
    this.book.close();
  }

  #warn(msg: string, fields: Record<string, unknown>): void {
    this.#log(JSON.stringify({ level: "warn", component: "leases", msg, ...fields }));
  }

  #signal(): AbortSignal {
    return AbortSignal.timeout(this.#init.timeoutMs ?? 10_000);
  }

  /** This node's price per chunk-month for chunks up to `bytes` long. */
  priceFor(bytes: number): bigint {
    return chunkMonthPrice(this.#init.storedPerGiBMonth ?? "0", bytes);
  }

  // ---- client side ----------------------------------------------------------------------------

  /**
   * Leases the chunks of file `root` for `durationMs` from each peer that holds some (`where`: the
   * placement's holders by CID; `length(cid)`: each chunk's length from the client's manifest). One
   * outcome per holder; a refusal is an outcome, not an error. `end`: the leases end then instead (a
   * re-placement ends with the lease it replaces).
   */
  async leaseFile(
    root: CID,
    where: ReadonlyMap<string, ReadonlySet<string>>,
    length: (cid: string) => number,
    durationMs: number,
    end?: number,
  ): Promise<LeaseOutcome[]> {
    const byHolder = new Map<string, [string, number][]>();
    for (const [cid, holders] of where) {
      for (const h of holders) {
        if (h === this.peerId) continue;
        const list = byHolder.get(h) ?? [];
        list.push([cid, length(cid)]);
        byHolder.set(h, list);
      }
    }
    return await Promise.all(
      [...byHolder].map(async ([holder, chunks]) => {
        try {
          const start = this.#now();
          const lease = await this.#contract(
            holder,
            root.toString(),
            chunks,
            start,
            end ?? start + durationMs,
          );
          return { holder, chunks: chunks.length, lease };
        } catch (e) {
          const err = e instanceof MeshError ? e : new LeaseError("lease_protocol", `${e}`);
          this.#warn("lease refused", { holder, code: err.code, error: err.message });
          return { holder, chunks: chunks.length, error: { code: err.code, message: err.message } };
        }
      }),
    );
  }

  /**
   * Leases an upload's blocks (its chunks, data and parity, and its manifest) from their holders, lengths
   * from the manifest and from the stored manifest block. No placement (a lone node): no leases.
   */
  async leaseUpload(
    put: { cid: CID; manifest: Manifest; where?: ReadonlyMap<string, ReadonlySet<string>> },
    durationMs: number,
  ): Promise<LeaseOutcome[]> {
    if (!put.where) return [];
    const lengths = new Map<string, number>();
    const m = put.manifest;
    m.stripes.forEach((stripe, s) => {
      const k = stripeDataCount(m, s);
      stripe.forEach((cid, i) => {
        lengths.set(cid.toString(), chunkLength(m, s * m.k + (i < k ? i : 0)));
      });
    });
    const root = await this.#init.store.get(put.cid);
    if (root) lengths.set(put.cid.toString(), root.length);
    const where = new Map([...put.where].filter(([cid]) => lengths.has(cid)));
    return await this.leaseFile(put.cid, where, (cid) => lengths.get(cid)!, durationMs);
  }

  async #contract(
    holder: string,
    root: string,
    chunks: [string, number][],
    start: number,
    end: number,
  ): Promise<Lease> {
    const net = this.#init.libp2p;
    const terms = await callPeer(
      net,
      holder,
      LEASE_PROTOCOL,
      { op: "terms" },
      this.#signal(),
      LEASE_WIRE,
    );
    if (terms.error !== undefined) throw refusal(terms);
    const perGiB = terms.storedPerGiBMonth;
    if (typeof perGiB !== "string" || !/^(0|[1-9][0-9]{0,77})$/.test(perGiB)) {
      throw new LeaseError("lease_protocol", `${holder} stated no price`);
    }
    const longest = Math.max(...chunks.map(([, n]) => n));
    const price = chunkMonthPrice(perGiB, longest);
    const cap = this.#init.maxPricePerChunkMonth;
    if (cap !== undefined && price > cap) {
      throw new LeaseError(
        "lease_price",
        `${holder} asks ${price} wei per chunk-month, above ${cap}`,
      );
    }
    const { secret, commit } = auditSecret();
    const proposal = await signAsClient(this.#init.privateKey, {
      holder,
      client: this.peerId,
      root,
      chunks,
      start,
      end,
      pricePerChunkMonth: price.toString(),
      auditEveryMs: this.#auditEveryMs,
      commit,
      nonce: toHex(crypto.getRandomValues(new Uint8Array(16))),
    });
    const reply = await callPeer(
      net,
      holder,
      LEASE_PROTOCOL,
      { op: "propose", lease: proposal },
      this.#signal(),
      LEASE_WIRE,
    );
    if (reply.error !== undefined) throw refusal(reply);
    const lease = await verifyLease(reply.lease);
    if (lease.id !== proposal.id) {
      throw new LeaseError("lease_protocol", `${holder} signed another lease than proposed`);
    }
    this.book.add(lease, "client", secret);
    return lease;
  }

  /**
   * Renews lease `id` of this node's (as client) for `durationMs` more, from its end (or from now, if it
   * ended): a new lease with the same holder and chunks. `lease_not_yours` for a lease this node keeps for
   * someone else, `lease_not_found` for one it never signed.
   */
  async renew(id: string, durationMs: number): Promise<Lease> {
    const mine = this.book.get(id, "client");
    if (!mine) {
      if (this.book.get(id, "holder")) {
        throw new LeaseError(
          "lease_not_yours",
          `Lease ${id} is kept here for another client; only its client renews it`,
        );
      }
      throw new LeaseError("lease_not_found", `No lease ${id} here`);
    }
    const old = mine.lease;
    const start = Math.max(this.#now(), old.end);
    const lease = await this.#contract(old.holder, old.root, old.chunks, start, start + durationMs);
    this.book.renewed(id, "client", lease.id);
    return lease;
  }

  /**
   * Audits every live lease of this node's whose audit is due, and once more each lease that ended since
   * its last round, within an interval of its end: that round closes (and pays) the last period, up to
   * the end.
   */
  async auditDue(): Promise<void> {
    const now = this.#now();
    const due = this.book.list("client").filter((e) =>
      e.lease.start <= now && !this.#auditing.has(e.lease.id) &&
      (e.lease.end > now
        ? e.lastAudit === undefined || now - e.lastAudit >= e.lease.auditEveryMs
        : (e.lastAudit ?? e.lease.start) < e.lease.end && now - e.lease.end < e.lease.auditEveryMs)
    );
    // An ended lease gets no more rounds: what its last round could not pay is paid here.
    const unpaid = this.book.list("client").filter((e) =>
      e.lease.end <= now && !due.includes(e) && e.owedWei > e.paidWei &&
      !this.#auditing.has(e.lease.id)
    );
    await Promise.all([
      ...due.map((e) => this.audit(e.lease.id)),
      ...unpaid.map((e) => this.#payOwed(e.lease.id)),
    ]);
  }

  /**
   * One audit round of lease `id`: `challenges` blocks of random chunks. Returns how many passed and
   * failed; each counts in the reputation book, the round in the lease book; a failed round is one log line.
   */
  async audit(id: string): Promise<{ passed: number; failed: number; reasons: string[] }> {
    const entry = this.book.get(id, "client");
    if (!entry?.secret) throw new LeaseError("lease_not_found", `No lease ${id} of this node's`);
    const { lease, secret } = entry;
    const gone = this.book.replacedOf(id);
    const chunks = lease.chunks.filter(([cid]) => !gone.has(cid));
    if (chunks.length === 0) return { passed: 0, failed: 0, reasons: [] };
    this.#auditing.add(id);
    let passed = 0, failed = 0;
    /** The holder did not answer at all (unreachable, timed out): not judged on its data, nor repaired
     * until it has been silent for the grace time. */
    let silent = false;
    const reasons: string[] = [];
    try {
      // A few challenges in flight at once: a round of 32 on a loaded machine took most of a period one by
      // one.
      let started = 0;
      const worker = async () => {
        while (!silent && started < this.#challenges) {
          started++;
          const [cid, length] = chunks[Math.floor(Math.random() * chunks.length)]!;
          try {
            await this.#challenge(lease, secret!, cid, length);
            passed++;
            this.#init.reputation?.audited(lease.holder, true);
          } catch (e) {
            if (silent) return; // the round already ended on a dial that failed
            failed++;
            reasons.push(e instanceof Error ? e.message : String(e));
            if (e instanceof AuditError && e.code !== "audit_protocol") {
              this.#init.reputation?.audited(lease.holder, false);
            } else {
              silent = true; // one dial that fails is enough for this round
              this.#init.reputation?.unreachable(lease.holder);
            }
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(AUDIT_PARALLEL, this.#challenges) }, worker));
    } finally {
      this.#auditing.delete(id);
    }
    const now = this.#now();
    // The round closes the period since the last one: proven when every challenge passed (worth the price
    // of the chunks still audited), forfeited otherwise.
    const from = Math.max(lease.start, entry.lastAudit ?? lease.start);
    const span = Math.max(0, Math.min(now, lease.end) - from);
    const proven = failed === 0 && passed > 0;
    // Worth of the proven time so far less what it was before: rounding down once over the whole, not per
    // round (which lost up to a wei a round).
    const rate = BigInt(lease.pricePerChunkMonth) * BigInt(chunks.length);
    const worth = rate * BigInt(entry.provenMs + span) / BigInt(MONTH_MS) -
      rate * BigInt(entry.provenMs) / BigInt(MONTH_MS);
    const owed = entry.owedWei + (proven ? worth : 0n);
    this.book.audited(id, passed, failed, now, {
      provenMs: proven ? span : 0,
      forfeitMs: proven ? 0 : span,
      owedWei: owed,
    });
    // Paid only for what was proven; a payment that fails is owed still, and tried again next round.
    await this.#payOwed(id);
    let offline = false;
    if (silent && passed === 0) {
      const since = this.#silentSince.get(id) ?? now;
      this.#silentSince.set(id, since);
      offline = now - since >= this.#offlineGraceMs;
    } else this.#silentSince.delete(id);
    if (failed > 0) {
      this.#warn(silent ? "holder did not answer its audit" : "audit failed", {
        lease: id,
        holder: lease.holder,
        passed,
        failed,
        reason: reasons[0],
      });
      if (this.#init.mesh && this.#init.fetchChunk && (!silent || offline) && lease.end > now) {
        await this.replaceLost(id, { offline });
      }
    }
    return { passed, failed, reasons };
  }

  /** Pays lease `id`'s holder what is owed beyond what was paid; a failure is one log line (tried again). */
  async #payOwed(id: string): Promise<void> {
    const entry = this.book.get(id, "client");
    if (!this.#init.pay || !entry || entry.owedWei <= entry.paidWei || this.#paying.has(id)) return;
    const { owedWei: owed, paidWei: paid, lease: { holder } } = entry;
    this.#paying.add(id); // one payment of a lease at a time: two could pay the same wei twice
    try {
      await this.#init.pay(holder, owed - paid);
      this.book.paid(id, owed);
    } catch (e) {
      this.#warn("storage payment failed", { lease: id, holder, error: `${e}` });
    } finally {
      this.#paying.delete(id);
    }
  }

  /** One challenge of `cid` in `lease`; throws the {@link AuditError} (or the wire's error) of a failure. */
  async #challenge(lease: Lease, secret: string, cid: string, length: number): Promise<void> {
    const beacon = this.#init.beacon;
    // Paid: a block the holder can check; a chain that does not answer fails the round as unreachable does.
    const block = beacon && lease.pricePerChunkMonth !== "0"
      ? await beacon.latest().catch((e) => {
        throw new AuditError("audit_protocol", `No chain block to seed the challenge: ${e}`);
      })
      : undefined;
    const ch = this.#auditor.challenge(lease.id, cid, length, secret, block);
    try {
      const reply = await callPeer(
        this.#init.libp2p,
        lease.holder,
        AUDIT_PROTOCOL,
        ch,
        this.#signal(),
        AUDIT_WIRE,
      );
      if (reply.error !== undefined && reply.nonce === undefined) {
        throw new AuditError(
          "audit_failed",
          `The holder refused: ${String(reply.message).slice(0, 200)}`,
        );
      }
      this.#auditor.check(ch, reply);
    } catch (e) {
      this.#auditor.drop(ch);
      throw e;
    }
  }

  /**
   * After a failed audit of lease `id`: challenges each of its chunks once (not counted in the record,
   * the round was); those the holder answers wrongly are lost. Each is recovered from another copy or its
   * stripe, placed on another peer (by reputation, away from the stripe's other holders where it can) and
   * leased there until the old lease's end; the old lease is no longer audited for them. A holder that does
   * not answer at all is not judged here (it may be restarting) until it has been silent for
   * `offlineGraceMs` (`offline`): then every chunk it keeps is re-placed.
   */
  async replaceLost(id: string, options: { offline?: boolean } = {}): Promise<Replacement> {
    const entry = this.book.get(id, "client");
    const { mesh, fetchChunk } = this.#init;
    if (!entry?.secret || !mesh || !fetchChunk) {
      throw new LeaseError("lease_not_found", `No lease ${id} of this node's to repair`);
    }
    const { lease, secret } = entry;
    const gone = this.book.replacedOf(id);
    const lost: string[] = [];
    const kept = lease.chunks.filter(([cid]) => !gone.has(cid));
    if (options.offline) lost.push(...kept.map(([cid]) => cid)); // silent past the grace: all taken as lost
    else {
      // The sweep, a few challenges in flight (one by one, a lease of 60 chunks took most of a period).
      const failed = new Set<string>();
      await inPool(kept, AUDIT_PARALLEL, async ([cid, length]) => {
        try {
          await this.#challenge(lease, secret, cid, length);
        } catch (e) {
          if (e instanceof AuditError && e.code !== "audit_protocol") failed.add(cid);
        }
      });
      lost.push(...kept.map(([cid]) => cid).filter((cid) => failed.has(cid)));
    }
    const out: Replacement = { lost, leases: [], unplaced: [] };
    if (lost.length === 0) return out;
    const root = CID.parse(lease.root);
    const deps = { get: (c: CID) => this.#init.store.get(c), fetch: fetchChunk };
    const recovered = new Map<string, Uint8Array>();
    const lengths = new Map(lease.chunks);
    const rebuilt = new Map<string, Uint8Array>();
    await inPool(lost, AUDIT_PARALLEL, async (cid) => {
      const bytes = await recoverChunk(deps, root, CID.parse(cid)).catch(() => null);
      if (bytes && bytes.length === lengths.get(cid)) rebuilt.set(cid, bytes);
    });
    for (const cid of lost) if (rebuilt.has(cid)) recovered.set(cid, rebuilt.get(cid)!); // in lease order
    const near = await this.#stripeHolders(lease);
    const placed = await placeLost(
      {
        candidates: () =>
          mesh.connectedPeers().map((peer) => ({
            peer,
            score: this.#init.reputation?.score(peer).score ?? 1,
          })),
        store: async (peer, chunks) =>
          (await mesh.storeChunks(peer, chunks)).map((r) => r.accepted),
      },
      recovered,
      new Set([lease.holder, this.peerId]),
      (cid) => near.get(cid) ?? new Set(),
    );
    const now = this.#now();
    const leasedNow = new Set<string>();
    for (const [peer, cids] of placed) {
      const [outcome] = await this.leaseFile(
        root,
        new Map(cids.map((c) => [c, new Set([peer])])),
        (c) => lengths.get(c)!,
        0,
        Math.max(now + this.#minTermMs, lease.end),
      );
      if (outcome?.lease) {
        out.leases.push(outcome.lease);
        for (const c of cids) leasedNow.add(c);
      }
    }
    this.book.replaced(id, [...leasedNow], now);
    out.unplaced = lost.filter((c) => !leasedNow.has(c));
    this.#warn("re-placed lost chunks", {
      lease: id,
      holder: lease.holder,
      lost: lost.length,
      replaced: leasedNow.size,
      to: [...placed.keys()],
    });
    return out;
  }

  /** For each chunk of `lease`'s file: the holders of live leases of the other chunks of its stripe. */
  async #stripeHolders(lease: Lease): Promise<Map<string, Set<string>>> {
    const out = new Map<string, Set<string>>();
    const bytes = await this.#init.store.get(CID.parse(lease.root));
    if (!bytes || CID.parse(lease.root).code !== DAG_JSON_CODE) return out;
    let manifest: Manifest;
    try {
      manifest = decodeManifest(bytes);
    } catch {
      return out;
    }
    const stripeOf = new Map<string, number>();
    manifest.stripes.forEach((stripe, s) => stripe.forEach((c) => stripeOf.set(c.toString(), s)));
    const byStripe = new Map<number, Set<string>>();
    const now = this.#now();
    for (const e of this.book.list("client")) {
      if (e.lease.root !== lease.root || e.lease.end <= now) continue;
      for (const [cid] of e.lease.chunks) {
        const s = stripeOf.get(cid);
        if (s === undefined) continue;
        byStripe.set(s, (byStripe.get(s) ?? new Set()).add(e.lease.holder));
      }
    }
    for (const [cid] of lease.chunks) {
      const s = stripeOf.get(cid);
      if (s !== undefined) out.set(cid, byStripe.get(s) ?? new Set());
    }
    return out;
  }

  // ---- holder side ----------------------------------------------------------------------------

  #handleLease = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    await answerMessage(stream, this.#signal(), LEASE_WIRE, async (m) => {
      if (m.op === "terms") {
        return {
          storedPerGiBMonth: this.#init.storedPerGiBMonth ?? "0",
          freeBytes: Math.max(0, this.#capacity() - this.book.heldBytes(this.#now())),
        };
      }
      if (m.op === "propose") {
        const run = this.#proposals.then(() => this.accept(m.lease, peer));
        this.#proposals = run.catch(() => {});
        return { lease: await run };
      }
      return { error: "lease_malformed", message: 'op must be "terms" or "propose"' };
    });
  };

  #capacity(): number {
    return this.#init.capacityBytes ?? this.#init.store.stats().maxBytes;
  }

  /**
   * Takes a lease `from` its client, or refuses it with a {@link LeaseError} that says why. Returns the lease
   * signed by both, filed in the book.
   */
  async accept(input: unknown, from: string): Promise<Lease> {
    const lease = decodeLease(input, { proposal: true });
    if (lease.holder !== this.peerId) {
      throw new LeaseError(
        "lease_not_yours",
        `Lease ${lease.id} names ${lease.holder} as holder, not this node`,
      );
    }
    if (lease.client !== from) {
      throw new LeaseError(
        "lease_not_yours",
        `Lease ${lease.id} is ${lease.client}'s to propose, not ${from}'s`,
      );
    }
    await verifyClientHalf(lease);
    const now = this.#now();
    if (lease.end - now < this.#minTermMs) {
      throw new LeaseError(
        "lease_expired",
        `Lease ${lease.id} ends ${
          new Date(lease.end).toISOString()
        }: less than ${this.#minTermMs} ms left`,
      );
    }
    if (lease.start < now - this.#maxSkewMs) {
      throw new LeaseError(
        "lease_expired",
        `Lease ${lease.id} starts in the past (${new Date(lease.start).toISOString()})`,
      );
    }
    const longest = Math.max(...lease.chunks.map(([, n]) => n));
    const price = this.priceFor(longest);
    if (BigInt(lease.pricePerChunkMonth) < price) {
      throw new LeaseError(
        "lease_price",
        `This node keeps chunks for ${price} wei per chunk-month, not ${lease.pricePerChunkMonth}`,
      );
    }
    let adding = 0;
    for (const [key, length] of lease.chunks) {
      const bytes = await this.#init.store.get(CID.parse(key));
      if (!bytes || bytes.length !== length) {
        throw new LeaseError(
          "lease_missing",
          `This node has no ${length}-byte chunk ${key}: a lease covers only chunks it holds`,
        );
      }
      if (!this.book.leasedElsewhere(key, now)) adding += length;
    }
    const held = this.book.heldBytes(now);
    const capacity = this.#capacity();
    if (held + adding > capacity) {
      throw new LeaseError(
        "lease_capacity",
        `Leasing ${adding} more bytes would pass this node's capacity (${held} of ${capacity} bytes leased)`,
      );
    }
    const quota = this.#init.volunteerBytes ?? 1024 ** 3;
    if (price === 0n) {
      const forClient = this.book.heldBytes(now, from);
      if (forClient + adding > quota) {
        throw new LeaseError(
          "lease_capacity",
          `Free leases for ${from} are capped at ${quota} bytes (${forClient} leased)`,
        );
      }
    }
    const signed = await signAsHolder(this.#init.privateKey, lease);
    this.book.add(signed, "holder");
    return signed;
  }

  #handleAudit = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    await answerMessage(stream, this.#signal(), AUDIT_WIRE, async (m) => {
      const ch = decodeChallenge(m);
      const entry = this.book.get(ch.lease, "holder");
      if (!entry) throw new LeaseError("lease_not_found", `No lease ${ch.lease} is kept here`);
      if (entry.lease.client !== peer) {
        throw new LeaseError("lease_not_yours", `Lease ${ch.lease} is not ${peer}'s to audit`);
      }
      // Each answer reads and hashes a whole chunk: a client gets a round's worth and a full sweep per
      // audit interval, not a disk's bandwidth.
      const now = this.#now();
      const allowed = Math.max(64, 2 * entry.lease.chunks.length);
      const used = this.#answered.get(ch.lease);
      if (!used || now - used.since >= entry.lease.auditEveryMs) {
        this.#answered.set(ch.lease, { since: now, n: 1 });
      } else if (++used.n > allowed) {
        throw new MeshError(
          "rate_limited",
          `Lease ${ch.lease} is audited every ${entry.lease.auditEveryMs} ms: ${allowed} challenges each`,
        );
      }
      if (this.#answered.size > 100_000) this.#answered.clear();
      const chunk = entry.lease.chunks.find(([cid]) => cid === ch.cid);
      if (!chunk) {
        throw new LeaseError("lease_not_found", `Lease ${ch.lease} does not cover ${ch.cid}`);
      }
      await this.#checkSeed(ch, entry.lease, chunk[1]);
      const bytes = await this.#init.store.get(CID.parse(ch.cid));
      return answer(ch, bytes);
    });
  };

  /**
   * A holder with the chain takes challenges of its paid leases only when seeded by a real, recent block and
   * at the index that block gives (so the client cannot aim them, nor reuse an old block); otherwise throws
   * {@link AuditError} `audit_beacon`, saying why.
   */
  async #checkSeed(ch: Challenge, lease: Lease, length: number): Promise<void> {
    const beacon = this.#init.beacon;
    if (ch.block === undefined || ch.blockHash === undefined) {
      if (beacon && lease.pricePerChunkMonth !== "0") {
        throw new AuditError(
          "audit_beacon",
          `Lease ${lease.id} is paid: its challenges must name a recent chain block, whose hash seeds them`,
        );
      }
      return;
    }
    if (!beacon) {
      throw new AuditError(
        "audit_beacon",
        `The challenge names block ${ch.block}, but this node has no chain to check it on`,
      );
    }
    const index = beaconIndex(ch.blockHash, lease.id, ch.nonce, ch.cid, length);
    if (ch.index !== index) {
      throw new AuditError(
        "audit_beacon",
        `The challenge asks for block ${ch.index} of the chunk, but block ${ch.block}'s hash gives ${index}`,
      );
    }
    await beacon.check({ number: ch.block, hash: ch.blockHash });
  }

  /**
   * Deletes the chunks of holder leases that ended (past the grace time), unless pinned here (this node's
   * own files) or under another live lease. Returns the CIDs deleted.
   */
  async collect(): Promise<CID[]> {
    const now = this.#now();
    const ended = this.book.ended(now - this.#graceMs);
    if (ended.length === 0) return [];
    const pinned = await pinnedChunks(this.#init.store);
    const gone: CID[] = [];
    for (const { lease } of ended) {
      for (const [key] of lease.chunks) {
        if (pinned.has(key) || this.book.leasedElsewhere(key, now, lease.id)) continue;
        const cid = CID.parse(key);
        if (await this.#init.store.delete(cid)) gone.push(cid);
      }
      this.book.collected(lease.id, now);
    }
    if (gone.length) await this.#init.onDeleted?.(gone);
    return gone;
  }

  /** Leases in both roles, as the API shows them. */
  list(): { asClient: LeaseView[]; asHolder: LeaseView[] } {
    const now = this.#now();
    const view = (e: LeaseEntry): LeaseView => ({
      id: e.lease.id,
      role: e.role,
      holder: e.lease.holder,
      client: e.lease.client,
      root: e.lease.root,
      chunks: e.lease.chunks.length,
      bytes: e.lease.chunks.reduce((n, [, b]) => n + b, 0),
      start: new Date(e.lease.start).toISOString(),
      end: new Date(e.lease.end).toISOString(),
      live: e.lease.start <= now && now < e.lease.end,
      pricePerChunkMonth: e.lease.pricePerChunkMonth,
      auditEveryMs: e.lease.auditEveryMs,
      passed: e.passed,
      failed: e.failed,
      ...(e.lastAudit !== undefined ? { lastAudit: new Date(e.lastAudit).toISOString() } : {}),
      ...(e.lastPassed !== undefined ? { lastPassed: e.lastPassed } : {}),
      ...(e.collected !== undefined ? { collected: new Date(e.collected).toISOString() } : {}),
      ...(e.renewedBy !== undefined ? { renewedBy: e.renewedBy } : {}),
      provenMs: e.provenMs,
      forfeitMs: e.forfeitMs,
      owedWei: e.owedWei.toString(),
      paidWei: e.paidWei.toString(),
    });
    return {
      asClient: this.book.list("client").map(view),
      asHolder: this.book.list("holder").map(view),
    };
  }
}
