/**
 * The payment protocol of paid delivery, `/meshgate/pay/1.0.0`, beside the chunk exchange. One request per
 * stream (see `_wire.ts`), JSON, amounts as decimal strings:
 *
 * - `{ op: "quote" }` -> `{ op: "quote", chainId, hub, payee, price, creditBytes, batchBytes }`: what the
 *   operator charges (wei per byte), where it is paid (the payee of the channel to open on `hub`), how many
 *   bytes it serves ahead of payment and how often it expects a voucher. Noise authenticates the peer, so the
 *   quote is the operator's own word.
 * - `{ op: "voucher", voucher, signature, receipts }` -> `{ op: "accepted", cumulativeAmount, servedBytes }`:
 *   a voucher and the receipts of the batch it pays for (`{ cid, size, time }` each; operator and client are
 *   the channel's payee and payer). A refused voucher gets `{ error, message }`; a forged one is also the end
 *   of the connection.
 *
 * @module
 */
import type { Libp2p, PeerId } from "@libp2p/interface";
import { type Address, getAddress, type Hex, isAddress, isHex } from "viem";
import { CID, parseCid } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import { VoucherError } from "./errors.ts";
import type { Receipt } from "./receipts.ts";
import type { Voucher } from "./voucher.ts";
import { callPay, parseAmount, PayProtocolError } from "./_wire.ts";

export { PayProtocolError };

/** Protocol ID of the payment protocol. */
export const PAY_PROTOCOL = "/meshgate/pay/1.0.0";

/** Where a relay takes the vouchers for the bytes it carried (a desk of its own, on channels of their own). */
export const RELAY_PAY_PROTOCOL = "/meshgate/relay-pay/1.0.0";

/** What an operator charges, as it answers `quote`. */
export interface Quote {
  chainId: number;
  /** The ChannelHub the operator redeems on. */
  hub: Address;
  /** The operator's account: payee of the channel, `operator` of the receipts. */
  payee: Address;
  /** Wei per byte served. 0n: free (a volunteer; also what a node without the protocol is taken to be). */
  price: bigint;
  /** Bytes served ahead of payment; past them the operator waits for a voucher, then refuses. */
  creditBytes: number;
  /** Bytes the operator expects each voucher to pay for. */
  batchBytes: number;
}

/** The operator's answer to an accepted voucher. */
export interface VoucherAccepted {
  cumulativeAmount: bigint;
  /** Bytes the operator has served this peer so far. */
  servedBytes: bigint;
}

/** A voucher as sent: the signed message and the receipts its root covers (operator and client implied). */
export interface VoucherMessage {
  voucher: Voucher;
  signature: Hex;
  receipts: readonly Pick<Receipt, "cid" | "size" | "time">[];
  /** Of the cumulative amount, the wei that paid for storage (proven lease periods) on this channel so far,
   * cumulative too: never credit for deliveries. Absent: as in the voucher before (0 on a new channel). */
  storage?: bigint;
}

// -------------------------------------------------------------------------------------------------------------
// Errors

/** The operator will not serve more until it is paid. Status 402: send a voucher and ask again. */
export class PaymentRequiredError extends MeshError {
  override name = "PaymentRequiredError";
  constructor(
    readonly peer: string,
    readonly unpaid: bigint,
    readonly creditBytes: number,
    /** Why, when it is not the peer's own debt (e.g. the newcomers' shared credit is spent). */
    reason?: string,
  ) {
    super(
      "payment_required",
      reason
        ? `Peer "${peer}" must pay first: ${reason}`
        : `Peer "${peer}" owes "${unpaid}" wei, more than a credit of ${creditBytes} bytes allows: send a voucher`,
    );
  }
}

/** The peer sent a forged voucher earlier: it is not served any more. */
export class PeerBannedError extends MeshError {
  override name = "PeerBannedError";
  constructor(readonly peer: string, readonly reason: string) {
    super("peer_banned", `Peer "${peer}" is refused: ${reason}`);
  }
}

/** The operator is shutting down and takes no more requests or payments. */
export class DeskStoppedError extends MeshError {
  override name = "DeskStoppedError";
  constructor() {
    super("node_stopping", "The node is stopping");
  }
}

