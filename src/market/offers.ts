/**
 * Operator offers: what an operator charges and can take, signed with its libp2p identity so that nobody else
 * can publish or alter it. An offer lives in the DHT under `/meshgate-offer/<peer ID>` (its own key prefix,
 * with the {@link offerValidator} and {@link offerSelector} below) and travels as JSON.
 *
 * Prices are wei as decimal strings (bigints do not survive JSON), per GiB served, per GiB-month stored, per
 * 1,000 lookups and per GiB relayed; "0" is a volunteer's price. Signed bytes are the canonical JSON of the
 * offer without its signature (keys sorted), behind a domain tag.
 *
 * @module
 */
import type { PrivateKey } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { signTagged, verifyTagged } from "../mesh/signature.ts";

/** The key prefix (the DHT's validator and selector names). */
export const OFFER_NAMESPACE = "meshgate-offer";
/** Largest offer accepted, encoded. */
export const MAX_OFFER_BYTES = 2048;
/** Longest validity an offer may claim: a week, so a lost key's offers fade. */
export const MAX_OFFER_VALIDITY_MS = 7 * 24 * 3_600_000;
const DOMAIN = new TextEncoder().encode("meshgate/offer/1\n");

export interface OfferPrices {
  servedPerGiB: string;
  storedPerGiBMonth: string;
  per1000Lookups: string;
  relayedPerGiB: string;
}

/** A relay's limits, as its offer states them (`mesh/relay.ts`): what one reservation buys at `relayedPerGiB`. */
export interface RelayTerms {
  /** Most reservations it holds at once. */
  maxReservations: number;
  /** Life of a reservation before its holder renews it, in seconds. */
  reservationSeconds: number;
  /** Most bytes, and longest life in seconds, of one circuit. */
  circuitBytes: number;
  circuitSeconds: number;
}

/** An offer as its operator states it (before signing). */
export interface OfferTerms {
  prices: OfferPrices;
  /** With a relay only: its limits. */
  relay?: RelayTerms;
  /** Bytes of storage free for new leases. */
  capacityBytes: number;
  /** Where payment goes, or null for a volunteer. */
  payout: { chainId: number; address: string } | null;
  /** Until when (ms since epoch) the terms hold. */
  validUntil: number;
}

export interface Offer extends OfferTerms {
  v: 1;
  peer: string;
  /** Issue time (ms): the newest valid offer wins. */
  seq: number;
  /** Base64 Ed25519 signature by `peer`. */
  sig: string;
}

/** An offer that does not hold, with why. */
export class OfferError extends MeshError {
  override name = "OfferError";
  constructor(
    code: "offer_malformed" | "offer_signature" | "offer_expired",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** JSON with object keys sorted and undefined fields left out: the bytes a signature covers. */
export function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    return `{${
      Object.keys(o).sort().filter((k) => o[k] !== undefined).map((k) =>
        `${JSON.stringify(k)}:${canonical(o[k])}`
      ).join(",")
    }}`;
  }
  return JSON.stringify(value);
}

/** The signed bytes (behind {@link DOMAIN}): the offer's canonical JSON without its signature. */
function signedBytes(offer: Omit<Offer, "sig">): Uint8Array {
  return new TextEncoder().encode(canonical(offer));
}

/** Signs `terms` as `peer`'s offer. */
export async function signOffer(
  key: PrivateKey,
  peer: string,
  terms: OfferTerms,
  now = Date.now(),
): Promise<Offer> {
  const unsigned: Omit<Offer, "sig"> = { v: 1, peer, seq: now, ...terms };
  checkShape({ ...unsigned, sig: "AA==" });
  return { ...unsigned, sig: await signTagged(key, DOMAIN, signedBytes(unsigned)) };
}

const WEI = /^(0|[1-9][0-9]{0,77})$/;

