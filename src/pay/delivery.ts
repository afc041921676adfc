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
import { createWalletClient, type Hex, http, isHex, type LocalAccount } from "viem";
import { mnemonicToAccount, privateKeyToAccount } from "viem/accounts";
import type { DeliveryGate, DeliveryPayer } from "../mesh/exchange.ts";
import { type ChainConfig, meshChain } from "./chain.ts";
import { type DeskEvent, PaymentDesk } from "./desk.ts";
import { PayingClient } from "./payer.ts";
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
  /** Bytes per voucher, both ways. Default: `DEFAULT_BATCH_BYTES` (4 MiB). */
  batchBytes?: number;
  /** Bytes served ahead of payment. Default: 2 x `batchBytes`. */
  creditBytes?: number;
  /** Wait for a voucher before refusing a peer past its credit, in ms. Default: 10 000. */
  paymentWaitMs?: number;
  /** Redeem when the unredeemed value exceeds this many redeem costs. Default: 10. */
  redeemFactor?: number;
  /** Bytes of service per channel deposit and top-up. Default: 64 x `batchBytes`. */
  depositBytes?: number;
  /** Highest price paid, in wei per byte. Default: no limit. */
  maxPrice?: bigint;
  /** Told of the desk's redeems and bans. Default: none. */
  onEvent?: (event: DeskEvent) => void;
}

/** Both sides of paid delivery for one node. */
export interface PaidDelivery {
  readonly wallet: PayClient;
  /** The operator side; absent when the node serves for free. */
  readonly desk: PaymentDesk | undefined;
  readonly payer: PayingClient;
  /** The hooks to put in the chunk exchange's options (`MeshNodeInit.exchange`). */
  readonly exchange: { gate?: DeliveryGate; payer: DeliveryPayer };
  /** Attaches both sides to the node's libp2p (after it was built with {@link exchange}). */
  start(libp2p: Pick<Libp2p, "handle" | "unhandle" | "hangUp" | "dialProtocol">): Promise<void>;
  /** Pays what this node owes, stops the desk and redeems what is worth it. Call before the mesh stops. */
  stop(): Promise<void>;
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
  const desk = price > 0n
    ? new PaymentDesk({
      chain: init.chain,
      wallet,
      price,
      transactions,
      ...pick(init, "batchBytes", "creditBytes", "paymentWaitMs", "redeemFactor", "onEvent"),
    })
    : undefined;
  const payer = new PayingClient({
    chain: init.chain,
    wallet,
    transactions,
    ...pick(init, "batchBytes", "depositBytes", "maxPrice"),
  });
  return {
    wallet,
    desk,
    payer,
    exchange: desk ? { gate: desk, payer } : { payer },
    async start(libp2p) {
      await payer.start(libp2p);
      await desk?.start(libp2p);
    },
    async stop() {
      // At once: redeeming what this node earned must not wait behind paying peers that may be slow.
      await Promise.all([payer.stop(), desk?.stop()]);
    },
  };
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
