/**
 * The operator's side of paid delivery: a {@link DeliveryGate} for the chunk exchange that meters what each peer
 * is served, and the server of `/meshgate/pay/1.0.0` that takes its vouchers.
 *
 * Every peer has an account: bytes served, and the latest voucher accepted from it. A peer may owe at most
 * `creditBytes` worth of service; past that the exchange waits up to `paymentWaitMs` for a voucher, then
 * refuses with {@link PaymentRequiredError} (402). A voucher is checked as `ChannelHub.redeem` will check it
 * (channel open and paying this operator, signed by its payer for this hub and chain, amount above the last
 * one and within the deposit) and against the receipts sent with it; a forged one bans the peer and hangs up.
 *
 * Redeeming costs gas, so the desk redeems a channel's latest voucher only when what it would collect is more
 * than `redeemFactor` times the cost of a redeem (the gas it measured on its last redeem of that channel, else
 * `eth_estimateGas`, at the current max fee per gas), and on {@link PaymentDesk.stop} whatever is worth more
 * than that cost: never at a loss.
 *
 * @module
 */
import type { Connection, Libp2p, Stream } from "@libp2p/interface";
import { type Address, type Hex, isAddressEqual, type TypedDataDomain } from "viem";
import {
  estimateContractGas,
  estimateFeesPerGas,
  getGasPrice,
  getTransactionReceipt,
} from "viem/actions";
import type { CID } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import type { DeliveryGate } from "../mesh/exchange.ts";
import { channelHubAbi } from "./abi.ts";
import type { ChainConfig } from "./chain.ts";
import { getChannel, redeemVoucher } from "./channel.ts";
import { VoucherDepositError, VoucherError } from "./errors.ts";
import { DEFAULT_BATCH_BYTES, type Receipt, ReceiptBatch } from "./receipts.ts";
import { channelHubDomain, verifyVoucher, type Voucher } from "./voucher.ts";
import {
  ChannelUnusableError,
  DeskStoppedError,
  encodeQuote,
  parseVoucherMessage,
  PAY_PROTOCOL,
  PaymentRequiredError,
  PeerBannedError,
  type Quote,
  VoucherReceiptsError,
} from "./pay_protocol.ts";
import { Serial } from "./_serial.ts";
import type { PayClient } from "./_tx.ts";
import { PayProtocolError, readMessage, writeMessage } from "./_wire.ts";

/** Options of a {@link PaymentDesk}. Every field documents its default. */
export interface PaymentDeskInit {
  /** The chain and hub: vouchers must be signed for this hub on this chain. */
  chain: Pick<ChainConfig, "chainId" | "contracts">;
  /** The operator's account: the payee of every channel, and the sender of the redeems. */
  wallet: PayClient;
  /** Wei per byte served; positive (a free node needs no desk). */
  price: bigint;
  /** Bytes each voucher should pay for, as the quote announces. Default: {@link DEFAULT_BATCH_BYTES}. */
  batchBytes?: number;
  /** Bytes a peer may be served ahead of payment. Default: 2 x `batchBytes`. */
  creditBytes?: number;
  /** How long a request past the credit waits for a voucher before it is refused, in ms. Default: 10 000. */
  paymentWaitMs?: number;
  /** Redeem once a channel's unredeemed value exceeds this many times the cost of a redeem. Default: 10. */
  redeemFactor?: number;
  /** Shortest challenge period accepted of a channel, in seconds: the time the desk has to redeem once its
   * payer starts closing. Default: 3 600. */
  minChallengePeriod?: bigint;
  /** Longest pay-protocol exchange, in ms. Default: 10 000. */
  timeoutMs?: number;
  /** Serializes the transactions of `wallet`'s account, when others send from it too. Default: its own. */
  transactions?: Serial;
  /** Told of every redeem and skipped redeem, and of every peer banned. Default: none. */
  onEvent?: (event: DeskEvent) => void;
}

/** What a desk did, for logs and metrics. */
export type DeskEvent =
  | { kind: "redeemed"; peer: string; channel: Hex; paid: bigint; gasUsed: bigint; gasCost: bigint }
  | { kind: "redeem_skipped"; peer: string; channel: Hex; pending: bigint; cost: bigint }
  | { kind: "redeem_failed"; peer: string; channel: Hex; error: unknown }
  | { kind: "banned"; peer: string; reason: string };

