/**
 * The client's side of paid delivery: a {@link DeliveryPayer} for the chunk exchange. For every chunk it
 * received and verified it writes a delivery receipt; once a batch of receipts reaches `batchBytes` it signs a
 * voucher for the new cumulative amount with the batch's Merkle root and sends it to the operator over
 * `/meshgate/pay/1.0.0`, in the background (one operator's vouchers in order; {@link PayingClient.settle}
 * waits for them). The channel to each operator is opened on the first payment, with a deposit worth
 * `depositBytes` of service at its price, and topped up the same way when it runs low.
 *
 * It guards its wallet (`limits.ts`): operators quoting above `maxPrice` are not asked for chunks
 * ({@link PayingClient.screen}, called by the exchange before each request), paid requests stop before the
 * per-file or per-day cap would be passed, and channels unused for `idleCloseMs` are closed, then finalized.
 *
 * @module
 */
import type { Libp2p } from "@libp2p/interface";
import {
  type Address,
  type Hex,
  isAddressEqual,
  type LocalAccount,
  type TypedDataDomain,
} from "viem";
import { getBlock } from "viem/actions";
import type { CID } from "../content/cid.ts";
import type { DeliveryPayer, DeliveryRefusedError } from "../mesh/exchange.ts";
import type { ChainConfig } from "./chain.ts";
import { finalizeChannel, openChannel, startClose, topUp } from "./channel.ts";
import {
  DEFAULT_IDLE_CLOSE_MS,
  DEFAULT_MAX_PRICE,
  DEFAULT_MAX_SPEND_PER_DAY,
  DEFAULT_MAX_SPEND_PER_FILE,
  MAX_CHUNK_BYTES,
  PriceAboveCapError,
  type SpendBudget,
  SpendingCapError,
} from "./limits.ts";
import { DEFAULT_BATCH_BYTES, ReceiptBatch } from "./receipts.ts";
import { channelHubDomain, signVoucher } from "./voucher.ts";
import {
  type PayDialer,
  type Quote,
  QuoteRefusedError,
  requestQuote,
  submitVoucher,
  type VoucherAccepted,
  type VoucherMessage,
} from "./pay_protocol.ts";
import { PayProtocolError } from "./_wire.ts";
import { Serial } from "./_serial.ts";
import type { PayClient } from "./_tx.ts";

/** Options of a {@link PayingClient}. Every field documents its default. */
export interface PayingClientInit {
  /** The chain and hub the client pays through. */
  chain: Pick<ChainConfig, "chainId" | "contracts">;
  /** The client's account: payer of its channels, signer of its vouchers (a local account: it signs often). */
  wallet: PayClient;
  /** Bytes of verified chunks per voucher. Default: {@link DEFAULT_BATCH_BYTES}. */
  batchBytes?: number;
  /** Bytes of service each deposit (and top-up) pays for, at the operator's price. Default: 64 x `batchBytes`. */
  depositBytes?: number;
  /** Challenge period of the channels opened, in seconds. Default: 86 400 (a day). */
  challengePeriod?: bigint;
  /** Highest price accepted, in wei per byte; an operator quoting more is not asked for chunks (it fails
   * with {@link PriceAboveCapError}). Default: {@link DEFAULT_MAX_PRICE}. */
  maxPrice?: bigint;
  /** Most wei paid for one file (the chunks fetched with one {@link SpendBudget}). Default:
   * {@link DEFAULT_MAX_SPEND_PER_FILE}. */
  maxSpendPerFile?: bigint;
  /** Most wei paid in any 24 hours. Default: {@link DEFAULT_MAX_SPEND_PER_DAY}. */
  maxSpendPerDay?: bigint;
  /** A channel unused this long (ms) is closed, and finalized once its challenge period is over, so the
   * deposit comes back. 0 keeps channels open. Default: {@link DEFAULT_IDLE_CLOSE_MS}. */
  idleCloseMs?: number;
  /** Longest pay-protocol exchange, in ms. Default: 10 000. */
  timeoutMs?: number;
  /** Serializes the transactions of `wallet`'s account, when others send from it too. Default: its own. */
  transactions?: Serial;
  /** The protocol of the desks paid: `RELAY_PAY_PROTOCOL` for a node paying its relay. Default:
   * `PAY_PROTOCOL`. */
  protocol?: string;
  /** Told of channels opened and of operators whose quote or vouchers are refused (once per operator and
   * reason, so a log stays readable). Default: none. */
  onEvent?: (event: PayerEvent) => void;
}

