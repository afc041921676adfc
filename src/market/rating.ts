/**
 * Ratings that cannot be faked: a buyer's verdict on one deal of `contracts/Escrow.sol`, which any node checks
 * against the chain alone before it enters its reputation book as the seller's trade factor.
 *
 * A rating {chainId, escrow, deal, seller, sellerPeer, link, value, comment?} is signed with EIP-712 by the
 * deal's buyer, the Ethereum account that funded it (a libp2p signature could not be tied to that account).
 * It counts only when all of these hold (else {@link RatingError} says which):
 * - it names the escrow this node trusts, on the chain its client is on (a contract of the rater's choosing
 *   could report any deal): `rating_deal`;
 * - the deal settled on chain: released, or refunded or resolved after the seller confirmed (a deal the seller
 *   never took is no trade of its; a seller declining is no trade either): `rating_unsettled`;
 * - the signer is the deal's buyer and `seller` is the deal's seller: `rating_signature`, `rating_deal`;
 * - `link` is `sellerPeer`'s libp2p signature binding it to `seller` on that chain ({@link signPayoutLink}):
 *   `rating_link`;
 * - it is the first rating this node accepted for that deal: `rating_duplicate`.
 *
 * **Which peer a rating names.** An escrow knows addresses, the book knows peer IDs. The seller's offer
 * (`offers.ts`) and its quote name its payout address; the seller also hands the buyer a payout link, its peer
 * key's signature of (chainId, address). The buyer copies it into the rating and signs `sellerPeer` with the
 * rest, so a rating names exactly one peer, with that peer's consent to be paid at `seller`. Nobody can pin a
 * deal on a peer that did not sign the address. A peer that links itself to someone else's address gains only
 * ratings of deals that paid that other account: reputation bought at face value for a stranger.
 *
 * **Weight** (what `book.rated` adds to the seller's trade Beta): the deal's value in units of
 * {@link RatingWeights.unitWei} (default 0.01 ETH), `u² / (u + 1)` (≈ u for large deals, ≈ u² for small ones),
 * capped at `maxWeight` (default 10: no single deal decides), times `(n + 1) / (n + 1 + historyHalf)` where `n`
 * is the buyer's other deals settled on this escrow (`Escrow.settledDeals`, default `historyHalf` 4: a first
 * deal counts 0.2, a buyer with 4 others 0.56, with 20 others 0.84).
 * - Small deals weigh less than in proportion: u²/(u+1) is superadditive, so under the cap splitting one deal
 *   into many never adds weight (0.001 ETH weighs 0.009, 0.01 ETH 0.5, 0.05 ETH 4.2, from 0.11 ETH on 10).
 * - Buyers with no history weigh little: a fresh account's first rating counts a fifth.
 * - Residual risk (documented, not solved): a trader with money can self-deal through Sybil buyer accounts, and
 *   the money comes back to it; each rating costs gas, the locked value's time and, after the first few, the
 *   history discount still applies per account. Ratings from counterparties the viewer trusts are future work.
 *
 * @module
 */
import type { PrivateKey } from "@libp2p/interface";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { join } from "node:path";
import {
  type Address,
  getAddress,
  type Hex,
  isAddress,
  isAddressEqual,
  isHex,
  type LocalAccount,
  recoverTypedDataAddress,
  type TypedDataDomain,
  zeroHash,
} from "viem";
import { getChainId } from "viem/actions";
import { MeshError } from "../errors.ts";
import { signTagged, verifyTagged } from "../mesh/signature.ts";
import type { ReadClient } from "../pay/_tx.ts";
import type { ReputationBook } from "../reputation/book.ts";
import { type DealState, getDeal, settledDeals } from "./escrow.ts";

/** EIP-712 domain name of a rating (its verifying contract is the escrow). */
export const RATING_DOMAIN_NAME = "Meshgate Rating";
export const RATING_DOMAIN_VERSION = "1";
/** A rating's value is signed in millionths. */
export const RATING_SCALE = 1_000_000;

/** EIP-712 types of a rating. */
export const ratingTypes = {
  Rating: [
    { name: "deal", type: "bytes32" },
    { name: "seller", type: "address" },
    { name: "sellerPeer", type: "string" },
    { name: "value", type: "uint32" },
    { name: "comment", type: "bytes32" },
  ],
} as const;

