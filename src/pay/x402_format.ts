/**
 * Pay as you go over HTTP: the three headers of x402 v2's HTTP transport (`PAYMENT-REQUIRED`,
 * `PAYMENT-SIGNATURE`, `PAYMENT-RESPONSE`, each base64 of a JSON object) carrying our own scheme,
 * `meshgate-channel`: cumulative EIP-712 vouchers on a `ChannelHub` channel, the same vouchers mesh peers pay
 * a desk with. x402's `exact` scheme settles every payment on chain, which a stream of chunks cannot afford;
 * here a voucher is checked off chain and the operator redeems the latest one when it is worth the gas.
 *
 * Pure and without viem, so the browser bundle (`src/client/x402.ts`) and the gateway (`src/pay/x402.ts`)
 * read and write the headers with the same code. The protocol is written out in the README ("Pay as you go
 * over HTTP").
 *
 * @module
 */
import { MeshError } from "../errors.ts";

/** The x402 protocol version of the headers. */
export const X402_VERSION = 2;
/** Our scheme: cumulative vouchers on a payment channel (see the module doc). */
export const X402_SCHEME = "meshgate-channel";
/** Header names (HTTP headers are case-insensitive; these are x402's spelling). */
export const PAYMENT_REQUIRED = "PAYMENT-REQUIRED";
export const PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE";
export const PAYMENT_RESPONSE = "PAYMENT-RESPONSE";
/** `asset` of the requirements: the chain's native coin (ETH), which ChannelHub deposits hold. */
export const NATIVE_ASSET = "0x0000000000000000000000000000000000000000";
/** Longest header value read, in characters: a voucher payload is ~600. */
export const MAX_HEADER_CHARS = 8192;

/** The CAIP-2 name of an EVM chain: `eip155:<chainId>`. */
export function caip2(chainId: number): string {
  return `eip155:${chainId}`;
}

/** What a channel must look like and what the operator charges: `accepts[0].extra`. */
export interface ChannelTerms {
  /** The ChannelHub the channel lives on (the EIP-712 `verifyingContract` of the vouchers). */
  hub: string;
  /** EIP-712 domain name and version of the hub. */
  name: string;
  version: string;
  /** Wei per byte served: the pricing rule is `pricePerByte x response bytes`, exactly. */
  pricePerByte: bigint;
  /** The same price per MiB (2^20 bytes), for people. */
  pricePerMiB: bigint;
  /** Bytes of this response (what `amount` pays for). */
  bytes: number;
  /** Bytes the operator serves ahead of payment on a channel. */
  creditBytes: number;
  /** Shortest challenge period of a channel it accepts, in seconds. */
  minChallengePeriod: number;
}

/** One way to pay (`accepts[i]`). */
export interface PaymentRequirements {
  scheme: string;
  /** CAIP-2, e.g. `eip155:31337`. */
  network: string;
  /** Wei this response costs (decimal string on the wire). */
  amount: bigint;
  asset: string;
  /** The operator's account: the payee of the channel to open. */
  payTo: string;
  maxTimeoutSeconds: number;
  extra: ChannelTerms;
}

/** The body of `PAYMENT-REQUIRED`. */
export interface PaymentRequired {
  x402Version: number;
  /** Why payment is asked for (or why the last one was refused). */
  error?: string;
  resource: { url: string; description?: string; mimeType?: string };
  accepts: PaymentRequirements[];
}

/** The voucher carried by `PAYMENT-SIGNATURE` (`payload`). Amounts are wei. */
export interface ChannelPayload {
  channel: string;
  cumulativeAmount: bigint;
  /** Receipts the voucher pays for; HTTP payments carry none (the empty root, count 0). */
  receiptsRoot: string;
  receiptCount: bigint;
  /** 65-byte `r || s || v` EIP-712 signature by the channel's payer. */
  signature: string;
}

/** The body of `PAYMENT-SIGNATURE`. */
export interface PaymentPayload {
  x402Version: number;
  /** The requirements the client pays under: only `scheme` and `network` are read. */
  accepted: { scheme: string; network: string };
  payload: ChannelPayload;
}

