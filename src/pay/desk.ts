/**
 * The operator's side of paid delivery: a {@link DeliveryGate} for the chunk exchange that meters what each peer
 * is served, and the server of `/meshgate/pay/1.0.0` that takes its vouchers.
 *
 * Every peer has an account: bytes served, and the latest voucher accepted from it. A peer with a bound channel
 * may owe at most `creditBytes` worth of service, one without only `introBytes` (its first voucher binds the
 * channel), and all peers together at most `maxUnpaidBytes` (strangers `strangerBytes`); past that the exchange
 * waits up to `paymentWaitMs` for a voucher, then refuses with {@link PaymentRequiredError} (402). Idle accounts
 * are dropped (their debt fades out of the caps over `writeOffMs`), so memory stays bounded.
 *
 * A voucher is checked as `ChannelHub.redeem` will check it (the same signature rule, channel open and paying
 * this operator, signed by its payer for this hub and chain, amount above the last one and within the deposit)
 * and against the receipts sent with it, all before anything is recorded: a peer naming a channel whose payer
 * did not sign is banned without touching that channel's real payer. Forged or foreign vouchers, and repeated
 * vouchers above the deposit, ban the peer and hang up; chain look-ups are rate-limited per peer.
 *
 * Redeeming costs gas, so the desk redeems a channel's latest voucher only when what it would collect is more
 * than `redeemFactor` times the cost of a redeem (the gas it measured on its last redeem of that channel, else
 * `eth_estimateGas`, at the current max fee per gas), and on {@link PaymentDesk.stop} whatever is worth more
 * than that cost: never at a loss.
 *
 * Storage is paid on the same channels (proven lease periods, `market/leasing.ts`): each voucher message says
 * how much of its cumulative amount paid for storage (`storage`), and that part is never credit for
 * deliveries. A client that calls delivery pay storage only loses delivery credit; the storage part may grow
 * only by what the voucher grows, and never shrinks. `storageWei` shows what each peer paid for storage.
 *
 * With a `dataDir`, every voucher accepted and every redeem is written to `<dataDir>/pay.sqlite`
 * ({@link PayLedger}) before the credit it buys is granted: a restarted desk redeems what it was owed, and a
 * client's last voucher is no new credit. The file is locked: a second desk on it is refused at start.
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
import { type DeliveryGate, MAX_CHUNK_BYTES } from "../mesh/exchange.ts";
import { channelHubAbi } from "./abi.ts";
import type { ChainConfig } from "./chain.ts";
import { getChannel, redeemVoucher } from "./channel.ts";
import { VoucherChannelError, VoucherDepositError, VoucherError } from "./errors.ts";
import { PayLedger } from "./ledger.ts";
import { DEFAULT_BATCH_BYTES, type Receipt, ReceiptBatch } from "./receipts.ts";
import { channelHubDomain, checkSignature, verifyVoucher, type Voucher } from "./voucher.ts";
import {
  ChannelUnusableError,
  DeskBusyError,
  DeskStoppedError,
  encodeQuote,
  parseVoucherMessage,
  PAY_PROTOCOL,
  PaymentRequiredError,
  PayRateLimitedError,
  PeerBannedError,
  type Quote,
  type VoucherMessage,
  VoucherReceiptsError,
} from "./pay_protocol.ts";
import { Serial } from "./_serial.ts";
import type { PayClient } from "./_tx.ts";
import { PAY_WIRE, PayProtocolError } from "./_wire.ts";
import { answerMessage, errorReply } from "../mesh/message.ts";
import { ChainWatcher } from "./watcher.ts";
import { errorText, payLog } from "./_log.ts";
import { ContractRevertError } from "./errors.ts";

/** Options of a {@link PaymentDesk}. Every field documents its default. */
export interface PaymentDeskInit {
  /** The chain and hub: vouchers must be signed for this hub on this chain. */
  chain: Pick<ChainConfig, "chainId" | "contracts">;
  /** The operator's account: the payee of every channel, and the sender of the redeems. */
  wallet: PayClient;
  /** Wei per byte served; 0 for a desk that only takes payments for other things (paid lookups). */
  price: bigint;
  /** Bytes each voucher should pay for, as the quote announces. Default: {@link DEFAULT_BATCH_BYTES}. */
  batchBytes?: number;
  /** Bytes a peer with a bound channel may be served ahead of payment. Default: 2 x `batchBytes`. */
  creditBytes?: number;
  /** Bytes a peer without a bound channel may be served ahead of its first voucher; 0 for none (a client must
   * then open its channel and send a first voucher, e.g. for 1 wei with no receipts, before asking). Default:
   * `batchBytes` and one largest chunk (what a client receives before its first voucher), at most
   * `creditBytes`. */
  introBytes?: number;
  /** Most bytes owed by all peers without a bound channel together. Default: 4 x `batchBytes` (16 MiB). */
  strangerBytes?: number;
  /** Most bytes owed by all peers together (with the debt of dropped accounts). Default: 256 MiB. */
  maxUnpaidBytes?: number;
  /** An account idle this long, with nothing left to redeem, is dropped. In ms. Default: 600 000. */
  idleMs?: number;
  /** Most accounts kept; past it the longest idle is dropped, and a new peer refused if none can be. Default:
   * 4 096. */
  maxAccounts?: number;
  /** The unpaid bytes of dropped accounts keep counting against the caps, fading by 1/`writeOffMs` of their
   * sum per ms. In ms. Default: 3 600 000 (an hour). */
  writeOffMs?: number;
  /** Chain look-ups one peer may cause: a burst, then so many a minute. Default: 4, then 60 a minute. */
  lookupBurst?: number;
  lookupsPerMinute?: number;
  /** Vouchers above the (freshly read) deposit a peer may send before it is banned. Default: 3. */
  maxOverDeposits?: number;
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
  /** How often the chain is polled for channels starting to close, in ms. Default: 2 000. */
  watchPollMs?: number;
  /** First wait before retrying a failed redeem of a closing channel (doubling, at most a minute), in ms.
   * Default: 1 000. */
  retryMs?: number;
  /** Told of every redeem and skipped redeem, and of every peer banned. Default: none. */
  onEvent?: (event: DeskEvent) => void;
  /** Where the latest voucher and redeemed amount of every channel are kept (`<dataDir>/pay.sqlite`, see
   * `ledger.ts`), locked against a second desk. Default: none, kept in memory only (a restart forgets). */
  dataDir?: string;
  /** The pay key's file, when it lies outside `dataDir`: `<keyFile>.lock` is held too, so that two data
   * directories sharing one key cannot both run a desk. Default: none. */
  keyFile?: string;
  /** The protocol this desk answers: a relay's desk takes its vouchers on `RELAY_PAY_PROTOCOL`. Default:
   * `PAY_PROTOCOL`. */
  protocol?: string;
  /** Why a channel may not be bound here, if it may not: two desks of one operator share its payee address,
   * so each refuses the channels the other holds (one channel's cumulative vouchers pay for one service).
   * Default: none refused. */
  refuseChannel?: (channel: Hex) => string | undefined;
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
  /** Of `accepted - base`, the wei paid for storage: no credit for deliveries. */
  storageWei: bigint;
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
  /** Of it, wei paid for storage (no credit for deliveries). */
  storageWei: bigint;
  redeems: number;
  /** Wei collected by redeems. */
  redeemedWei: bigint;
  /** Gas of every redeem, and what it cost in wei. */
  redeemGas: bigint;
  redeemGasCost: bigint;
  /** Gas used by the last redeem (0n before any). */
  lastRedeemGas: bigint;
  banned: number;
  /** Wei of service owed by the accounts kept, and by dropped ones still counted against the caps. */
  owedWei: bigint;
  /** Accounts dropped so far. */
  evicted: number;
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
  /** The storage part of the latest voucher's amount (cumulative), and what it was when bound. */
  storage: bigint;
  storageBase: bigint;
  /** Wei accepted for other things than deliveries ({@link PaymentDesk.takeOtherVoucher}): no delivery
   * credit. */
  other: bigint;
  channel?: { id: Hex; payer: Address; deposit: bigint };
  latest?: Latest;
  redeemed: bigint;
  vouchers: number;
  /** Last request or voucher, for eviction (ms). */
  active: number;
  /** Vouchers being handled. */
  busy: number;
  /** Chain look-ups left in the peer's bucket, as of `tokensAt`. */
  tokens: number;
  tokensAt: number;
  /** Validly signed vouchers above the deposit read just before. */
  overDeposits: number;
  /** Measured gas of this channel's last redeem, else the estimate for its first. */
  redeemGas?: bigint;
  /** The factor of the redeem check queued, if one is (the lowest asked for since). */
  redeemQueued?: bigint;
  /** A closing channel's redeem (with retries) is under way. */
  closingRedeem?: boolean;
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

/** An account is dropped for a newcomer only once idle this long (ms): not while its request is in flight. */
const LRU_MIN_IDLE_MS = 1000;

/** Bans kept at most (the oldest is forgotten first): a banned peer can make new identities anyway. */
const MAX_BANS = 65_536;

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
  /** Peer -> why it is refused; kept beyond its account (the oldest dropped past {@link MAX_BANS}). */
  readonly #bans = new Map<string, string>();
  readonly #intro: bigint;
  readonly #strangerCap: bigint;
  readonly #unpaidCap: bigint;
  readonly #idleMs: number;
  readonly #maxAccounts: number;
  readonly #writeOffMs: number;
  readonly #burst: number;
  readonly #perMs: number;
  readonly #maxOverDeposits: number;
  /** Wei owed by every account kept, and by those without a bound channel. */
  #owed = 0n;
  #strangersOwed = 0n;
  /** Wei owed by dropped accounts, fading over `writeOffMs`, as of `#writtenOffAt`. */
  #writtenOff = 0n;
  #writtenOffAt = 0;
  #lastSweep = 0;
  #evicted = 0;
  #libp2p: Pick<Libp2p, "handle" | "unhandle" | "hangUp"> | undefined;
  #stopped = false;
  #fee: { perGas: bigint; at: number } | undefined;
  readonly #watcher: ChainWatcher;
  readonly #retryMs: number;
  /** Wakes the closing redeems waiting to retry (at stop). */
  readonly #sleepers = new Set<() => void>();
  readonly #stats = { redeems: 0, redeemedWei: 0n, redeemGas: 0n, redeemGasCost: 0n, lastGas: 0n };
  readonly #dataDir: string | undefined;
  readonly #keyFile: string | undefined;
  readonly #protocol: string;
  readonly #refuseChannel: ((channel: Hex) => string | undefined) | undefined;
  #ledger: PayLedger | undefined;

