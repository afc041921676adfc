/**
 * Paid delivery: operators are paid per byte they serve through the chunk exchange, with vouchers on payment
 * channels.
 *
 * The chunk exchange (`src/mesh/exchange.ts`) has two structural hooks; this module fills them:
 *
 * - operator side, its `gate`: a {@link PaymentDesk} meters every chunk before it is sent, serves at most
 *   `creditBytes` ahead of payment (then waits for a voucher, then refuses with `payment_required`), takes
 *   vouchers on `/meshgate/pay/1.0.0`, bans and hangs up on forgers, and redeems when it pays to;
 * - client side, its `payer`: a {@link PayingClient} writes a receipt per verified chunk, opens a channel per
 *   operator, and sends a voucher per `batchBytes`; when refused for payment it pays what it owes and the
 *   exchange asks again.
 *
 * The operator announces its price and payee in its answer to `quote` on the pay protocol (`pay_protocol.ts`).
 * {@link paidDelivery} builds both sides for one node from one account.
 *
 * @module
 */
import type { Libp2p } from "@libp2p/interface";
import { type Address, createWalletClient, type Hex, http, isHex, type LocalAccount } from "viem";
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import type { DeliveryGate, DeliveryPayer } from "../mesh/exchange.ts";
import { type ChainConfig, meshChain } from "./chain.ts";
import { type DeskEvent, PaymentDesk } from "./desk.ts";
import { type PayerEvent, PayingClient } from "./payer.ts";
import { errorText, payLog } from "./_log.ts";
import { Serial } from "./_serial.ts";
import type { PayClient } from "./_tx.ts";

/** Options of {@link paidDelivery}. Every field documents its default. */
export interface PaidDeliveryInit {
  /** The chain with Meshgate's contracts. */
  chain: ChainConfig;
  /** The node's account: it pays the operators it fetches from, and is paid for what it serves. */
  account: LocalAccount;
  /** Wei per byte this node charges. Default: 0n, it serves for free (and runs no desk) but still pays. */
  price?: bigint;
  /** Run the desk even when serving for free, to take payments for lookups (`market/lookups.ts`). Default:
   * false. */
  desk?: boolean;
  /** Bytes per voucher, both ways. Default: `DEFAULT_BATCH_BYTES` (4 MiB). */
  batchBytes?: number;
  /** Bytes served ahead of payment. Default: 2 x `batchBytes`. */
  /** Most bytes owed to this node by all peers together (see `PaymentDeskInit`). Default: 256 MiB. */
  maxUnpaidBytes?: number;
  creditBytes?: number;
  /** Wait for a voucher before refusing a peer past its credit, in ms. Default: 10 000. */
  paymentWaitMs?: number;
  /** Redeem when the unredeemed value exceeds this many redeem costs. Default: 10. */
  redeemFactor?: number;
  /** Bytes of service per channel deposit and top-up. Default: 64 x `batchBytes`. */
  depositBytes?: number;
  /** Highest price paid, in wei per byte. Default: `DEFAULT_MAX_PRICE` (1 gwei; see `limits.ts`). */
  maxPrice?: bigint;
  /** Most wei paid for one file, and in any 24 hours. Defaults: 0.1 ETH and 1 ETH (see `limits.ts`). */
  maxSpendPerFile?: bigint;
  maxSpendPerDay?: bigint;
  /** Unused channels are closed after this many ms, and finalized after their challenge period. Default:
   * 10 min. */
  idleCloseMs?: number;
  /** Told of the desk's redeems and bans. Default: none. */
  onEvent?: (event: DeskEvent) => void;
  /** Told of the paying client's channels and refusals. Default: none. */
  onPayerEvent?: (event: PayerEvent) => void;
  /** Log both sides' events as JSON lines on stderr. Default: true. */
  log?: boolean;
  /** Where the desk keeps its vouchers (`<dataDir>/pay.sqlite`, locked: one desk per directory). The node
   * passes its own. Default: none, in memory only (a restart forgets them). */
  dataDir?: string;
  /** The pay key's file, when outside `dataDir`: locked too (one desk per key; see `PaymentDeskInit`). */
  keyFile?: string;
  /** Channels the desk must not take (those of this node's relay desk; see `PaymentDeskInit`). */
  refuseChannel?: (channel: Hex) => string | undefined;
}

