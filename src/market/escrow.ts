/**
 * Deals through `contracts/Escrow.sol`, viem style: `action(client, params)`. The buyer funds a deal for the
 * accepted quote (its hash is the deal's `terms`), the seller confirms, the buyer releases on delivery; every
 * state has a timeout exit one party takes alone (see the contract's header). Settling only credits balances:
 * each side {@link withdrawEscrow}s what it is owed.
 *
 * Writes wait for the transaction to be mined and return what its event reported. A revert throws
 * {@link EscrowError}: a `MeshError` whose code says what kind of refusal it was and whose `errorName` is the
 * contract's custom error.
 *
 * @module
 */
import {
  type Address,
  type Client,
  encodeAbiParameters,
  type Hash,
  type Hex,
  keccak256,
  type Log,
  parseEventLogs,
  zeroAddress,
} from "viem";
import { getContractEvents, readContract, watchContractEvent, writeContract } from "viem/actions";
import { escrowAbi } from "../pay/abi.ts";
import {
  type ActionOptions,
  guard,
  type Mined as TxMined,
  type PayClient,
  type ReadClient,
  sendMined,
} from "../pay/_tx.ts";
import { ContractRevertError } from "../pay/errors.ts";
import { MeshError } from "../errors.ts";

/** Life of a deal, as `Escrow.Status`. */
export type DealStatus =
  | "none"
  | "funded"
  | "confirmed"
  | "disputed"
  | "released"
  | "refunded"
  | "resolved";
const statuses: readonly DealStatus[] = [
  "none",
  "funded",
  "confirmed",
  "disputed",
  "released",
  "refunded",
  "resolved",
];

/** A deal's on-chain state. Times are unix seconds of the chain. */
export interface DealState {
  buyer: Address;
  seller: Address;
  /** `zeroAddress` when the deal has none. */
  arbiter: Address;
  amount: bigint;
  /** Hash of the agreed terms (the accepted quote). */
  terms: Hex;
  status: DealStatus;
  /** The seller confirms before it; from it on an unconfirmed deal may be refunded by the buyer. */
  confirmBy: bigint;
  deliveryWindow: bigint;
  disputeWindow: bigint;
  /** From it on the seller may claim (0n until confirmed). */
  releaseAt: bigint;
  /** The arbiter rules before it, the default split applies from it on (0n until disputed). */
  resolveBy: bigint;
}

/**
 * Codes of refused escrow calls:
 * - `escrow_invalid`: bad parameters (seller, arbiter, deadline, window, amount, split);
 * - `deal_not_found`: no deal with that id;
 * - `deal_exists`: this buyer already funded these terms;
 * - `deal_forbidden`: the caller has no such role in the deal (a stranger, the wrong side);
 * - `deal_state`: the deal is not in a state that allows it (settled, not confirmed, disputed…);
 * - `deal_too_early` / `deal_too_late`: the call's time has not come, or has passed;
 * - `escrow_nothing`: nothing to withdraw.
 */
export type EscrowErrorCode =
  | "escrow_invalid"
  | "deal_not_found"
  | "deal_exists"
  | "deal_forbidden"
  | "deal_state"
  | "deal_too_early"
  | "deal_too_late"
  | "escrow_nothing"
  | "escrow_revert";

const CODES: Record<string, EscrowErrorCode> = {
  InvalidSeller: "escrow_invalid",
  InvalidArbiter: "escrow_invalid",
  InvalidDeadline: "escrow_invalid",
  InvalidWindow: "escrow_invalid",
  InvalidSplit: "escrow_invalid",
  ZeroAmount: "escrow_invalid",
  DealNotFound: "deal_not_found",
  DealExists: "deal_exists",
  NotBuyer: "deal_forbidden",
  NotSeller: "deal_forbidden",
  NotArbiter: "deal_forbidden",
  NotParty: "deal_forbidden",
  WrongStatus: "deal_state",
  TooEarly: "deal_too_early",
  TooLate: "deal_too_late",
  NothingToWithdraw: "escrow_nothing",
};