  constructor(init: PaymentDeskInit) {
    if (init.price < 0n) throw new RangeError(`Price must not be negative, got "${init.price}"`);
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
    // An honest client pays once its batch holds batchBytes: it must be served that much and one chunk more.
    const intro = nonNegativeInt(
      init.introBytes ?? Math.min(batchBytes + MAX_CHUNK_BYTES, creditBytes),
      "introBytes",
    );
    this.#intro = BigInt(intro);
    this.#strangerCap = BigInt(
      nonNegativeInt(init.strangerBytes ?? 4 * batchBytes, "strangerBytes"),
    );
    this.#unpaidCap = BigInt(
      positiveInt(init.maxUnpaidBytes ?? 256 * 1024 * 1024, "maxUnpaidBytes"),
    );
    this.#idleMs = positiveInt(init.idleMs ?? 600_000, "idleMs");
    this.#maxAccounts = positiveInt(init.maxAccounts ?? 4096, "maxAccounts");
    this.#writeOffMs = positiveInt(init.writeOffMs ?? 3_600_000, "writeOffMs");
    this.#burst = positiveInt(init.lookupBurst ?? 4, "lookupBurst");
    this.#perMs = positiveInt(init.lookupsPerMinute ?? 60, "lookupsPerMinute") / 60_000;
    this.#maxOverDeposits = positiveInt(init.maxOverDeposits ?? 3, "maxOverDeposits");
    this.#txs = init.transactions ?? new Serial();
    this.#onEvent = init.onEvent;
    this.#retryMs = positiveInt(init.retryMs ?? 1000, "retryMs");
    this.#watcher = new ChainWatcher({
      client: init.wallet,
      hub: this.#hub,
      pollMs: init.watchPollMs,
      onClosing: (id) => this.#channelClosing(id),
      onFinalized: (id) => this.#channelClosing(id),
    });
    this.#dataDir = init.dataDir;
    this.#keyFile = init.keyFile;
    this.#protocol = init.protocol ?? PAY_PROTOCOL;
    this.#refuseChannel = init.refuseChannel;
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
    // Throws DeskLockedError when another desk holds the data directory.
    this.#ledger ??= PayLedger.open(this.#dataDir, this.#keyFile);
    await this.#recover();
    this.#libp2p = libp2p;
    await this.#watcher.start();
    // A reader pays a relayed node over the relay; a relayed node pays its relay on either connection.
    await libp2p.handle(this.#protocol, this.#handle, {
      maxInboundStreams: 32,
      runOnLimitedConnection: true,
    });
  }

  /**
   * Stops taking payments and serving (requests waiting for a voucher are refused), then redeems every
   * channel's latest voucher worth more than a redeem costs. Idempotent.
   */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      await this.#libp2p?.unhandle(this.#protocol).catch(() => {});
      for (const account of this.#accounts.values()) this.#wake(account);
      await this.#watcher.stop();
      for (const wake of [...this.#sleepers]) wake();
    }
    await this.redeemAll({ factor: 1 });
    this.#ledger?.close();
  }

  /** Takes back the channels of the ledger with vouchers not redeemed in full: bound to their peers, their
   * latest voucher no credit (a replay of it is refused), and redeemed when worth more than a redeem costs. */
  async #recover(): Promise<void> {
    for (const c of this.#ledger!.pending()) {
      if (this.#channels.has(c.channel)) continue;
      // The chain may be ahead of the ledger (a redeem mined just before a crash) or past the channel's end.
      const state = await getChannel(this.#wallet, { address: this.#hub, channel: c.channel })
        .catch(
          () => undefined,
        );
      if (state !== undefined) {
        if (state.redeemed >= c.accepted || state.status === "closed" || state.status === "none") {
          this.#ledger!.redeemed(c.channel, c.accepted); // settled, or never to be
          continue;
        }
        if (state.redeemed > c.redeemed) c.redeemed = state.redeemed;
      }
      const a = this.#account(c.peer);
      if (a.channel !== undefined) continue;
      a.channel = { id: c.channel, payer: c.payer, deposit: c.deposit };
      a.accepted = a.base = c.accepted;
      a.storage = a.storageBase = c.storage ?? 0n;
      a.redeemed = c.redeemed;
      a.latest = c.latest;
      this.#channels.set(c.channel, c.peer);
      void this.#scheduleRedeem(a, 1n);
    }
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
    const banned = this.#bans.get(peer);
    if (banned !== undefined) throw new PeerBannedError(peer, banned);
  }

  async authorize(
    peer: string,
    _cid: CID,
    bytes: number,
    options: { signal: AbortSignal; waitMs?: number },
  ): Promise<void> {
    this.admit(peer);
    const account = this.#account(peer);
    // HTTP answers at once (its next voucher comes with its next request): `waitMs` 0.
    const deadline = Date.now() + (options.waitMs ?? this.#waitMs);
    while (true) {
      if (this.#stopped) throw new DeskStoppedError();
      this.admit(peer);
      if (account.channel !== undefined) this.#refuseClosing(account.channel.id);
      account.active = Date.now();
      const unpaid = (account.served + BigInt(bytes)) * this.#price - deliveryPaid(account);
      if (this.#fits(account, unpaid)) break;
      const left = deadline - Date.now();
      if (left <= 0) {
        const owed = unpaid - BigInt(bytes) * this.#price;
        throw new PaymentRequiredError(
          peer,
          owed,
          this.#quote.creditBytes,
          account.channel === undefined && owed <= 0n
            ? "no channel is bound here and the credit shared by newcomers is spent; open a channel " +
              "and send a voucher (1 wei binds it)"
            : undefined,
        );
      }
      await this.#nextPayment(account, left, options.signal);
    }
    // Counted now, in the same turn as the check: concurrent requests cannot overdraw.
    this.#change(account, () => account.served += BigInt(bytes));
  }

  served(peer: string, _cid: CID, bytes: number, delivered: boolean): void {
    const account = this.#accounts.get(peer);
    if (account === undefined) return;
    account.active = Date.now();
    if (!delivered) this.#change(account, () => account.served -= BigInt(bytes));
  }

  /** Whether `account` may owe `unpaid` wei: its own credit, the strangers' pool, the desk's cap. */
  #fits(account: Account, unpaid: bigint): boolean {
    const own = account.channel !== undefined ? this.#credit : this.#intro;
    if (unpaid > own * this.#price) return false;
    const growth = max0(unpaid) - this.#owedOf(account);
    if (growth <= 0n) return true;
    const writtenOff = this.#writtenOffNow();
    if (this.#owed + writtenOff + growth > this.#unpaidCap * this.#price) return false;
    return account.channel !== undefined ||
      this.#strangersOwed + writtenOff + growth <= this.#strangerCap * this.#price;
  }

  #owedOf(a: Account): bigint {
    return max0(a.served * this.#price - deliveryPaid(a));
  }

  /** Applies `mutate` to `a`, keeping the desk's totals of what is owed. */
  #change(a: Account, mutate: () => unknown): void {
    const before = this.#owedOf(a);
    const stranger = a.channel === undefined;
    mutate();
    const after = this.#owedOf(a);
    this.#owed += after - before;
    if (stranger) this.#strangersOwed -= before;
    if (a.channel === undefined) this.#strangersOwed += after;
  }

  /** Debt of dropped accounts still counted: it fades at 1/`writeOffMs` of itself per ms, so new peer IDs
   * get about `strangerBytes` an hour in all, however many there are. */
  #writtenOffNow(): bigint {
    if (this.#writtenOff === 0n) return 0n;
    const now = Date.now();
    const elapsed = BigInt(Math.min(now - this.#writtenOffAt, this.#writeOffMs));
    const forgiven = this.#writtenOff * elapsed / BigInt(this.#writeOffMs);
    // Left as it is until a whole wei fades, so that frequent calls cannot round it away to nothing.
    if (forgiven > 0n) {
      this.#writtenOff -= forgiven;
      this.#writtenOffAt = now;
    }
    return this.#writtenOff;
  }

  // -----------------------------------------------------------------------------------------------------------
  // Views

  /** Every peer's account. */
  accounts(): PeerAccount[] {
    return [...this.#accounts.keys()].map((peer) => this.account(peer)!);
  }

  /** One peer's account, if it has one. */
  account(peer: string): PeerAccount | undefined {
    const a = this.#accounts.get(peer);
    return a && {
      peer: a.peer,
      servedBytes: a.served,
      ...(a.channel ? { channel: a.channel.id, payer: a.channel.payer } : {}),
      accepted: a.accepted,
      redeemed: a.redeemed,
      base: a.base,
      storageWei: a.storage - a.storageBase,
      vouchers: a.vouchers,
      ...(this.#bans.has(a.peer) ? { banned: this.#bans.get(a.peer) } : {}),
    };
  }

  /** Whether this desk holds `channel` (bound to a peer now, or in its ledger). */
  holds(channel: Hex): boolean {
    return this.#channels.has(channel) || this.#ledger?.get(channel) !== undefined;
  }

  /** Totals over every peer. */
  stats(): DeskStats {
    let servedBytes = 0n, vouchers = 0, acceptedWei = 0n, storageWei = 0n;
    for (const a of this.#accounts.values()) {
      servedBytes += a.served;
      vouchers += a.vouchers;
      acceptedWei += a.accepted - a.base;
      storageWei += a.storage - a.storageBase;
    }
    const s = this.#stats;
    return {
      peers: this.#accounts.size,
      servedBytes,
      vouchers,
      acceptedWei,
      storageWei,
      redeems: s.redeems,
      redeemedWei: s.redeemedWei,
      redeemGas: s.redeemGas,
      redeemGasCost: s.redeemGasCost,
      lastRedeemGas: s.lastGas,
      banned: this.#bans.size,
      owedWei: this.#owed + this.#writtenOffNow(),
      evicted: this.#evicted,
    };
  }

  // -----------------------------------------------------------------------------------------------------------
  // Accounts and vouchers

  /** The peer's account, made on first sight. Throws {@link DeskBusyError} when no room can be made. */
  #account(peer: string): Account {
    let a = this.#accounts.get(peer);
    if (a === undefined) {
      const now = Date.now();
      if (this.#accounts.size >= this.#maxAccounts || now - this.#lastSweep > 1000) {
        this.#sweep(now);
      }
      if (this.#accounts.size >= this.#maxAccounts) throw new DeskBusyError(peer);
      a = {
        peer,
        served: 0n,
        accepted: 0n,
        base: 0n,
        storage: 0n,
        storageBase: 0n,
        other: 0n,
        redeemed: 0n,
        vouchers: 0,
        active: now,
        busy: 0,
        tokens: this.#burst,
        tokensAt: now,
        overDeposits: 0,
        lock: new Serial(),
        waiters: new Set(),
      };
      this.#accounts.set(peer, a);
    }
    return a;
  }

  /** Drops accounts idle for `idleMs`, then, while at `maxAccounts`, the longest idle (if idle for
   * {@link LRU_MIN_IDLE_MS}). Never one with a request waiting, a voucher in hand, or value left to redeem. */
  #sweep(now: number): void {
    this.#lastSweep = now;
    const droppable = [...this.#accounts.values()].filter((a) =>
      a.waiters.size === 0 && a.busy === 0 && a.redeemQueued === undefined &&
      (a.latest === undefined || a.latest.voucher.cumulativeAmount <= a.redeemed)
    );
    droppable.sort((x, y) => x.active - y.active);
    for (const a of droppable) {
      const idle = now - a.active;
      if (
        idle < this.#idleMs && (this.#accounts.size < this.#maxAccounts || idle < LRU_MIN_IDLE_MS)
      ) break;
      this.#evict(a);
    }
  }

  #evict(a: Account): void {
    const owed = this.#owedOf(a);
    this.#owed -= owed;
    if (a.channel === undefined) this.#strangersOwed -= owed;
    // What it still owed is written off, but keeps counting against the caps for a while.
    if (this.#writtenOffNow() === 0n) this.#writtenOffAt = Date.now();
    this.#writtenOff += owed;
    if (a.channel !== undefined && this.#channels.get(a.channel.id) === a.peer) {
      this.#channels.delete(a.channel.id);
    }
    this.#accounts.delete(a.peer);
    this.#evicted++;
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
    let forged = false;
    await answerMessage(
      stream,
      AbortSignal.timeout(this.#timeoutMs),
      PAY_WIRE,
      (req) => this.#answer(peer, req),
      (e) => {
        forged = isForgery(e);
        if (forged) this.#ban(peer, (e as Error).message);
        else forged = this.#bans.has(peer) && !(e instanceof PeerBannedError); // banned just now
        return errorReply(e);
      },
    );
    // A forger is cut off; its answer went out first so that it knows why.
    if (forged) await this.#libp2p?.hangUp(connection.remotePeer).catch(() => {});
  };

  /**
   * Takes a voucher that came on another protocol (paid lookups, `market/lookups.ts`), checked and recorded as
   * one on the pay protocol is (a forger is banned: {@link bannedFor}; the caller answers, then hangs up),
   * except that what it adds pays for something else: it is no credit for deliveries. Resolves with the
   * growth of the accepted amount.
   */
  async takeOtherVoucher(peer: string, message: VoucherMessage): Promise<bigint> {
    try {
      return (await this.#intake(peer, message, true)).growth;
    } catch (e) {
      if (isForgery(e)) this.#ban(peer, (e as Error).message);
      throw e;
    }
  }

  /** Why `peer` is refused, when it is (a forged voucher). */
  bannedFor(peer: string): string | undefined {
    return this.#bans.get(peer);
  }

  async #answer(peer: string, req: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.#stopped) throw new DeskStoppedError();
    this.admit(peer);
    if (req.op === "quote") return encodeQuote(this.#quote);
    if (req.op !== "voucher") {
      throw new PayProtocolError(`Unknown op "${String(req.op).slice(0, 20)}"`);
    }
    return await this.takeVoucher(peer, parseVoucherMessage(req));
  }

  /**
   * Checks and records a voucher from `peer`, as one sent on the pay protocol is: its answer on success; a
   * refusal throws (a `VoucherError` and the like). Banning a forger is the caller's: only it knows whether
   * `peer` is an identity (a libp2p peer) or only a name the voucher gave (`http:<channel>`, see `x402.ts`).
   */
  async takeVoucher(peer: string, message: VoucherMessage): Promise<Record<string, unknown>> {
    return (await this.#intake(peer, message, false)).answer;
  }

  /** Both intakes: checks and records `message` under `peer`'s lock; `other` marks its growth as paying for
   * something besides deliveries. */
  async #intake(
    peer: string,
    message: VoucherMessage,
    other: boolean,
  ): Promise<{ answer: Record<string, unknown>; growth: bigint }> {
    if (this.#stopped) throw new DeskStoppedError();
    this.admit(peer);
    // The hub's signature rule first: a signature it would refuse costs no chain look-up.
    checkSignature(message.signature);
    const account = this.#account(peer);
    account.busy++;
    try {
      return await account.lock.run(async () => {
        const before = account.channel === undefined ? undefined : account.accepted;
        const answer = await this.#take(account, message);
        // A first voucher binds its channel: what was accepted before it on that channel is the base.
        const growth = account.accepted - (before ?? account.base);
        if (other) this.#change(account, () => account.other += growth);
        return { answer, growth };
      });
    } finally {
      account.busy--;
      account.active = Date.now();
    }
  }

  /** Verifies a voucher against the chain, then (only then) binds its channel and records it. */
  async #take(account: Account, message: VoucherMessage): Promise<Record<string, unknown>> {
    const peer = account.peer;
    this.admit(peer);
    const { voucher } = message;
    // Status as the watcher last saw it: no chain call per voucher.
    this.#refuseClosing(voucher.channel);
    const bound = account.channel;
    let channel: { id: Hex; payer: Address; deposit: bigint };
    let accepted: bigint;
    if (bound !== undefined) {
      if (voucher.channel !== bound.id) throw new VoucherChannelError(bound.id, voucher.channel);
      channel = bound;
      accepted = account.accepted;
    } else {
      const state = await this.#lookup(account, voucher.channel);
      if (state.status === "none") {
        throw new ChannelUnusableError(voucher.channel, "does not exist");
      }
      if (!isAddressEqual(state.payee, this.#quote.payee)) {
        throw new ChannelUnusableError(voucher.channel, `pays "${state.payee}", not this operator`);
      }
      channel = { id: voucher.channel, payer: state.payer, deposit: state.deposit };
      // A voucher accepted before (by this desk before a restart) is no new credit.
      const known = this.#ledger?.get(voucher.channel)?.accepted ?? 0n;
      accepted = known > state.redeemed ? known : state.redeemed;
      await this.#verify(account, message, channel, accepted, true);
      // Signed by the channel's payer: whatever else is wrong is not a forgery.
      const refused = this.#refuseChannel?.(channel.id);
      if (refused !== undefined) throw new ChannelUnusableError(channel.id, refused, false);
      const owner = this.#channels.get(channel.id);
      if (owner !== undefined && owner !== peer) {
        throw new ChannelUnusableError(channel.id, "pays for another peer", false);
      }
      if (state.status !== "open") {
        throw new ChannelUnusableError(channel.id, `is ${state.status}`, false);
      }
      if (state.challengePeriod < this.#minChallenge) {
        throw new ChannelUnusableError(
          channel.id,
          `has a challenge period of ${state.challengePeriod} s, under ${this.#minChallenge} s`,
          false,
        );
      }
    }
    if (bound !== undefined) await this.#verify(account, message, channel, accepted, false);
    const receipts = this.#checkReceipts(voucher, message.receipts, channel.payer);
    // The storage part: as before when not said; on a channel new here, what it says was paid before
    // binding is taken as storage first (never as delivery credit).
    const knownStorage = bound === undefined
      ? this.#ledger?.get(voucher.channel)?.storage
      : account.storage;
    const storage = message.storage ?? knownStorage ?? 0n;
    const storageBase = bound === undefined
      ? knownStorage ?? max0(storage - (voucher.cumulativeAmount - accepted))
      : account.storageBase;
    const before = bound === undefined ? storageBase : account.storage;
    if (storage < before || storage - before > voucher.cumulativeAmount - accepted) {
      throw new PayProtocolError(
        `The voucher's storage part (${storage} wei) must grow from ${before} by at most what the voucher ` +
          `adds (${voucher.cumulativeAmount - accepted})`,
      );
    }
    if (bound === undefined) {
      const owner = this.#channels.get(channel.id);
      if (owner !== undefined && owner !== peer) {
        throw new ChannelUnusableError(channel.id, "pays for another peer", false);
      }
    }
    // Everything checked: on disk first (a crash after must not forget it, nor take it as new), then bind.
    this.#ledger?.put({
      channel: channel.id,
      peer,
      payer: channel.payer,
      deposit: channel.deposit,
      accepted: voucher.cumulativeAmount,
      redeemed: bound === undefined ? accepted : account.redeemed,
      latest: { voucher, signature: message.signature, receipts },
      storage,
    });
    this.#change(account, () => {
      if (bound === undefined) {
        this.#channels.set(channel.id, peer);
        account.channel = channel;
        account.base = account.redeemed = accepted;
        account.storageBase = storageBase;
      }
      account.accepted = voucher.cumulativeAmount;
      account.storage = storage;
    });
    account.latest = { voucher, signature: message.signature, receipts };
    account.vouchers++;
    account.overDeposits = 0;
    this.#wake(account);
    void this.#scheduleRedeem(account, this.#factor);
    return {
      op: "accepted",
      cumulativeAmount: account.accepted.toString(),
      servedBytes: account.served.toString(),
    };
  }

  /** Checks signature and amounts as `redeem` will. Above the deposit, a bound channel's deposit is read
   * again (the payer may have topped up) when the peer's look-up budget allows; a voucher above a deposit
   * just read counts towards a ban. */
  async #verify(
    account: Account,
    message: VoucherMessage,
    channel: { id: Hex; payer: Address; deposit: bigint },
    accepted: bigint,
    fresh: boolean,
  ): Promise<void> {
    const check = (deposit: bigint) =>
      verifyVoucher({
        domain: this.#domain,
        voucher: message.voucher,
        signature: message.signature,
        channel: channel.id,
        payer: channel.payer,
        accepted,
        deposit,
      });
    const attempt = async (deposit: bigint): Promise<VoucherDepositError | undefined> => {
      try {
        await check(deposit);
      } catch (e) {
        if (e instanceof VoucherDepositError) return e;
        throw e;
      }
    };
    let error = await attempt(channel.deposit);
    if (error === undefined) return;
    if (!fresh) {
      if (!this.#takeToken(account)) throw error; // refused on what we know: no call, no strike
      channel.deposit =
        (await getChannel(this.#wallet, { address: this.#hub, channel: channel.id })).deposit;
      error = await attempt(channel.deposit);
      if (error === undefined) return;
    }
    // Signed by the payer for more than it has just been seen to hold: never redeemable.
    if (++account.overDeposits >= this.#maxOverDeposits) {
      this.#ban(account.peer, `${account.overDeposits} vouchers above the deposit`);
    }
    throw error;
  }

  /** The channel's state, if the peer's look-up budget allows. */
  async #lookup(account: Account, id: Hex) {
    if (!this.#takeToken(account)) throw new PayRateLimitedError(account.peer);
    return await getChannel(this.#wallet, { address: this.#hub, channel: id });
  }

  /** Takes one chain look-up from the peer's bucket (`lookupBurst`, refilled at `lookupsPerMinute`). */
  #takeToken(account: Account): boolean {
    const now = Date.now();
    account.tokens = Math.min(
      this.#burst,
      account.tokens + (now - account.tokensAt) * this.#perMs,
    );
    account.tokensAt = now;
    if (account.tokens < 1) return false;
    account.tokens--;
    return true;
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
    if (this.#bans.has(peer)) return;
    if (this.#bans.size >= MAX_BANS) this.#bans.delete(this.#bans.keys().next().value!);
    this.#bans.set(peer, reason);
    const account = this.#accounts.get(peer);
    if (account !== undefined) this.#wake(account);
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

  /** Redeems the latest voucher if worth `factor` x its cost; the error if it failed. */
  async #maybeRedeem(account: Account, factor: bigint): Promise<unknown> {
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
      this.#ledger?.redeemed(channel.id, account.redeemed);
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
      return error ?? new Error("Redeem failed");
    }
  }

  // -----------------------------------------------------------------------------------------------------------
  // Closing channels (seen by the watcher)

  /** Refuses service and vouchers on a channel the watcher saw start closing (or closed). */
  #refuseClosing(id: Hex): void {
    const seen = this.#watcher.status(id);
    if (seen !== undefined) throw new ChannelUnusableError(id, `is ${seen.status}`, false);
  }

  /** A bound channel started closing (or closed): its requests are refused at once, and its latest voucher
   * is redeemed if worth more than the gas (not `redeemFactor` x), retried with backoff while it can be. */
  #channelClosing(id: Hex): void {
    const peer = this.#channels.get(id);
    const account = peer === undefined ? undefined : this.#accounts.get(peer);
    if (account === undefined) return;
    this.#wake(account);
    if (this.#watcher.status(id)?.status !== "closing" || account.closingRedeem) return;
    account.closingRedeem = true;
    void this.#redeemClosing(account, id).finally(() => account.closingRedeem = false);
  }

  async #redeemClosing(account: Account, id: Hex): Promise<void> {
    for (let attempt = 1;; attempt++) {
      account.redeemQueued ??= 1n; // not evicted meanwhile
      const error = await this.#txs.run(() => this.#maybeRedeem(account, 1n));
      if (account.redeemQueued === 1n) account.redeemQueued = undefined;
      if (error === undefined) return;
      // Past the challenge period or finalized, no redeem can succeed any more.
      const over = error instanceof ContractRevertError &&
        (error.errorName === "ChallengePeriodOver" || error.errorName === "ChannelClosed");
      const retryInMs = Math.min(this.#retryMs * 2 ** (attempt - 1), 60_000);
      const giveUp = over || this.#stopped || this.#watcher.status(id)?.status === "closed" ||
        attempt >= 12;
      payLog("warn", "closing channel redeem failed", {
        peer: account.peer,
        channel: id,
        attempt,
        ...(giveUp ? { givingUp: true } : { retryInMs }),
        error: errorText(error),
      });
      if (giveUp) return;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#sleepers.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, retryInMs);
        this.#sleepers.add(wake);
      });
      if (this.#stopped) return; // stop() redeems what is left
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

function nonNegativeInt(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`"${name}" must be a non-negative integer, got "${n}"`);
  }
  return n;
}

/** Wei an account paid for deliveries here: what its vouchers added since binding, less the storage part. */
function deliveryPaid(a: Account): bigint {
  return a.accepted - a.base - (a.storage - a.storageBase) - a.other;
}

function max0(n: bigint): bigint {
  return n > 0n ? n : 0n;
}

function positiveInt(n: number, name: string): number {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`"${name}" must be a positive integer, got "${n}"`);
  }
  return n;
}
