/** Shared plumbing of the chain actions: client types, receipts, error mapping. */
import {
  type Abi,
  type Account,
  type Chain,
  type Client,
  type ContractEventName,
  type Hash,
  parseEventLogs,
  type ParseEventLogsReturnType,
  type TransactionReceipt,
  type Transport,
} from "viem";
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

/** A mined transaction: its hash and the events of `abi` in its receipt. */
export interface Mined<A extends Abi> {
  hash: Hash;
  logs: ParseEventLogsReturnType<A, ContractEventName<A>, true>;
}

/** Checks `params.signal`, `send`s one transaction, waits for it to be mined and reads `abi`'s events from its
 * receipt. Callers wrap it in their error mapping ({@link guard} or their own). */
export async function sendMined<const A extends Abi>(
  client: PayClient,
  abi: A,
  params: ActionOptions,
  send: () => Promise<Hash>,
): Promise<Mined<A>> {
  params.signal?.throwIfAborted();
  const hash = await send();
  const receipt = await confirm(client, hash);
  return { hash, logs: parseEventLogs({ abi, logs: receipt.logs }) };
}
