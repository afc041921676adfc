/**
 * The client's side of paid delivery: a {@link DeliveryPayer} for the chunk exchange. For every chunk it
 * received and verified it writes a delivery receipt; once a batch of receipts reaches `batchBytes` it signs a
 * voucher for the new cumulative amount with the batch's Merkle root and sends it to the operator over
 * `/meshgate/pay/1.0.0`, in the background (one operator's vouchers in order; {@link PayingClient.settle}
 * waits for them). The channel to each operator is opened on the first payment, with a deposit worth
 * `depositBytes` of service at its price, and topped up the same way when it runs low.
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
import type { CID } from "../content/cid.ts";
import type { DeliveryPayer, DeliveryRefusedError } from "../mesh/exchange.ts";
import type { ChainConfig } from "./chain.ts";
import { openChannel, topUp } from "./channel.ts";
import { DEFAULT_BATCH_BYTES, ReceiptBatch } from "./receipts.ts";
import { channelHubDomain, signVoucher } from "./voucher.ts";
import {
  type PayDialer,
  type Quote,
  QuoteRefusedError,
  requestQuote,
  submitVoucher,
  type VoucherMessage,
} from "./pay_protocol.ts";
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
  /** Highest price accepted, in wei per byte; an operator quoting more is not paid. Default: no limit. */
  maxPrice?: bigint;
  /** Longest pay-protocol exchange, in ms. Default: 10 000. */
  timeoutMs?: number;
  /** Serializes the transactions of `wallet`'s account, when others send from it too. Default: its own. */
  transactions?: Serial;
  /** Told of channels opened and of operators whose quote or vouchers are refused (once per operator and
   * reason, so a log stays readable). Default: none. */
  onEvent?: (event: PayerEvent) => void;
}

/** What a paying client did, for logs. */
export type PayerEvent =
  | { kind: "channel_opened"; peer: string; channel: Hex; payee: Address; deposit: bigint }
  | { kind: "quote_refused"; peer: string; reason: string }
  | { kind: "payment_failed"; peer: string; error: unknown };

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
  last?: VoucherMessage;
  lastError?: unknown;
  queue: Serial;
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
  readonly #maxPrice: bigint | undefined;
  readonly #timeoutMs: number;
  readonly #txs: Serial;
  readonly #onEvent: ((event: PayerEvent) => void) | undefined;
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
    this.#maxPrice = init.maxPrice;
    this.#timeoutMs = positiveInt(init.timeoutMs ?? 10_000, "timeoutMs");
    this.#txs = init.transactions ?? new Serial();
    this.#onEvent = init.onEvent;
  }

  /** The payer's address: `client` of its receipts. */
  get address(): Address {
    return this.#wallet.account.address;
  }

  /** Talks the pay protocol through `libp2p`. */
  start(libp2p: Pick<Libp2p, "dialProtocol">): Promise<void> {
    this.#libp2p = libp2p;
    return Promise.resolve();
  }

  /** Pays every operator for what it served and is not paid for yet. */
  stop(): Promise<void> {
    return this.settle();
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

  async received(peer: string, cid: CID, bytes: number): Promise<void> {
    const quote = await this.quote(peer);
    if (quote.price === 0n) return;
    const op = this.#operator(peer);
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
    await this.#pay(op, quote);
    if (op.accepted < op.cumulative) await this.#resend(op);
    return op.cumulative > 0n && op.accepted === op.cumulative;
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
        batch: new ReceiptBatch(),
        paidBytes: 0n,
        vouchers: 0,
        queue: new Serial(),
      };
      this.#operators.set(peer, op);
    }
    return op;
  }

  async #askQuote(peer: string): Promise<Quote> {
    try {
      return await this.#checkedQuote(peer);
    } catch (e) {
      if (e instanceof QuoteRefusedError) {
        this.#tell(peer, e.message, { kind: "quote_refused", peer, reason: e.message });
      }
      throw e;
    }
  }

  async #checkedQuote(peer: string): Promise<Quote> {
    let quote: Quote;
    try {
      quote = await requestQuote(this.#dialer(), peer, {
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
    if (this.#maxPrice !== undefined && quote.price > this.#maxPrice) {
      throw new QuoteRefusedError(peer, `price "${quote.price}" is above "${this.#maxPrice}"`);
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
    return op.queue.run(async () => {
      const amount = op.cumulative + quote.price * batch.bytes;
      await this.#fund(op, quote, amount);
      const voucher = {
        channel: op.channel!,
        cumulativeAmount: amount,
        receiptsRoot: batch.root(),
        receiptCount: batch.count,
      };
      const signature = await signVoucher(this.#signer, this.#domain, voucher);
      // Signed is owed: a voucher lost on the way is covered by the next one, which is cumulative.
      op.cumulative = amount;
      op.paidBytes += batch.bytes;
      op.vouchers++;
      op.last = { voucher, signature, receipts: batch.receipts };
      await this.#submit(op, op.last);
    });
  }

  /** Sends the last voucher again, unless the operator acknowledged it meanwhile. */
  #resend(op: Operator): Promise<void> {
    return op.queue.run(async () => {
      if (op.last !== undefined && op.accepted < op.last.voucher.cumulativeAmount) {
        await this.#submit(op, op.last);
      }
    });
  }

  async #submit(op: Operator, message: VoucherMessage): Promise<void> {
    const { cumulativeAmount } = await submitVoucher(this.#dialer(), op.peer, message, {
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (cumulativeAmount > op.accepted) op.accepted = cumulativeAmount;
  }

  /** Opens the channel, or tops it up, so that its deposit covers `amount`. */
  async #fund(op: Operator, quote: Quote, amount: bigint): Promise<void> {
    if (op.channel !== undefined && amount <= op.deposit) return;
    const chunk = quote.price * this.#depositBytes;
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