/** What a paying client did, for logs. */
export type PayerEvent =
  | { kind: "channel_opened"; peer: string; channel: Hex; payee: Address; deposit: bigint }
  | { kind: "quote_refused"; peer: string; reason: string }
  | { kind: "payment_failed"; peer: string; error: unknown }
  | { kind: "channel_closing"; peer: string; channel: Hex; closesAt: bigint }
  | { kind: "channel_finalized"; peer: string; channel: Hex; refunded: bigint }
  | { kind: "close_failed"; peer: string; channel: Hex; error: unknown };

/** A channel the client started closing: its deposit comes back once finalized, from `closesAt`. */
export interface ClosingChannel {
  peer: string;
  channel: Hex;
  /** Unix seconds from which it can be finalized. */
  closesAt: bigint;
  deposit: bigint;
  /** Cumulative amount of its last voucher: what the operator may still redeem. */
  spent: bigint;
}

/** Totals of a paying client. */
export interface PayerStats {
  operators: number;
  channels: number;
  /** Vouchers signed and sent. */
  vouchers: number;
  /** Wei promised in vouchers, over every channel (what the operators may redeem). */
  spentWei: bigint;
  /** Of that, what the operators acknowledged. */
  acceptedWei: bigint;
  /** Wei locked in channel deposits. */
  depositWei: bigint;
}

/** One operator as the client sees it. */
export interface OperatorAccount {
  peer: string;
  quote?: Quote;
  channel?: Hex;
  deposit: bigint;
  /** Cumulative amount of the last voucher signed, and of the last one the operator acknowledged. */
  cumulative: bigint;
  accepted: bigint;
  /** Bytes paid for, and received but not paid for yet. */
  paidBytes: bigint;
  unpaidBytes: bigint;
  vouchers: number;
  /** The last payment that failed, if any (payments made while downloading are not awaited). */
  lastError?: unknown;
  /** Last time (ms) the channel was used. */
  lastUsed: number;
}

interface Operator {
  peer: string;
  quote?: Promise<Quote>;
  resolved?: Quote;
  channel?: Hex;
  deposit: bigint;
  cumulative: bigint;
  batch: ReceiptBatch;
  paidBytes: bigint;
  vouchers: number;
  /** Cumulative amount of the last voucher the operator acknowledged. */
  accepted: bigint;
  /** Wei paid ahead of service (a binding voucher's 1 wei): taken off the next voucher that covers it. */
  ahead: bigint;
  /** Wei of the cumulative amount paid for storage: every voucher tells the operator, so that it is no
   * credit for deliveries there. */
  storage: bigint;
  last?: VoucherMessage;
  lastError?: unknown;
  queue: Serial;
  lastUsed: number;
}

/** The client's side of paid delivery. Pass it as the exchange's `payer`, then {@link start} it. */
export class PayingClient implements DeliveryPayer {
  readonly #wallet: PayClient;
  readonly #signer: LocalAccount;
  readonly #chainId: number;
  readonly #hub: Address;
  readonly #domain: TypedDataDomain;
  readonly #batchBytes: bigint;
  readonly #depositBytes: bigint;
  readonly #challengePeriod: bigint;
  readonly #maxPrice: bigint;
  readonly #maxFile: bigint;
  readonly #maxDay: bigint;
  readonly #idleMs: number;
  /** Voucher increments of the last 24 h: [ms, wei]. */
  readonly #spends: [number, bigint][] = [];
  #sweeper: ReturnType<typeof setInterval> | undefined;
  #sweeping: Promise<void> | undefined;
  readonly #closing: ClosingChannel[] = [];
  readonly #timeoutMs: number;
  readonly #txs: Serial;
  readonly #onEvent: ((event: PayerEvent) => void) | undefined;
  readonly #protocol: string | undefined;
  readonly #operators = new Map<string, Operator>();
  /** "peer reason" of refusals already reported. */
  readonly #told = new Set<string>();
  #libp2p: PayDialer | undefined;