/** One peer as the desk sees it. */
export interface PeerAccount {
  peer: string;
  /** Bytes served (authorized and sent, or being sent). */
  servedBytes: bigint;
  /** The peer's channel, once a voucher named it. */
  channel?: Hex;
  payer?: Address;
  /** Cumulative amount of the latest accepted voucher (the channel's redeemed amount before any). */
  accepted: bigint;
  /** Cumulative amount redeemed on-chain. */
  redeemed: bigint;
  /** The channel's redeemed amount when this desk bound it: `accepted - base` was earned here. */
  base: bigint;
  vouchers: number;
  /** Why the peer is refused, when it is. */
  banned?: string;
}

/** Totals of a desk. */
export interface DeskStats {
  peers: number;
  servedBytes: bigint;
  vouchers: number;
  /** Wei accepted in vouchers, over every channel (beyond what was redeemed before this desk started). */
  acceptedWei: bigint;
  redeems: number;
  /** Wei collected by redeems. */
  redeemedWei: bigint;
  /** Gas of every redeem, and what it cost in wei. */
  redeemGas: bigint;
  redeemGasCost: bigint;
  /** Gas used by the last redeem (0n before any). */
  lastRedeemGas: bigint;
  banned: number;
}

interface Latest {
  voucher: Voucher;
  signature: Hex;
  receipts: readonly Receipt[];
}

interface Account {
  peer: string;
  served: bigint;
  accepted: bigint;
  /** Redeemed amount when the channel was bound: what was paid before is not credit now. */
  base: bigint;
  channel?: { id: Hex; payer: Address; deposit: bigint };
  latest?: Latest;
  redeemed: bigint;
  vouchers: number;
  banned?: string;
  /** Measured gas of this channel's last redeem, else the estimate for its first. */
  redeemGas?: bigint;
  /** The factor of the redeem check queued, if one is (the lowest asked for since). */
  redeemQueued?: bigint;
  lock: Serial;
  waiters: Set<() => void>;
}

/** Vouchers refused for these reasons are forgeries: the peer is banned and its connection closed. A voucher
 * above the deposit (the desk may have missed a top-up) or on a channel that is closing or too short-lived is
 * only refused. */
function isForgery(e: unknown): boolean {
  if (e instanceof ChannelUnusableError) return e.forged;
  return e instanceof VoucherError && !(e instanceof VoucherDepositError);
}

/** The operator's side of paid delivery. Pass it as the exchange's `gate`, then {@link start} it. */
export class PaymentDesk implements DeliveryGate {
  readonly #wallet: PayClient;
  readonly #hub: Address;
  readonly #domain: TypedDataDomain;
  readonly #quote: Quote;
  readonly #price: bigint;
  readonly #credit: bigint;
  readonly #waitMs: number;
  readonly #factor: bigint;
  readonly #timeoutMs: number;
  readonly #minChallenge: bigint;
  readonly #txs: Serial;
  readonly #onEvent: ((event: DeskEvent) => void) | undefined;
  readonly #accounts = new Map<string, Account>();
  /** Channel id -> the peer it is bound to. */
  readonly #channels = new Map<Hex, string>();
  #libp2p: Pick<Libp2p, "handle" | "unhandle" | "hangUp"> | undefined;
  #stopped = false;
  #fee: { perGas: bigint; at: number } | undefined;
  readonly #stats = { redeems: 0, redeemedWei: 0n, redeemGas: 0n, redeemGasCost: 0n, lastGas: 0n };

