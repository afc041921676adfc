/**
 * Deploys the Meshgate contracts from the committed artifacts (`deno task contracts` regenerates them).
 *
 * @module
 */
import { type Address, getAddress, type Hex } from "viem";
import { deployContract } from "viem/actions";
import artifacts from "./artifacts.json" with { type: "json" };
import { channelHubAbi, escrowAbi, operatorRegistryAbi } from "./abi.ts";
import { confirm, guard, type PayClient } from "./_tx.ts";

/** Addresses of the deployed contracts. */
export interface ChainContracts {
  channelHub: Address;
  escrow: Address;
  operatorRegistry: Address;
}

const abis = {
  ChannelHub: channelHubAbi,
  Escrow: escrowAbi,
  OperatorRegistry: operatorRegistryAbi,
} as const;

/** A contract of `artifacts.json`. */
export type ContractName = keyof typeof abis;

/** Deploys one contract (none takes constructor arguments) and returns its address. */
export function deployMeshContract(client: PayClient, name: ContractName): Promise<Address> {
  return guard(async () => {
    const hash = await deployContract(client, {
      abi: abis[name],
      bytecode: artifacts.contracts[name].bytecode as Hex,
    });
    const receipt = await confirm(client, hash);
    if (!receipt.contractAddress) throw new Error(`Deploying "${name}" created no contract`);
    return getAddress(receipt.contractAddress);
  });
}

/** Deploys ChannelHub, Escrow and OperatorRegistry from the client's account, in that order. */
export async function deployContracts(client: PayClient): Promise<ChainContracts> {
  const channelHub = await deployMeshContract(client, "ChannelHub");
  const escrow = await deployMeshContract(client, "Escrow");
  const operatorRegistry = await deployMeshContract(client, "OperatorRegistry");
  return { channelHub, escrow, operatorRegistry };
}
