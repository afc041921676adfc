/**
 * Paid relaying: the relay's desk and the relayed node's payer, on the channel and voucher machinery of paid
 * delivery (`desk.ts`, `payer.ts`) but on their own protocol (`/meshgate/relay-pay/1.0.0`) and their own
 * channels.
 *
 * Who pays: the relayed node (the one holding the reservation), for every byte of every circuit to it, both
 * directions. It is the party made reachable, it keeps a connection to the relay anyway, and it can price the
 * relay into what it charges readers; readers need no channel with relays. The relay counts the bytes of each
 * circuit's stop stream (`mesh/relay.ts`) and charges them through its desk (the {@link relayedCid} stands
 * for them in receipts); the relayed node counts the same bytes on its side and pays for them per `batchBytes`.
 * Past its credit with no voucher in the desk's wait, the relay cuts the circuit.
 *
 * A voucher on a channel this operator's delivery desk holds is refused by the relay's desk, and the other way
 * round: one channel's cumulative amounts pay for one service.
 *
 * @module
 */
import type { Libp2p } from "@libp2p/interface";
import type { Hex } from "viem";
import { join } from "node:path";
import { relayedCid } from "../mesh/relay.ts";
import type { ChainConfig } from "./chain.ts";
import { type DeskEvent, PaymentDesk } from "./desk.ts";
import { type PayerEvent, PayingClient } from "./payer.ts";
import { RELAY_PAY_PROTOCOL } from "./pay_protocol.ts";
import type { Serial } from "./_serial.ts";
import type { PayClient } from "./_tx.ts";
import { errorText, payLog } from "./_log.ts";

const GIB = 1n << 30n;
const RECEIPT_BYTES = 256 * 1024;

/** The per-byte price of `perGiB` wei per GiB relayed (rounded down); a RangeError when under 1 wei a byte. */
export function relayPricePerByte(perGiB: bigint): bigint {
  const perByte = perGiB / GIB;
  if (perByte <= 0n) {
    throw new RangeError(
      `A paid relay charges at least 1 wei a byte (${GIB} wei per GiB), got ${perGiB} wei per GiB`,
    );
  }
  return perByte;
}

/** Options of {@link paidRelaying}. */
export interface PaidRelayingInit {
  chain: Pick<ChainConfig, "chainId" | "contracts">;
  /** The node's wallet and its transaction queue (shared with paid delivery). */
  wallet: PayClient;
  transactions: Serial;
  /** Wei per GiB this node charges for relaying; 0 or absent: it relays for free (or is no relay). */
  pricePerGiB?: bigint;
  /** Bytes per voucher, both ways. Default: the desk's (4 MiB). */
  batchBytes?: number;
  /** Bytes relayed ahead of payment per reserving peer. Default: 2 x `batchBytes`. */
  creditBytes?: number;
  /** Wait for a voucher before cutting a circuit past its credit, in ms. Default: 10 000. */
  paymentWaitMs?: number;
  /** Most wei this node pays relays, in all; past it, it stops paying (and loses its circuits). Default:
   * no cap but the payer's daily one. */
  maxSpend?: bigint;
  /** The relay desk's ledger lives in `<dataDir>/relay` (a desk of its own). Default: memory only. */
  dataDir?: string;
  /** Channels another desk of this operator holds. */
  refuseChannel?: (channel: Hex) => string | undefined;
  /** Log events as JSON lines on stderr. Default: true. */
  log?: boolean;
}

/** Totals for `/metrics`: what the relay desk was paid, what this node paid relays. */
export interface RelayPaySummary {
  /** As a relay. */
  relayedBytes: bigint;
  vouchers: number;
  acceptedWei: bigint;
  redeemedWei: bigint;
  owedWei: bigint;
  /** As a relayed node. */
  paidBytes: bigint;
  spentWei: bigint;
  unpaidBytes: bigint;
}

/** The relay's desk (with a price) and the relayed node's payer. */
export interface PaidRelaying {
  readonly desk: PaymentDesk | undefined;
  readonly payer: PayingClient;
  /** For `MeshNodeInit.onRelayed`: bytes a relay carried for this node, to pay for. */
  onRelayed(relay: string, bytes: number): void;
  start(libp2p: Pick<Libp2p, "handle" | "unhandle" | "hangUp" | "dialProtocol">): Promise<void>;
  stop(): Promise<void>;
  summary(): RelayPaySummary;
}

