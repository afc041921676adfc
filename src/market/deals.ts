/**
 * Deals: accepted quotes funded through `contracts/Escrow.sol` (`escrow.ts`), from either side.
 *
 * - **Buyer.** {@link DealDesk.fund} locks the quote's price for the quote's seller account (`quote.payout`),
 *   with the quote's ID (`quote.ts`, `quoteId`) as the deal's `terms`: the chain holds nothing else of it.
 *   The seller has {@link DealDeskInit.confirmWithinS} to confirm; the delivery window is the quote's delivery
 *   time (at least {@link MIN_DELIVERY_WINDOW_S}). {@link DealDesk.release} pays the seller,
 *   {@link DealDesk.rateTerms} names what the buyer's rating signs (`rating.ts`).
 * - **Seller.** The desk follows the escrow's events; a `DealFunded` paying this account the exact price of a
 *   quote this node sent, under that quote's ID, is confirmed at once. Anything else (another amount, terms
 *   of no quote of ours) is left alone: the buyer gets its money back after `confirmBy`. A node that was
 *   offline catches up at start: the escrow's events from the block after the last one it saw (kept in
 *   `market/deals.json`) to the head are handled as if they had just arrived.
 *
 * Transactions go through {@link DealDeskInit.transactions}: the node passes paid delivery's queue, so the
 * account has one nonce sequence however many of its parts send from it.
 *
 * What the seller received stays in the escrow until {@link DealDesk.withdraw} pulls it.
 *
 * @module
 */
import {
  type Address,
  createPublicClient,
  createWalletClient,
  getAddress,
  type Hash,
  type Hex,
  http,
  isAddressEqual,
  type LocalAccount,
} from "viem";
import { getBlock, getBlockNumber } from "viem/actions";
import { MeshError } from "../errors.ts";
import type { PayClient } from "../pay/_tx.ts";
import { Serial } from "../pay/_serial.ts";
import { type ChainConfig, meshChain } from "../pay/chain.ts";
import type { ReputationBook } from "../reputation/book.ts";
import {
  confirmDeal,
  type DealStatus,
  type EscrowEvent,
  fundEscrow,
  getDeal,
  getDealEvents,
  releaseDeal,
  watchDeals,
  withdrawEscrow,
} from "./escrow.ts";
import { type Quote, quoteId } from "./quote.ts";
import type { PrivateKey } from "@libp2p/interface";
import {
  type Rating,
  RatingDesk,
  type RatingTerms,
  signPayoutLink,
  signRating,
  verifyPayoutLink,
} from "./rating.ts";

/** Shortest delivery window a deal gets, seconds (a quote promising delivery at once still leaves time to
 * dispute). */
export const MIN_DELIVERY_WINDOW_S = 3_600n;

export interface DealDeskInit {
  /** This node's account on the escrow's chain. */
  wallet: PayClient;
  /** The Escrow contract. */
  escrow: Address;
  /** Seconds the seller has to confirm a funded deal. Default: 3 600. */
  confirmWithinS?: bigint;
  /** Seconds from a dispute for the arbiter. Default: one day. */
  disputeWindowS?: bigint;
  /** Poll period of the escrow's events, ms. Default: 2 000. */
  pollingMs?: number;
  /** Where `market/deals.json` keeps this node's deals across restarts (mode 0600). Default: memory only. */
  dataDir?: string;
  /** Queues the account's transactions (one nonce sequence); pass the one every sender from the account
   * shares (paid delivery's). Default: the desk's own. */
  transactions?: Serial;
  /** Where a first start (no `market/deals.json`) catches up from. Default: the head (nothing to catch up:
   * a node that never quoted has no deal to find). */
  fromBlock?: bigint;
  /** The quote this node sent whose ID is `terms`, if any (the seller side; the market service sets it). */
  sentQuote?: (terms: Hex) => Quote | undefined;
  log?: (entry: Record<string, unknown>) => void;
}

/** A deal this node is a party of. */
export interface Deal {
  id: Hex;
  role: "buyer" | "seller";
  quote: Quote;
  /** `quoteId(quote)`: the deal's terms on chain. */
  terms: Hex;
  amount: bigint;
  status: DealStatus;
  /** Set once this node (the buyer) rated it. */
  rated?: number;
  /** This node's transactions for it (fund, confirm, release), in order. */
  txs: Hash[];
}

export class DealError extends MeshError {
  override name = "DealError";
  constructor(code: "deal_unfundable" | "deal_not_found" | "deal_state", message: string) {
    super(code, message);
  }
}

