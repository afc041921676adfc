/**
 * Sealed quotes: a seller's answer to an intent, readable by the buyer alone.
 *
 * A quote {intentId, item, quantity, price, currency, terms, deliveryTime, validUntil} is signed by the
 * seller's node identity, and the signed quote is then sealed with HPKE (`hpke.ts`, RFC 9180 base mode) to
 * the intent's X25519 key, with the intent's ID as HPKE `info`. The signature lies *inside* the ciphertext:
 * whoever carries the sealed quote learns neither the price nor who signed it. Every plaintext is padded to
 * {@link QUOTE_PLAINTEXT_BYTES}, so every sealed quote is the same size and its length says nothing either.
 *
 * The buyer ranks the quotes it opened by an effective price, `price × (1 − weight × trust)`: `trust` is the
 * seller's score in the buyer's reputation book (0 to 1; 0 for a seller it has never dealt with, as the book
 * starts newcomers low), `weight` ({@link DEFAULT_TRUST_WEIGHT}, 0.5) how much a fully trusted seller's
 * price is discounted; weight 0 ranks by price alone. Ties go to the higher trust, then the earlier quote.
 *
 * @module
 */
import type { PrivateKey } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { signTagged, verifyTagged } from "../mesh/signature.ts";
import { type HpkeKeyPair, open, seal, TAG_BYTES, X25519_BYTES } from "./hpke.ts";
import { fromBase64, type Intent, intentId, intentKey, toBase64 } from "./intent.ts";
import { canonical } from "./offers.ts";
import { createHash } from "node:crypto";

/** Every quote's plaintext (signed quote and padding) is this long, so every sealed quote is too. */
export const QUOTE_PLAINTEXT_BYTES = 2048;
/** The sealed quote's ciphertext length. */
export const QUOTE_CIPHERTEXT_BYTES = QUOTE_PLAINTEXT_BYTES + TAG_BYTES;
/** Default weight of trust in the ranking (see the module doc). */
export const DEFAULT_TRUST_WEIGHT = 0.5;

const te = new TextEncoder();
const QUOTE_DOMAIN = te.encode("meshgate/quote/1\n");
const INFO_PREFIX = "meshgate/quote/1\n";

/** What a seller offers (before signing). */
export interface QuoteTerms {
  item: string;
  quantity: number;
  /** For the whole quantity, in the currency's smallest unit, decimal. */
  price: string;
  currency: string;
  /** Free text: shipping, warranty, how to pay. */
  terms: string;
  /** How long after the deal is made the seller delivers, ms. */
  deliveryTime: number;
  /** Until when (ms since epoch) the seller stands by the quote. */
  validUntil: number;
  /** Where the buyer funds a deal: the seller's account on an escrow's chain, and its peer's signed payout
   * link to that account (`rating.ts`, `signPayoutLink`), copied into the buyer's rating. Absent: the seller
   * takes no escrow deals. */
  payout?: QuotePayout;
}

/** A quote's payout: what funding a deal of it needs. */
export interface QuotePayout {
  chainId: number;
  address: string;
  link: string;
}

export interface Quote extends QuoteTerms {
  v: 1;
  intentId: string;
  /** The seller's peer ID: it signs. */
  seller: string;
  at: number;
  sig: string;
}

/** A quote as it travels: its intent's ID in the clear, the rest sealed. */
export interface SealedQuote {
  v: 1;
  intent: string;
  /** HPKE `enc`, base64 (32 bytes). */
  enc: string;
  /** Ciphertext, base64 ({@link QUOTE_CIPHERTEXT_BYTES} bytes). */
  ct: string;
}

export type QuoteErrorCode =
  | "quote_malformed"
  | "quote_sealed"
  | "quote_signature"
  | "quote_expired"
  | "quote_mismatch";

