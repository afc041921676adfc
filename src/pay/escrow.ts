/**
 * Escrow actions over `Escrow`: the buyer funds a deal, then releases it to the seller; from the deadline on
 * (or at any time by the seller) it can be refunded to the buyer.
 *
 * @module
 */
import { type Address, type Hash, type Hex, parseEventLogs } from "viem";
import { readContract, writeContract } from "viem/actions";
import { escrowAbi } from "./abi.ts";
import { type ActionOptions, confirm, guard, type PayClient, type ReadClient } from "./_tx.ts";

/** Life of a deal, as `Escrow.Status`. */
export type DealStatus = "none" | "funded" | "released" | "refunded";
const statuses: readonly DealStatus[] = ["none", "funded", "released", "refunded"];

/** A deal's on-chain state. */
export interface DealState {
  buyer: Address;
  seller: Address;
  amount: bigint;
  /** Hash of the agreed terms (the accepted quote). */
  terms: Hex;
  /** Unix seconds from which anyone may refund. */
  deadline: bigint;
  status: DealStatus;
}

/** Parameters of {@link fundEscrow}. */
export interface FundEscrowParameters extends ActionOptions {
  /** The Escrow address. */
  address: Address;
  seller: Address;
  /** Wei locked. */
  amount: bigint;
  /** 32-byte hash of the agreed terms. */
  terms: Hex;
  /** Unix seconds, in the future. */
  deadline: bigint;
}

/** The client's account funds a deal; returns its id. */
export function fundEscrow(
  client: PayClient,
  params: FundEscrowParameters,
): Promise<{ deal: Hex; hash: Hash }> {
  return guard(async () => {
    params.signal?.throwIfAborted();
    const hash = await writeContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName: "fund",
      args: [params.seller, params.terms, params.deadline],
      value: params.amount,
    });
    const receipt = await confirm(client, hash);
    const [log] = parseEventLogs({ abi: escrowAbi, eventName: "DealFunded", logs: receipt.logs });
    return { deal: log!.args.deal, hash };
  });
}

/** Parameters of {@link releaseEscrow} and {@link refundEscrow}. */
export interface DealParameters extends ActionOptions {
  address: Address;
  deal: Hex;
}

/** The buyer pays the seller. */
export function releaseEscrow(
  client: PayClient,
  params: DealParameters,
): Promise<{ amount: bigint; hash: Hash }> {
  return closeDeal(client, params, "release", "DealReleased");
}

/** Returns the deposit to the buyer (after the deadline, or at any time when the seller calls). */
export function refundEscrow(
  client: PayClient,
  params: DealParameters,
): Promise<{ amount: bigint; hash: Hash }> {
  return closeDeal(client, params, "refund", "DealRefunded");
}

/** Sends `release` or `refund` and reads the amount moved from the event it emits. */
function closeDeal(
  client: PayClient,
  params: DealParameters,
  functionName: "release" | "refund",
  eventName: "DealReleased" | "DealRefunded",
): Promise<{ amount: bigint; hash: Hash }> {
  return guard(async () => {
    params.signal?.throwIfAborted();
    const hash = await writeContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName,
      args: [params.deal],
    });
    const receipt = await confirm(client, hash);
    const [log] = parseEventLogs({ abi: escrowAbi, eventName, logs: receipt.logs });
    return { amount: log!.args.amount, hash };
  });
}

/** Reads a deal; `status` is `"none"` for an id that was never funded. */
export function getDeal(
  client: ReadClient,
  params: { address: Address; deal: Hex },
): Promise<DealState> {
  return guard(async () => {
    const d = await readContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName: "getDeal",
      args: [params.deal],
    });
    return {
      buyer: d.buyer,
      seller: d.seller,
      amount: d.amount,
      terms: d.terms,
      deadline: d.deadline,
      status: statuses[d.status] ?? "none",
    };
  });
}