  constructor(init: PayingClientInit) {
    const batchBytes = positiveInt(init.batchBytes ?? DEFAULT_BATCH_BYTES, "batchBytes");
    if (init.wallet.account.type !== "local") {
      throw new TypeError("The paying client needs a local account to sign vouchers");
    }
    this.#wallet = init.wallet;
    this.#signer = init.wallet.account;
    this.#chainId = init.chain.chainId;
    this.#hub = init.chain.contracts.channelHub;
    this.#domain = channelHubDomain(this.#chainId, this.#hub);
    this.#batchBytes = BigInt(batchBytes);
    this.#depositBytes = BigInt(positiveInt(init.depositBytes ?? 64 * batchBytes, "depositBytes"));
    this.#challengePeriod = init.challengePeriod ?? 86_400n;
    this.#maxPrice = init.maxPrice ?? DEFAULT_MAX_PRICE;
    this.#maxFile = init.maxSpendPerFile ?? DEFAULT_MAX_SPEND_PER_FILE;
    this.#maxDay = init.maxSpendPerDay ?? DEFAULT_MAX_SPEND_PER_DAY;
    for (
      const [name, v] of [["maxPrice", this.#maxPrice], ["maxSpendPerFile", this.#maxFile], [
        "maxSpendPerDay",
        this.#maxDay,
      ]] as const
    ) {
      if (v < 0n) throw new RangeError(`"${name}" must not be negative, got "${v}"`);
    }
    this.#idleMs = init.idleCloseMs ?? DEFAULT_IDLE_CLOSE_MS;
    if (!Number.isSafeInteger(this.#idleMs) || this.#idleMs < 0) {
      throw new RangeError(`"idleCloseMs" must be a whole number of ms, got "${this.#idleMs}"`);
    }
    this.#timeoutMs = positiveInt(init.timeoutMs ?? 10_000, "timeoutMs");
    this.#txs = init.transactions ?? new Serial();
    this.#onEvent = init.onEvent;
    this.#protocol = init.protocol;
  }

  /** The payer's address: `client` of its receipts. */
  get address(): Address {
    return this.#wallet.account.address;
  }

  /** Talks the pay protocol through `libp2p`. */
  start(libp2p: Pick<Libp2p, "dialProtocol">): Promise<void> {
    this.#libp2p = libp2p;
    if (this.#idleMs > 0) {
      this.#sweeper = setInterval(
        () => void this.sweep(),
        Math.min(60_000, Math.max(50, this.#idleMs / 2)),
      );
      Deno.unrefTimer(this.#sweeper);
    }
    return Promise.resolve();
  }

  /** Pays every operator for what it served and is not paid for yet. */
  async stop(): Promise<void> {
    clearInterval(this.#sweeper);
    this.#sweeper = undefined;
    await this.#sweeping;
    return this.settle();
  }

  /**
   * Closes the channels unused for `idleCloseMs` (after paying what they owe), and finalizes the closing ones
   * whose challenge period is over, so their deposits come back. Runs on a timer once started; one at a time.
   */
  sweep(now = Date.now()): Promise<void> {
    this.#sweeping ??= this.#sweep(now).finally(() => this.#sweeping = undefined);
    return this.#sweeping;
  }

  async #sweep(now: number): Promise<void> {
    const failed = (peer: string, channel: Hex, e: unknown) =>
      this.#tell(peer, `close ${channel} ${(e as Error)?.name}`, {
        kind: "close_failed",
        peer,
        channel,
        error: e,
      });
    for (const op of this.#operators.values()) {
      if (op.channel === undefined || this.#idleMs === 0 || now - op.lastUsed < this.#idleMs) {
        continue;
      }
      const channel = op.channel;
      await op.queue.run(async () => {
        if (now - op.lastUsed < this.#idleMs || op.channel !== channel) return; // used again meanwhile
        // Whatever it is owed is vouchered first: the operator may redeem it during the challenge period.
        if (op.batch.count > 0n && op.resolved) {
          const batch = op.batch;
          op.batch = new ReceiptBatch();
          await this.#voucher(op, op.resolved, batch).catch((e) => failed(op.peer, channel, e));
        }
        try {
          const { closesAt } = await this.#txs.run(() =>
            startClose(this.#wallet, { address: this.#hub, channel })
          );
          this.#closing.push({
            peer: op.peer,
            channel,
            closesAt,
            deposit: op.deposit,
            spent: op.cumulative,
          });
          this.#event({ kind: "channel_closing", peer: op.peer, channel, closesAt });
          // A later fetch from this operator opens a new channel.
          Object.assign(op, {
            channel: undefined,
            deposit: 0n,
            cumulative: 0n,
            accepted: 0n,
            storage: 0n,
            last: undefined,
          });
        } catch (e) {
          failed(op.peer, channel, e);
        }
      });
    }
    if (this.#closing.length === 0) return;
    const chainNow = await getBlock(this.#wallet).then((b) => b.timestamp, () => undefined);
    for (const c of [...this.#closing]) {
      if (chainNow === undefined || chainNow < c.closesAt) continue;
      try {
        const { refunded } = await this.#txs.run(() =>
          finalizeChannel(this.#wallet, { address: this.#hub, channel: c.channel })
        );
        this.#closing.splice(this.#closing.indexOf(c), 1);
        this.#event({ kind: "channel_finalized", peer: c.peer, channel: c.channel, refunded });
      } catch (e) {
        failed(c.peer, c.channel, e);
      }
    }
  }

  /** Channels closed for idleness and not finalized yet: their deposits are still locked. */
  closing(): readonly ClosingChannel[] {
    return this.#closing.map((c) => ({ ...c }));
  }

  /**
   * Called before asking `peer` for chunks: refuses (throws) when its price is above the ceiling, or when one
   * more chunk at its price would pass the per-day cap or `budget`'s per-file cap. Free peers always pass.
   */
  async screen(peer: string, budget?: SpendBudget): Promise<void> {
    let quote: Quote;
    try {
      quote = await this.quote(peer);
    } catch (e) {
      if (e instanceof PriceAboveCapError) throw e;
      // A peer whose quote failed otherwise is asked anyway: the exchange reports its refusal as before.
      return;
    }
    if (quote.price === 0n) return;
    const next = quote.price * BigInt(MAX_CHUNK_BYTES);
    const today = this.#spentToday() + this.#owed();
    if (today + next > this.#maxDay) {
      throw new SpendingCapError("day", today, this.#maxDay, quote.price);
    }
    if (budget !== undefined && budget.spentWei + next > this.#maxFile) {
      throw new SpendingCapError("file", budget.spentWei, this.#maxFile, quote.price);
    }
  }

  /** The price `peer` quoted, when known (for preferring cheaper holders). */
  knownPrice(peer: string): bigint | undefined {
    return this.#operators.get(peer)?.resolved?.price;
  }

  /** Wei promised in vouchers over the last 24 hours. */
  #spentToday(now = Date.now()): bigint {
    while (this.#spends.length > 0 && this.#spends[0]![0] <= now - 86_400_000) this.#spends.shift();
    return this.#spends.reduce((sum, [, wei]) => sum + wei, 0n);
  }

  /** Wei owed for chunks received and not vouchered yet. */
  #owed(): bigint {
    let wei = 0n;
    for (const op of this.#operators.values()) {
      if (op.resolved) wei += op.resolved.price * op.batch.bytes;
    }
    return wei;
  }

  /** The quote of `peer`, asked once and kept. A peer that does not speak the pay protocol is free. */
  quote(peer: string): Promise<Quote> {
    const op = this.#operator(peer);
    op.quote ??= this.#askQuote(peer).then((q) => (op.resolved = q), (e) => {
      op.quote = undefined;
      throw e;
    });
    return op.quote;
  }

  // -----------------------------------------------------------------------------------------------------------
  // DeliveryPayer

  async received(peer: string, cid: CID, bytes: number, budget?: SpendBudget): Promise<void> {
    const quote = await this.quote(peer);
    if (quote.price === 0n) return;
    if (budget !== undefined) budget.spentWei += quote.price * BigInt(bytes);
    const op = this.#operator(peer);
    op.lastUsed = Date.now();
    op.batch.add({
      operator: quote.payee,
      client: this.address,
      cid: cid.bytes,
      size: BigInt(bytes),
      time: BigInt(Math.floor(Date.now() / 1000)),
    });
    // Not awaited: the download goes on while the voucher travels (the operator's credit covers the gap);
    // vouchers still leave in order, and settle() waits for them.
    if (op.batch.bytes >= this.#batchBytes) {
      this.#pay(op, quote).catch((e) => {
        op.lastError = e;
        this.#tell(peer, (e as Error)?.name ?? "error", { kind: "payment_failed", peer, error: e });
      });
    }
  }