/** One channel this node is paid through (`in`) or pays through (`out`). */
export type PayChannel =
  | {
    direction: "in";
    peer: string;
    channel?: Hex;
    payer?: Address;
    servedBytes: bigint;
    /** Wei accepted in vouchers, and redeemed, since this node started. */
    earnedWei: bigint;
    redeemedWei: bigint;
    /** Of `earnedWei`, what paid for storage (leases), not for bytes served. */
    storageWei: bigint;
    vouchers: number;
    banned?: string;
  }
  | {
    direction: "out";
    peer: string;
    channel?: Hex;
    payee?: Address;
    price?: bigint;
    depositWei: bigint;
    /** Wei promised in vouchers, and acknowledged by the operator. */
    spentWei: bigint;
    acceptedWei: bigint;
    paidBytes: bigint;
    vouchers: number;
  };

/** A channel this node pays through, as `GET /api/channels` lists it. */
export interface OpenChannel {
  /** The operator's peer ID, and the address its vouchers pay. */
  peer: string;
  channel: Hex;
  payee?: Address;
  price?: bigint;
  /** "closing" once idle: the deposit comes back from `closesAt` (unix seconds). */
  status: "open" | "closing";
  closesAt?: bigint;
  depositWei: bigint;
  /** Wei promised to the operator (it may redeem it), and the rest of the deposit, locked until finalized. */
  spentWei: bigint;
  lockedWei: bigint;
}

/** What a node earned and spent since it started. */
export interface PaySummary {
  account: Address;
  /** Wei per byte this node charges (0n: it serves for free). */
  price: bigint;
  /** Wei accepted in vouchers from the peers it served (or kept chunks for). */
  earnedWei: bigint;
  /** Of it, wei paid for storage (proven lease periods). */
  storageEarnedWei: bigint;
  /** Wei the hub paid it for those vouchers so far. */
  redeemedWei: bigint;
  /** Wei it promised in vouchers to the operators it fetched from. */
  spentWei: bigint;
  vouchersReceived: number;
  vouchersSent: number;
  redeems: number;
  /** Gas of its redeems, and what that gas cost in wei. */
  redeemGas: bigint;
  redeemGasWei: bigint;
  channels: PayChannel[];
}

/** Both sides of paid delivery for one node. */
export interface PaidDelivery {
  readonly wallet: PayClient;
  /** The account's transaction queue: all that sends from the account (the market's deals, paid
   * relaying) queues here too, so nonces never clash. */
  readonly transactions: Serial;
  /** The operator side; absent when the node serves for free. */
  readonly desk: PaymentDesk | undefined;
  readonly payer: PayingClient;
  /** The hooks to put in the chunk exchange's options (`MeshNodeInit.exchange`). */
  readonly exchange: { gate?: DeliveryGate; payer: DeliveryPayer };
  /** Attaches both sides to the node's libp2p (after it was built with {@link exchange}). */
  start(libp2p: Pick<Libp2p, "handle" | "unhandle" | "hangUp" | "dialProtocol">): Promise<void>;
  /** Pays what this node owes, stops the desk and redeems what is worth it. Call before the mesh stops. */
  stop(): Promise<void>;
  /** Earnings, spending and channels, for `/api/pay` and `/metrics`. */
  summary(): PaySummary;
  /** The channels this node pays through and has not finalized: open ones, then closing ones. */
  openChannels(): OpenChannel[];
}

