/**
 * Vouchers: the EIP-712 message a client signs to pay an operator on a channel. The amount is cumulative (the
 * total owed on the channel so far), so only the latest voucher matters and a lost one costs nothing; the
 * receipts root and count name the batch of deliveries it pays for (see `receipts.ts`).
 *
 * @module
 */
import {
  type Address,
  getAddress,
  hashTypedData,
  type Hex,
  isAddressEqual,
  isHex,
  type LocalAccount,
  recoverTypedDataAddress,
  type TypedDataDomain,
} from "viem";
import {
  VoucherAmountError,
  VoucherChannelError,
  VoucherDepositError,
  VoucherReplayError,
  VoucherSignatureError,
  VoucherSignerError,
} from "./errors.ts";

/** One voucher. Mirrors `ChannelHub.Voucher`. */
export interface Voucher {
  /** The channel id (bytes32) returned by `openChannel`. */
  channel: Hex;
  /** Total owed on the channel so far, in wei. Only grows. */
  cumulativeAmount: bigint;
  /** Merkle root of the receipts this voucher pays for (`ReceiptBatch.root()`). */
  receiptsRoot: Hex;
  /** Number of receipts in that batch (uint64). */
  receiptCount: bigint;
}

/** EIP-712 domain name of `ChannelHub`. */
export const CHANNEL_HUB_NAME = "Meshgate ChannelHub";
/** EIP-712 domain version of `ChannelHub`. */
export const CHANNEL_HUB_VERSION = "1";

/** EIP-712 types of a voucher, as `ChannelHub.VOUCHER_TYPEHASH` spells them. */
export const voucherTypes = {
  Voucher: [
    { name: "channel", type: "bytes32" },
    { name: "cumulativeAmount", type: "uint256" },
    { name: "receiptsRoot", type: "bytes32" },
    { name: "receiptCount", type: "uint64" },
  ],
} as const;

/** The EIP-712 domain of the hub at `verifyingContract` on chain `chainId`: what binds a voucher to one hub. */
export function channelHubDomain(chainId: number, verifyingContract: Address): TypedDataDomain {
  return { name: CHANNEL_HUB_NAME, version: CHANNEL_HUB_VERSION, chainId, verifyingContract };
}

const UINT64_MAX = (1n << 64n) - 1n;
const UINT256_MAX = (1n << 256n) - 1n;

function checkVoucher(voucher: Voucher): void {
  if (!isHex(voucher.channel) || voucher.channel.length !== 66) {
    throw new TypeError(`Voucher channel must be 32 bytes of hex, got "${voucher.channel}"`);
  }
  if (!isHex(voucher.receiptsRoot) || voucher.receiptsRoot.length !== 66) {
    throw new TypeError(`Receipts root must be 32 bytes of hex, got "${voucher.receiptsRoot}"`);
  }
  if (voucher.cumulativeAmount < 0n || voucher.cumulativeAmount > UINT256_MAX) {
    throw new RangeError(`Cumulative amount "${voucher.cumulativeAmount}" is not a uint256`);
  }
  if (voucher.receiptCount < 0n || voucher.receiptCount > UINT64_MAX) {
    throw new RangeError(`Receipt count "${voucher.receiptCount}" is not a uint64`);
  }
}

/** The EIP-712 digest of `voucher` under `domain`; equals `ChannelHub.hashVoucher` on that hub. */
export function hashVoucher(domain: TypedDataDomain, voucher: Voucher): Hex {
  checkVoucher(voucher);
  return hashTypedData({ domain, types: voucherTypes, primaryType: "Voucher", message: voucher });
}

/** Signs `voucher` for the hub of `domain` with the payer's key. Returns the 65-byte signature. */
export async function signVoucher(
  account: Pick<LocalAccount, "signTypedData">,
  domain: TypedDataDomain,
  voucher: Voucher,
): Promise<Hex> {
  checkVoucher(voucher);
  return await account.signTypedData({
    domain,
    types: voucherTypes,
    primaryType: "Voucher",
    message: voucher,
  });
}

/** secp256k1's group order, and half of it: `ChannelHub._HALF_N`. */
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const HALF_N = SECP256K1_N >> 1n;

