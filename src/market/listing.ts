/**
 * Listings: what a seller sells, private to the seller (kept in its data directory, never published). A
 * listing names a topic to watch, an item with its properties, the stock, a price rule and the terms a quote
 * carries; {@link matchIntent} decides whether an intent can be filled from it and at what price.
 *
 * Price rule: a unit price, and optional volume tiers (`{from, unit}`: from that quantity on, that unit price
 * for every unit); the price is quantity × the unit price of the highest tier reached. A listing quotes only
 * when the whole price is within the intent's maximum.
 *
 * @module
 */
import { MeshError } from "../errors.ts";
import type { Intent } from "./intent.ts";
import type { QuoteTerms } from "./quote.ts";

export interface PriceRule {
  /** Price of one unit, in the currency's smallest unit, decimal. */
  unit: string;
  /** Cheaper units from a quantity on (highest `from` reached applies). Default: none. */
  tiers?: { from: number; unit: string }[];
}

export interface ListingInit {
  topic: string;
  item: string;
  /** What the item is: an intent's specs must all be here, equal. Default: none. */
  specs?: Record<string, string>;
  /** Units on hand: intents for more are not answered. */
  stock: number;
  currency: string;
  price: PriceRule;
  /** Free text carried by every quote. Default: "". */
  terms?: string;
  /** Delivery time promised, ms after the deal. Default: one day. */
  deliveryTime?: number;
  /** How long a quote stands, ms (never past the intent's expiry). Default: one hour. */
  quoteValidityMs?: number;
  /** Answer matching intents at once; false holds them for the operator. Default: true. */
  auto?: boolean;
}

export interface Listing extends Required<ListingInit> {
  id: string;
}

export class ListingError extends MeshError {
  override name = "ListingError";
  constructor(message: string) {
    super("listing_invalid", message);
  }
}

const AMOUNT = /^(0|[1-9][0-9]{0,77})$/;

/** Checks and completes a listing; throws {@link ListingError}. */
export function checkListing(init: ListingInit, id: string = crypto.randomUUID()): Listing {
  const bad = (why: string): never => {
    throw new ListingError(`Invalid listing: ${why}`);
  };
  if (typeof init !== "object" || init === null) bad("not an object");
  if (typeof init.topic !== "string" || !init.topic || init.topic.length > 64) bad("topic");
  if (typeof init.item !== "string" || !init.item || init.item.length > 128) bad("item");
  if (!Number.isSafeInteger(init.stock) || init.stock < 0) bad("stock must be a count");
  if (typeof init.currency !== "string" || !/^[A-Za-z0-9:._/-]{1,64}$/.test(init.currency)) {
    bad("currency");
  }
  if (typeof init.price?.unit !== "string" || !AMOUNT.test(init.price.unit)) {
    bad("price.unit must be a decimal amount");
  }
  for (const t of init.price.tiers ?? []) {
    if (!Number.isSafeInteger(t?.from) || t.from < 1 || !AMOUNT.test(t.unit ?? "")) {
      bad("price.tiers are {from: quantity, unit: amount}");
    }
  }
  const specs = init.specs ?? {};
  if (typeof specs !== "object" || Object.values(specs).some((v) => typeof v !== "string")) {
    bad("specs are strings");
  }
  const terms = init.terms ?? "";
  if (typeof terms !== "string" || terms.length > 512) bad("terms: at most 512 characters");
  const deliveryTime = init.deliveryTime ?? 86_400_000;
  const quoteValidityMs = init.quoteValidityMs ?? 3_600_000;
  if (!Number.isSafeInteger(deliveryTime) || deliveryTime < 0) bad("deliveryTime in ms");
  if (!Number.isSafeInteger(quoteValidityMs) || quoteValidityMs < 1000) {
    bad("quoteValidityMs: at least 1000");
  }
  return {
    id,
    topic: init.topic,
    item: init.item,
    specs: { ...specs },
    stock: init.stock,
    currency: init.currency,
    price: { unit: init.price.unit, tiers: [...(init.price.tiers ?? [])] },
    terms,
    deliveryTime,
    quoteValidityMs,
    auto: init.auto ?? true,
  };
}

/** The price of `quantity` units under `rule`. */
export function priceFor(rule: PriceRule, quantity: number): bigint {
  let unit = BigInt(rule.unit);
  let reached = 0;
  for (const t of rule.tiers ?? []) {
    if (quantity >= t.from && t.from > reached) {
      reached = t.from;
      unit = BigInt(t.unit);
    }
  }
  return unit * BigInt(quantity);
}

/**
 * What `listing` would quote for `intent`, or null when it cannot fill it: another topic, item or currency, a
 * property the intent asks for that the listing lacks or has otherwise, not enough stock, or above the
 * intent's maximum price.
 */
export function matchIntent(listing: Listing, intent: Intent, now = Date.now()): QuoteTerms | null {
  if (listing.topic !== intent.topic || listing.item !== intent.item) return null;
  if (listing.currency !== intent.currency || listing.stock < intent.quantity) return null;
  for (const [k, v] of Object.entries(intent.specs)) if (listing.specs[k] !== v) return null;
  const price = priceFor(listing.price, intent.quantity);
  if (price > BigInt(intent.maxPrice)) return null;
  return {
    item: listing.item,
    quantity: intent.quantity,
    price: price.toString(),
    currency: listing.currency,
    terms: listing.terms,
    deliveryTime: listing.deliveryTime,
    validUntil: Math.min(now + listing.quoteValidityMs, intent.expiry),
  };
}

/** A seller's listings, kept in `<dataDir>/market/listings.json` (mode 0600) when a directory is given. */
export class Listings {
  readonly #file?: string;
  #byId = new Map<string, Listing>();

  constructor(dataDir?: string) {
    this.#file = dataDir === undefined ? undefined : `${dataDir}/market/listings.json`;
    if (this.#file) {
      try {
        const saved = JSON.parse(Deno.readTextFileSync(this.#file)) as Listing[];
        for (const l of saved) this.#byId.set(l.id, checkListing(l, l.id));
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }

  all(): Listing[] {
    return [...this.#byId.values()];
  }

  get(id: string): Listing | undefined {
    return this.#byId.get(id);
  }

  /** Topics of the listings, each once. */
  topics(): string[] {
    return [...new Set(this.all().map((l) => l.topic))];
  }

  add(init: ListingInit): Listing {
    const listing = checkListing(init);
    this.#byId.set(listing.id, listing);
    this.#save();
    return listing;
  }

  remove(id: string): boolean {
    const gone = this.#byId.delete(id);
    if (gone) this.#save();
    return gone;
  }

  /** The listings that can fill `intent`, cheapest first, with what each would quote. */
  matches(intent: Intent, now = Date.now()): { listing: Listing; terms: QuoteTerms }[] {
    const out: { listing: Listing; terms: QuoteTerms }[] = [];
    for (const listing of this.#byId.values()) {
      const terms = matchIntent(listing, intent, now);
      if (terms) out.push({ listing, terms });
    }
    return out.sort((a, b) => (BigInt(a.terms.price) < BigInt(b.terms.price) ? -1 : 1));
  }

  #save(): void {
    if (!this.#file) return;
    Deno.mkdirSync(this.#file.slice(0, this.#file.lastIndexOf("/")), { recursive: true });
    Deno.writeTextFileSync(this.#file, JSON.stringify(this.all()), { mode: 0o600 });
  }
}