/** The body of `PAYMENT-RESPONSE`. */
export interface SettlementResponse {
  success: boolean;
  /** The code of the refusal, when `success` is false. */
  errorReason?: string;
  /** Always "": a voucher settles off chain, redeems come later. */
  transaction: string;
  network: string;
  payer: string;
  extra?: {
    channel: string;
    /** The channel's accepted cumulative amount, now. */
    cumulativeAmount: bigint;
    /** What this response costs: price x its bytes. */
    chargedAmount: bigint;
    /** Bytes served on the channel, this response included. */
    servedBytes: bigint;
  };
}

/** Merkle root of no receipts (`receipts.ts`'s `EMPTY_RECEIPTS_ROOT`). */
export const EMPTY_ROOT = `0x${"0".repeat(64)}`;

/** A payment header is not base64 of the JSON it must be. Status 400: fix the client. */
export class PaymentMalformedError extends MeshError {
  override name = "PaymentMalformedError";
  constructor(header: string, reason: string) {
    super("payment_malformed", `${header} header is malformed: ${reason}`);
  }
}

/** The payment is for another scheme or another chain than the operator's. Status 402. */
export class PaymentNetworkError extends MeshError {
  override name = "PaymentNetworkError";
  constructor(message: string) {
    super("voucher_network", message);
  }
}

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Base64 (RFC 4648, padded) of the UTF-8 JSON of `value`, bigints as decimal strings. */
export function encodeHeader(value: unknown): string {
  const json = JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v);
  const bytes = new TextEncoder().encode(json);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(bin);
}

/** The JSON object in a base64 header value; {@link PaymentMalformedError} for anything else. */
export function decodeHeader(
  header: string,
  value: string | null | undefined,
): Record<string, unknown> {
  if (value === null || value === undefined || value.trim() === "") {
    throw new PaymentMalformedError(header, "it is empty");
  }
  const v = value.trim();
  if (v.length > MAX_HEADER_CHARS) {
    throw new PaymentMalformedError(header, `it is over ${MAX_HEADER_CHARS} characters`);
  }
  if (!B64.test(v) || v.length % 4 !== 0) {
    throw new PaymentMalformedError(header, "it is not base64");
  }
  let parsed: unknown;
  try {
    const bin = atob(v);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new PaymentMalformedError(header, "its base64 does not hold UTF-8 JSON");
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new PaymentMalformedError(header, "it does not hold a JSON object");
  }
  return parsed as Record<string, unknown>;
}

/** A non-negative integer in a decimal string (or a safe integer), as uint256 fits. */
function amount(header: string, raw: unknown, what: string): bigint {
  if (typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0) return BigInt(raw);
  if (typeof raw === "string" && /^(0|[1-9][0-9]{0,77})$/.test(raw)) {
    const n = BigInt(raw);
    if (n < 1n << 256n) return n;
  }
  throw new PaymentMalformedError(
    header,
    `"${what}" must be a non-negative integer in a decimal string, got ${
      JSON.stringify(raw)?.slice(0, 80)
    }`,
  );
}

function count(header: string, raw: unknown, what: string): number {
  if (typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0) return raw;
  throw new PaymentMalformedError(header, `"${what}" must be a non-negative integer`);
}

function hexOf(header: string, raw: unknown, what: string, bytes: number): string {
  if (typeof raw === "string" && new RegExp(`^0x[0-9a-fA-F]{${2 * bytes}}$`).test(raw)) {
    return raw.toLowerCase();
  }
  throw new PaymentMalformedError(
    header,
    `"${what}" must be ${bytes} bytes of 0x hex, got ${JSON.stringify(raw)?.slice(0, 80)}`,
  );
}

function str(header: string, raw: unknown, what: string): string {
  if (typeof raw === "string" && raw.length <= 2048) return raw;
  throw new PaymentMalformedError(header, `"${what}" must be a string`);
}

