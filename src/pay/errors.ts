/**
 * Errors of the money layer. Voucher checks (done by an operator before it serves more bytes) throw one leaf class
 * per refused condition; chain calls that revert throw {@link ContractRevertError} carrying the contract's custom
 * error name and arguments, decoded by viem.
 *
 * @module
 */
import { BaseError, ContractFunctionRevertedError } from "viem";
import { MeshError } from "../errors.ts";

/** A voucher was refused. Status 402: the client has not paid for what it asks. */
export class VoucherError extends MeshError {
  override name = "VoucherError";
  constructor(code: string, message: string, options: { cause?: unknown } = {}) {
    super(code, message, { cause: options.cause });
  }
}

/** The voucher names another channel than the one it was presented for. */
export class VoucherChannelError extends VoucherError {
  override name = "VoucherChannelError";
  constructor(readonly expected: string, readonly actual: string) {
    super("voucher_channel", `Voucher is for channel "${actual}", not "${expected}"`);
  }
}

/** The voucher was not signed by the channel's payer (or for another chain or hub: the EIP-712 domain). */
export class VoucherSignerError extends VoucherError {
  override name = "VoucherSignerError";
  constructor(readonly expected: string, readonly actual: string) {
    super("voucher_signer", `Voucher is signed by "${actual}", not the payer "${expected}"`);
  }
}

/** The signature is not one the hub accepts: 65 bytes, low `s`, `v` 27 or 28 (whoever signed it). */
export class VoucherSignatureError extends VoucherError {
  override name = "VoucherSignatureError";
  constructor(readonly reason: string) {
    super("voucher_signature", `Voucher signature is refused by the hub: ${reason}`);
  }
}

/** The voucher's cumulative amount equals the last accepted one: it is a replay. */
export class VoucherReplayError extends VoucherError {
  override name = "VoucherReplayError";
  constructor(readonly cumulativeAmount: bigint) {
    super(
      "voucher_replay",
      `Voucher for cumulative amount "${cumulativeAmount}" was already accepted`,
    );
  }
}

/** The voucher's cumulative amount is below the last accepted one. */
export class VoucherAmountError extends VoucherError {
  override name = "VoucherAmountError";
  constructor(readonly cumulativeAmount: bigint, readonly accepted: bigint) {
    super(
      "voucher_amount",
      `Voucher amount "${cumulativeAmount}" is below the accepted "${accepted}"`,
    );
  }
}

/** The voucher's cumulative amount exceeds the channel's deposit, so it could never be redeemed. */
export class VoucherDepositError extends VoucherError {
  override name = "VoucherDepositError";
  constructor(readonly cumulativeAmount: bigint, readonly deposit: bigint) {
    super(
      "voucher_deposit",
      `Voucher amount "${cumulativeAmount}" exceeds the deposit "${deposit}"`,
    );
  }
}

/** A contract call reverted. `errorName` is the contract's custom error (e.g. `"InvalidSigner"`). */
export class ContractRevertError extends MeshError {
  override name = "ContractRevertError";
  constructor(
    readonly errorName: string,
    readonly args: readonly unknown[],
    options: { cause?: unknown } = {},
  ) {
    super("contract_revert", `Contract call reverted with "${errorName}"`, {
      cause: options.cause,
    });
  }
}

/**
 * Turns a viem error whose cause chain holds a decoded revert into a {@link ContractRevertError}; anything else
 * is returned unchanged. Reverts without data (or with an error the ABI does not know) get `errorName`
 * `"Unknown"`.
 */
export function toPayError(error: unknown): unknown {
  if (!(error instanceof BaseError)) return error;
  const revert = error.walk((e) => e instanceof ContractFunctionRevertedError);
  if (!(revert instanceof ContractFunctionRevertedError)) return error;
  const name = revert.data?.errorName ?? (revert.reason ? "Error" : "Unknown");
  const args = revert.data?.args ?? (revert.reason ? [revert.reason] : []);
  return new ContractRevertError(name, args, { cause: error });
}

/** The chain file is missing or invalid, or the RPC does not match it. Status 503: payments are unavailable. */
export class ChainConfigError extends MeshError {
  override name = "ChainConfigError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("chain_config", message, { cause: options.cause });
  }
}

/** The local anvil could not be found or started. */
export class AnvilError extends MeshError {
  override name = "AnvilError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("anvil", message, { cause: options.cause });
  }
}

/** The node's pay key could not be found, read or trusted (a key file readable by others, a malformed key). */
export class PayKeyError extends MeshError {
  override name = "PayKeyError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("pay_key", message, { cause: options.cause });
  }
}
