/**
 * This node's offer, published, and the offers of others, fetched and checked: a service of the node.
 *
 * The node's own offer is signed at start and again before it lapses (valid a day, re-signed each hour, so
 * that capacity stays current), put in the DHT under `/meshgate-offer/<peer>` and answered on
 * `/meshgate/offer/1.0.0` to whoever asks. Another's offer is taken from memory while valid, else asked of
 * the peer itself (one round trip when connected), else from the DHT; every one is verified (`offers.ts`)
 * before it is kept, so a peer can neither forge another's prices nor keep an expired one alive.
 *
 * @module
 */
import type { Connection, Libp2p, PrivateKey, Stream } from "@libp2p/interface";
import type { KadDHT } from "@libp2p/kad-dht";
import { MeshError } from "../errors.ts";
import { answerMessage, callPeer } from "../mesh/message.ts";
import {
  decodeOffer,
  encodeOffer,
  MAX_OFFER_BYTES,
  type Offer,
  OfferError,
  offerKey,
  type OfferTerms,
  signOffer,
  verifyOffer,
} from "./offers.ts";

export const OFFER_PROTOCOL = "/meshgate/offer/1.0.0";
/** How long a signed offer holds: a day, so a node that went away leaves no offer standing for long. */
export const OFFER_VALIDITY_MS = 24 * 3_600_000;
/** How often the offer is signed and published again: hourly, well inside its validity. */
export const OFFER_REPUBLISH_MS = 3_600_000;
/** Offers kept of others, at most (the oldest asked goes first). */
const MAX_KNOWN = 10_000;

const WIRE = {
  maxBytes: MAX_OFFER_BYTES + 256,
  what: "offer",
  error: (m: string, cause?: unknown) => new OfferError("offer_malformed", m, { cause }),
};

type Net = Pick<Libp2p, "handle" | "unhandle" | "dialProtocol" | "getPeers">;

export interface OfferServiceInit {
  /** The node's identity key (offers are signed by the peer ID). */
  privateKey: PrivateKey;
  peerId: string;
  /** The terms now, without `validUntil` (capacity changes as the store fills). */
  terms: () => Omit<OfferTerms, "validUntil">;
  /** Longest wait for a peer's or the DHT's answer, in ms. Default 3000. */
  timeoutMs?: number;
  now?: () => number;
}

export class OfferService {
  readonly #init: OfferServiceInit;
  readonly #known = new Map<string, Offer>();
  #mine?: Offer;
  #net?: Net;
  #dht?: KadDHT;
  #timer?: ReturnType<typeof setInterval>;
  #publishing?: Promise<void>;
  /** Aborted at stop: a DHT put under way must not hold the node's shutdown. */
  #stopping = new AbortController();

  constructor(init: OfferServiceInit) {
    this.#init = init;
  }

  async start(net: Net, dht?: KadDHT): Promise<void> {
    this.#stopping = new AbortController();
    this.#net = net;
    this.#dht = dht;
    await this.#sign();
    await net.handle(OFFER_PROTOCOL, this.#handle, { maxInboundStreams: 8 });
    this.#publishing = this.publish();
    this.#timer = setInterval(() => {
      this.#publishing = this.#sign().then(() => this.publish());
    }, OFFER_REPUBLISH_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#stopping.abort();
    await this.#net?.unhandle(OFFER_PROTOCOL).catch(() => {});
    await this.#publishing?.catch(() => {});
    this.#net = undefined;
  }

  /** This node's current signed offer. */
  mine(): Offer {
    if (!this.#mine) throw new MeshError("not_started", "The offer service is not started");
    return this.#mine;
  }

  /** Puts this node's offer in the DHT. A mesh with no peers yet is not an error: the next round tries. */
  async publish(): Promise<void> {
    const dht = this.#dht;
    if (!dht || !this.#mine) return;
    try {
      const signal = AbortSignal.any([AbortSignal.timeout(30_000), this.#stopping.signal]);
      for await (
        const _ of dht.put(offerKey(this.#init.peerId), encodeOffer(this.#mine), { signal })
      ) {
        // events: the put is done when the iteration ends
      }
    } catch {
      // No peers, or none answered in time: the offer is still answered directly.
    }
  }

  /** A known, valid offer of `peer`, without asking anyone. */
  cached(peer: string): Offer | undefined {
    if (peer === this.#init.peerId) return this.#mine;
    const o = this.#known.get(peer);
    if (o && o.validUntil > this.#now()) return o;
    if (o) this.#known.delete(peer);
    return undefined;
  }

  /** Every valid offer known here. */
  known(): Offer[] {
    return [...this.#known.keys()].map((p) => this.cached(p)).filter((o) => o !== undefined);
  }

  /** `peer`'s offer: from memory, else asked of the peer, else from the DHT; undefined when none holds. */
  async of(peer: string, signal?: AbortSignal): Promise<Offer | undefined> {
    const hit = this.cached(peer);
    if (hit) return hit;
    const deadline = AbortSignal.timeout(this.#init.timeoutMs ?? 3000);
    const s = signal ? AbortSignal.any([signal, deadline]) : deadline;
    let offer = await this.#ask(peer, s).catch(() => undefined);
    offer ??= await this.#fromDht(peer, s).catch(() => undefined);
    if (offer) this.#keep(offer);
    return offer;
  }

  /** Takes an offer from anywhere (a peer's answer, the DHT, an API client): verified, then kept. */
  async accept(input: unknown): Promise<Offer> {
    const o = await verifyOffer(input, this.#now());
    this.#keep(o);
    return o;
  }

  #keep(o: Offer): void {
    const had = this.#known.get(o.peer);
    if (had && had.seq >= o.seq) return; // an older offer never replaces a newer one
    this.#known.delete(o.peer);
    if (this.#known.size >= MAX_KNOWN) this.#known.delete(this.#known.keys().next().value!);
    this.#known.set(o.peer, o);
  }

  async #ask(peer: string, signal: AbortSignal): Promise<Offer | undefined> {
    const net = this.#net;
    if (!net || !net.getPeers().some((p) => p.toString() === peer)) return undefined;
    const m = await callPeer(net, peer, OFFER_PROTOCOL, { op: "offer" }, signal, WIRE);
    const o = await verifyOffer(m.offer, this.#now());
    if (o.peer !== peer) {
      throw new OfferError("offer_signature", `${peer} answered with another's offer`);
    }
    return o;
  }

  async #fromDht(peer: string, signal: AbortSignal): Promise<Offer | undefined> {
    if (!this.#dht) return undefined;
    for await (const e of this.#dht.get(offerKey(peer), { signal })) {
      if (e.name !== "VALUE") continue;
      try {
        const o = await verifyOffer(decodeOffer(e.value), this.#now());
        if (o.peer === peer) return o;
      } catch {
        // a bad record from one peer: keep listening for a good one
      }
    }
    return undefined;
  }

  async #sign(): Promise<void> {
    const now = this.#now();
    this.#mine = await signOffer(
      this.#init.privateKey,
      this.#init.peerId,
      { ...this.#init.terms(), validUntil: now + OFFER_VALIDITY_MS },
      now,
    );
  }

  #now(): number {
    return (this.#init.now ?? Date.now)();
  }

  #handle = async (stream: Stream, _connection: Connection): Promise<void> => {
    const signal = AbortSignal.timeout(this.#init.timeoutMs ?? 3000);
    await answerMessage(stream, signal, WIRE, (m) =>
      Promise.resolve(
        m.op === "offer" && this.#mine
          ? { offer: this.#mine }
          : { error: "bad_request", message: 'op must be "offer"' },
      ));
  };
}
