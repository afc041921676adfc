/**
 * Paid lookups: the market over `/meshgate/lookup/1.0.0` (`mesh/lookup.ts`). A node that offers lookups
 * (`serve --lookup`) answers "who provides X" with signed records, at its offer's price per 1,000 lookups; a
 * client (`get --lookup-via <peer>`, `?lookup=paid`) asks it instead of walking the DHT itself.
 *
 * The client pays per *successful* lookup only: once a peer the record names delivered a chunk that matched
 * its CID, it sends the operator a voucher on its channel to it, grown by one lookup's price and naming the
 * record's nonce (`op: "pay"`). A lookup that names nobody, or only peers that do not deliver, is not paid and
 * counts against the operator in the reputation book (its `lookup` factor, kept locally: a peer that does not
 * deliver proves nothing to others, it may just have gone away). A record whose provider statement its
 * provider did not sign is the operator's own signed lie: it is refused and the operator excluded here, the
 * record kept as the proof.
 *
 * The operator keeps at most `maxUnpaid` answered and unpaid lookups per client (each lapses after
 * `unpaidMs`: failed lookups are never paid); past that it refuses until paid. Its desk checks every voucher
 * as it does for deliveries (signed by the channel's payer, this operator's channel, bound to this client);
 * what a lookup voucher adds is no credit for deliveries.
 *
 * One lookup costs ⌈per1000Lookups / 1000⌉ wei (so tiny prices round up to a wei a lookup).
 *
 * @module
 */
import type { Connection, Libp2p, PrivateKey } from "@libp2p/interface";
import type { CID } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import {
  callLookup,
  LookupError,
  lookupNonce,
  type LookupRecord,
  LookupServer,
  type LookupServerInit,
  type VerifiedLookup,
  verifyLookupRecord,
} from "../mesh/lookup.ts";
import type { MeshNode } from "../mesh/node.ts";
import { warn } from "../mesh/_log.ts";
import type { Pay } from "../pay/load.ts";
import type { PayingClient, PaymentDesk, VoucherAccepted, VoucherMessage } from "../pay/mod.ts";
import type { ReputationBook } from "../reputation/book.ts";
import { type Offer, verifyOffer } from "./offers.ts";
import type { OfferService } from "./offer_service.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("market:lookups", msg, fields);

/** Wei one lookup costs at `per1000` wei per 1,000 (rounded up). */
export function lookupPrice(per1000: bigint): bigint {
  return (per1000 + 999n) / 1000n;
}

export interface LookupServiceInit {
  mesh: MeshNode;
  /** The node's identity key (records and statements are signed with it). */
  privateKey: PrivateKey;
  /** Whether this node holds a block (it signs statements of those). */
  has: (cid: CID) => boolean | Promise<boolean>;
  /** Offer lookups: answer `find`. Default: false (the node still signs statements of what it holds). */
  serve?: boolean;
  /** Wei per 1,000 lookups this node charges (its offer's). 0: lookups are free. Default: 0. */
  per1000Lookups?: bigint;
  /** The desk that takes lookup vouchers; needed when `per1000Lookups` > 0. */
  desk?: PaymentDesk;
  /** Pays the operators this node looks up through (when they charge). */
  payer?: PayingClient;
  /** The payment layer's module (voucher messages), with `desk` or `payer`. */
  pay?: Pay;
  /** Where lookups count (the `lookup` factor) and forgers are excluded. */
  book?: ReputationBook;
  /** Known offers, answered to `offers` and used to pick an operator. */
  offers?: OfferService;
  /** Unpaid lookups a client may have at once. Default: 4. */
  maxUnpaid?: number;
  /** An unpaid lookup lapses after this, in ms. Default: 600 000. */
  unpaidMs?: number;
  /** Highest price paid per 1,000 lookups, wei. Default: 10^15 (0.001 ETH). */
  maxPer1000?: bigint;
  /** Longest wait for a provider named in a record to deliver, in ms. Default: 5 000. */
  deliveryMs?: number;
  /** The server's tuning (providers per record, walk and statement deadlines). */
  server?: Pick<LookupServerInit, "want" | "findMs" | "statementMs" | "cacheMs">;
}