/** An escrow call the contract refused. `errorName` and `args` are its custom error's. */
export class EscrowError extends MeshError {
  override name = "EscrowError";
  constructor(
    code: EscrowErrorCode,
    readonly errorName: string,
    readonly args: readonly unknown[],
    options: { cause?: unknown } = {},
  ) {
    super(code, `Escrow refused the call: ${explain(errorName, args)}`, options);
  }
}

function explain(errorName: string, args: readonly unknown[]): string {
  const at = (t: unknown) => new Date(Number(t) * 1000).toISOString();
  switch (errorName) {
    case "WrongStatus":
      return `the deal is ${statuses[Number(args[1])] ?? "in an unknown state"}`;
    case "TooEarly":
      return `not before ${at(args[0])}`;
    case "TooLate":
      return `the time for it ended at ${at(args[0])}`;
    case "NotBuyer":
    case "NotSeller":
    case "NotArbiter":
    case "NotParty":
      return `${args[0]} is not the deal's ${
        errorName.slice(3).toLowerCase().replace("party", "buyer or seller")
      }`;
    default:
      return args.length ? `${errorName}(${args.join(", ")})` : errorName;
  }
}

/** Runs a chain call, turning the contract's reverts into {@link EscrowError}s. */
async function escrowCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await guard(fn);
  } catch (e) {
    if (e instanceof ContractRevertError) {
      throw new EscrowError(CODES[e.errorName] ?? "escrow_revert", e.errorName, e.args, {
        cause: e,
      });
    }
    throw e;
  }
}

/** Parameters of {@link fundEscrow}. */
export interface FundEscrowParameters extends ActionOptions {
  /** The Escrow address. */
  address: Address;
  seller: Address;
  /** Rules on disputes; omit for none (a dispute then ends in the even split). */
  arbiter?: Address;
  /** Wei locked. */
  amount: bigint;
  /** 32-byte hash of the agreed terms (the accepted quote): one deal per buyer and terms. */
  terms: Hex;
  /** Unix seconds by which the seller must confirm. */
  confirmBy: bigint;
  /** Seconds from confirmation in which the buyer may dispute; then the seller may claim. */
  deliveryWindow: bigint;
  /** Seconds from a dispute for the arbiter to rule; then the default split. */
  disputeWindow: bigint;
}

/** The id `buyer` gets for funding `terms` (`Escrow.dealId`), computed locally. */
export function dealIdOf(buyer: Address, terms: Hex): Hex {
  return keccak256(encodeAbiParameters([{ type: "address" }, { type: "bytes32" }], [buyer, terms]));
}

/** The client's account funds a deal; returns its id. */
export function fundEscrow(
  client: PayClient,
  params: FundEscrowParameters,
): Promise<{ deal: Hex; hash: Hash }> {
  for (const w of [params.deliveryWindow, params.disputeWindow]) {
    if (w < 0n || w >= 2n ** 32n) {
      throw new RangeError(`A deal window is a uint32 of seconds, got ${w}`);
    }
  }
  return transact(client, params, () =>
    writeContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName: "fund",
      args: [
        params.terms,
        params.seller,
        params.arbiter ?? zeroAddress,
        params.confirmBy,
        Number(params.deliveryWindow),
        Number(params.disputeWindow),
      ],
      value: params.amount,
    })).then((tx) => ({ deal: eventArgs(tx, "DealFunded").deal, hash: tx.hash }));
}

/** A mined escrow transaction. */
type Mined = TxMined<typeof escrowAbi>;

/** One escrow transaction, mined; a revert is an {@link EscrowError}. */
function transact(
  client: PayClient,
  params: ActionOptions,
  send: () => Promise<Hash>,
): Promise<Mined> {
  return escrowCall(() => sendMined(client, escrowAbi, params, send));
}