  /**
   * On `payment_required`: pays the partial batch (behind any voucher under way), sends the last voucher again
   * if it never got through, and asks for a retry when the operator has acknowledged everything owed. The
   * exchange gives up after two refusals without progress, so a disagreement cannot loop.
   */
  async refused(peer: string, error: DeliveryRefusedError): Promise<boolean> {
    if (error.code !== "payment_required") return false;
    const op = this.#operator(peer);
    const quote = await this.quote(peer);
    if (quote.price === 0n) return false;
    if (op.channel === undefined && op.cumulative === 0n && op.batch.count === 0n) {
      // Refused before it owes anything: the operator gives strangers no more credit. A 1-wei voucher on a
      // new channel binds it, and a bound channel gets the operator's full credit.
      await op.queue.run(() => this.#voucher(op, quote, new ReceiptBatch(), { extra: 1n }));
      return op.accepted === op.cumulative;
    }
    await this.#pay(op, quote);
    if (op.accepted < op.cumulative) await this.#resend(op);
    return op.cumulative > 0n && op.accepted === op.cumulative;
  }

  /**
   * Pays `peer` `wei` for storage (proven lease periods, `market/leasing.ts`): a voucher on its channel that
   * grows by `wei` with no receipts, behind any voucher under way. Unlike a prepayment it is no credit for
   * later deliveries. Resolves once the operator acknowledged it; throws when it could not be sent.
   */
  async payStorage(peer: string, wei: bigint): Promise<void> {
    if (wei <= 0n) return;
    const quote = await this.quote(peer);
    const op = this.#operator(peer);
    await op.queue.run(() => this.#voucher(op, quote, new ReceiptBatch(), { storage: wei }));
    if (op.accepted < op.cumulative) {
      throw new PayProtocolError(
        `Peer "${peer}" did not acknowledge a storage voucher for ${wei} wei`,
      );
    }
  }

  /**
   * Pays `peer` `wei` for something besides deliveries (paid lookups, `market/lookups.ts`) on its channel,
   * like {@link payStorage}, but the voucher goes out through `send` (the lookup protocol, which names what it
   * pays for) and a channel opened or topped up for it holds at least `deposit`. Resolves once `send` did.
   */
  async payFor(
    peer: string,
    wei: bigint,
    options: { send: (message: VoucherMessage) => Promise<VoucherAccepted>; deposit?: bigint },
  ): Promise<void> {
    if (wei <= 0n) return;
    const quote = await this.quote(peer);
    const op = this.#operator(peer);
    await op.queue.run(() =>
      this.#voucher(op, quote, new ReceiptBatch(), {
        other: wei,
        send: options.send,
        minDeposit: options.deposit,
      })
    );
  }