function checkShape(input: unknown): Offer {
  const o = input as Partial<Offer> | null;
  const bad = (why: string): never => {
    throw new OfferError("offer_malformed", `Malformed offer: ${why}`);
  };
  if (typeof o !== "object" || o === null || Array.isArray(o)) bad("not an object");
  if (o!.v !== 1) bad("v must be 1");
  if (typeof o!.peer !== "string" || o!.peer.length > 100) bad("peer must be a peer ID");
  if (!Number.isSafeInteger(o!.seq) || o!.seq! < 0) bad("seq must be a time in ms");
  if (!Number.isSafeInteger(o!.validUntil) || o!.validUntil! < 0) {
    bad("validUntil must be a time in ms");
  }
  if (!Number.isSafeInteger(o!.capacityBytes) || o!.capacityBytes! < 0) {
    bad("capacityBytes must be bytes");
  }
  const p = o!.prices as Partial<OfferPrices> | undefined;
  for (
    const k of ["servedPerGiB", "storedPerGiBMonth", "per1000Lookups", "relayedPerGiB"] as const
  ) {
    if (typeof p?.[k] !== "string" || !WEI.test(p[k]!)) {
      bad(
        `prices.${k} must be wei as a decimal string`,
      );
    }
  }
  if (o!.payout !== null) {
    const pay = o!.payout as Partial<NonNullable<OfferTerms["payout"]>> | undefined;
    if (
      typeof pay !== "object" || !Number.isSafeInteger(pay?.chainId) || pay!.chainId! <= 0 ||
      typeof pay!.address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(pay!.address)
    ) bad("payout must be null or {chainId, address: 0x + 40 hex digits}");
  }
  if (typeof o!.sig !== "string" || o!.sig.length > 200 || !/^[A-Za-z0-9+/]+={0,2}$/.test(o!.sig)) {
    bad("sig must be base64");
  }
  if (o!.relay !== undefined) {
    const r = o!.relay as unknown as Record<string, unknown> | null;
    const fields = ["maxReservations", "reservationSeconds", "circuitBytes", "circuitSeconds"];
    if (
      typeof r !== "object" || r === null || Object.keys(r).some((k) => !fields.includes(k)) ||
      fields.some((k) => !Number.isSafeInteger(r[k]) || (r[k] as number) <= 0)
    ) bad("relay must be {maxReservations, reservationSeconds, circuitBytes, circuitSeconds} > 0");
  }
  const extra = Object.keys(o!).filter((k) =>
    !["v", "peer", "seq", "validUntil", "capacityBytes", "prices", "payout", "relay", "sig"]
      .includes(k)
  );
  if (extra.length) bad(`unknown field ${extra[0]}`);
  return o as Offer;
}

/**
 * Checks an offer from anywhere: well formed, signed by the peer it names, not expired, not valid for more
 * than {@link MAX_OFFER_VALIDITY_MS} past its issue. Throws {@link OfferError} saying which.
 */
export async function verifyOffer(input: unknown, now = Date.now()): Promise<Offer> {
  const o = checkShape(input);
  const { sig, ...unsigned } = o;
  if (!await verifyTagged(o.peer, DOMAIN, signedBytes(unsigned), sig)) {
    throw new OfferError("offer_signature", `The offer is not signed by ${o.peer}`);
  }
  if (o.validUntil <= now) {
    throw new OfferError(
      "offer_expired",
      `The offer expired at ${new Date(o.validUntil).toISOString()}`,
    );
  }
  if (o.validUntil - o.seq > MAX_OFFER_VALIDITY_MS) {
    throw new OfferError("offer_malformed", "An offer may be valid for a week at most");
  }
  return o;
}

/** The DHT key of `peer`'s offer. */
export function offerKey(peer: string): Uint8Array {
  return new TextEncoder().encode(`/${OFFER_NAMESPACE}/${peer}`);
}

export function encodeOffer(o: Offer): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(o));
}

/** Parses an encoded offer; throws {@link OfferError} on bad bytes. Does not verify it. */
export function decodeOffer(bytes: Uint8Array): unknown {
  if (bytes.length > MAX_OFFER_BYTES) {
    throw new OfferError("offer_malformed", `An offer is at most ${MAX_OFFER_BYTES} bytes`);
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new OfferError("offer_malformed", "An offer is UTF-8 JSON", { cause: e });
  }
}

/** kad-dht validator: the record under `/meshgate-offer/<peer>` is a valid offer signed by that peer. */
export async function offerValidator(key: Uint8Array, value: Uint8Array): Promise<void> {
  const o = await verifyOffer(decodeOffer(value));
  const want = new TextDecoder().decode(key);
  if (want !== `/${OFFER_NAMESPACE}/${o.peer}`) {
    throw new OfferError(
      "offer_signature",
      `An offer by ${o.peer} cannot stand under ${want.slice(0, 120)}`,
    );
  }
}

/** kad-dht selector: the newest (highest `seq`) of the records that parse; invalid ones lose. */
export function offerSelector(_key: Uint8Array, records: Uint8Array[]): number {
  let best = 0, bestSeq = -1;
  records.forEach((r, i) => {
    try {
      const seq = (decodeOffer(r) as { seq?: unknown }).seq;
      if (typeof seq === "number" && seq > bestSeq) {
        best = i;
        bestSeq = seq;
      }
    } catch {
      // A record that does not parse is never the best.
    }
  });
  return best;
}