/** A signed rating, as it travels (JSON). */
export interface Rating {
  v: 1;
  chainId: number;
  /** The Escrow contract holding the deal. */
  escrow: Address;
  /** The deal id (bytes32). */
  deal: Hex;
  /** The deal's seller account. */
  seller: Address;
  /** The seller's peer ID: the reputation book's key. */
  sellerPeer: string;
  /** Base64 signature by `sellerPeer` of its payout link to `seller` ({@link signPayoutLink}). */
  link: string;
  /** 0 (worst) to 1 (fully satisfied). */
  value: number;
  /** Hash of a comment kept elsewhere (32 bytes), if any. */
  comment?: Hex;
  /** EIP-712 signature by the deal's buyer. */
  sig: Hex;
}

/** What a rating is before the buyer signs it. */
export type RatingTerms = Omit<Rating, "v" | "sig">;

export type RatingErrorCode =
  | "rating_malformed"
  | "rating_deal"
  | "rating_unsettled"
  | "rating_signature"
  | "rating_link"
  | "rating_duplicate";

/** A rating that does not count, with why. */
export class RatingError extends MeshError {
  override name = "RatingError";
  constructor(code: RatingErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

const LINK_DOMAIN = new TextEncoder().encode("meshgate/payout-link/1\n");

function linkBytes(chainId: number, address: Address): Uint8Array {
  return new TextEncoder().encode(`${chainId}\n${getAddress(address)}`);
}

/** The seller's peer signs that it is paid at `address` on `chainId`; the buyer puts this into its rating. */
export function signPayoutLink(
  key: PrivateKey,
  payout: { chainId: number; address: Address },
): Promise<string> {
  return signTagged(key, LINK_DOMAIN, linkBytes(payout.chainId, payout.address));
}

/** True when `link` is `peer`'s signature of its payout at `address` on `chainId`. */
export function verifyPayoutLink(
  peer: string,
  payout: { chainId: number; address: Address },
  link: string,
): Promise<boolean> {
  return verifyTagged(peer, LINK_DOMAIN, linkBytes(payout.chainId, payout.address), link);
}

/** The EIP-712 domain of ratings of deals in the escrow at `escrow` on `chainId`. */
export function ratingDomain(chainId: number, escrow: Address): TypedDataDomain {
  return {
    name: RATING_DOMAIN_NAME,
    version: RATING_DOMAIN_VERSION,
    chainId,
    verifyingContract: escrow,
  };
}

function message(r: RatingTerms) {
  return {
    deal: r.deal,
    seller: r.seller,
    sellerPeer: r.sellerPeer,
    value: Math.round(r.value * RATING_SCALE),
    comment: r.comment ?? zeroHash,
  };
}

/** The buyer signs its rating of a deal. */
export async function signRating(
  account: Pick<LocalAccount, "signTypedData">,
  terms: RatingTerms,
): Promise<Rating> {
  const unsigned = { v: 1 as const, ...terms };
  checkShape({ ...unsigned, sig: `0x${"00".repeat(65)}` });
  const sig = await account.signTypedData({
    domain: ratingDomain(terms.chainId, terms.escrow),
    types: ratingTypes,
    primaryType: "Rating",
    message: message(terms),
  });
  return { ...unsigned, sig };
}

const FIELDS = [
  "v",
  "chainId",
  "escrow",
  "deal",
  "seller",
  "sellerPeer",
  "link",
  "value",
  "comment",
  "sig",
];

const isBytes = (x: unknown, n: number): x is Hex =>
  typeof x === "string" && isHex(x) && x.length === 2 + 2 * n;

function checkShape(input: unknown): Rating {
  const r = input as Partial<Rating> | null;
  const bad = (why: string): never => {
    throw new RatingError("rating_malformed", `Malformed rating: ${why}`);
  };
  if (typeof r !== "object" || r === null || Array.isArray(r)) bad("not an object");
  if (r!.v !== 1) bad("v must be 1");
  if (!Number.isSafeInteger(r!.chainId) || r!.chainId! <= 0) bad("chainId must be a chain id");
  if (typeof r!.escrow !== "string" || !isAddress(r!.escrow, { strict: false })) {
    bad("escrow must be an address");
  }
  if (!isBytes(r!.deal, 32)) bad("deal must be 32 bytes of hex");
  if (typeof r!.seller !== "string" || !isAddress(r!.seller, { strict: false })) {
    bad("seller must be an address");
  }
  if (
    typeof r!.sellerPeer !== "string" || r!.sellerPeer.length === 0 || r!.sellerPeer.length > 100
  ) {
    bad("sellerPeer must be a peer ID");
  }
  if (
    typeof r!.link !== "string" || r!.link.length > 200 || !/^[A-Za-z0-9+/]+={0,2}$/.test(r!.link)
  ) bad("link must be base64");
  if (typeof r!.value !== "number" || !(r!.value >= 0 && r!.value <= 1)) {
    bad("value must be a number in [0, 1]");
  }
  if (r!.comment !== undefined && !isBytes(r!.comment, 32)) bad("comment must be 32 bytes of hex");
  if (!isBytes(r!.sig, 65)) bad("sig must be 65 bytes of hex");
  const extra = Object.keys(r!).filter((k) => !FIELDS.includes(k));
  if (extra.length) bad(`unknown field ${extra[0]}`);
  return r as Rating;
}

/** How much a rating weighs (see the module comment). */
export interface RatingWeights {
  /** Wei of one unit of weight. Default 10^16 (0.01 ETH). */
  unitWei: bigint;
  /** Most weight one rating carries. Default 10. */
  maxWeight: number;
  /** Other settled deals at which a buyer's ratings weigh about half. Default 4. */
  historyHalf: number;
}

export const DEFAULT_RATING_WEIGHTS: Readonly<RatingWeights> = Object.freeze({
  unitWei: 10n ** 16n,
  maxWeight: 10,
  historyHalf: 4,
});

/** The weight of a rating of a deal of `amount` wei by a buyer with `history` other settled deals. */
export function ratingWeight(
  amount: bigint,
  history: number,
  w: RatingWeights = DEFAULT_RATING_WEIGHTS,
): number {
  // Whole units as bigint first: a float of a huge wei amount would lose nothing that matters under the cap.
  const u = Number(amount * 1_000_000n / w.unitWei) / 1_000_000;
  const value = Math.min((u * u) / (u + 1), w.maxWeight);
  const h = Math.max(0, history);
  return value * (h + 1) / (h + 1 + w.historyHalf);
}

/** A rating that passed every check, with what it weighs. */
export interface CheckedRating {
  rating: Rating;
  deal: DealState;
  /** Other deals the buyer settled on this escrow. */
  history: number;
  weight: number;
}

/** Options of {@link checkRating}. */
export interface CheckRatingOptions {
  /** A client on the escrow's chain. */
  client: ReadClient;
  /** The escrow this node trusts (from its chain file). */
  escrow: Address;
  weights?: RatingWeights;
}

/**
 * Checks `input` against the chain: shape, escrow and chain, settlement, the buyer's signature, the seller's
 * account and payout link. Does not check for a duplicate (that is {@link RatingDesk}'s). Throws
 * {@link RatingError}.
 */
export async function checkRating(
  input: unknown,
  options: CheckRatingOptions,
): Promise<CheckedRating> {
  const r = checkShape(input);
  if (!isAddressEqual(r.escrow, options.escrow)) {
    throw new RatingError(
      "rating_deal",
      `The rating names escrow ${r.escrow}, not the trusted ${options.escrow}`,
    );
  }
  const chainId = options.client.chain?.id ?? await getChainId(options.client);
  if (r.chainId !== chainId) {
    throw new RatingError("rating_deal", `The rating is for chain ${r.chainId}, not ${chainId}`);
  }
  const deal = await getDeal(options.client, { address: options.escrow, deal: r.deal });
  if (deal.status === "none") {
    throw new RatingError("rating_unsettled", `Deal ${r.deal} was never funded on chain`);
  }
  const settled = deal.status === "released" ||
    ((deal.status === "refunded" || deal.status === "resolved") && deal.releaseAt !== 0n);
  if (!settled) {
    throw new RatingError(
      "rating_unsettled",
      deal.status === "refunded"
        ? `Deal ${r.deal} was refunded before the seller confirmed it: no trade to rate`
        : `Deal ${r.deal} has not settled on chain (it is ${deal.status})`,
    );
  }
  const signer = await recoverTypedDataAddress({
    domain: ratingDomain(r.chainId, r.escrow),
    types: ratingTypes,
    primaryType: "Rating",
    message: message(r),
    signature: r.sig,
  }).catch(() => undefined);
  if (signer === undefined || !isAddressEqual(signer, deal.buyer)) {
    throw new RatingError(
      "rating_signature",
      `The rating is signed by ${signer ?? "nobody"}, not the deal's buyer ${deal.buyer}`,
    );
  }
  if (!isAddressEqual(r.seller, deal.seller)) {
    throw new RatingError(
      "rating_deal",
      `The rating names seller ${r.seller}, the deal's is ${deal.seller}`,
    );
  }
  if (!await verifyPayoutLink(r.sellerPeer, { chainId: r.chainId, address: deal.seller }, r.link)) {
    throw new RatingError(
      "rating_link",
      `Peer ${r.sellerPeer} did not sign that it is paid at ${deal.seller} on chain ${r.chainId}`,
    );
  }
  // The deal itself is one of the buyer's settled deals.
  const history = Number(
    await settledDeals(options.client, { address: options.escrow, account: deal.buyer }),
  ) - 1;
  const weight = ratingWeight(deal.amount, history, options.weights);
  return { rating: r, deal, history, weight };
}

/** Options of a {@link RatingDesk}. */
export interface RatingDeskInit extends CheckRatingOptions {
  /** Where accepted ratings go (as the seller's trade factor). */
  book: Pick<ReputationBook, "rated">;
  /** Where `ratings.sqlite` lives (one rating per deal survives a restart). Default: memory only. */
  dataDir?: string;
}

export const RATINGS_FILE = "ratings.sqlite";

/** Accepts ratings into the reputation book, once per deal. {@link start} it, then {@link stop} it. */
export class RatingDesk {
  readonly #init: RatingDeskInit;
  #db?: DatabaseSync;
  #put?: StatementSync;
  #get?: StatementSync;
  /** Deals being checked now: a second copy arriving meanwhile is a duplicate too. */
  readonly #pending = new Set<string>();

  constructor(init: RatingDeskInit) {
    this.#init = init;
  }

  start(): Promise<void> {
    if (this.#db) return Promise.resolve();
    const db = new DatabaseSync(
      this.#init.dataDir === undefined ? ":memory:" : join(this.#init.dataDir, RATINGS_FILE),
    );
    db.exec("PRAGMA journal_mode = WAL");
    db.exec(
      "CREATE TABLE IF NOT EXISTS ratings (deal TEXT PRIMARY KEY, peer TEXT NOT NULL, rating TEXT NOT NULL, weight REAL NOT NULL)",
    );
    this.#put = db.prepare("INSERT INTO ratings (deal, peer, rating, weight) VALUES (?, ?, ?, ?)");
    this.#get = db.prepare("SELECT rating FROM ratings WHERE deal = ?");
    this.#db = db;
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.#db?.close();
    this.#db = undefined;
    return Promise.resolve();
  }

  /** The rating accepted for `deal`, if any. */
  accepted(deal: Hex): Rating | undefined {
    const row = this.#db!.prepare("SELECT rating FROM ratings WHERE deal = ?").get(
      this.#key(deal),
    ) as { rating: string } | undefined;
    return row ? JSON.parse(row.rating) as Rating : undefined;
  }

  /** Every accepted rating of `peer` (to pass on to others). */
  ratingsOf(peer: string): Rating[] {
    const rows = this.#db!.prepare("SELECT rating FROM ratings WHERE peer = ?").all(peer) as {
      rating: string;
    }[];
    return rows.map((row) => JSON.parse(row.rating) as Rating);
  }

  #key(deal: Hex): string {
    return `${this.#init.escrow.toLowerCase()}/${deal.toLowerCase()}`;
  }

