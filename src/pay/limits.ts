/**
 * What a paying client may spend: a price ceiling, a cap per file and per day, and how long an unused channel
 * keeps its deposit. The defaults protect a node that serves a public gateway, where strangers choose what it
 * fetches and an operator chooses its own price.
 *
 * @module
 */
import { MeshError } from "../errors.ts";

/**
 * Highest price paid by default, in wei per byte: 1 gwei, the price of a `--paid` cluster. At that price a GiB
 * already costs ~1 ETH, far above any bandwidth market, so a quote above it is a mistake or an attack (an
 * operator quoting 4 gwei a byte for a file only it holds would take ~1 ETH per channel deposit).
 */
export const DEFAULT_MAX_PRICE = 1_000_000_000n;
/** Most wei spent on one file by default: 0.1 ETH, 100 MiB at {@link DEFAULT_MAX_PRICE}. */
export const DEFAULT_MAX_SPEND_PER_FILE = 100_000_000_000_000_000n;
/** Most wei spent in any 24 hours by default: 1 ETH, ten files at the per-file cap. */
export const DEFAULT_MAX_SPEND_PER_DAY = 1_000_000_000_000_000_000n;
/** A channel unused this long (ms) is closed, so its deposit comes back after its challenge period: 10 min. */
export const DEFAULT_IDLE_CLOSE_MS = 10 * 60_000;
/** The largest chunk: the worst case a request reserves against the caps before it is made. */
export const MAX_CHUNK_BYTES = 1 << 20;

/**
 * Wei spent for one file, shared by every chunk fetched for it. Pass the same object along a file's reads
 * (`FetchOptions.budget`); the paying client adds to it and refuses once the per-file cap would be passed.
 */
export interface SpendBudget {
  spentWei: bigint;
}

/** The only holders the client could pay charge more than its price ceiling. Status 402. */
export class PriceAboveCapError extends MeshError {
  override name = "PriceAboveCapError";
  constructor(readonly peer: string, readonly price: bigint, readonly maxPrice: bigint) {
    super(
      "price_above_cap",
      `Peer "${peer}" charges ${price} wei per byte, above this node's price ceiling of ${maxPrice} ` +
        `(--max-price)`,
    );
  }
}

/** Paying for more would pass the per-file or per-day spending cap. Status 402. */
export class SpendingCapError extends MeshError {
  override name = "SpendingCapError";
  constructor(
    readonly cap: "file" | "day",
    readonly spentWei: bigint,
    readonly capWei: bigint,
    readonly price: bigint,
  ) {
    super(
      "spending_cap",
      `Fetching more at ${price} wei per byte would pass the ${
        cap === "file" ? "per-file" : "per-day"
      } spending cap of ${capWei} wei (${spentWei} spent; ${
        cap === "file" ? "--max-spend-file" : "--max-spend-day"
      })`,
    );
  }
}