/** Reads a `PAYMENT-SIGNATURE` value. Throws {@link PaymentMalformedError} for anything but a whole payload. */
export function parsePaymentSignature(value: string | null | undefined): PaymentPayload {
  const h = PAYMENT_SIGNATURE;
  const m = decodeHeader(h, value);
  if (m.x402Version !== X402_VERSION) {
    throw new PaymentMalformedError(h, `"x402Version" must be ${X402_VERSION}`);
  }
  const accepted = m.accepted as Record<string, unknown> | null;
  if (accepted === null || typeof accepted !== "object") {
    throw new PaymentMalformedError(h, `"accepted" must name the scheme and network paid under`);
  }
  const p = m.payload as Record<string, unknown> | null;
  if (p === null || typeof p !== "object") {
    throw new PaymentMalformedError(h, `"payload" must hold the voucher`);
  }
  return {
    x402Version: X402_VERSION,
    accepted: {
      scheme: str(h, accepted.scheme, "accepted.scheme"),
      network: str(h, accepted.network, "accepted.network"),
    },
    payload: {
      channel: hexOf(h, p.channel, "payload.channel", 32),
      cumulativeAmount: amount(h, p.cumulativeAmount, "payload.cumulativeAmount"),
      receiptsRoot: p.receiptsRoot === undefined
        ? EMPTY_ROOT
        : hexOf(h, p.receiptsRoot, "payload.receiptsRoot", 32),
      receiptCount: p.receiptCount === undefined
        ? 0n
        : amount(h, p.receiptCount, "payload.receiptCount"),
      signature: hexOf(h, p.signature, "payload.signature", 65),
    },
  };
}

/** Reads a `PAYMENT-REQUIRED` value, keeping only requirements of {@link X402_SCHEME}. */
export function parsePaymentRequired(value: string | null | undefined): PaymentRequired {
  const h = PAYMENT_REQUIRED;
  const m = decodeHeader(h, value);
  if (m.x402Version !== X402_VERSION) {
    throw new PaymentMalformedError(h, `"x402Version" must be ${X402_VERSION}`);
  }
  if (!Array.isArray(m.accepts)) throw new PaymentMalformedError(h, `"accepts" must be a list`);
  const r = (m.resource ?? {}) as Record<string, unknown>;
  const accepts: PaymentRequirements[] = [];
  for (const raw of m.accepts.slice(0, 16)) {
    const a = raw as Record<string, unknown> | null;
    if (a === null || typeof a !== "object" || a.scheme !== X402_SCHEME) continue;
    const e = (a.extra ?? {}) as Record<string, unknown>;
    accepts.push({
      scheme: X402_SCHEME,
      network: str(h, a.network, "network"),
      amount: amount(h, a.amount, "amount"),
      asset: str(h, a.asset, "asset"),
      payTo: hexOf(h, a.payTo, "payTo", 20),
      maxTimeoutSeconds: count(h, a.maxTimeoutSeconds, "maxTimeoutSeconds"),
      extra: {
        hub: hexOf(h, e.hub, "extra.hub", 20),
        name: str(h, e.name, "extra.name"),
        version: str(h, e.version, "extra.version"),
        pricePerByte: amount(h, e.pricePerByte, "extra.pricePerByte"),
        pricePerMiB: amount(h, e.pricePerMiB, "extra.pricePerMiB"),
        bytes: count(h, e.bytes, "extra.bytes"),
        creditBytes: count(h, e.creditBytes, "extra.creditBytes"),
        minChallengePeriod: count(h, e.minChallengePeriod, "extra.minChallengePeriod"),
      },
    });
  }
  return {
    x402Version: X402_VERSION,
    ...(typeof m.error === "string" ? { error: m.error.slice(0, 500) } : {}),
    resource: { url: typeof r.url === "string" ? r.url : "" },
    accepts,
  };
}

/** Reads a `PAYMENT-RESPONSE` value. */
export function parseSettlementResponse(value: string | null | undefined): SettlementResponse {
  const h = PAYMENT_RESPONSE;
  const m = decodeHeader(h, value);
  if (typeof m.success !== "boolean") throw new PaymentMalformedError(h, `"success" is missing`);
  const e = m.extra as Record<string, unknown> | undefined;
  return {
    success: m.success,
    ...(typeof m.errorReason === "string" ? { errorReason: m.errorReason.slice(0, 80) } : {}),
    transaction: typeof m.transaction === "string" ? m.transaction : "",
    network: str(h, m.network, "network"),
    payer: typeof m.payer === "string" ? m.payer : "",
    ...(e && typeof e === "object"
      ? {
        extra: {
          channel: hexOf(h, e.channel, "extra.channel", 32),
          cumulativeAmount: amount(h, e.cumulativeAmount, "extra.cumulativeAmount"),
          chargedAmount: amount(h, e.chargedAmount, "extra.chargedAmount"),
          servedBytes: amount(h, e.servedBytes, "extra.servedBytes"),
        },
      }
      : {}),
  };
}