/** What a lookup through an operator gave. */
export interface LookupFetch {
  bytes: Uint8Array;
  /** The peer that delivered. */
  provider: string;
  record: LookupRecord;
  /** Time of the lookup alone, and to the verified chunk, ms. */
  lookupMs: number;
  totalMs: number;
}

/** Totals, for logs and tests. */
export interface LookupStats {
  /** Operator side: records signed, lookups paid, wei taken for them. */
  answered: number;
  paid: number;
  earnedWei: bigint;
  /** Client side: lookups asked, delivered, failed, forged, and wei paid. */
  asked: number;
  delivered: number;
  failed: number;
  forged: number;
  spentWei: bigint;
}

interface Client {
  /** Nonce -> when answered. */
  unpaid: Map<string, number>;
  /** Wei taken beyond the lookups paid so far. */
  credit: bigint;
}

const MAX_CLIENTS = 10_000;

/** Both sides of paid lookups for one node. */
export class LookupService {
  readonly server: LookupServer;
  readonly #init: LookupServiceInit;
  readonly #price: bigint;
  readonly #maxUnpaid: number;
  readonly #unpaidMs: number;
  readonly #clients = new Map<string, Client>();
  /** Operator -> its lookup price (per 1,000), asked once. */
  readonly #quotes = new Map<string, Promise<bigint>>();
  readonly #payments = new Set<Promise<void>>();
  readonly #stats: LookupStats = {
    answered: 0,
    paid: 0,
    earnedWei: 0n,
    asked: 0,
    delivered: 0,
    failed: 0,
    forged: 0,
    spentWei: 0n,
  };

  constructor(init: LookupServiceInit) {
    this.#init = init;
    this.#price = init.per1000Lookups ?? 0n;
    if (this.#price < 0n) throw new RangeError("per1000Lookups must not be negative");
    if (init.serve && this.#price > 0n && (!init.desk || !init.pay)) {
      throw new MeshError(
        "lookup_config",
        "Paid lookups need the payment desk: run with --chain and a pay key",
      );
    }
    this.#maxUnpaid = init.maxUnpaid ?? 4;
    this.#unpaidMs = init.unpaidMs ?? 600_000;
    this.server = new LookupServer({
      ...init.server,
      mesh: init.mesh,
      privateKey: init.privateKey,
      has: init.has,
      serve: init.serve,
      gate: { admit: (peer) => this.#admit(peer), answered: (peer, r) => this.#answered(peer, r) },
      ops: (peer, req, connection) => this.#op(peer, req, connection),
    });
  }

  start(net: Pick<Libp2p, "handle" | "unhandle" | "hangUp">): Promise<void> {
    return this.server.start(net);
  }

  /** Waits for the payments under way, then stops answering. */
  async stop(): Promise<void> {
    await this.settle();
    await this.server.stop();
  }

  /** Resolves once every payment sent so far was answered (or failed). */
  async settle(): Promise<void> {
    await Promise.all([...this.#payments]);
  }

  stats(): LookupStats {
    return { ...this.#stats };
  }

  // -----------------------------------------------------------------------------------------------------------
  // Operator side

  #client(peer: string): Client {
    let c = this.#clients.get(peer);
    if (c === undefined) {
      if (this.#clients.size >= MAX_CLIENTS) {
        this.#clients.delete(this.#clients.keys().next().value!);
      }
      c = { unpaid: new Map(), credit: 0n };
      this.#clients.set(peer, c);
    }
    return c;
  }

  #admit(peer: string): void {
    if (this.#price === 0n) return;
    const c = this.#client(peer);
    const now = Date.now();
    for (const [nonce, at] of c.unpaid) if (now - at > this.#unpaidMs) c.unpaid.delete(nonce);
    if (c.unpaid.size >= this.#maxUnpaid) {
      throw new LookupError(
        "lookup_refused",
        `${c.unpaid.size} lookups answered to you are not paid: pay for those that delivered (the others lapse within ${
          Math.round(this.#unpaidMs / 1000)
        } s)`,
      );
    }
  }

  #answered(peer: string, record: LookupRecord): void {
    this.#stats.answered++;
    if (this.#price > 0n) this.#client(peer).unpaid.set(record.nonce, Date.now());
  }

  async #op(
    peer: string,
    req: Record<string, unknown>,
    _connection: Connection,
  ): Promise<Record<string, unknown> | undefined> {
    if (req.op === "quote") {
      if (!this.server.serving) {
        throw new LookupError("lookup_refused", "This node does not offer lookups");
      }
      return { op: "quote", per1000Lookups: this.#price.toString(), maxUnpaid: this.#maxUnpaid };
    }
    if (req.op === "offers") return { op: "offers", offers: this.#matching(req) };
    if (req.op === "pay") return await this.#pay(peer, req);
    return undefined;
  }

  /** Known offers that charge at most `max` (wei, decimal) for `price` (one of the offer's prices). */
  #matching(req: Record<string, unknown>): Offer[] {
    const field = typeof req.price === "string" ? req.price : "servedPerGiB";
    if (!["servedPerGiB", "storedPerGiBMonth", "per1000Lookups", "relayedPerGiB"].includes(field)) {
      throw new LookupError("lookup_malformed", `"${field.slice(0, 40)}" is not a price of offers`);
    }
    const max = typeof req.max === "string" && /^[0-9]{1,78}$/.test(req.max)
      ? BigInt(req.max)
      : undefined;
    const all = this.#init.offers?.known() ?? [];
    return all.filter((o) => {
      const p = BigInt(o.prices[field as keyof Offer["prices"]]);
      return max === undefined || p <= max;
    }).slice(0, 32);
  }

  /** A voucher for lookups `nonces` answered to `peer`: checked by the desk, then those lookups are paid. */
  async #pay(peer: string, req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const desk = this.#init.desk, pay = this.#init.pay;
    if (this.#price === 0n || !desk || !pay) {
      throw new LookupError("lookup_payment", "Lookups are free here: nothing to pay");
    }
    const nonces = req.nonces;
    if (!Array.isArray(nonces) || nonces.length === 0 || nonces.length > 64) {
      throw new LookupError("lookup_payment", "A lookup payment names 1 to 64 lookup nonces");
    }
    const c = this.#client(peer);
    for (const n of nonces) {
      if (typeof n !== "string" || !c.unpaid.has(n)) {
        throw new LookupError(
          "lookup_payment",
          `Lookup "${String(n).slice(0, 40)}" was not answered to you, or is paid already`,
        );
      }
    }
    const message = pay.parseVoucherMessage(req);
    let growth: bigint;
    try {
      growth = await desk.takeOtherVoucher(peer, message);
    } catch (e) {
      // A forged voucher bans the peer at the desk: it is hung up on once answered.
      if (desk.bannedFor(peer) !== undefined && e instanceof Error) {
        Object.assign(e, { hangUp: true });
      }
      throw e;
    }
    c.credit += growth;
    this.#stats.earnedWei += growth;
    const due = lookupPrice(this.#price) * BigInt(nonces.length);
    if (c.credit < due) {
      throw new LookupError(
        "lookup_payment",
        `The voucher adds ${growth} wei; ${nonces.length} lookups cost ${due} wei (${c.credit} wei held for you)`,
      );
    }
    c.credit -= due;
    for (const n of nonces) c.unpaid.delete(n as string);
    this.#stats.paid += nonces.length;
    return {
      op: "accepted",
      cumulativeAmount: message.voucher.cumulativeAmount.toString(),
      servedBytes: "0",
    };
  }

  // -----------------------------------------------------------------------------------------------------------
  // Client side

  /** `operator`'s price per 1,000 lookups; refused above `maxPer1000`. */
  #quote(operator: string, signal?: AbortSignal): Promise<bigint> {
    // The operator chosen: its next requests go on a stream negotiated ahead (`warm.ts`).
    this.server.keepWarm(operator);
    let q = this.#quotes.get(operator);
    if (q === undefined) {
      q = callLookup(
        this.server.dialer,
        operator,
        { op: "quote" },
        signal ?? AbortSignal.timeout(5000),
      ).then((m) => {
        if (typeof m.per1000Lookups !== "string" || !/^[0-9]{1,78}$/.test(m.per1000Lookups)) {
          throw new LookupError("lookup_malformed", `Operator "${operator}" sent no lookup price`);
        }
        return BigInt(m.per1000Lookups);
      });
      q.catch(() => this.#quotes.delete(operator));
      this.#quotes.set(operator, q);
    }
    const max = this.#init.maxPer1000 ?? 10n ** 15n;
    return q.then((price) => {
      if (price > max) {
        throw new LookupError(
          "lookup_refused",
          `Operator "${operator}" charges ${price} wei per 1,000 lookups, above the cap of ${max}`,
        );
      }
      if (price > 0n && (!this.#init.payer || !this.#init.pay)) {
        throw new LookupError(
          "lookup_refused",
          `Operator "${operator}" charges for lookups and this node has no pay account (--chain)`,
        );
      }
      return price;
    });
  }

  /**
   * Asks `operator` who provides `cid` and checks the record. A forged record excludes the operator here (the
   * record is the proof) and throws `lookup_forged`; an excluded operator is not asked (`lookup_refused`).
   */
  async find(operator: string, cid: CID, signal?: AbortSignal): Promise<VerifiedLookup> {
    const book = this.#init.book;
    if (book?.isExcluded(operator)) {
      throw new LookupError("lookup_refused", `Operator "${operator}" is excluded here`);
    }
    if (operator === this.#init.mesh.peerId) {
      throw new LookupError("lookup_refused", "A node does not pay itself for lookups");
    }
    await this.#quote(operator, signal);
    this.#stats.asked++;
    const nonce = lookupNonce();
    const m = await callLookup(
      this.server.dialer,
      operator,
      { op: "find", cid: cid.toString(), nonce },
      signal ?? AbortSignal.timeout(10_000),
    );
    try {
      return await verifyLookupRecord(m.record, { operator, cid, nonce });
    } catch (e) {
      if ((e as MeshError).code === "lookup_forged") {
        this.#stats.forged++;
        book?.excluded(operator, {
          kind: "forged_lookup",
          at: Date.now(),
          evidence: { reason: (e as Error).message, record: m.record },
        });
      } else book?.lookedUp(operator, false);
      throw e;
    }
  }

  /**
   * Fetches the chunk `cid` through a lookup by `operator`: the record's providers are asked in turn (those
   * that signed a statement first) until one delivers a chunk matching its CID; then the operator is paid for
   * the lookup (in the background: {@link settle} waits) and credited in the book. Throws `lookup_failed`,
   * unpaid and counted against the operator, when nobody named delivers.
   */
  async fetch(operator: string, cid: CID, signal?: AbortSignal): Promise<LookupFetch> {
    const t0 = performance.now();
    const { record, stated } = await this.find(operator, cid, signal);
    const lookupMs = performance.now() - t0;
    const providers = [...record.providers].sort((a, b) =>
      Number(stated.has(b.peerId)) - Number(stated.has(a.peerId))
    ).filter((p) => p.peerId !== this.#init.mesh.peerId);
    for (const p of providers) {
      signal?.throwIfAborted();
      try {
        const each = AbortSignal.timeout(this.#init.deliveryMs ?? 5000);
        const bytes = await this.#init.mesh.fetchChunk(
          { peerId: p.peerId, multiaddrs: p.multiaddrs },
          cid,
          { signal: signal ? AbortSignal.any([signal, each]) : each },
        );
        if (bytes === null) continue;
        this.#stats.delivered++;
        this.#init.book?.lookedUp(operator, true);
        this.#payFor(operator, record.nonce);
        return { bytes, provider: p.peerId, record, lookupMs, totalMs: performance.now() - t0 };
      } catch (e) {
        if (signal?.aborted) throw e;
        // That provider failed (away, refused, bad bytes: the exchange reported those); the next one.
      }
    }
    this.#stats.failed++;
    this.#init.book?.lookedUp(operator, false);
    throw new LookupError(
      "lookup_failed",
      record.providers.length === 0
        ? `Operator "${operator}" found no provider of ${cid}`
        : `None of the ${record.providers.length} peers operator "${operator}" named delivered ${cid}`,
    );
  }

  /**
   * A node's paid read of one chunk (`?lookup=paid`): through `via`, or the best known operator
   * ({@link chooseOperator}); null when the lookup failed (unpaid, counted against the operator), so the
   * node's own search goes on. Throws `lookup_refused` when no operator is known or it refuses.
   */
  async read(cid: CID, via?: string, signal?: AbortSignal): Promise<Uint8Array | null> {
    const operator = via ?? this.chooseOperator();
    if (operator === undefined) {
      throw new LookupError(
        "lookup_refused",
        "No lookup operator is known: name one (?via=<peer>, get --lookup-via <peer>)",
      );
    }
    try {
      return (await this.fetch(operator, cid, signal)).bytes;
    } catch (e) {
      if (signal?.aborted || (e as MeshError).code === "lookup_refused") throw e;
      log("a paid lookup failed", { cid: cid.toString(), operator, error: String(e) });
      return null;
    }
  }

  /** Pays one delivered lookup, in the background. */
  #payFor(operator: string, nonce: string): void {
    const done = this.#quote(operator).then(async (per1000) => {
      if (per1000 === 0n) return;
      const wei = lookupPrice(per1000);
      const pay = this.#init.pay!;
      await this.#init.payer!.payFor(operator, wei, {
        deposit: wei * 1000n, // a channel opened for lookups holds a thousand of them
        send: (message: VoucherMessage) => this.#sendVoucher(operator, [nonce], message, pay),
      });
      this.#stats.spentWei += wei;
    }).catch((e) => log("paying a lookup failed", { operator, error: String(e) }));
    this.#payments.add(done);
    void done.finally(() => this.#payments.delete(done));
  }

  async #sendVoucher(
    operator: string,
    nonces: string[],
    message: VoucherMessage,
    pay: Pay,
  ): Promise<VoucherAccepted> {
    const m = await callLookup(
      this.server.dialer,
      operator,
      { op: "pay", nonces, ...pay.encodeVoucherMessage(message) },
      AbortSignal.timeout(10_000),
    );
    if (m.op !== "accepted" || typeof m.cumulativeAmount !== "string") {
      throw new LookupError("lookup_payment", `Operator "${operator}" did not accept the payment`);
    }
    return { cumulativeAmount: BigInt(m.cumulativeAmount), servedBytes: 0n };
  }

  /**
   * Asks `operator` which offers it knows charging at most `max` for `price`; each offer is checked (signed
   * by its peer, not expired), and an answer holding a forged one is refused (`lookup_forged`).
   */
  async matchOffers(
    operator: string,
    query: { price?: keyof Offer["prices"]; max?: bigint } = {},
    signal?: AbortSignal,
  ): Promise<Offer[]> {
    const m = await callLookup(
      this.server.dialer,
      operator,
      {
        op: "offers",
        ...(query.price ? { price: query.price } : {}),
        ...(query.max !== undefined ? { max: query.max.toString() } : {}),
      },
      signal ?? AbortSignal.timeout(10_000),
    );
    if (!Array.isArray(m.offers)) {
      throw new LookupError("lookup_malformed", "An offers answer lists offers");
    }
    const out: Offer[] = [];
    for (const raw of m.offers) {
      try {
        out.push(await verifyOffer(raw));
      } catch (e) {
        throw new LookupError(
          "lookup_forged",
          `Operator "${operator}" passed on an offer that does not hold: ${(e as Error).message}`,
          { cause: e },
        );
      }
    }
    return out;
  }

  /** The operator a paid read goes through when none is named: of the known offers pricing lookups, the best
   * scored per wei; undefined when none is known. */
  chooseOperator(): string | undefined {
    const book = this.#init.book;
    const self = this.#init.mesh.peerId;
    let best: { peer: string; value: number } | undefined;
    for (const o of this.#init.offers?.known() ?? []) {
      const price = BigInt(o.prices.per1000Lookups);
      if (price === 0n || o.peer === self) continue;
      const score = book ? book.candidate(o.peer).score : 1;
      const value = score / Number(lookupPrice(price));
      if (score > 0 && (best === undefined || value > best.value)) best = { peer: o.peer, value };
    }
    return best?.peer;
  }
}
