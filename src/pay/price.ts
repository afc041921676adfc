/**
 * Whether a price can pay for its own settlement. The desk redeems a channel only once what it would collect
 * exceeds `redeemFactor` (10) times the gas cost of a redeem, so at a price too low a channel never reaches
 * that and nothing is ever redeemed: {@link checkPrice} says so at start, and what price works.
 *
 * @module
 */
import { createPublicClient, http } from "viem";
import { estimateFeesPerGas, getGasPrice } from "viem/actions";
import { type ChainConfig, meshChain } from "./chain.ts";
import { DEFAULT_BATCH_BYTES } from "./receipts.ts";

/** Gas of a channel's first `ChannelHub.redeem` (the dearest: it writes cold storage), measured on anvil at
 * 112 318 and rounded up; the desk itself measures every channel's real figure on its first redeem. */
export const REDEEM_GAS = 120_000n;

/** What a price earns against what redeeming costs. */
export interface PriceCheck {
  price: bigint;
  /** Max fee per gas a transaction would offer now, and the wei a redeem costs at it. */
  feePerGas: bigint;
  redeemCostWei: bigint;
  /** Bytes one peer must take before its channel is worth redeeming (`factor` x the cost). */
  bytesPerRedeem: bigint;
  /** Bytes a client's channel deposit pays for (its default: 64 vouchers of `batchBytes`). */
  depositBytes: bigint;
  /** True when one deposit's worth of service is worth a redeem. */
  worthIt: boolean;
  /** The lowest price at which it is, rounded up to two significant digits. */
  minPrice: bigint;
}

/** Checks `price` (wei per byte) against the current fees of `chain`. */
export async function checkPrice(
  chain: Pick<ChainConfig, "chainId" | "rpc">,
  price: bigint,
  options: { redeemFactor?: number; depositBytes?: number } = {},
): Promise<PriceCheck> {
  const client = createPublicClient({ chain: meshChain(chain), transport: http(chain.rpc) });
  let feePerGas: bigint;
  try {
    feePerGas = (await estimateFeesPerGas(client)).maxFeePerGas;
  } catch {
    feePerGas = await getGasPrice(client);
  }
  const factor = BigInt(options.redeemFactor ?? 10);
  const depositBytes = BigInt(options.depositBytes ?? 64 * DEFAULT_BATCH_BYTES);
  const redeemCostWei = REDEEM_GAS * feePerGas;
  const threshold = factor * redeemCostWei;
  const bytesPerRedeem = price > 0n ? threshold / price + 1n : -1n;
  return {
    price,
    feePerGas,
    redeemCostWei,
    bytesPerRedeem,
    depositBytes,
    worthIt: price > 0n && bytesPerRedeem <= depositBytes,
    minPrice: roundUp(threshold / depositBytes + 1n),
  };
}

/** Rounds up to two significant digits: 3 141 592 -> 3 200 000. */
function roundUp(n: bigint): bigint {
  let unit = 1n;
  while (n / unit >= 100n) unit *= 10n;
  return ((n + unit - 1n) / unit) * unit;
}

/**
 * The start-up warning for a price that {@link checkPrice} finds never worth redeeming: why, and what price
 * works; undefined when the price is fine, free (0), or the chain cannot be asked.
 */
export async function lowPriceWarning(
  chain: Pick<ChainConfig, "chainId" | "rpc">,
  price: bigint,
): Promise<Record<string, string> | undefined> {
  if (price === 0n) return undefined;
  const check = await checkPrice(chain, price).catch(() => undefined);
  if (check === undefined || check.worthIt) return undefined;
  return {
    msg:
      `price ${price} wei/byte is too low ever to be worth redeeming: a redeem costs ~${check.redeemCostWei} ` +
      `wei and is made once a channel owes 10x that, after ${
        bytes(check.bytesPerRedeem)
      } served to one peer, but a client's deposit covers ${bytes(check.depositBytes)}; ` +
      `use --price-served ${check.minPrice << 30n} (wei per GiB) or more`,
    price: String(price),
    redeemCostWei: String(check.redeemCostWei),
    feePerGas: String(check.feePerGas),
    minPrice: String(check.minPrice),
  };
}

function bytes(n: bigint): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  let v = Number(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