/** Order of a deal's states: settled ones last. */
const RANK: Record<DealStatus, number> = {
  none: 0,
  funded: 1,
  confirmed: 2,
  disputed: 3,
  released: 4,
  refunded: 4,
  resolved: 4,
};

export class DealDesk {
  #init: DealDeskInit;
  readonly #deals = new Map<string, Deal>();
  readonly address: Address;
  #unwatch?: () => void;
  /** The account's transactions, one at a time (one nonce sequence). */
  readonly #txs: Serial;
  #saving: Promise<void> = Promise.resolve();
  /** The last block whose events this desk handled (saved with the deals). */
  #lastBlock?: bigint;

  constructor(init: DealDeskInit) {
    this.#init = init;
    this.address = init.wallet.account.address;
    this.#txs = init.transactions ?? new Serial();
  }

  get chainId(): number {
    return this.#init.wallet.chain.id;
  }

  get escrow(): Address {
    return this.#init.escrow;
  }

  /** Where the seller side finds its sent quotes, and where logs go (the market service calls it). */
  attach(hooks: Pick<DealDeskInit, "sentQuote" | "log">): void {
    this.#init = { ...this.#init, ...hooks };
  }

  /** What this node's quotes carry: its account, and `key`'s (the peer's) signed payout link to it. */
  async payout(key: PrivateKey): Promise<{ chainId: number; address: Address; link: string }> {
    const payout = { chainId: this.chainId, address: this.address };
    return { ...payout, link: await signPayoutLink(key, payout) };
  }