  // -----------------------------------------------------------------------------------------------------------
  // Payments

  /** Pays every operator's partial batch, and waits for every voucher under way. */
  async settle(): Promise<void> {
    await Promise.all([...this.#operators.values()].map(async (op) => {
      if (op.resolved === undefined) return;
      await this.#pay(op, op.resolved).catch(() => {});
      await op.queue.idle();
    }));
  }

  /** Totals over every operator. */
  stats(): PayerStats {
    let channels = 0, vouchers = 0, spentWei = 0n, acceptedWei = 0n, depositWei = 0n;
    for (const op of this.#operators.values()) {
      if (op.channel !== undefined) channels++;
      vouchers += op.vouchers;
      spentWei += op.cumulative;
      acceptedWei += op.accepted;
      depositWei += op.deposit;
    }
    return {
      operators: this.#operators.size,
      channels,
      vouchers,
      spentWei,
      acceptedWei,
      depositWei,
    };
  }

  /** Every operator's account. */
  operators(): OperatorAccount[] {
    return [...this.#operators.values()].map((op) => ({
      peer: op.peer,
      ...(op.resolved ? { quote: op.resolved } : {}),
      ...(op.channel ? { channel: op.channel } : {}),
      deposit: op.deposit,
      cumulative: op.cumulative,
      accepted: op.accepted,
      paidBytes: op.paidBytes,
      unpaidBytes: op.batch.bytes,
      vouchers: op.vouchers,
      ...(op.lastError !== undefined ? { lastError: op.lastError } : {}),
      lastUsed: op.lastUsed,
    }));
  }

  #operator(peer: string): Operator {
    let op = this.#operators.get(peer);
    if (op === undefined) {
      op = {
        peer,
        deposit: 0n,
        cumulative: 0n,
        accepted: 0n,
        ahead: 0n,
        storage: 0n,
        batch: new ReceiptBatch(),
        paidBytes: 0n,
        vouchers: 0,
        queue: new Serial(),
        lastUsed: Date.now(),
      };
      this.#operators.set(peer, op);
    }
    return op;
  }

  async #askQuote(peer: string): Promise<Quote> {
    try {
      return await this.#checkedQuote(peer);
    } catch (e) {
      if (e instanceof QuoteRefusedError || e instanceof PriceAboveCapError) {
        this.#tell(peer, e.message, { kind: "quote_refused", peer, reason: e.message });
      }
      throw e;
    }
  }

  async #checkedQuote(peer: string): Promise<Quote> {
    let quote: Quote;
    try {
      quote = await requestQuote(this.#dialer(), peer, {
        protocol: this.#protocol,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (e) {
      if ((e as Error)?.name === "UnsupportedProtocolError") {
        return {
          chainId: this.#chainId,
          hub: this.#hub,
          payee: this.address,
          price: 0n,
          creditBytes: 0,
          batchBytes: 0,
        };
      }
      throw e;
    }
    if (quote.chainId !== this.#chainId || !isAddressEqual(quote.hub, this.#hub)) {
      throw new QuoteRefusedError(
        peer,
        `it is paid on hub "${quote.hub}" of chain ${quote.chainId}`,
      );
    }
    if (quote.price > this.#maxPrice) {
      throw new PriceAboveCapError(peer, quote.price, this.#maxPrice);
    }
    if (quote.price > 0n && isAddressEqual(quote.payee, this.address)) {
      throw new QuoteRefusedError(peer, "it would be paid by its own account");
    }
    return quote;
  }

  /** Takes the operator's current batch and queues its voucher behind the ones under way. */
  #pay(op: Operator, quote: Quote): Promise<void> {
    const batch = op.batch;
    if (batch.count === 0n) return op.queue.idle();
    op.batch = new ReceiptBatch();
    return op.queue.run(() => this.#voucher(op, quote, batch));
  }

  /** Signs and sends the voucher of `batch` (in `op`'s queue). */
  async #voucher(
    op: Operator,
    quote: Quote,
    batch: ReceiptBatch,
    { extra = 0n, storage = 0n, other = 0n, send, minDeposit = 0n }: {
      /** Paid ahead: credit for later deliveries. */
      extra?: bigint;
      /** Paid for storage: labelled in the voucher (cumulative), never credit for deliveries. */
      storage?: bigint;
      /** Paid for something else (lookups, told by `send`'s protocol): never credit for deliveries. */
      other?: bigint;
      send?: (message: VoucherMessage) => Promise<VoucherAccepted>;
      minDeposit?: bigint;
    } = {},
  ): Promise<void> {
    const due = quote.price * batch.bytes;
    // Paid ahead counts toward what is due, as long as the voucher still grows (the desk takes no other).
    const credit = due > op.ahead ? op.ahead : 0n;
    op.ahead += extra - credit;
    const amount = op.cumulative + due + extra - credit + storage + other;
    await this.#fund(op, quote, amount, minDeposit);
    const voucher = {
      channel: op.channel!,
      cumulativeAmount: amount,
      receiptsRoot: batch.root(),
      receiptCount: batch.count,
    };
    const signature = await signVoucher(this.#signer, this.#domain, voucher);
    // Signed is owed: a voucher lost on the way is covered by the next one, which is cumulative.
    this.#spends.push([Date.now(), amount - op.cumulative]);
    op.cumulative = amount;
    op.lastUsed = Date.now();
    op.paidBytes += batch.bytes;
    op.vouchers++;
    op.storage += storage;
    op.last = {
      voucher,
      signature,
      receipts: batch.receipts,
      ...(op.storage > 0n ? { storage: op.storage } : {}),
    };
    await this.#submit(op, op.last, send);
  }

  /** Sends the last voucher again, unless the operator acknowledged it meanwhile. */
  #resend(op: Operator): Promise<void> {
    return op.queue.run(async () => {
      if (op.last !== undefined && op.accepted < op.last.voucher.cumulativeAmount) {
        await this.#submit(op, op.last);
      }
    });
  }

  async #submit(
    op: Operator,
    message: VoucherMessage,
    send?: (message: VoucherMessage) => Promise<VoucherAccepted>,
  ): Promise<void> {
    const { cumulativeAmount } = send
      ? await send(message)
      : await submitVoucher(this.#dialer(), op.peer, message, {
        protocol: this.#protocol,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    if (cumulativeAmount > op.accepted) op.accepted = cumulativeAmount;
  }

  /** Opens the channel, or tops it up, so that its deposit covers `amount`. */
  async #fund(op: Operator, quote: Quote, amount: bigint, minDeposit = 0n): Promise<void> {
    if (op.channel !== undefined && amount <= op.deposit) return;
    const bytesWorth = quote.price * this.#depositBytes;
    const chunk = bytesWorth > minDeposit ? bytesWorth : minDeposit;
    await this.#txs.run(async () => {
      if (op.channel === undefined) {
        const deposit = amount > chunk ? amount : chunk;
        const { channel } = await openChannel(this.#wallet, {
          address: this.#hub,
          payee: quote.payee,
          deposit,
          challengePeriod: this.#challengePeriod,
        });
        op.channel = channel;
        op.deposit = deposit;
        this.#event({
          kind: "channel_opened",
          peer: op.peer,
          channel,
          payee: quote.payee,
          deposit,
        });
      } else {
        const missing = amount - op.deposit;
        const { deposit } = await topUp(this.#wallet, {
          address: this.#hub,
          channel: op.channel,
          amount: missing > chunk ? missing : chunk,
        });
        op.deposit = deposit;
      }
    });
  }

  /** Reports `event` once per peer and reason. */
  #tell(peer: string, reason: string, event: PayerEvent): void {
    const key = `${peer} ${reason}`;
    if (this.#told.has(key)) return;
    this.#told.add(key);
    this.#event(event);
  }

  #event(event: PayerEvent): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // A listener's failure is not the client's.
    }
  }

  #dialer(): PayDialer {
    if (this.#libp2p === undefined) throw new Error("The paying client is not started");
    return this.#libp2p;
  }
}

function positiveInt(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`"${name}" must be a positive integer, got "${n}"`);
  }
  return n;
}