export class QuoteError extends MeshError {
  override name = "QuoteError";
  constructor(code: QuoteErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

const bad = (why: string): never => {
  throw new QuoteError("quote_malformed", `Malformed quote: ${why}`);
};

const WEI = /^(0|[1-9][0-9]{0,77})$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function checkQuoteShape(input: unknown): Quote {
  if (!isObject(input)) bad("not an object");
  const o = input as Record<string, unknown>;
  const keys = [
    "v",
    "intentId",
    "seller",
    "item",
    "quantity",
    "price",
    "currency",
    "terms",
    "deliveryTime",
    "validUntil",
    "payout",
    "at",
    "sig",
  ];
  const extra = Object.keys(o).find((k) => !keys.includes(k));
  if (extra !== undefined) bad(`unknown field ${extra.slice(0, 40)}`);
  if (o.v !== 1) bad("v must be 1");
  if (typeof o.intentId !== "string" || !/^[0-9a-f]{64}$/.test(o.intentId)) {
    bad("intentId must be an intent ID");
  }
  if (typeof o.seller !== "string" || !/^[1-9A-HJ-NP-Za-km-z]{20,100}$/.test(o.seller)) {
    bad("seller must be a peer ID");
  }
  if (typeof o.item !== "string" || o.item.length === 0 || o.item.length > 128) {
    bad("item must be 1 to 128 characters");
  }
  if (!Number.isSafeInteger(o.quantity) || (o.quantity as number) < 1) {
    bad("quantity must be a positive integer");
  }
  if (typeof o.price !== "string" || !WEI.test(o.price)) bad("price must be a decimal amount");
  if (typeof o.currency !== "string" || !/^[A-Za-z0-9:._/-]{1,64}$/.test(o.currency)) {
    bad("currency must be 1 to 64 of A-Z a-z 0-9 : . _ / -");
  }
  if (typeof o.terms !== "string" || o.terms.length > 512) bad("terms: at most 512 characters");
  for (const k of ["deliveryTime", "validUntil", "at"] as const) {
    if (!Number.isSafeInteger(o[k]) || (o[k] as number) < 0) bad(`${k} must be ms`);
  }
  if (typeof o.sig !== "string" || o.sig.length > 200 || !BASE64.test(o.sig)) {
    bad("sig must be base64");
  }
  if (o.payout !== undefined) {
    const p = o.payout as Record<string, unknown>;
    if (
      !isObject(p) || Object.keys(p).some((k) => !["chainId", "address", "link"].includes(k)) ||
      !Number.isSafeInteger(p.chainId) || (p.chainId as number) <= 0 ||
      typeof p.address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(p.address) ||
      typeof p.link !== "string" || p.link.length > 200 || !BASE64.test(p.link)
    ) bad("payout must be {chainId, address, link}");
  }
  return input as Quote;
}

const bytesOf = (v: unknown) => te.encode(canonical(v));

/**
 * A quote's ID, and the `terms` of an escrow deal made of it: SHA-256 of its canonical JSON (signature
 * included), as 0x hex (32 bytes). Buyer and seller compute it alike; nothing else of the quote reaches the
 * chain. (Not keccak: this module stays free of viem, which only chain-enabled nodes load.)
 */
export function quoteId(quote: Quote): `0x${string}` {
  return `0x${createHash("sha256").update(bytesOf(quote)).digest("hex")}`;
}

/** Signs `terms` as `seller`'s quote to the intent `intentId`. */
export async function signQuote(
  privateKey: PrivateKey,
  seller: string,
  intentId: string,
  terms: QuoteTerms,
  now = Date.now(),
): Promise<Quote> {
  const unsigned: Omit<Quote, "sig"> = { v: 1, intentId, seller, ...terms, at: now };
  checkQuoteShape({ ...unsigned, sig: "AA==" });
  return { ...unsigned, sig: await signTagged(privateKey, QUOTE_DOMAIN, bytesOf(unsigned)) };
}

/** Checks a quote's shape, its seller's signature and that it still stands. */
export async function verifyQuote(input: unknown, now = Date.now()): Promise<Quote> {
  const q = checkQuoteShape(input);
  const { sig, ...unsigned } = q;
  if (!await verifyTagged(q.seller, QUOTE_DOMAIN, bytesOf(unsigned), sig)) {
    throw new QuoteError("quote_signature", `The quote is not signed by ${q.seller}`);
  }
  if (q.validUntil <= now) {
    throw new QuoteError(
      "quote_expired",
      `The quote lapsed at ${new Date(q.validUntil).toISOString()}`,
    );
  }
  return q;
}

const infoOf = (id: string) => te.encode(INFO_PREFIX + id);

/** Pads the signed quote to {@link QUOTE_PLAINTEXT_BYTES}: two bytes of length, the JSON, zeros. */
function pad(quote: Quote): Uint8Array {
  const json = te.encode(JSON.stringify(quote));
  if (json.length > QUOTE_PLAINTEXT_BYTES - 2) bad(`at most ${QUOTE_PLAINTEXT_BYTES - 2} bytes`);
  const out = new Uint8Array(QUOTE_PLAINTEXT_BYTES);
  out[0] = json.length >> 8;
  out[1] = json.length & 0xff;
  out.set(json, 2);
  return out;
}

function unpad(plain: Uint8Array): unknown {
  if (plain.length !== QUOTE_PLAINTEXT_BYTES) bad("wrong plaintext size");
  const n = (plain[0]! << 8) | plain[1]!;
  if (n > plain.length - 2) bad("bad padding");
  let or = 0; // the padding is zeros (a plain loop: this runs on every quote opened)
  for (let i = 2 + n; i < plain.length; i++) or |= plain[i]!;
  if (or !== 0) bad("bad padding");
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(plain.subarray(2, 2 + n)));
  } catch (e) {
    throw new QuoteError("quote_malformed", "A quote is UTF-8 JSON", { cause: e });
  }
}