  get #file(): string | undefined {
    return this.#init.dataDir === undefined ? undefined : `${this.#init.dataDir}/market/deals.json`;
  }

  /** Writes the deals (after every change; one write at a time, the last one wins). */
  #save(): void {
    const file = this.#file;
    if (!file) return;
    const text = JSON.stringify({
      lastBlock: this.#lastBlock === undefined ? undefined : String(this.#lastBlock),
      deals: this.list().map((d) => ({ ...d, amount: String(d.amount) })),
    });
    this.#saving = this.#saving.then(async () => {
      await Deno.mkdir(`${this.#init.dataDir}/market`, { recursive: true });
      await Deno.writeTextFile(`${file}.tmp`, text, { mode: 0o600 });
      await Deno.rename(`${file}.tmp`, file);
    }).catch((e) => this.#log({ msg: "deals not saved", error: `${e}` }));
  }

  async #load(): Promise<void> {
    const file = this.#file;
    if (!file) return;
    type Row = Omit<Deal, "amount"> & { amount: string };
    let saved: Row[] | { lastBlock?: string; deals: Row[] };
    try {
      saved = JSON.parse(await Deno.readTextFile(file));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      throw e;
    }
    // An older file is the bare list of deals, with no block.
    const rows = Array.isArray(saved) ? saved : saved.deals;
    if (!Array.isArray(saved) && saved.lastBlock !== undefined) {
      this.#lastBlock = BigInt(saved.lastBlock);
    }
    for (const r of rows) this.#deals.set(r.id.toLowerCase(), { ...r, amount: BigInt(r.amount) });
  }

  /** Notes that the buyer's rating of deal `id` was accepted. */
  rated(id: string, value: number): void {
    const d = this.#mine(id, "buyer");
    d.rated = value;
    this.#save();
  }

  /**
   * Loads the deals, starts following the escrow's events, then catches up on those it missed while
   * stopped: from the block after the last one seen to the head. (The watch starts first, so nothing
   * falls between the two; an event seen by both is handled once.)
   */
  async start(): Promise<void> {
    if (this.#unwatch) return;
    await this.#load();
    const head = await getBlockNumber(this.#init.wallet, { cacheTime: 0 });
    this.#unwatch = watchDeals(this.#init.wallet, {
      address: this.#init.escrow,
      pollingInterval: this.#init.pollingMs ?? 2_000,
      onEvents: (events) => void this.#events(events),
      onError: (e) => this.#log({ msg: "escrow watch failed", error: `${e}` }),
    });
    const from = this.#lastBlock !== undefined
      ? this.#lastBlock + 1n
      : (this.#init.fromBlock ?? head + 1n);
    if (from <= head) {
      const missed = await getDealEvents(this.#init.wallet, {
        address: this.#init.escrow,
        fromBlock: from,
      });
      if (missed.length) this.#log({ msg: "escrow events caught up", events: missed.length, from });
      await this.#events(missed);
    }
    if (this.#lastBlock === undefined || this.#lastBlock < head) this.#lastBlock = head;
    this.#save();
  }

  async stop(): Promise<void> {
    this.#unwatch?.();
    this.#unwatch = undefined;
    await this.#txs.idle();
    await this.#saving;
  }

  /** Deals of this node, newest last. */
  list(): Deal[] {
    return [...this.#deals.values()];
  }

  get(id: string): Deal | undefined {
    return this.#deals.get(id.toLowerCase());
  }

  /** Funds a deal of `quote` (already opened and checked by the market service). */
  async fund(quote: Quote): Promise<Deal> {
    const p = quote.payout;
    if (!p) throw new DealError("deal_unfundable", "The quote names no payout account");
    if (p.chainId !== this.chainId) {
      throw new DealError(
        "deal_unfundable",
        `The quote is paid on chain ${p.chainId}, this node is on ${this.chainId}`,
      );
    }
    if (Date.now() >= quote.validUntil) {
      throw new DealError("deal_unfundable", "The quote lapsed");
    }
    return await this.#tx(async () => {
      // A deal paying an account its seller's peer did not sign for could never be rated: refuse it.
      if (
        !await verifyPayoutLink(
          quote.seller,
          { chainId: p.chainId, address: p.address as Address },
          p.link,
        )
      ) {
        throw new DealError(
          "deal_unfundable",
          `Peer ${quote.seller} did not sign that it is paid at ${p.address}`,
        );
      }
      const now = (await getBlock(this.#init.wallet)).timestamp;
      const terms = quoteId(quote);
      const delivery = BigInt(Math.ceil(quote.deliveryTime / 1000));
      const { deal, hash } = await fundEscrow(this.#init.wallet, {
        address: this.#init.escrow,
        seller: getAddress(p.address),
        amount: BigInt(quote.price),
        terms,
        confirmBy: now + (this.#init.confirmWithinS ?? 3_600n),
        deliveryWindow: delivery > MIN_DELIVERY_WINDOW_S ? delivery : MIN_DELIVERY_WINDOW_S,
        disputeWindow: this.#init.disputeWindowS ?? 86_400n,
      });
      const d: Deal = {
        id: deal,
        role: "buyer",
        quote,
        terms,
        amount: BigInt(quote.price),
        status: "funded",
        txs: [hash],
      };
      this.#deals.set(deal.toLowerCase(), d);
      this.#save();
      this.#log({ msg: "deal funded", deal });
      return d;
    });
  }

  /** The buyer pays the seller in full. */
  release(id: string): Promise<Deal> {
    const d = this.#mine(id, "buyer");
    return this.#tx(async () => {
      const { hash } = await releaseDeal(this.#init.wallet, {
        address: this.#init.escrow,
        deal: d.id,
      });
      d.txs.push(hash);
      d.status = "released";
      this.#save();
      this.#log({ msg: "deal released", deal: d.id });
      return d;
    });
  }

  /**
   * The seller confirms deal `id` (the desk confirms a deal of its quote by itself; this is for one it
   * could not, e.g. a transaction that failed).
   */
  confirm(id: string): Promise<Deal> {
    const d = this.#mine(id, "seller");
    return this.#tx(async () => {
      const { hash } = await confirmDeal(this.#init.wallet, {
        address: this.#init.escrow,
        deal: d.id,
      });
      d.txs.push(hash);
      if (RANK[d.status] < RANK.confirmed) d.status = "confirmed";
      this.#save();
      this.#log({ msg: "deal confirmed", deal: d.id });
      return d;
    });
  }

  /** Pulls what the escrow credited this account. */
  withdraw(): Promise<{ amount: bigint; hash: Hash }> {
    return this.#tx(() => withdrawEscrow(this.#init.wallet, { address: this.#init.escrow }));
  }

  /** What the buyer's rating of deal `id` signs (it must be this node's, as buyer). */
  rateTerms(id: string, value: number, comment?: Hex): RatingTerms {
    const d = this.#mine(id, "buyer");
    const p = d.quote.payout!;
    return {
      chainId: this.chainId,
      escrow: this.#init.escrow,
      deal: d.id,
      seller: getAddress(p.address),
      sellerPeer: d.quote.seller,
      link: p.link,
      value,
      ...(comment ? { comment } : {}),
    };
  }

  /** The buyer signs its rating of deal `id` (0 to 1); refused once {@link Deal.rated} is set. */
  async rate(id: string, value: number, comment?: Hex): Promise<Rating> {
    const d = this.#mine(id, "buyer");
    if (d.rated !== undefined) {
      throw new DealError("deal_state", `Deal ${id} was rated already: one rating per deal`);
    }
    const account = this.#init.wallet.account;
    if (!account.signTypedData) throw new DealError("deal_state", "The account cannot sign here");
    const rating = await signRating(
      account as Parameters<typeof signRating>[0],
      this.rateTerms(id, value, comment),
    );
    return rating;
  }

  /** Brings a deal's status up to the chain's. */
  async refresh(id: string): Promise<Deal> {
    const d = this.get(id);
    if (!d) throw new DealError("deal_not_found", `No deal ${id} here`);
    d.status =
      (await getDeal(this.#init.wallet, { address: this.#init.escrow, deal: d.id })).status;
    return d;
  }

  #mine(id: string, role: Deal["role"]): Deal {
    const d = this.get(id);
    if (!d || d.role !== role) {
      throw new DealError("deal_not_found", `No deal ${id} of this ${role}`);
    }
    return d;
  }

  #tx<T>(fn: () => Promise<T>): Promise<T> {
    return this.#txs.run(fn);
  }

  async #events(events: EscrowEvent[]): Promise<void> {
    for (const e of events) {
      const block = (e as { blockNumber?: bigint | null }).blockNumber;
      if (typeof block === "bigint" && (this.#lastBlock === undefined || block > this.#lastBlock)) {
        this.#lastBlock = block;
      }
      const args = e.args as Record<string, unknown>;
      const id = (args.deal as Hex | undefined)?.toLowerCase();
      if (!id) continue;
      const known = this.#deals.get(id);
      if (e.eventName === "DealFunded") {
        if (known || !isAddressEqual(args.seller as Address, this.address)) continue;
        const quote = this.#init.sentQuote?.(args.terms as Hex);
        if (!quote || BigInt(quote.price) !== args.amount) {
          this.#log({ msg: "funded deal not ours to confirm", deal: id });
          continue;
        }
        const d: Deal = {
          id: args.deal as Hex,
          role: "seller",
          quote,
          terms: args.terms as Hex,
          amount: args.amount as bigint,
          status: "funded",
          txs: [],
        };
        this.#deals.set(id, d);
        try {
          const { hash } = await this.#tx(() =>
            confirmDeal(this.#init.wallet, { address: this.#init.escrow, deal: d.id })
          );
          d.txs.push(hash);
          d.status = "confirmed";
          this.#save();
          this.#log({ msg: "deal confirmed", deal: id });
        } catch (err) {
          this.#log({ msg: "deal not confirmed", deal: id, error: `${err}` });
        }
      } else if (known) {
        const status: Record<string, DealStatus> = {
          DealConfirmed: "confirmed",
          DealDisputed: "disputed",
          DealReleased: "released",
          DealRefunded: "refunded",
          DealResolved: "resolved",
        };
        // Events may come twice (watch and catch-up) or late: a deal's status only moves forward.
        const next = status[e.eventName];
        if (next && RANK[next] > RANK[known.status]) known.status = next;
        this.#save();
      }
    }
  }

  #log(entry: Record<string, unknown>): void {
    this.#init.log?.(entry);
  }
}