/**
 * Throws {@link VoucherSignatureError} unless `signature` is one `ChannelHub._recover` accepts: exactly 65 bytes
 * `r || s || v` with `0 < r < n`, `0 < s <= n/2` (low s) and `v` 27 or 28. viem alone also recovers from `v` 0/1
 * and from the high-s twin of a signature; the hub reverts on both, so the desk must refuse them too.
 */
export function checkSignature(signature: Hex): void {
  if (typeof signature !== "string" || !isHex(signature) || signature.length !== 132) {
    throw new VoucherSignatureError("it is not 65 bytes of hex");
  }
  const r = BigInt(signature.slice(0, 66));
  const s = BigInt("0x" + signature.slice(66, 130));
  const v = parseInt(signature.slice(130, 132), 16);
  if (r === 0n || r >= SECP256K1_N) throw new VoucherSignatureError("r is out of range");
  if (s === 0n || s > HALF_N) throw new VoucherSignatureError("s is zero or high (not canonical)");
  if (v !== 27 && v !== 28) throw new VoucherSignatureError(`v is ${v}, not 27 or 28`);
}

/**
 * The address that signed `voucher` under `domain`. A signature for another domain recovers a stranger.
 *
 * @throws {VoucherSignatureError} a signature the hub would refuse whoever signed it (see {@link checkSignature})
 */
export async function recoverVoucherSigner(
  domain: TypedDataDomain,
  voucher: Voucher,
  signature: Hex,
): Promise<Address> {
  checkVoucher(voucher);
  checkSignature(signature);
  return await recoverTypedDataAddress({
    domain,
    types: voucherTypes,
    primaryType: "Voucher",
    message: voucher,
    signature,
  });
}

/** What an operator knows of a channel when it checks a voucher. */
export interface VerifyVoucherParameters {
  /** The hub's domain (`channelHubDomain(chainId, hub)`). */
  domain: TypedDataDomain;
  voucher: Voucher;
  signature: Hex;
  /** The channel the voucher is presented for. */
  channel: Hex;
  /** The channel's payer. */
  payer: Address;
  /** Cumulative amount of the last voucher accepted on this channel (0n for none). */
  accepted?: bigint;
  /** The channel's deposit; when given, vouchers above it are refused. */
  deposit?: bigint;
}

/**
 * Checks a voucher the way `ChannelHub.redeem` will, before the operator relies on it: same channel, signed by
 * the payer for this hub and chain, cumulative amount above the last accepted one and within the deposit.
 * Returns the recovered signer (the payer).
 *
 * @throws {VoucherChannelError} the voucher names another channel
 * @throws {VoucherSignatureError} not a canonical 65-byte signature (as `ChannelHub._recover` requires)
 * @throws {VoucherSignerError} not signed by the payer, signed for another chain or hub, or malformed
 * @throws {VoucherReplayError} same cumulative amount as the last accepted voucher
 * @throws {VoucherAmountError} lower cumulative amount than the last accepted voucher
 * @throws {VoucherDepositError} cumulative amount above the deposit
 */
export async function verifyVoucher(params: VerifyVoucherParameters): Promise<Address> {
  const { voucher, channel, accepted = 0n, deposit } = params;
  if (voucher.channel.toLowerCase() !== channel.toLowerCase()) {
    throw new VoucherChannelError(channel, voucher.channel);
  }
  let signer: Address;
  try {
    signer = await recoverVoucherSigner(params.domain, voucher, params.signature);
  } catch (e) {
    // The voucher's own fields, or a signature the hub would refuse.
    if (e instanceof TypeError || e instanceof RangeError || e instanceof VoucherSignatureError) {
      throw e;
    }
    // 65 bytes that are no signature (r or s out of range, a bad v): nobody signed this voucher.
    throw new VoucherSignerError(getAddress(params.payer), "nobody (malformed signature)");
  }
  if (!isAddressEqual(signer, params.payer)) {
    throw new VoucherSignerError(getAddress(params.payer), signer);
  }
  if (voucher.cumulativeAmount === accepted) throw new VoucherReplayError(accepted);
  if (voucher.cumulativeAmount < accepted) {
    throw new VoucherAmountError(voucher.cumulativeAmount, accepted);
  }
  if (deposit !== undefined && voucher.cumulativeAmount > deposit) {
    throw new VoucherDepositError(voucher.cumulativeAmount, deposit);
  }
  return signer;
}