/** Each escrow event's arguments, by its name. */
type EventArgs = { [E in EscrowEvent as E["eventName"]]: E["args"] };

/** The arguments of the first event of `tx` with one of `names`. */
function eventArgs<N extends keyof EventArgs>(tx: Mined, ...names: N[]): EventArgs[N] {
  return tx.logs.find((l) => (names as string[]).includes(l.eventName))!.args as EventArgs[N];
}

/** Parameters of the calls that name one deal. */
export interface DealParameters extends ActionOptions {
  address: Address;
  deal: Hex;
}

type DealCall = "confirm" | "release" | "claim" | "refund" | "dispute" | "settle";

/** Sends a one-deal call. */
function dealCall(
  client: PayClient,
  params: DealParameters,
  functionName: DealCall,
): Promise<Mined> {
  return transact(client, params, () =>
    writeContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName,
      args: [params.deal],
    }));
}

/** The seller takes the deal; returns the time from which it may claim. */
export async function confirmDeal(
  client: PayClient,
  params: DealParameters,
): Promise<{ releaseAt: bigint; hash: Hash }> {
  const tx = await dealCall(client, params, "confirm");
  return { releaseAt: eventArgs(tx, "DealConfirmed").releaseAt, hash: tx.hash };
}

/** Amount credited by a release or a refund. */
export interface SettledReturnType {
  amount: bigint;
  hash: Hash;
}

async function settled(
  client: PayClient,
  params: DealParameters,
  functionName: "release" | "claim" | "refund",
): Promise<SettledReturnType> {
  const tx = await dealCall(client, params, functionName);
  return { amount: eventArgs(tx, "DealReleased", "DealRefunded").amount, hash: tx.hash };
}

/** The buyer pays the seller in full (from any open state). */
export function releaseDeal(client: PayClient, params: DealParameters): Promise<SettledReturnType> {
  return settled(client, params, "release");
}

/** The seller takes the payment after the delivery window, if the buyer did not dispute. */
export function claimDeal(client: PayClient, params: DealParameters): Promise<SettledReturnType> {
  return settled(client, params, "claim");
}

/** Back to the buyer: by the seller at any time, by the buyer once the seller missed `confirmBy`. */
export function refundDeal(client: PayClient, params: DealParameters): Promise<SettledReturnType> {
  return settled(client, params, "refund");
}

/** The buyer contests a confirmed deal within the delivery window; returns when the default applies. */
export async function disputeDeal(
  client: PayClient,
  params: DealParameters,
): Promise<{ resolveBy: bigint; hash: Hash }> {
  const tx = await dealCall(client, params, "dispute");
  return { resolveBy: eventArgs(tx, "DealDisputed").resolveBy, hash: tx.hash };
}

/** The split of a resolved dispute. */
export interface ResolvedReturnType {
  toBuyer: bigint;
  toSeller: bigint;
  hash: Hash;
}

function resolved(tx: Mined): ResolvedReturnType {
  const { toBuyer, toSeller } = eventArgs(tx, "DealResolved");
  return { toBuyer, toSeller, hash: tx.hash };
}

/** The arbiter rules: `toBuyer` wei back to the buyer, the rest to the seller. */
export async function resolveDeal(
  client: PayClient,
  params: DealParameters & { toBuyer: bigint },
): Promise<ResolvedReturnType> {
  return resolved(
    await transact(client, params, () =>
      writeContract(client, {
        address: params.address,
        abi: escrowAbi,
        functionName: "resolve",
        args: [params.deal, params.toBuyer],
      })),
  );
}

/** The buyer or the seller takes the default ruling of an unresolved dispute (half each). */
export async function settleDispute(
  client: PayClient,
  params: DealParameters,
): Promise<ResolvedReturnType> {
  return resolved(await dealCall(client, params, "settle"));
}

