/**
 * Operator registry actions over `OperatorRegistry`: an operator announces its payout address and the hash of
 * its current signed offer.
 *
 * @module
 */
import { type Address, type Hash, type Hex, zeroAddress } from "viem";
import { readContract, writeContract } from "viem/actions";
import { operatorRegistryAbi } from "./abi.ts";
import { type ActionOptions, confirm, guard, type PayClient, type ReadClient } from "./_tx.ts";

/** An operator's announcement. */
export interface OperatorAnnouncement {
  payout: Address;
  offerHash: Hex;
  /** Unix seconds of the last announcement. */
  updatedAt: bigint;
}

/** Parameters of {@link announceOperator}. */
export interface AnnounceOperatorParameters extends ActionOptions {
  /** The OperatorRegistry address. */
  address: Address;
  payout: Address;
  /** 32-byte hash of the signed offer. */
  offerHash: Hex;
}

/** Announces (or updates) the client's account as an operator. */
export function announceOperator(
  client: PayClient,
  params: AnnounceOperatorParameters,
): Promise<{ hash: Hash }> {
  return guard(async () => {
    params.signal?.throwIfAborted();
    const hash = await writeContract(client, {
      address: params.address,
      abi: operatorRegistryAbi,
      functionName: "announce",
      args: [params.payout, params.offerHash],
    });
    await confirm(client, hash);
    return { hash };
  });
}

/** Removes the client's announcement. */
export function withdrawOperator(
  client: PayClient,
  params: { address: Address } & ActionOptions,
): Promise<{ hash: Hash }> {
  return guard(async () => {
    params.signal?.throwIfAborted();
    const hash = await writeContract(client, {
      address: params.address,
      abi: operatorRegistryAbi,
      functionName: "withdraw",
    });
    await confirm(client, hash);
    return { hash };
  });
}

/** The announcement of `operator`, or undefined if it has none. */
export function getOperator(
  client: ReadClient,
  params: { address: Address; operator: Address },
): Promise<OperatorAnnouncement | undefined> {
  return guard(async () => {
    const o = await readContract(client, {
      address: params.address,
      abi: operatorRegistryAbi,
      functionName: "getOperator",
      args: [params.operator],
    });
    if (o.payout === zeroAddress) return undefined;
    return { payout: o.payout, offerHash: o.offerHash, updatedAt: o.updatedAt };
  });
}
