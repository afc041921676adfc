/**
 * Channel actions over `ChannelHub`, viem style: `action(client, params)`. Writes wait for the transaction to be
 * mined and return what its event reported; a revert throws `ContractRevertError` with the custom error name.
 *
 * @module
 */
import type { Address, Hash, Hex } from "viem";
import { readContract, writeContract } from "viem/actions";
import { channelHubAbi } from "./abi.ts";
import {
  type ActionOptions,
  guard,
  type Mined,
  type PayClient,
  type ReadClient,
  sendMined,
} from "./_tx.ts";
import { type Receipt, receiptArg } from "./receipts.ts";
import type { Voucher } from "./voucher.ts";

/** Life of a channel, as `ChannelHub.Status`. */
export type ChannelStatus = "none" | "open" | "closing" | "closed";
const statuses: readonly ChannelStatus[] = ["none", "open", "closing", "closed"];

/** A channel's on-chain state. */
export interface ChannelState {
  payer: Address;
  payee: Address;
  status: ChannelStatus;
  /** Seconds between `startClose` and the earliest `finalize`. */
  challengePeriod: bigint;
  /** Unix seconds from which `finalize` is allowed (0n until `startClose`). */
  closesAt: bigint;
  deposit: bigint;
  /** Cumulative amount of the last redeemed voucher. */
  redeemed: bigint;
  /** Receipts root and count of the last redeemed voucher. */
  receiptsRoot: Hex;
  receiptCount: bigint;
}

/** Parameters of {@link openChannel}. */
export interface OpenChannelParameters extends ActionOptions {
  /** The ChannelHub address. */
  address: Address;
  payee: Address;
  /** Wei deposited now (may be 0n and topped up later). */
  deposit: bigint;
  /** Seconds, 1 to 30 days. */
  challengePeriod: bigint;
}
/** Result of {@link openChannel}. */
export interface OpenChannelReturnType {
  channel: Hex;
  hash: Hash;
}

/** Opens a channel from the client's account to `payee`. */
export function openChannel(
  client: PayClient,
  params: OpenChannelParameters,
): Promise<OpenChannelReturnType> {
  return transact(client, params, () =>
    writeContract(client, {
      address: params.address,
      abi: channelHubAbi,
      functionName: "open",
      args: [params.payee, params.challengePeriod],
      value: params.deposit,
    })).then((tx) => ({ channel: eventArgs(tx, "ChannelOpened").channel, hash: tx.hash }));
}

/** Parameters of {@link topUp}. */
export interface TopUpParameters extends ActionOptions {
  address: Address;
  channel: Hex;
  amount: bigint;
}

/** Adds `amount` wei to an open channel; returns the new deposit. */
export function topUp(
  client: PayClient,
  params: TopUpParameters,
): Promise<{ deposit: bigint; hash: Hash }> {
  return transact(client, params, () =>
    writeContract(client, {
      address: params.address,
      abi: channelHubAbi,
      functionName: "topUp",
      args: [params.channel],
      value: params.amount,
    })).then((tx) => ({ deposit: eventArgs(tx, "ChannelToppedUp").deposit, hash: tx.hash }));
}

/** Parameters of {@link redeemVoucher}. */
export interface RedeemVoucherParameters extends ActionOptions {
  address: Address;
  voucher: Voucher;
  signature: Hex;
}

/** The payee cashes `voucher`; returns what was paid (cumulative amount minus the previous redeem). */
export function redeemVoucher(
  client: PayClient,
  params: RedeemVoucherParameters,
): Promise<{ paid: bigint; hash: Hash }> {
  return transact(client, params, () =>
    writeContract(client, {
      address: params.address,
      abi: channelHubAbi,
      functionName: "redeem",
      args: [params.voucher, params.signature],
    })).then((tx) => ({ paid: eventArgs(tx, "VoucherRedeemed").paid, hash: tx.hash }));
}

/** Parameters of {@link startClose} and {@link finalizeChannel}. */
export interface ChannelParameters extends ActionOptions {
  address: Address;
  channel: Hex;
}

/** The payer starts closing; returns the time from which `finalizeChannel` succeeds. */
export function startClose(
  client: PayClient,
  params: ChannelParameters,
): Promise<{ closesAt: bigint; hash: Hash }> {
  return transact(client, params, () =>
    writeContract(client, {
      address: params.address,
      abi: channelHubAbi,
      functionName: "startClose",
      args: [params.channel],
    })).then((tx) => ({ closesAt: eventArgs(tx, "ChannelClosing").closesAt, hash: tx.hash }));
}

/** Ends a closing channel after its challenge period; returns what went back to the payer. */
export function finalizeChannel(
  client: PayClient,
  params: ChannelParameters,
): Promise<{ refunded: bigint; hash: Hash }> {
  return transact(client, params, () =>
    writeContract(client, {
      address: params.address,
      abi: channelHubAbi,
      functionName: "finalize",
      args: [params.channel],
    })).then((tx) => ({ refunded: eventArgs(tx, "ChannelFinalized").refunded, hash: tx.hash }));
}

type HubEvent = Mined<typeof channelHubAbi>["logs"][number];

/** One hub transaction, mined; a revert throws (see `guard`). */
function transact(
  client: PayClient,
  params: ActionOptions,
  send: () => Promise<Hash>,
): Promise<Mined<typeof channelHubAbi>> {
  return guard(() => sendMined(client, channelHubAbi, params, send));
}

/** Each hub event's arguments, by its name. */
type EventArgs = { [E in HubEvent as E["eventName"]]: E["args"] };

/** The arguments of the first event of `tx` named `name`. */
function eventArgs<N extends keyof EventArgs>(
  tx: Mined<typeof channelHubAbi>,
  name: N,
): EventArgs[N] {
  return tx.logs.find((l) => l.eventName === name)!.args as EventArgs[N];
}

/** Reads a channel; `status` is `"none"` for an id that was never opened. */
export function getChannel(
  client: ReadClient,
  params: { address: Address; channel: Hex },
): Promise<ChannelState> {
  return guard(async () => {
    const c = await readContract(client, {
      address: params.address,
      abi: channelHubAbi,
      functionName: "getChannel",
      args: [params.channel],
    });
    return {
      payer: c.payer,
      payee: c.payee,
      status: statuses[c.status] ?? "none",
      challengePeriod: c.challengePeriod,
      closesAt: c.closesAt,
      deposit: c.deposit,
      redeemed: c.redeemed,
      receiptsRoot: c.receiptsRoot,
      receiptCount: c.receiptCount,
    };
  });
}

/** Parameters of {@link verifyReceipt}. */
export interface VerifyReceiptParameters {
  address: Address;
  channel: Hex;
  receipt: Receipt;
  /** Siblings from the leaf up (`ReceiptBatch.proof(index)`). */
  proof: readonly Hex[];
}

/** Asks the hub whether `receipt` is in the batch of the last voucher redeemed on `channel`. */
export function verifyReceipt(
  client: ReadClient,
  params: VerifyReceiptParameters,
): Promise<boolean> {
  return guard(() =>
    readContract(client, {
      address: params.address,
      abi: channelHubAbi,
      functionName: "verifyReceipt",
      args: [params.channel, receiptArg(params.receipt), params.proof],
    })
  );
}