  /** Checks `input` ({@link checkRating}), refuses a second rating of its deal, then rates the seller's peer. */
  async accept(input: unknown): Promise<CheckedRating> {
    if (!this.#db) throw new Error("RatingDesk is not started");
    const deal = (input as { deal?: unknown } | null)?.deal;
    const key = typeof deal === "string" ? this.#key(deal as Hex) : undefined;
    const duplicate = () =>
      new RatingError("rating_duplicate", `Deal ${deal} was rated already: one rating per deal`);
    if (key !== undefined && (this.#pending.has(key) || this.#get!.get(key))) throw duplicate();
    if (key !== undefined) this.#pending.add(key);
    try {
      const checked = await this.#accepted(input);
      return checked;
    } finally {
      if (key !== undefined) this.#pending.delete(key);
    }
  }

  async #accepted(input: unknown): Promise<CheckedRating> {
    const checked = await checkRating(input, this.#init);
    const { rating, weight } = checked;
    // Written before the book hears of it: a crash in between loses one rating, never counts one twice.
    this.#put!.run(this.#key(rating.deal), rating.sellerPeer, JSON.stringify(rating), weight);
    this.#init.book.rated(rating.sellerPeer, rating.value, weight);
    return checked;
  }
}

/** A rating as JSON bytes. */
export function encodeRating(r: Rating): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(r));
}

/** Largest rating accepted, encoded. */
export const MAX_RATING_BYTES = 1024;

/** Parses an encoded rating; throws {@link RatingError} on bad bytes. Does not check it. */
export function decodeRating(bytes: Uint8Array): unknown {
  if (bytes.length > MAX_RATING_BYTES) {
    throw new RatingError("rating_malformed", `A rating is at most ${MAX_RATING_BYTES} bytes`);
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new RatingError("rating_malformed", "A rating is UTF-8 JSON", { cause: e });
  }
}
