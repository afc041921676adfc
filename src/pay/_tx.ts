/** Shared plumbing of the chain actions: client types, receipts, error mapping. */
import type { Account, Chain, Client, Hash, TransactionReceipt, Transport } from "viem";
import { waitForTransactionReceipt } from "viem/actions";
import { ContractRevertError, toPayError } from "./errors.ts";

/** A viem client that can send transactions: it has a chain and an account (e.g. a wallet client). */
export type PayClient = Client<Transport, Chain, Account>;
/** A viem client that can read (any public, wallet or test client). */
export type ReadClient = Client<Transport, Chain | undefined>;

/** Options every action takes last. */
export interface ActionOptions {
  /** Checked before the transaction is sent; aborting after that does not undo it. */
  signal?: AbortSignal;
}

/** Runs `fn`, turning decoded contract reverts into {@link ContractRevertError}. */
export async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toPayError(e);
  }
}

/** Waits for `hash` to be mined; a reverted transaction becomes a {@link ContractRevertError}. */
export async function confirm(client: ReadClient, hash: Hash): Promise<TransactionReceipt> {
  const receipt = await waitForTransactionReceipt(client, { hash });
  if (receipt.status !== "success") throw new ContractRevertError("Unknown", [hash]);
  return receipt;
}
