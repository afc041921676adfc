/**
 * The market service of a node: it posts this node's intents as a buyer and answers others' as a seller.
 *
 * - **Buyer.** {@link MarketService.want} signs an intent with a fresh X25519 key, gossips it on its topic,
 *   puts this node's record of intents for that topic in the DHT and provides the topic's key (`intent.ts`).
 *   Sealed quotes arrive on `/meshgate/market/1.0.0`; each is opened with the intent's key and checked
 *   (`quote.ts`) before it is kept, and {@link MarketService.quotes} ranks them by price and the seller's
 *   trust. {@link MarketService.withdraw} gossips a signed withdrawal and republishes the record without it.
 * - **Seller.** The node subscribes to the topics of its listings (`listing.ts`), with a gossipsub topic
 *   validator that rejects malformed, forged and expired intents so they do not spread; it looks the topics
 *   up in the DHT at start and when a listing is added, for intents posted before it came online. A matching
 *   intent is answered with one quote (the cheapest matching listing's), sealed to the intent's key and sent
 *   to the buyer alone; a listing with `auto: false` holds it for the operator ({@link MarketService.answer}).
 *
 * Wire: one JSON request per stream (`mesh/message.ts`): `{op: "quote", sealed}` → `{ok: true}` or
 * `{error: code, message}`. Nothing of a quote but its intent's ID travels in the clear; this node's logs
 * and inbox never hold an opened quote, only the buyer's own memory does.
 *
 * Intents expire: every {@link PRUNE_INTERVAL_MS} expired intents (own and seen) and their quotes are
 * dropped; own records are republished every `republishMs` with only live intents.
 *
 * @module
 */
import type { KadDHT } from "@libp2p/kad-dht";
import type { GossipSub, Message } from "@libp2p/gossipsub";
import { TopicValidatorResult } from "@libp2p/gossipsub";
import type { Libp2p, PeerId, PrivateKey, Stream } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { MeshError } from "../errors.ts";
import { answerMessage, callPeer } from "../mesh/message.ts";
import {
  exportPrivateKey,
  generateHpkeKeyPair,
  type HpkeKeyPair,
  importHpkeKeyPair,
} from "./hpke.ts";
import {
  checkGossip,
  decodeIntentRecord,
  encodeGossip,
  encodeIntentRecord,
  fromBase64,
  gossipTopic,
  type Intent,
  intentId,
  intentRecordKey,
  type IntentTerms,
  signIntent,
  signIntentRecord,
  signWithdrawal,
  toBase64,
  topicProviderKey,
  verifyIntent,
} from "./intent.ts";
import { type Listing, type ListingInit, Listings } from "./listing.ts";
import {
  checkSealed,
  DEFAULT_TRUST_WEIGHT,
  openQuote,
  type Quote,
  quoteId,
  type RankedQuote,
  rankQuotes,
  type SealedQuote,
  sealQuote,
  signQuote,
} from "./quote.ts";
// Types only: the chain side (viem) is loaded by nodes with a chain alone (`deals_load.ts`).
import type { Deal, DealDesk } from "./deals.ts";
import type { CheckedRating, Rating, RatingDesk } from "./rating.ts";

export const MARKET_PROTOCOL = "/meshgate/market/1.0.0";
/** Largest market message: a sealed quote is ~2.8 KiB of base64. */
const MAX_MESSAGE_BYTES = 8 * 1024;
/** How often expired intents and their quotes are dropped. */
export const PRUNE_INTERVAL_MS = 5_000;
/** Intents seen from others, kept at most (the oldest go first). */
const MAX_SEEN = 10_000;
/** Quotes kept per own intent at most (one per seller). */
const MAX_QUOTES_PER_INTENT = 256;
/** Inbox entries kept (what arrived, sealed). */
const MAX_INBOX = 200;
/** Peers a node passes an accepted rating on to at most. */
const MAX_RATING_FANOUT = 32;