/**
 * The chain side of a node's market (`node.ts` loads this module only with a chain): a {@link RatingDesk}
 * over `chain`'s escrow feeding `book`, and with `account` a {@link DealDesk} trading from it. Neither is
 * started.
 */
export function chainMarket(init: {
  chain: ChainConfig;
  account?: LocalAccount;
  /** The account's client and transaction queue when others send from it too (paid delivery's):
   * one nonce sequence per account. Default: the desk's own. */
  wallet?: PayClient;
  transactions?: Serial;
  book: Pick<ReputationBook, "rated">;
  dataDir?: string;
}): { deals?: DealDesk; ratings: RatingDesk } {
  const chain = meshChain(init.chain);
  const escrow = init.chain.contracts.escrow;
  const client = createPublicClient({ chain, transport: http(init.chain.rpc) });
  const ratings = new RatingDesk({ client, escrow, book: init.book, dataDir: init.dataDir });
  if (!init.account) return { ratings };
  const wallet = init.wallet ?? createWalletClient({
    account: init.account,
    chain,
    transport: http(init.chain.rpc),
  }) as PayClient;
  return {
    deals: new DealDesk({
      wallet,
      escrow,
      dataDir: init.dataDir,
      transactions: init.transactions,
    }),
    ratings,
  };
}
