/**
 * The money layer: payment channels paid with EIP-712 vouchers, receipt batches, the Escrow ABI and the operator
 * registry, as viem actions over the contracts in `contracts/`. Optional: a node without a chain file runs in
 * volunteer mode. Tooling for local chains (`anvil.ts`, `devnet.ts`) is imported from its own module, not
 * re-exported here, so library users never pull the anvil binary.
 *
 * @module
 */
export { channelHubAbi, escrowAbi, operatorRegistryAbi } from "./abi.ts";
export type { ActionOptions, PayClient, ReadClient } from "./_tx.ts";
export {
  type ChannelParameters,
  type ChannelState,
  type ChannelStatus,
  finalizeChannel,
  getChannel,
  openChannel,
  type OpenChannelParameters,
  type OpenChannelReturnType,
  redeemVoucher,
  type RedeemVoucherParameters,
  startClose,
  topUp,
  type TopUpParameters,
  verifyReceipt,
  type VerifyReceiptParameters,
} from "./channel.ts";
export {
  type ChainConfig,
  DEFAULT_CHAIN_FILE,
  loadChain,
  meshChain,
  readChainConfig,
  writeChainConfig,
} from "./chain.ts";
export {
  type ChainContracts,
  type ContractName,
  deployContracts,
  deployMeshContract,
} from "./deploy.ts";
export {
  AnvilError,
  ChainConfigError,
  ContractRevertError,
  PayKeyError,
  toPayError,
  VoucherAmountError,
  VoucherChannelError,
  VoucherDepositError,
  VoucherError,
  VoucherReplayError,
  VoucherSignatureError,
  VoucherSignerError,
} from "./errors.ts";
export {
  type DeskEvent,
  type DeskStats,
  PaymentDesk,
  type PaymentDeskInit,
  type PeerAccount,
} from "./desk.ts";
export {
  DEFAULT_IDLE_CLOSE_MS,
  DEFAULT_MAX_PRICE,
  DEFAULT_MAX_SPEND_PER_DAY,
  DEFAULT_MAX_SPEND_PER_FILE,
  PriceAboveCapError,
  type SpendBudget,
  SpendingCapError,
} from "./limits.ts";
export {
  type ClosingChannel,
  type OperatorAccount,
  type PayerEvent,
  type PayerStats,
  PayingClient,
  type PayingClientInit,
} from "./payer.ts";
export {
  ChannelUnusableError,
  DeskBusyError,
  DeskStoppedError,
  encodeVoucherMessage,
  parseVoucherMessage,
  PAY_PROTOCOL,
  type PayCallOptions,
  PaymentRequiredError,
  PayProtocolError,
  PayRateLimitedError,
  PeerBannedError,
  type Quote,
  QuoteRefusedError,
  RELAY_PAY_PROTOCOL,
  requestQuote,
  submitVoucher,
  type VoucherAccepted,
  type VoucherMessage,
  VoucherReceiptsError,
  VoucherRefusedError,
} from "./pay_protocol.ts";
export {
  type PaidDelivery,
  paidDelivery,
  type PaidDeliveryInit,
  payAccount,
  type PayChannel,
  type PaySummary,
} from "./delivery.ts";
export {
  DEV_CHAIN_ID,
  devAccountFor,
  fundDevAccount,
  PAY_KEY_FILE,
  type PayKeySources,
  type ResolvedPayAccount,
  resolvePayAccount,
} from "./account.ts";
export { checkPrice, lowPriceWarning, type PriceCheck, REDEEM_GAS } from "./price.ts";
export {
  DEFAULT_BATCH_BYTES,
  EMPTY_RECEIPTS_ROOT,
  encodeReceipt,
  hashReceipt,
  type Receipt,
  receiptArg,
  ReceiptBatch,
  verifyReceiptProof,
} from "./receipts.ts";
export {
  announceOperator,
  type AnnounceOperatorParameters,
  getOperator,
  type OperatorAnnouncement,
  withdrawOperator,
} from "./registry.ts";
export {
  CHANNEL_HUB_NAME,
  CHANNEL_HUB_VERSION,
  channelHubDomain,
  hashVoucher,
  recoverVoucherSigner,
  signVoucher,
  verifyVoucher,
  type VerifyVoucherParameters,
  type Voucher,
  voucherTypes,
} from "./voucher.ts";
export {
  type PaidRelaying,
  paidRelaying,
  type PaidRelayingInit,
  type RelayPaySummary,
  relayPricePerByte,
} from "./relay_pay.ts";
export { HTTP_PEER_PREFIX, type HttpCharge, HttpPaywall, type HttpPaywallInit } from "./x402.ts";
export * from "./x402_format.ts";