/** The peer asks the desk to look at the chain more often than it allows. Not a forgery: ask again later. */
export class PayRateLimitedError extends MeshError {
  override name = "PayRateLimitedError";
  constructor(readonly peer: string) {
    super("pay_rate_limited", `Peer "${peer}" asks for chain look-ups too often: try again later`);
  }
}

/** The desk holds as many accounts as it may, none of them idle: a new peer is not served now. */
export class DeskBusyError extends MeshError {
  override name = "DeskBusyError";
  constructor(readonly peer: string) {
    super("pay_busy", `The desk has no room for peer "${peer}" now: try again later`);
  }
}

/** The voucher's receipts root or count does not match the receipts sent with it, or their parties. */
export class VoucherReceiptsError extends VoucherError {
  override name = "VoucherReceiptsError";
  constructor(message: string) {
    super("voucher_receipts", message);
  }
}

/** The voucher names a channel this operator cannot be paid through: unknown or another payee's (`forged`),
 * or (signed by its payer) bound to another peer, closing, or with too short a challenge period (not
 * `forged`: a squatter cannot get the real payer banned). */
export class ChannelUnusableError extends VoucherError {
  override name = "ChannelUnusableError";
  constructor(readonly channel: string, reason: string, readonly forged = true) {
    super("voucher_channel_unusable", `Channel "${channel}" ${reason}`);
  }
}

/** The operator refused our voucher (client side). `code` is the operator's reason. */
export class VoucherRefusedError extends MeshError {
  override name = "VoucherRefusedError";
  constructor(readonly peer: string, code: string, message: string) {
    super(code, `Peer "${peer}" refused the voucher: ${message}`);
  }
}

/** The operator's quote cannot be paid: another chain or hub, or a price above the client's limit. */
export class QuoteRefusedError extends MeshError {
  override name = "QuoteRefusedError";
  constructor(readonly peer: string, message: string) {
    super("quote_refused", `Quote of peer "${peer}" refused: ${message}`);
  }
}

// -------------------------------------------------------------------------------------------------------------
// Client calls

/** What the client calls need of a libp2p node. */
export type PayDialer = Pick<Libp2p, "dialProtocol">;

/** Options of the client calls. */
export interface PayCallOptions {
  /** Bounds the whole call. Default: a 10 s timeout. */
  signal?: AbortSignal;
  /** The protocol of the desk called: relaying is paid on its own ({@link RELAY_PAY_PROTOCOL}). Default:
   * {@link PAY_PROTOCOL}. */
  protocol?: string;
}

function call(
  libp2p: PayDialer,
  peer: string | PeerId,
  request: unknown,
  options: PayCallOptions,
): Promise<Record<string, unknown>> {
  return callPay(
    libp2p,
    peer,
    options.protocol ?? PAY_PROTOCOL,
    request,
    options.signal ?? AbortSignal.timeout(10_000),
  );
}

/** Asks `peer` for its {@link Quote}. */
export async function requestQuote(
  libp2p: PayDialer,
  peer: string | PeerId,
  options: PayCallOptions = {},
): Promise<Quote> {
  const m = await call(libp2p, peer, { op: "quote" }, options);
  if (typeof m.error === "string") {
    throw new PayProtocolError(
      `Peer "${peer}" refused to quote: ${String(m.message).slice(0, 200)}`,
    );
  }
  return parseQuote(m);
}

/**
 * Sends a voucher to `peer`. Resolves with the operator's acknowledgement; throws {@link VoucherRefusedError}
 * when it refuses (a forged voucher also ends the connection).
 */
export async function submitVoucher(
  libp2p: PayDialer,
  peer: string | PeerId,
  message: VoucherMessage,
  options: PayCallOptions = {},
): Promise<VoucherAccepted> {
  const m = await call(libp2p, peer, { op: "voucher", ...encodeVoucherMessage(message) }, options);
  if (typeof m.error === "string") {
    throw new VoucherRefusedError(
      String(peer),
      m.error.slice(0, 40),
      typeof m.message === "string" ? m.message.slice(0, 300) : "no reason given",
    );
  }
  if (m.op !== "accepted") throw new PayProtocolError(`Peer "${peer}" answered "${m.op}"`);
  return {
    cumulativeAmount: parseAmount(m.cumulativeAmount, "cumulativeAmount"),
    servedBytes: parseAmount(m.servedBytes, "servedBytes"),
  };
}