/** Builds paid delivery for a node paying and paid through `chain` with `account`. */
export function paidDelivery(init: PaidDeliveryInit): PaidDelivery {
  const wallet = createWalletClient({
    account: init.account,
    chain: meshChain(init.chain),
    transport: http(init.chain.rpc),
  }) as PayClient;
  // One account, one nonce sequence: the desk's redeems and the client's deposits queue together.
  const transactions = new Serial();
  const price = init.price ?? 0n;
  const log = init.log ?? true;
  let stopping = false;
  const onEvent = (event: DeskEvent) => {
    if (log) logDeskEvent(event, stopping);
    init.onEvent?.(event);
  };
  const onPayerEvent = (event: PayerEvent) => {
    if (log) logPayerEvent(event);
    init.onPayerEvent?.(event);
  };
  const desk = price > 0n || init.desk
    ? new PaymentDesk({
      chain: init.chain,
      wallet,
      price,
      transactions,
      onEvent,
      ...pick(
        init,
        "batchBytes",
        "creditBytes",
        "paymentWaitMs",
        "redeemFactor",
        "maxUnpaidBytes",
        "dataDir",
        "keyFile",
        "refuseChannel",
      ),
    })
    : undefined;
  const payer = new PayingClient({
    chain: init.chain,
    wallet,
    transactions,
    onEvent: onPayerEvent,
    ...pick(
      init,
      "batchBytes",
      "depositBytes",
      "maxPrice",
      "maxSpendPerFile",
      "maxSpendPerDay",
      "idleCloseMs",
    ),
  });
  return {
    wallet,
    transactions,
    desk,
    payer,
    // A desk for lookups alone does not meter the free deliveries.
    exchange: desk && price > 0n ? { gate: desk, payer } : { payer },
    async start(libp2p) {
      await payer.start(libp2p);
      await desk?.start(libp2p);
    },
    async stop() {
      stopping = true;
      // At once: redeeming what this node earned must not wait behind paying peers that may be slow.
      await Promise.all([payer.stop(), desk?.stop()]);
    },
    openChannels() {
      const open: OpenChannel[] = payer.operators().filter((o) => o.channel !== undefined).map((
        o,
      ) => ({
        peer: o.peer,
        channel: o.channel!,
        ...(o.quote ? { payee: o.quote.payee, price: o.quote.price } : {}),
        status: "open",
        depositWei: o.deposit,
        spentWei: o.cumulative,
        lockedWei: o.deposit - o.cumulative,
      }));
      const closing: OpenChannel[] = payer.closing().map((c) => ({
        peer: c.peer,
        channel: c.channel,
        status: "closing",
        closesAt: c.closesAt,
        depositWei: c.deposit,
        spentWei: c.spent,
        lockedWei: c.deposit - c.spent,
      }));
      return [...open, ...closing];
    },
    summary() {
      const d = desk?.stats();
      const p = payer.stats();
      const channels: PayChannel[] = [];
      for (const a of desk?.accounts() ?? []) {
        channels.push({
          direction: "in",
          peer: a.peer,
          ...(a.channel ? { channel: a.channel, payer: a.payer } : {}),
          servedBytes: a.servedBytes,
          earnedWei: a.accepted - a.base,
          redeemedWei: max0(a.redeemed - a.base), // a voucher from before a restart counts below base
          storageWei: a.storageWei,
          vouchers: a.vouchers,
          ...(a.banned !== undefined ? { banned: a.banned } : {}),
        });
      }
      for (const o of payer.operators()) {
        if (o.quote?.price === 0n && o.channel === undefined) continue; // a volunteer: nothing to show
        channels.push({
          direction: "out",
          peer: o.peer,
          ...(o.channel ? { channel: o.channel } : {}),
          ...(o.quote ? { payee: o.quote.payee, price: o.quote.price } : {}),
          depositWei: o.deposit,
          spentWei: o.cumulative,
          acceptedWei: o.accepted,
          paidBytes: o.paidBytes,
          vouchers: o.vouchers,
        });
      }
      return {
        account: wallet.account.address,
        price,
        earnedWei: d?.acceptedWei ?? 0n,
        storageEarnedWei: d?.storageWei ?? 0n,
        redeemedWei: d?.redeemedWei ?? 0n,
        spentWei: p.spentWei,
        vouchersReceived: d?.vouchers ?? 0,
        vouchersSent: p.vouchers,
        redeems: d?.redeems ?? 0,
        redeemGas: d?.redeemGas ?? 0n,
        redeemGasWei: d?.redeemGasCost ?? 0n,
        channels,
      };
    },
  };
}