/** Builds the relay side (a desk, when priced) and the relayed side (a payer) of paid relaying. */
export function paidRelaying(init: PaidRelayingInit): PaidRelaying {
  const log = init.log ?? true;
  const onEvent = (event: DeskEvent) => {
    if (log && event.kind !== "redeem_skipped") {
      payLog(event.kind === "redeem_failed" ? "warn" : "info", `relay desk ${event.kind}`, {
        peer: event.peer,
        ...("channel" in event ? { channel: event.channel } : {}),
        ...("error" in event ? { error: errorText(event.error) } : {}),
        ...("reason" in event ? { reason: event.reason } : {}),
      });
    }
  };
  const onPayerEvent = (event: PayerEvent) => {
    if (log && event.kind !== "channel_finalized") {
      payLog(event.kind.endsWith("failed") ? "warn" : "info", `relay payer ${event.kind}`, {
        peer: event.peer,
        ...("error" in event ? { error: errorText(event.error) } : {}),
      });
    }
  };
  const price = init.pricePerGiB ? relayPricePerByte(init.pricePerGiB) : 0n;
  const desk = price > 0n
    ? new PaymentDesk({
      chain: init.chain,
      wallet: init.wallet,
      price,
      transactions: init.transactions,
      protocol: RELAY_PAY_PROTOCOL,
      onEvent,
      ...(init.batchBytes ? { batchBytes: init.batchBytes } : {}),
      ...(init.creditBytes ? { creditBytes: init.creditBytes } : {}),
      ...(init.paymentWaitMs ? { paymentWaitMs: init.paymentWaitMs } : {}),
      ...(init.dataDir ? { dataDir: join(init.dataDir, "relay") } : {}),
      ...(init.refuseChannel ? { refuseChannel: init.refuseChannel } : {}),
    })
    : undefined;
  const payer = new PayingClient({
    chain: init.chain,
    wallet: init.wallet,
    transactions: init.transactions,
    protocol: RELAY_PAY_PROTOCOL,
    onEvent: onPayerEvent,
    ...(init.batchBytes ? { batchBytes: init.batchBytes } : {}),
  });
  let started = false;
  let paidBytes = 0n, unpaidBytes = 0n, capped = false;
  const spent = () => payer.stats().spentWei;
  // Bytes are handed to the payer in receipts of RECEIPT_BYTES (a voucher carries at most 1,024), the rest
  // as the node stops.
  const pending = new Map<string, number>();
  const hand = (relay: string, bytes: number) => {
    paidBytes += BigInt(bytes);
    payer.received(relay, relayedCid(), bytes).catch((e) => {
      if (log) payLog("warn", "relay payment failed", { peer: relay, error: errorText(e) });
    });
  };
  return {
    desk,
    payer,
    onRelayed(relay, bytes) {
      if (!started) return;
      if (init.maxSpend !== undefined && spent() >= init.maxSpend) {
        unpaidBytes += BigInt(bytes);
        if (!capped && log) {
          payLog("warn", "relay spending cap reached: relayed bytes are no longer paid", {
            peer: relay,
            maxSpend: String(init.maxSpend),
          });
        }
        capped = true;
        return;
      }
      const due = (pending.get(relay) ?? 0) + bytes;
      if (due < RECEIPT_BYTES) pending.set(relay, due);
      else {
        pending.delete(relay);
        hand(relay, due);
      }
    },
    async start(libp2p) {
      if (desk && init.dataDir) {
        await Deno.mkdir(join(init.dataDir, "relay"), { recursive: true, mode: 0o700 });
      }
      await payer.start(libp2p);
      await desk?.start(libp2p);
      started = true;
    },
    async stop() {
      for (const [relay, due] of pending) hand(relay, due);
      pending.clear();
      started = false;
      await Promise.all([payer.stop(), desk?.stop()]);
    },
    summary() {
      const d = desk?.stats();
      const p = payer.stats();
      return {
        relayedBytes: d?.servedBytes ?? 0n,
        vouchers: d?.vouchers ?? 0,
        acceptedWei: d?.acceptedWei ?? 0n,
        redeemedWei: d?.redeemedWei ?? 0n,
        owedWei: d?.owedWei ?? 0n,
        paidBytes,
        spentWei: p.spentWei,
        unpaidBytes,
      };
    },
  };
}