export class MarketProtocolError extends MeshError {
  override name = "MarketProtocolError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("market_protocol", message, options);
  }
}

/** How market messages are read: size cap and error (a client of {@link MARKET_PROTOCOL} reads answers so). */
export const MARKET_WIRE = {
  maxBytes: MAX_MESSAGE_BYTES,
  what: "market",
  error: (m: string, cause?: unknown) => new MarketProtocolError(m, { cause }),
};

/** What the market needs of libp2p: the DHT, gossipsub as `pubsub`, streams. */
export type MarketLibp2p = Libp2p<{ dht: KadDHT; pubsub?: GossipSub }>;

export interface MarketServiceInit {
  privateKey: PrivateKey;
  peerId: string;
  /** Where own intents (with their sealing keys, mode 0600) and listings are kept. Default: memory only. */
  dataDir?: string;
  /** A seller's trust, 0 to 1 (the reputation book's score). Default: 0 for everyone. */
  trust?: (peer: string) => number;
  /** Weight of trust in the ranking. Default: {@link DEFAULT_TRUST_WEIGHT}. */
  trustWeight?: number;
  /** How often own DHT records are put again, ms. Default: 10 min. */
  republishMs?: number;
  /** How often expired intents and their quotes are dropped, ms. Default: {@link PRUNE_INTERVAL_MS}. */
  pruneMs?: number;
  /** Deadline of one exchange with a peer or one DHT operation, ms. Default: 10 000. */
  timeoutMs?: number;
  /** Where log entries go (never a price or terms). Default: libp2p's logger, `meshgate:market`. */
  log?: (entry: Record<string, unknown>) => void;
  /** Deals through the escrow (`deals.ts`, not started: the service starts and stops it): quotes then carry
   * its account as the payout, accepted quotes are funded from it, deals funded for this node's quotes are
   * confirmed. Default: no deals. */
  deals?: DealDesk;
  /** Where ratings of deals are checked and kept (`rating.ts`, a started `RatingDesk`): own ratings and
   * those peers send; each one accepted is passed on to the connected peers. Default: ratings refused. */
  ratings?: Pick<RatingDesk, "accept">;
}

/** An own intent: the signed intent and the key pair its quotes open with. */
interface Own {
  intent: Intent;
  keys: HpkeKeyPair;
  quotes: Map<string, Quote>;
}

/** What arrived on the wire, as it arrived (sealed quotes sealed). */
export interface InboxEntry {
  at: number;
  from: string;
  kind: "intent" | "withdraw" | "quote";
  /** The message as received. */
  body: unknown;
}

/** A quote this node sent, as a seller. */
export interface SentQuote {
  intent: string;
  buyer: string;
  listing: string;
  quote: Quote;
  delivered: boolean;
  error?: string;
}

export class MarketService {
  readonly listings: Listings;
  /** Deals through the escrow, when `escrow` is configured. */
  readonly deals?: DealDesk;
  readonly #ratings?: Pick<RatingDesk, "accept">;
  #payout?: { chainId: number; address: string; link: string };
  readonly #key: PrivateKey;
  readonly #self: string;
  readonly #dataDir?: string;
  readonly #trust: (peer: string) => number;
  readonly #weight: number;
  readonly #republishMs: number;
  readonly #pruneMs: number;
  readonly #timeoutMs: number;
  readonly #logTo?: (entry: Record<string, unknown>) => void;
  readonly #own = new Map<string, Own>();
  readonly #seen = new Map<string, Intent>();
  readonly #withdrawn = new Set<string>();
  readonly #held = new Map<string, Intent>();
  readonly #sent: SentQuote[] = [];
  readonly #inbox: InboxEntry[] = [];
  readonly #topics = new Set<string>();
  #libp2p?: MarketLibp2p;
  #stopping?: AbortController;
  #timers: ReturnType<typeof setInterval>[] = [];
  #tasks = new Set<Promise<unknown>>();
  #onMessage = (e: CustomEvent<Message>) => void this.#gossip(e.detail);