// -------------------------------------------------------------------------------------------------------------
// Encoding

/** The quote as sent. */
export function encodeQuote(q: Quote): Record<string, unknown> {
  return { op: "quote", ...q, price: q.price.toString() };
}

/** Reads a quote answer; throws {@link PayProtocolError} when malformed. */
export function parseQuote(m: Record<string, unknown>): Quote {
  const { chainId, hub, payee, creditBytes, batchBytes } = m;
  if (
    m.op !== "quote" || typeof chainId !== "number" || !Number.isSafeInteger(chainId) ||
    typeof hub !== "string" || !isAddress(hub) || typeof payee !== "string" || !isAddress(payee) ||
    !isCount(creditBytes) || !isCount(batchBytes)
  ) {
    throw new PayProtocolError(
      "A quote must hold chainId, hub, payee, price, creditBytes, batchBytes",
    );
  }
  return {
    chainId,
    hub: getAddress(hub),
    payee: getAddress(payee),
    price: parseAmount(m.price, "price"),
    creditBytes,
    batchBytes,
  };
}

function isCount(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** A voucher message as sent (also inside other protocols' requests: paid lookups). */
export function encodeVoucherMessage(m: VoucherMessage): Record<string, unknown> {
  return {
    voucher: m.voucher,
    signature: m.signature,
    receipts: m.receipts.map((r) => ({
      // A receipt holds the binary CID; on the wire it is the usual base32 string.
      cid: CID.decode(r.cid).toString(),
      size: r.size.toString(),
      time: r.time.toString(),
    })),
    ...(m.storage ? { storage: m.storage.toString() } : {}),
  };
}

/** The most receipts one voucher message may carry. */
export const MAX_RECEIPTS = 1024;

/** Reads a `voucher` request; throws {@link PayProtocolError} when malformed. */
export function parseVoucherMessage(m: Record<string, unknown>): VoucherMessage {
  const v = m.voucher as Record<string, unknown> | null | undefined;
  if (
    v === null || typeof v !== "object" || !isBytes32(v.channel) || !isBytes32(v.receiptsRoot) ||
    typeof m.signature !== "string" || !isHex(m.signature) || m.signature.length !== 132 ||
    !Array.isArray(m.receipts) || m.receipts.length > MAX_RECEIPTS
  ) {
    throw new PayProtocolError(
      "A voucher message must hold a voucher, a 65-byte signature and at most 1024 receipts",
    );
  }
  const receipts = m.receipts.map((raw: unknown) => {
    const r = raw as Record<string, unknown> | null;
    if (r === null || typeof r !== "object" || typeof r.cid !== "string") {
      throw new PayProtocolError("A receipt must hold cid, size and time");
    }
    let cid: Uint8Array;
    try {
      cid = parseCid(r.cid).bytes;
    } catch (e) {
      throw new PayProtocolError(`Receipt CID "${r.cid.slice(0, 80)}" is not a CID`, { cause: e });
    }
    return { cid, size: parseAmount(r.size, "size"), time: parseAmount(r.time, "time") };
  });
  return {
    voucher: {
      channel: (v.channel as string).toLowerCase() as Hex,
      cumulativeAmount: parseAmount(v.cumulativeAmount, "cumulativeAmount"),
      receiptsRoot: (v.receiptsRoot as string).toLowerCase() as Hex,
      receiptCount: parseAmount(v.receiptCount, "receiptCount"),
    },
    signature: m.signature as Hex,
    receipts,
    ...(m.storage !== undefined ? { storage: parseAmount(m.storage, "storage") } : {}),
  };
}

function isBytes32(x: unknown): x is Hex {
  return typeof x === "string" && isHex(x) && x.length === 66;
}