/** Sends the client's account everything credited to it; returns how much. */
export async function withdrawEscrow(
  client: PayClient,
  params: { address: Address } & ActionOptions,
): Promise<{ amount: bigint; hash: Hash }> {
  const tx = await transact(
    client,
    params,
    () =>
      writeContract(client, { address: params.address, abi: escrowAbi, functionName: "withdraw" }),
  );
  return { amount: eventArgs(tx, "Withdrawn").amount, hash: tx.hash };
}

/** Reads a deal; `status` is `"none"` for an id that was never funded. */
export function getDeal(
  client: ReadClient,
  params: { address: Address; deal: Hex },
): Promise<DealState> {
  return escrowCall(async () => {
    const d = await readContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName: "getDeal",
      args: [params.deal],
    });
    return {
      buyer: d.buyer,
      seller: d.seller,
      arbiter: d.arbiter,
      amount: d.amount,
      terms: d.terms,
      status: statuses[d.status] ?? "none",
      confirmBy: d.confirmBy,
      deliveryWindow: BigInt(d.deliveryWindow),
      disputeWindow: BigInt(d.disputeWindow),
      releaseAt: d.releaseAt,
      resolveBy: d.resolveBy,
    };
  });
}

/** Wei credited to `account` and not withdrawn. */
export function escrowBalance(
  client: ReadClient,
  params: { address: Address; account: Address },
): Promise<bigint> {
  return escrowCall(() =>
    readContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName: "balanceOf",
      args: [params.account],
    })
  );
}

/** Deals `account` settled (as buyer or seller) after the seller confirmed: its trading history. */
export function settledDeals(
  client: ReadClient,
  params: { address: Address; account: Address },
): Promise<bigint> {
  return escrowCall(() =>
    readContract(client, {
      address: params.address,
      abi: escrowAbi,
      functionName: "settledDeals",
      args: [params.account],
    })
  );
}

/** One event of the contract, decoded. */
export type EscrowEvent = ReturnType<typeof parseEventLogs<typeof escrowAbi>>[number];

/** The events of `deal` (or of every deal) from `fromBlock` to the head, in order. `fromBlock` defaults to
 * the earliest: on a public chain pass the escrow's deployment block (RPCs cap the range of one query). */
export function getDealEvents(
  client: Client,
  params: { address: Address; deal?: Hex; fromBlock?: bigint },
): Promise<EscrowEvent[]> {
  return escrowCall(async () => {
    const logs = await getContractEvents(client, {
      address: params.address,
      abi: escrowAbi,
      fromBlock: params.fromBlock ?? 0n,
      strict: true,
    });
    const all = logs as unknown as EscrowEvent[];
    return params.deal === undefined ? all : all.filter((l) => dealOf(l) === params.deal);
  });
}

function dealOf(event: EscrowEvent): Hex | undefined {
  return (event.args as { deal?: Hex }).deal;
}

/** Parameters of {@link watchDeals}. */
export interface WatchDealsParameters {
  address: Address;
  /** Only this deal's events (default: every deal's and every withdrawal). */
  deal?: Hex;
  onEvents: (events: EscrowEvent[]) => void;
  onError?: (error: Error) => void;
  /** Poll period in ms. Default: the client's. */
  pollingInterval?: number;
}

/** Follows the contract's events (polling `eth_getLogs`); returns a function that stops watching. */
export function watchDeals(client: Client, params: WatchDealsParameters): () => void {
  return watchContractEvent(client, {
    address: params.address,
    abi: escrowAbi,
    poll: true,
    pollingInterval: params.pollingInterval,
    strict: true,
    onError: params.onError,
    onLogs: (logs: Log[]) => {
      const events = logs as unknown as EscrowEvent[];
      const mine = params.deal === undefined
        ? events
        : events.filter((l) => dealOf(l) === params.deal);
      if (mine.length) params.onEvents(mine);
    },
  });
}