  constructor(init: MarketServiceInit) {
    this.#key = init.privateKey;
    this.#self = init.peerId;
    this.#dataDir = init.dataDir;
    this.#trust = init.trust ?? (() => 0);
    this.#weight = init.trustWeight ?? DEFAULT_TRUST_WEIGHT;
    this.#republishMs = init.republishMs ?? 600_000;
    this.#pruneMs = init.pruneMs ?? PRUNE_INTERVAL_MS;
    this.#timeoutMs = init.timeoutMs ?? 10_000;
    this.#logTo = init.log;
    this.listings = new Listings(init.dataDir);
    this.#ratings = init.ratings;
    this.deals = init.deals;
    this.deals?.attach({
      log: (e) => this.#log(e),
      sentQuote: (terms) => this.#sent.find((s) => quoteId(s.quote) === terms.toLowerCase())?.quote,
    });
  }

  async start(libp2p: MarketLibp2p): Promise<void> {
    this.#libp2p = libp2p;
    this.#stopping = new AbortController();
    await this.#loadOwn();
    await this.#loadSent(); // before the deal desk catches up: it finds its deals by these quotes
    if (this.deals) {
      this.#payout = await this.deals.payout(this.#key);
      await this.deals.start();
    }
    await libp2p.handle(
      MARKET_PROTOCOL,
      (stream, connection) => this.#track(this.#serve(stream, connection.remotePeer)),
      { maxInboundStreams: 64 },
    );
    libp2p.services.pubsub?.addEventListener("message", this.#onMessage);
    for (const topic of this.listings.topics()) this.#watch(topic);
    this.#timers.push(setInterval(() => this.#prune(), this.#pruneMs));
    this.#timers.push(setInterval(() => {
      for (const topic of new Set([...this.#own.values()].map((o) => o.intent.topic))) {
        this.#track(this.#publishRecord(topic));
      }
    }, this.#republishMs));
  }

  async stop(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#stopping?.abort();
    const libp2p = this.#libp2p;
    if (!libp2p) return;
    libp2p.services.pubsub?.removeEventListener("message", this.#onMessage);
    for (const topic of this.#topics) {
      libp2p.services.pubsub?.topicValidators.delete(gossipTopic(topic));
      try {
        libp2p.services.pubsub?.unsubscribe(gossipTopic(topic));
      } catch {
        // pubsub already stopped
      }
    }
    this.#topics.clear();
    await libp2p.unhandle(MARKET_PROTOCOL).catch(() => {});
    await Promise.allSettled([...this.#tasks]);
    await this.deals?.stop();
    this.#libp2p = undefined;
  }

  /** This node's peer ID (the buyer and seller it trades as). */
  get peer(): string {
    return this.#self;
  }

  // --- buyer ------------------------------------------------------------------------------------------

  /**
   * Posts an intent: signs it with a fresh sealing key, gossips it, and puts it in the DHT in the background
   * (a DHT failure is logged: the intent stands on gossip, and the next republish tries again).
   */
  async want(terms: IntentTerms): Promise<Intent> {
    const libp2p = this.#net();
    const keys = await generateHpkeKeyPair();
    const addrs = libp2p.getMultiaddrs().map((a) => a.decapsulateCode(421).toString()).slice(0, 4);
    const intent = await signIntent(this.#key, this.#self, terms, { key: keys.publicKey, addrs });
    const id = intentId(intent);
    const live = [...this.#own.values()].filter((o) => o.intent.topic === terms.topic).length;
    if (live >= 16) {
      throw new MeshError("intent_malformed", "At most 16 live intents per topic");
    }
    this.#own.set(id, { intent, keys, quotes: new Map() });
    await this.#saveOwn();
    await this.#publishGossip(intent.topic, encodeGossip({ intent }));
    this.#track(this.#publishRecord(intent.topic));
    this.#log({ msg: "intent posted", intent: id, topic: intent.topic });
    return intent;
  }

  /** Withdraws an own intent: gossips the signed withdrawal and puts the record without it. */
  async withdraw(id: string): Promise<boolean> {
    const own = this.#own.get(id);
    if (!own) return false;
    this.#own.delete(id);
    await this.#saveOwn();
    const w = await signWithdrawal(this.#key, this.#self, id);
    await this.#publishGossip(own.intent.topic, encodeGossip({ withdraw: w }));
    this.#track(this.#publishRecord(own.intent.topic));
    this.#log({ msg: "intent withdrawn", intent: id });
    return true;
  }

  /** Resolves once the background work started so far (DHT records, lookups, quotes) has ended. */
  async settled(): Promise<void> {
    while (this.#tasks.size) await Promise.allSettled([...this.#tasks]);
  }

  /** Own live intents, newest first. */
  intents(): { id: string; intent: Intent; quotes: number }[] {
    return [...this.#own.entries()].map(([id, o]) => ({
      id,
      intent: o.intent,
      quotes: o.quotes.size,
    }))
      .sort((a, b) => b.intent.at - a.intent.at);
  }

  /** The opened quotes to own intent `id`, best first (see `quote.ts` for the ranking). */
  /** Whether `id` is a live intent of this node's (withdrawn and expired ones are not). */
  hasIntent(id: string): boolean {
    return this.#own.has(id);
  }

  quotes(id: string): RankedQuote[] {
    const own = this.#own.get(id);
    return own ? rankQuotes([...own.quotes.values()], this.#trust, this.#weight) : [];
  }

  /** What arrived on the wire, newest last, as it arrived: quotes still sealed. */
  inbox(): readonly InboxEntry[] {
    return this.#inbox;
  }

  // --- seller -----------------------------------------------------------------------------------------

  /** Adds a listing and starts watching its topic (and looks up intents already posted under it). */
  addListing(init: ListingInit): Listing {
    const listing = this.listings.add(init);
    if (this.#libp2p) this.#watch(listing.topic);
    for (const intent of this.#seen.values()) this.#track(this.#consider(intent));
    return listing;
  }

  removeListing(id: string): boolean {
    return this.listings.remove(id);
  }

  /** Live intents of others seen under the topics watched. */
  seen(): Intent[] {
    const now = Date.now();
    return [...this.#seen.values()].filter((i) => i.expiry > now);
  }

  /** Intents a listing with `auto: false` could fill, waiting for {@link answer}. */
  held(): { id: string; intent: Intent }[] {
    return [...this.#held.entries()].map(([id, intent]) => ({ id, intent }));
  }

  /** Quotes sent, oldest first. */
  sent(): readonly SentQuote[] {
    return this.#sent;
  }

  /** Answers a held (or any seen) intent with the best matching listing's quote. */
  async answer(id: string): Promise<SentQuote | undefined> {
    const intent = this.#held.get(id) ?? this.#seen.get(id);
    if (!intent) return undefined;
    this.#held.delete(id);
    return await this.#quote(intent, true);
  }

  /**
   * Looks `topic` up in the DHT: who provides it, then each one's record; every live intent found is
   * considered as if gossiped. Returns them.
   */
  async discover(topic: string): Promise<Intent[]> {
    const libp2p = this.#net();
    const signal = this.#signal();
    const found: Intent[] = [];
    const buyers = new Set<string>();
    try {
      for await (
        const p of libp2p.contentRouting.findProviders(await topicProviderKey(topic), { signal })
      ) {
        const peer = p.id.toString();
        if (peer !== this.#self) buyers.add(peer);
        if (p.multiaddrs.length) {
          await libp2p.peerStore.merge(p.id, { multiaddrs: p.multiaddrs }).catch(() => {});
        }
      }
    } catch (e) {
      if (!signal.aborted) this.#log({ msg: "topic lookup failed", topic, error: `${e}` });
    }
    await Promise.all([...buyers].map(async (buyer) => {
      let best: Intent[] | undefined, bestSeq = -1;
      try {
        for await (
          const e of libp2p.services.dht.get(intentRecordKey(topic, buyer), {
            signal: this.#signal(),
          })
        ) {
          if (e.name !== "VALUE") continue;
          try {
            const r = await decodeIntentRecord(e.value);
            if (r.peer === buyer && r.topic === topic && r.seq > bestSeq) {
              best = r.intents;
              bestSeq = r.seq;
            }
          } catch {
            // An invalid record from one peer: others may hold the real one.
          }
        }
      } catch (e) {
        this.#log({ msg: "intent record lookup failed", buyer, error: `${e}` });
      }
      for (const intent of best ?? []) {
        found.push(intent);
        await this.#received(intent, "dht");
      }
    }));
    return found;
  }

  // --- deals ----------------------------------------------------------------------------------------

  #desk(): DealDesk {
    if (!this.deals) throw new MeshError("deal_unfundable", "This node has no escrow (no chain)");
    return this.deals;
  }

  /** The opened quote `id` (`quoteId`) to one of the own intents. */
  quote(id: string): Quote | undefined {
    for (const own of this.#own.values()) {
      for (const q of own.quotes.values()) if (quoteId(q) === id.toLowerCase()) return q;
    }
    return undefined;
  }

  /** Accepts quote `id`: funds its deal in the escrow (the seller confirms on its side). */
  accept(id: string): Promise<Deal> {
    const q = this.quote(id);
    if (!q) return Promise.reject(new MeshError("deal_not_found", `No quote ${id} here`));
    return this.#desk().fund(q);
  }

  /** Releases deal `id` to its seller (this node is its buyer). */
  release(id: string): Promise<Deal> {
    return this.#desk().release(id);
  }

  /**
   * Rates deal `id` (0 to 1) as its buyer: signs the rating, has this node's rating desk accept it (the
   * chain must show the deal settled), and passes it on to the connected peers. Returns the rating.
   */
  async rate(id: string, value: number, comment?: `0x${string}`): Promise<Rating> {
    const desk = this.#desk();
    if (!this.#ratings) throw new MeshError("deal_state", "This node keeps no ratings");
    const d = desk.get(id);
    if (d && d.status !== "released") await desk.refresh(id);
    const rating = await desk.rate(id, value, comment);
    await this.takeRating(rating, this.#self);
    desk.rated(id, value);
    return rating;
  }

  /**
   * Takes a rating (from `from`, a peer or this node): checks it with the rating desk (chain, signatures,
   * one per deal) and on success passes it on to the connected peers but `from`. Throws the desk's
   * `RatingError`.
   */
  async takeRating(input: unknown, from: string): Promise<CheckedRating> {
    if (!this.#ratings) {
      throw new MarketProtocolError("This node keeps no ratings (no chain)");
    }
    const checked = await this.#ratings.accept(input);
    this.#log({ msg: "rating accepted", deal: checked.rating.deal, from });
    this.#track(this.#spread(checked.rating, from));
    return checked;
  }

  async #spread(rating: Rating, from: string): Promise<void> {
    const libp2p = this.#libp2p;
    if (!libp2p) return;
    const peers = libp2p.getPeers().filter((p) => {
      const s = p.toString();
      return s !== from;
    }).slice(0, MAX_RATING_FANOUT);
    await Promise.allSettled(
      peers.map((p) =>
        callPeer(libp2p, p, MARKET_PROTOCOL, { op: "rating", rating }, this.#signal(), MARKET_WIRE)
      ),
    );
  }

  // --- internals --------------------------------------------------------------------------------------

  #net(): MarketLibp2p {
    if (!this.#libp2p) throw new MeshError("market_stopped", "The market service is not running");
    return this.#libp2p;
  }

  #signal(): AbortSignal {
    return AbortSignal.any([this.#stopping!.signal, AbortSignal.timeout(this.#timeoutMs)]);
  }

  #track<T>(p: Promise<T>): void {
    const t = p.catch((e) => this.#log({ msg: "market task failed", error: `${e}` }));
    this.#tasks.add(t);
    void t.finally(() => this.#tasks.delete(t));
  }

  #log(entry: Record<string, unknown>): void {
    if (this.#logTo) this.#logTo(entry);
    else this.#libp2p?.logger.forComponent("meshgate:market")("%o", entry);
  }

  #inboxAdd(entry: InboxEntry): void {
    this.#inbox.push(entry);
    if (this.#inbox.length > MAX_INBOX) this.#inbox.shift();
  }

  /** Subscribes to `topic`'s gossip with a validator, and looks it up in the DHT. */
  #watch(topic: string): void {
    if (this.#topics.has(topic)) return;
    this.#topics.add(topic);
    const pubsub = this.#libp2p?.services.pubsub;
    if (pubsub) {
      const gt = gossipTopic(topic);
      pubsub.topicValidators.set(gt, async (_peer: PeerId, msg: Message) => {
        try {
          await checkGossip(msg.data, gt);
          return TopicValidatorResult.Accept;
        } catch {
          return TopicValidatorResult.Reject;
        }
      });
      pubsub.subscribe(gt);
    }
    this.#track(this.discover(topic));
  }

  async #publishGossip(topic: string, data: Uint8Array): Promise<void> {
    const pubsub = this.#libp2p?.services.pubsub;
    if (!pubsub) return;
    try {
      await pubsub.publish(gossipTopic(topic), data);
    } catch (e) {
      this.#log({ msg: "gossip failed", topic, error: `${e}` });
    }
  }

  /** Puts this node's record of live intents under `topic`, and provides the topic while it has any. */
  async #publishRecord(topic: string): Promise<void> {
    const libp2p = this.#net();
    const now = Date.now();
    const live = [...this.#own.values()].filter((o) =>
      o.intent.topic === topic && o.intent.expiry > now
    )
      .map((o) => o.intent);
    const record = await signIntentRecord(this.#key, this.#self, topic, live, now);
    const signal = this.#signal();
    try {
      for await (
        const _ of libp2p.services.dht.put(
          intentRecordKey(topic, this.#self),
          encodeIntentRecord(record),
          { signal },
        )
      ) {
        // drain the query
      }
      const cid = await topicProviderKey(topic);
      if (live.length) await libp2p.contentRouting.provide(cid, { signal });
      else await libp2p.services.dht.cancelReprovide(cid).catch(() => {});
    } catch (e) {
      if (!this.#stopping?.signal.aborted) {
        this.#log({ msg: "intent record not published", topic, error: `${e}` });
      }
    }
  }

  async #gossip(msg: Message): Promise<void> {
    const topic = [...this.#topics].find((t) => gossipTopic(t) === msg.topic);
    if (!topic) return;
    let m;
    try {
      m = await checkGossip(msg.data, msg.topic);
    } catch {
      return; // the validator let it through and it lapsed since
    }
    const from = msg.type === "signed" ? msg.from.toString() : "";
    if ("withdraw" in m) {
      this.#inboxAdd({ at: Date.now(), from, kind: "withdraw", body: m.withdraw });
      const i = this.#seen.get(m.withdraw.id);
      if (i && i.buyer === m.withdraw.buyer) {
        this.#seen.delete(m.withdraw.id);
        this.#held.delete(m.withdraw.id);
      }
      // A withdrawal may outrun its intent; remember it (if its buyer matches, checked on arrival).
      if (this.#withdrawn.size >= MAX_SEEN) {
        this.#withdrawn.delete(this.#withdrawn.values().next().value!);
      }
      this.#withdrawn.add(`${m.withdraw.buyer}/${m.withdraw.id}`);
      return;
    }
    this.#inboxAdd({ at: Date.now(), from, kind: "intent", body: m.intent });
    await this.#received(m.intent, "gossip");
  }

  async #received(intent: Intent, via: string): Promise<void> {
    if (intent.buyer === this.#self) return;
    const id = intentId(intent);
    if (this.#seen.has(id) || this.#withdrawn.has(`${intent.buyer}/${id}`)) return;
    if (!this.#topics.has(intent.topic)) return;
    if (this.#seen.size >= MAX_SEEN) this.#seen.delete(this.#seen.keys().next().value!);
    this.#seen.set(id, intent);
    this.#log({ msg: "intent seen", intent: id, topic: intent.topic, via });
    await this.#consider(intent);
  }

  /** Answers `intent` when a listing can fill it (or holds it for the operator), once. */
  async #consider(intent: Intent): Promise<void> {
    const id = intentId(intent);
    if (this.#sent.some((s) => s.intent === id) || this.#held.has(id)) return;
    const best = this.listings.matches(intent)[0];
    if (!best) return;
    if (!best.listing.auto) {
      this.#held.set(id, intent);
      return;
    }
    await this.#quote(intent, false);
  }

  async #quote(intent: Intent, manual: boolean): Promise<SentQuote | undefined> {
    const id = intentId(intent);
    const best = this.listings.matches(intent)[0];
    if (!best || (!manual && this.#sent.some((s) => s.intent === id))) return undefined;
    const terms = this.#payout ? { ...best.terms, payout: this.#payout } : best.terms;
    const quote = await signQuote(this.#key, this.#self, id, terms);
    const sealed = await sealQuote(quote, intent);
    const entry: SentQuote = {
      intent: id,
      buyer: intent.buyer,
      listing: best.listing.id,
      quote,
      delivered: false,
    };
    this.#sent.push(entry);
    if (this.#sent.length > MAX_SEEN) this.#sent.shift();
    await this.#saveSent();
    const libp2p = this.#net();
    try {
      const buyer = peerIdFromString(intent.buyer);
      const addrs = intent.addrs.map((a) => multiaddr(a));
      if (addrs.length) await libp2p.peerStore.merge(buyer, { multiaddrs: addrs }).catch(() => {});
      const answer = await callPeer(
        libp2p,
        buyer,
        MARKET_PROTOCOL,
        { op: "quote", sealed },
        this.#signal(),
        MARKET_WIRE,
      );
      if (answer.ok !== true) {
        throw new MarketProtocolError(`The buyer refused the quote: ${String(answer.error)}`);
      }
      entry.delivered = true;
      await this.#saveSent();
      this.#log({ msg: "quote sent", intent: id, buyer: intent.buyer });
    } catch (e) {
      entry.error = `${(e as MeshError).code ?? "error"}`;
      this.#log({
        msg: "quote not delivered",
        intent: id,
        buyer: intent.buyer,
        error: entry.error,
      });
    }
    return entry;
  }

  async #serve(stream: Stream, remote: PeerId): Promise<void> {
    await answerMessage(
      stream,
      this.#signal(),
      MARKET_WIRE,
      async (req) => {
        if (req.op === "quote") return await this.#takeQuote(req.sealed, remote.toString());
        if (req.op === "rating") {
          const checked = await this.takeRating(req.rating, remote.toString());
          return { ok: true, weight: checked.weight };
        }
        throw new MarketProtocolError("Unknown op");
      },
    );
  }

  async #takeQuote(input: unknown, from: string): Promise<Record<string, unknown>> {
    const sealed: SealedQuote = checkSealed(input);
    this.#inboxAdd({ at: Date.now(), from, kind: "quote", body: sealed });
    const own = this.#own.get(sealed.intent);
    if (!own) {
      return { error: "quote_mismatch", message: "No such intent here (withdrawn or expired?)" };
    }
    try {
      const quote = await openQuote(sealed, own.intent, own.keys);
      if (!own.quotes.has(quote.seller) && own.quotes.size >= MAX_QUOTES_PER_INTENT) {
        return { error: "quote_mismatch", message: "Enough quotes for this intent" };
      }
      own.quotes.set(quote.seller, quote); // a seller's newest quote replaces its older one
      this.#log({ msg: "quote received", intent: sealed.intent });
      return { ok: true };
    } catch (e) {
      this.#log({
        msg: "quote refused",
        intent: sealed.intent,
        from,
        error: (e as MeshError).code,
      });
      return { error: (e as MeshError).code ?? "quote_malformed", message: (e as Error).message };
    }
  }

  #prune(): void {
    const now = Date.now();
    let changed = false;
    for (const [id, o] of this.#own) {
      if (o.intent.expiry <= now) {
        this.#own.delete(id);
        changed = true;
      }
    }
    for (const [id, i] of this.#seen) if (i.expiry <= now) this.#seen.delete(id);
    for (const [id, i] of this.#held) if (i.expiry <= now) this.#held.delete(id);
    if (changed) void this.#saveOwn();
  }

  get #ownFile(): string | undefined {
    return this.#dataDir === undefined ? undefined : `${this.#dataDir}/market/intents.json`;
  }

  /** Own intents and their sealing keys (so quotes still open after a restart). */
  async #saveOwn(): Promise<void> {
    const file = this.#ownFile;
    if (!file) return;
    const rows = await Promise.all([...this.#own.values()].map(async (o) => ({
      intent: o.intent,
      key: toBase64(await exportPrivateKey(o.keys.privateKey)),
    })));
    await Deno.mkdir(`${this.#dataDir}/market`, { recursive: true });
    await Deno.writeTextFile(file, JSON.stringify(rows), { mode: 0o600 });
  }

  get #sentFile(): string | undefined {
    return this.#dataDir === undefined ? undefined : `${this.#dataDir}/market/sent.json`;
  }

  /**
   * The quotes sent that are still valid (mode 0600, the seller's own prices): a deal funded for one while
   * this node was offline is recognised when it comes back (`deals.ts`).
   */
  async #saveSent(): Promise<void> {
    const file = this.#sentFile;
    if (!file) return;
    const now = Date.now();
    const rows = this.#sent.filter((s) => s.quote.validUntil > now);
    const text = JSON.stringify(rows);
    this.#sentSaving = this.#sentSaving.then(async () => {
      await Deno.mkdir(`${this.#dataDir}/market`, { recursive: true });
      await Deno.writeTextFile(`${file}.tmp`, text, { mode: 0o600 });
      await Deno.rename(`${file}.tmp`, file);
    }).catch((e) => this.#log({ msg: "sent quotes not saved", error: `${e}` }));
    await this.#sentSaving;
  }

  #sentSaving: Promise<void> = Promise.resolve();

  async #loadSent(): Promise<void> {
    const file = this.#sentFile;
    if (!file || this.#sent.length) return;
    let rows: SentQuote[];
    try {
      rows = JSON.parse(await Deno.readTextFile(file));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    const now = Date.now();
    for (const r of rows) if (r.quote?.validUntil > now) this.#sent.push(r);
  }

  async #loadOwn(): Promise<void> {
    const file = this.#ownFile;
    if (!file) return;
    let rows: { intent: unknown; key: string }[];
    try {
      rows = JSON.parse(await Deno.readTextFile(file));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    for (const row of rows) {
      try {
        const intent = await verifyIntent(row.intent);
        this.#own.set(intentId(intent), {
          intent,
          keys: await importHpkeKeyPair(fromBase64(row.key)),
          quotes: new Map(),
        });
      } catch {
        // expired since
      }
    }
  }
}