  constructor(init: PaymentDeskInit) {
    if (init.price <= 0n) throw new RangeError(`Price must be positive, got "${init.price}"`);
    const batchBytes = positiveInt(init.batchBytes ?? DEFAULT_BATCH_BYTES, "batchBytes");
    const creditBytes = positiveInt(init.creditBytes ?? 2 * batchBytes, "creditBytes");
    this.#wallet = init.wallet;
    this.#hub = init.chain.contracts.channelHub;
    this.#domain = channelHubDomain(init.chain.chainId, this.#hub);
    this.#price = init.price;
    this.#credit = BigInt(creditBytes);
    this.#waitMs = positiveInt(init.paymentWaitMs ?? 10_000, "paymentWaitMs");
    this.#factor = BigInt(positiveInt(init.redeemFactor ?? 10, "redeemFactor"));
    this.#timeoutMs = positiveInt(init.timeoutMs ?? 10_000, "timeoutMs");
    this.#minChallenge = init.minChallengePeriod ?? 3600n;
    this.#txs = init.transactions ?? new Serial();
    this.#onEvent = init.onEvent;
    this.#quote = {
      chainId: init.chain.chainId,
      hub: this.#hub,
      payee: init.wallet.account.address,
      price: init.price,
      creditBytes,
      batchBytes,
    };
  }

  /** What this desk charges, as it answers `quote`. */
  get quote(): Quote {
    return { ...this.#quote };
  }

  /** Serves the pay protocol on `libp2p` (and hangs up on forgers through it). */
  async start(libp2p: Pick<Libp2p, "handle" | "unhandle" | "hangUp">): Promise<void> {
    this.#libp2p = libp2p;
    await libp2p.handle(PAY_PROTOCOL, this.#handle, { maxInboundStreams: 32 });
  }

  /**
   * Stops taking payments and serving (requests waiting for a voucher are refused), then redeems every
   * channel's latest voucher worth more than a redeem costs. Idempotent.
   */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      await this.#libp2p?.unhandle(PAY_PROTOCOL).catch(() => {});
      for (const account of this.#accounts.values()) this.#wake(account);
    }
    await this.redeemAll({ factor: 1 });
  }

  /** Redeems, one after another, every channel whose unredeemed value exceeds `factor` x a redeem's cost
   * (default: the desk's `redeemFactor`). Failures are reported through `onEvent`, not thrown. */
  async redeemAll(options: { factor?: number } = {}): Promise<void> {
    const factor = options.factor === undefined ? this.#factor : BigInt(options.factor);
    await Promise.all([...this.#accounts.values()].map((a) => this.#scheduleRedeem(a, factor)));
  }

  // -----------------------------------------------------------------------------------------------------------
  // DeliveryGate

  admit(peer: string): void {
    const banned = this.#accounts.get(peer)?.banned;
    if (banned !== undefined) throw new PeerBannedError(peer, banned);
  }

  async authorize(
    peer: string,
    _cid: CID,
    bytes: number,
    options: { signal: AbortSignal },
  ): Promise<void> {
    const account = this.#account(peer);
    const deadline = Date.now() + this.#waitMs;
    while (true) {
      if (this.#stopped) throw new DeskStoppedError();
      if (account.banned !== undefined) throw new PeerBannedError(peer, account.banned);
      const unpaid = (account.served + BigInt(bytes)) * this.#price -
        (account.accepted - account.base);
      if (unpaid <= this.#credit * this.#price) break;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new PaymentRequiredError(
          peer,
          unpaid - BigInt(bytes) * this.#price,
          this.#quote.creditBytes,
        );
      }
      await this.#nextPayment(account, left, options.signal);
    }
    // Counted now, in the same turn as the check: concurrent requests of one peer cannot overdraw.
    account.served += BigInt(bytes);
  }

  served(peer: string, _cid: CID, bytes: number, delivered: boolean): void {
    if (!delivered) this.#account(peer).served -= BigInt(bytes);
  }

  // -----------------------------------------------------------------------------------------------------------
  // Views

  /** Every peer's account. */
  accounts(): PeerAccount[] {
    return [...this.#accounts.values()].map((a) => ({
      peer: a.peer,
      servedBytes: a.served,
      ...(a.channel ? { channel: a.channel.id, payer: a.channel.payer } : {}),
      accepted: a.accepted,
      redeemed: a.redeemed,
      base: a.base,
      vouchers: a.vouchers,
      ...(a.banned !== undefined ? { banned: a.banned } : {}),
    }));
  }

  /** Totals over every peer. */
  stats(): DeskStats {
    let servedBytes = 0n, vouchers = 0, acceptedWei = 0n, banned = 0;
    for (const a of this.#accounts.values()) {
      servedBytes += a.served;
      vouchers += a.vouchers;
      acceptedWei += a.accepted - a.base;
      if (a.banned !== undefined) banned++;
    }
    const s = this.#stats;
    return {
      peers: this.#accounts.size,
      servedBytes,
      vouchers,
      acceptedWei,
      redeems: s.redeems,
      redeemedWei: s.redeemedWei,
      redeemGas: s.redeemGas,
      redeemGasCost: s.redeemGasCost,
      lastRedeemGas: s.lastGas,
      banned,
    };
  }

  // -----------------------------------------------------------------------------------------------------------
  // Accounts and vouchers

  #account(peer: string): Account {
    let a = this.#accounts.get(peer);
    if (a === undefined) {
      a = {
        peer,
        served: 0n,
        accepted: 0n,
        base: 0n,
        redeemed: 0n,
        vouchers: 0,
        lock: new Serial(),
        waiters: new Set(),
      };
      this.#accounts.set(peer, a);
    }
    return a;
  }

  /** Resolves at the peer's next accepted voucher (or ban, or stop), after `ms`, or when `signal` aborts. */
  #nextPayment(account: Account, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        account.waiters.delete(done);
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const onAbort = () => {
        done();
        reject(signal.reason);
      };
      const timer = setTimeout(done, ms);
      account.waiters.add(done);
      if (signal.aborted) onAbort();
      else signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  #wake(account: Account): void {
    for (const wake of [...account.waiters]) wake();
  }

  #handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    const signal = AbortSignal.timeout(this.#timeoutMs);
    let reply: Record<string, unknown>;
    let forged = false;
    try {
      reply = await this.#answer(peer, await readMessage(stream, signal));
    } catch (e) {
      forged = isForgery(e);
      if (forged) this.#ban(peer, (e as Error).message);
      reply = e instanceof MeshError
        ? { error: e.code, message: e.message }
        : { error: "error", message: "The request could not be handled" };
    }
    try {
      await writeMessage(stream, reply, signal);
    } catch {
      stream.abort(new Error("The pay answer could not be sent"));
    }
    // A forger is cut off; its answer went out first so that it knows why.
    if (forged) await this.#libp2p?.hangUp(connection.remotePeer).catch(() => {});
  };

  async #answer(peer: string, req: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.#stopped) throw new DeskStoppedError();
    this.admit(peer);
    if (req.op === "quote") return encodeQuote(this.#quote);
    if (req.op !== "voucher") {
      throw new PayProtocolError(`Unknown op "${String(req.op).slice(0, 20)}"`);
    }
    const message = parseVoucherMessage(req);
    const account = this.#account(peer);
    return await account.lock.run(async () => {
      this.admit(peer);
      const channel = await this.#bind(account, message.voucher.channel);
      const check = (deposit: bigint) =>
        verifyVoucher({
          domain: this.#domain,
          voucher: message.voucher,
          signature: message.signature,
          channel: channel.id,
          payer: channel.payer,
          accepted: account.accepted,
          deposit,
        });
      try {
        await check(channel.deposit);
      } catch (e) {
        if (!(e instanceof VoucherDepositError)) throw e;
        // The payer may have topped up since we looked.
        channel.deposit =
          (await getChannel(this.#wallet, { address: this.#hub, channel: channel.id }))
            .deposit;
        await check(channel.deposit);
      }
      const receipts = this.#checkReceipts(message.voucher, message.receipts, channel.payer);
      account.accepted = message.voucher.cumulativeAmount;
      account.latest = { voucher: message.voucher, signature: message.signature, receipts };
      account.vouchers++;
      this.#wake(account);
      void this.#scheduleRedeem(account, this.#factor);
      return {
        op: "accepted",
        cumulativeAmount: account.accepted.toString(),
        servedBytes: account.served.toString(),
      };
    });
  }

  /** The peer's channel: bound on its first voucher, after checking on-chain that it can pay us. */
  async #bind(account: Account, id: Hex): Promise<{ id: Hex; payer: Address; deposit: bigint }> {
    if (account.channel !== undefined) return account.channel;
    const owner = this.#channels.get(id);
    if (owner !== undefined && owner !== account.peer) {
      throw new ChannelUnusableError(id, "pays for another peer");
    }
    const state = await getChannel(this.#wallet, { address: this.#hub, channel: id });
    if (state.status === "none") throw new ChannelUnusableError(id, "does not exist");
    if (!isAddressEqual(state.payee, this.#quote.payee)) {
      throw new ChannelUnusableError(id, `pays "${state.payee}", not this operator`);
    }
    if (state.status !== "open") throw new ChannelUnusableError(id, `is ${state.status}`, false);
    if (state.challengePeriod < this.#minChallenge) {
      throw new ChannelUnusableError(
        id,
        `has a challenge period of ${state.challengePeriod} s, under ${this.#minChallenge} s`,
        false,
      );
    }
    const again = this.#channels.get(id);
    if (again !== undefined && again !== account.peer) {
      throw new ChannelUnusableError(id, "pays for another peer");
    }
    this.#channels.set(id, account.peer);
    account.channel = { id, payer: state.payer, deposit: state.deposit };
    account.accepted = account.base = account.redeemed = state.redeemed;
    return account.channel;
  }

  /** The receipts must be what the voucher's root and count sign: deliveries from us to the payer. */
  #checkReceipts(
    voucher: Voucher,
    sent: readonly Pick<Receipt, "cid" | "size" | "time">[],
    payer: Address,
  ): Receipt[] {
    const batch = new ReceiptBatch();
    for (const r of sent) batch.add({ operator: this.#quote.payee, client: payer, ...r });
    if (batch.count !== voucher.receiptCount || batch.root() !== voucher.receiptsRoot) {
      throw new VoucherReceiptsError(
        `Voucher signs ${voucher.receiptCount} receipts with root "${voucher.receiptsRoot}", but the ${batch.count} sent hash to "${batch.root()}"`,
      );
    }
    return [...batch.receipts];
  }

  #ban(peer: string, reason: string): void {
    const account = this.#account(peer);
    if (account.banned !== undefined) return;
    account.banned = reason;
    this.#wake(account);
    this.#event({ kind: "banned", peer, reason });
  }

  // -----------------------------------------------------------------------------------------------------------
  // Redeems

  /** Queues a redeem check of `account` behind the wallet's other transactions; one per account at a time,
   * with the lowest factor asked for while it waits. */
  #scheduleRedeem(account: Account, factor: bigint): Promise<void> {
    if (account.latest === undefined) return this.#txs.idle();
    if (account.redeemQueued !== undefined) {
      if (factor < account.redeemQueued) account.redeemQueued = factor;
      return this.#txs.idle();
    }
    account.redeemQueued = factor;
    return this.#txs.run(async () => {
      const queued = account.redeemQueued!;
      account.redeemQueued = undefined;
      await this.#maybeRedeem(account, queued);
    });
  }

  async #maybeRedeem(account: Account, factor: bigint): Promise<void> {
    const latest = account.latest;
    const channel = account.channel;
    if (latest === undefined || channel === undefined) return;
    const pending = latest.voucher.cumulativeAmount - account.redeemed;
    if (pending <= 0n) return;
    try {
      const cost = await this.#redeemCost(account, latest);
      if (pending <= cost * factor) {
        this.#event({
          kind: "redeem_skipped",
          peer: account.peer,
          channel: channel.id,
          pending,
          cost,
        });
        return;
      }
      const { paid, hash } = await redeemVoucher(this.#wallet, {
        address: this.#hub,
        voucher: latest.voucher,
        signature: latest.signature,
      });
      const receipt = await getTransactionReceipt(this.#wallet, { hash });
      const gasCost = receipt.gasUsed * receipt.effectiveGasPrice;
      account.redeemed = latest.voucher.cumulativeAmount;
      account.redeemGas = receipt.gasUsed;
      const s = this.#stats;
      s.redeems++;
      s.redeemedWei += paid;
      s.redeemGas += receipt.gasUsed;
      s.redeemGasCost += gasCost;
      s.lastGas = receipt.gasUsed;
      this.#event({
        kind: "redeemed",
        peer: account.peer,
        channel: channel.id,
        paid,
        gasUsed: receipt.gasUsed,
        gasCost,
      });
    } catch (error) {
      this.#event({ kind: "redeem_failed", peer: account.peer, channel: channel.id, error });
    }
  }

  /** Wei a redeem of `latest` would cost: measured (or estimated) gas at the current max fee per gas. */
  async #redeemCost(account: Account, latest: Latest): Promise<bigint> {
    account.redeemGas ??= await estimateContractGas(this.#wallet, {
      address: this.#hub,
      abi: channelHubAbi,
      functionName: "redeem",
      args: [latest.voucher, latest.signature],
      account: this.#wallet.account,
    });
    return account.redeemGas * await this.#feePerGas();
  }

  /** The max fee per gas a transaction sent now would offer, cached for 10 s. */
  async #feePerGas(): Promise<bigint> {
    if (this.#fee !== undefined && Date.now() - this.#fee.at < 10_000) return this.#fee.perGas;
    let perGas: bigint;
    try {
      perGas = (await estimateFeesPerGas(this.#wallet)).maxFeePerGas;
    } catch {
      perGas = await getGasPrice(this.#wallet);
    }
    this.#fee = { perGas, at: Date.now() };
    return perGas;
  }

  #event(event: DeskEvent): void {
    try {
      this.#onEvent?.(event);
    } catch {
      // A listener's failure is not the desk's.
    }
  }
}

function positiveInt(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`"${name}" must be a positive integer, got "${n}"`);
  }
  return n;
}