/** Seals a signed quote to its intent's key. */
export async function sealQuote(quote: Quote, intent: Intent): Promise<SealedQuote> {
  const id = intentId(intent);
  if (quote.intentId !== id) bad("the quote names another intent");
  const sealed = await seal(intentKey(intent), pad(quote), infoOf(id));
  return { v: 1, intent: id, enc: toBase64(sealed.enc), ct: toBase64(sealed.ct) };
}

/** Checks the shape of a sealed quote off the wire. */
export function checkSealed(input: unknown): SealedQuote {
  if (!isObject(input)) bad("a sealed quote is an object");
  const o = input as Record<string, unknown>;
  if (Object.keys(o).some((k) => !["v", "intent", "enc", "ct"].includes(k))) bad("unknown field");
  if (o.v !== 1) bad("v must be 1");
  if (typeof o.intent !== "string" || !/^[0-9a-f]{64}$/.test(o.intent)) bad("intent must be an ID");
  const b64 = (v: unknown, n: number, name: string) => {
    if (typeof v !== "string" || v.length !== 4 * Math.ceil(n / 3) || !BASE64.test(v)) {
      bad(`${name} must be ${n} bytes in base64`);
    }
  };
  b64(o.enc, X25519_BYTES, "enc");
  b64(o.ct, QUOTE_CIPHERTEXT_BYTES, "ct");
  return input as SealedQuote;
}

/**
 * Opens a sealed quote to `intent` with the intent's key pair, then checks it: the seller's signature, that
 * it names this intent and still stands, and that it fits the intent (same item and currency, no more than
 * the quantity wanted, at most the price the buyer would pay). Throws {@link QuoteError}: `quote_sealed` when
 * it does not open (sealed to another key, altered), `quote_signature`, `quote_expired`, `quote_mismatch`.
 */
export async function openQuote(
  input: unknown,
  intent: Intent,
  keys: HpkeKeyPair,
  now = Date.now(),
): Promise<Quote> {
  const sealed = checkSealed(input);
  const id = intentId(intent);
  if (sealed.intent !== id) {
    throw new QuoteError("quote_mismatch", "The quote is for another intent");
  }
  let plain: Uint8Array;
  try {
    plain = await open(
      keys,
      { enc: fromBase64(sealed.enc), ct: fromBase64(sealed.ct) },
      infoOf(id),
    );
  } catch (e) {
    throw new QuoteError("quote_sealed", "The quote does not open with this intent's key", {
      cause: e,
    });
  }
  const q = await verifyQuote(unpad(plain), now);
  if (q.intentId !== id) throw new QuoteError("quote_mismatch", "The quote names another intent");
  if (q.item !== intent.item || q.currency !== intent.currency) {
    throw new QuoteError("quote_mismatch", "The quote is for another item or currency");
  }
  if (q.quantity > intent.quantity) {
    throw new QuoteError("quote_mismatch", "The quote is for more than the quantity wanted");
  }
  if (BigInt(q.price) > BigInt(intent.maxPrice)) {
    throw new QuoteError("quote_mismatch", "The quote is above the intent's maximum price");
  }
  return q;
}

/** A quote with what ranking made of it. */
export interface RankedQuote {
  quote: Quote;
  /** The seller's trust used, 0 to 1. */
  trust: number;
  /** `price × (1 − weight × trust)`, rounded down. */
  effective: bigint;
}

/**
 * Orders quotes best first by effective price (see the module doc). `trust(seller)` is clamped to [0, 1];
 * `weight` to [0, 1].
 */
export function rankQuotes(
  quotes: readonly Quote[],
  trust: (seller: string) => number,
  weight = DEFAULT_TRUST_WEIGHT,
): RankedQuote[] {
  const w = Math.min(1, Math.max(0, weight));
  const SCALE = 1_000_000n;
  return quotes.map((quote) => {
    const t = Math.min(1, Math.max(0, trust(quote.seller) || 0));
    const keep = SCALE - BigInt(Math.round(w * t * 1_000_000));
    return { quote, trust: t, effective: (BigInt(quote.price) * keep) / SCALE };
  }).sort((a, b) =>
    a.effective < b.effective ? -1 : a.effective > b.effective ? 1 : b.trust - a.trust ||
      a.quote.at - b.quote.at
  );
}