function logDeskEvent(e: DeskEvent, stopping: boolean): void {
  switch (e.kind) {
    case "redeemed":
      payLog("info", "voucher redeemed", {
        peer: e.peer,
        channel: e.channel,
        paidWei: e.paid,
        gas: e.gasUsed,
        gasWei: e.gasCost,
      });
      break;
    case "redeem_skipped":
      // While running, a skip only means "not yet"; at shutdown it is money left on the table.
      if (stopping) {
        payLog("warn", "voucher left unredeemed: worth less than the gas of redeeming it", {
          peer: e.peer,
          channel: e.channel,
          pendingWei: e.pending,
          redeemCostWei: e.cost,
        });
      }
      break;
    case "redeem_failed":
      payLog("warn", "redeem failed", {
        peer: e.peer,
        channel: e.channel,
        error: errorText(e.error),
      });
      break;
    case "banned":
      payLog("warn", "peer refused: forged voucher", { peer: e.peer, reason: e.reason });
      break;
  }
}

function logPayerEvent(e: PayerEvent): void {
  switch (e.kind) {
    case "channel_opened":
      payLog("info", "channel opened", {
        peer: e.peer,
        channel: e.channel,
        payee: e.payee,
        depositWei: e.deposit,
      });
      break;
    case "quote_refused":
      payLog("warn", "operator not paid: its quote is refused", {
        peer: e.peer,
        reason: e.reason,
      });
      break;
    case "payment_failed":
      payLog("warn", "payment failed", {
        peer: e.peer,
        error: errorText(e.error),
        code: (e.error as { code?: unknown })?.code,
      });
      break;
    case "channel_closing":
      payLog("info", "idle channel closing", {
        peer: e.peer,
        channel: e.channel,
        closesAt: e.closesAt,
      });
      break;
    case "channel_finalized":
      payLog("info", "channel finalized", {
        peer: e.peer,
        channel: e.channel,
        refundedWei: e.refunded,
      });
      break;
    case "close_failed":
      payLog("warn", "closing an idle channel failed", {
        peer: e.peer,
        channel: e.channel,
        error: errorText(e.error),
      });
      break;
  }
}

/** Anvil's public test mnemonic (`devnet.ts` funds its first ten accounts): for local chains only. */
const DEV_MNEMONIC = "test test test test test test test test test test test junk";

/**
 * The account named by `spec`: a `0x` private key (32 bytes of hex), or `dev:N`, account N of anvil's public
 * test mnemonic (never to be used on a real chain). Throws `TypeError` for anything else.
 */
export function payAccount(spec: string): LocalAccount {
  const dev = /^dev:(\d{1,4})$/.exec(spec.trim());
  if (dev) return mnemonicToAccount(DEV_MNEMONIC, { addressIndex: Number(dev[1]) });
  const key = spec.trim();
  if (isHex(key) && key.length === 66) return privateKeyToAccount(key as Hex);
  throw new TypeError(
    // Never echo the value: it may be most of a private key.
    `Pay key must be a 0x private key of 32 bytes or "dev:N" (got ${spec.length} characters)`,
  );
}

function pick<T extends object, K extends keyof T>(obj: T, ...keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const k of keys) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

function max0(n: bigint): bigint {
  return n > 0n ? n : 0n;
}
