/**
 * The operator's side of pay as you go over HTTP (x402 v2 headers, scheme `meshgate-channel`; see
 * `x402_format.ts` and the README): an {@link HttpPaywall} quotes a response's price and charges it to the
 * channel a `PAYMENT-SIGNATURE` voucher names, through the same {@link PaymentDesk} mesh peers pay. So a
 * voucher is checked exactly as one sent over libp2p (same hub and chain, signed by the channel's payer,
 * cumulative amount above the last one and within the deposit: a replay or a lower amount is refused), the
 * channel is metered and served within its credit, and redeemed under the desk's gas rule.
 *
 * An HTTP client has no identity but its vouchers, so its desk account is named after its channel
 * (`http:<channel>`) and every charged request must carry a fresh voucher: a request naming a channel
 * without one could spend the payer's credit. A forged voucher is refused, never "banned": that would let
 * anyone who knows a channel's id (it is public on chain) shut its payer out.
 *
 * @module
 */
import type { CID } from "../content/cid.ts";
import type { Hex } from "viem";
import type { PaymentDesk } from "./desk.ts";
import {
  caip2,
  NATIVE_ASSET,
  parsePaymentSignature,
  PaymentNetworkError,
  type PaymentRequired,
  type SettlementResponse,
  X402_SCHEME,
  X402_VERSION,
} from "./x402_format.ts";
import { CHANNEL_HUB_NAME, CHANNEL_HUB_VERSION } from "./voucher.ts";
import { PayRateLimitedError } from "./pay_protocol.ts";

/** Desk accounts of HTTP clients are named `http:<channel>`. */
export const HTTP_PEER_PREFIX = "http:";

const MiB = 1n << 20n;

/** A response charged to a channel: tell it how many bytes were really sent. */
export interface HttpCharge {
  /** The desk account charged (`http:<channel>`). */
  peer: string;
  /** The `PAYMENT-RESPONSE` body. */
  settlement: SettlementResponse;
  /** Called once, when the body ended or was cancelled: bytes not sent are not owed. */
  settle(sentBytes: number): void;
}

/** Options of an {@link HttpPaywall}. */
export interface HttpPaywallInit {
  desk: PaymentDesk;
  /** The chain's id: vouchers must be for `eip155:<chainId>`. */
  chainId: number;
  /** Shortest challenge period accepted of a channel, in seconds, as the desk enforces. Default: 3 600. */
  minChallengePeriod?: number;
  /** `maxTimeoutSeconds` of the requirements. Default: 60. */
  maxTimeoutSeconds?: number;
  /** Channels not bound yet that one client address may name (each costs a chain look-up): a burst, then
   * so many a minute. Default: 8, then 30 a minute. */
  newChannelBurst?: number;
  newChannelsPerMinute?: number;
}

/** Client addresses whose budget of new channels is kept (the longest idle is forgotten first). */
const MAX_CLIENTS = 4096;

/** Prices HTTP responses and charges them to the channels of the vouchers that pay for them. */
export class HttpPaywall {
  readonly #desk: PaymentDesk;
  readonly network: string;
  readonly #minChallenge: number;
  readonly #timeout: number;
  readonly #burst: number;
  readonly #perMs: number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(init: HttpPaywallInit) {
    this.#desk = init.desk;
    this.network = caip2(init.chainId);
    this.#minChallenge = init.minChallengePeriod ?? 3600;
    this.#timeout = init.maxTimeoutSeconds ?? 60;
    this.#burst = init.newChannelBurst ?? 8;
    this.#perMs = (init.newChannelsPerMinute ?? 30) / 60_000;
  }

  /** Takes one new-channel look-up from `client`'s bucket. The desk budgets look-ups per account, but
   * over HTTP every made-up channel id would be an account of its own: the address is what is left. */
  #takeToken(client: string): boolean {
    const now = Date.now();
    let b = this.#buckets.get(client);
    if (b) this.#buckets.delete(client);
    else {
      if (this.#buckets.size >= MAX_CLIENTS) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
      b = { tokens: this.#burst, at: now };
    }
    b.tokens = Math.min(this.#burst, b.tokens + (now - b.at) * this.#perMs);
    b.at = now;
    this.#buckets.set(client, b); // most recent last
    if (b.tokens < 1) return false;
    b.tokens--;
    return true;
  }

  /** Wei a response of `bytes` costs: the desk's price per byte times its bytes, exactly. */
  price(bytes: number): bigint {
    return this.#desk.quote.price * BigInt(bytes);
  }

  /** The `PAYMENT-REQUIRED` body for a response of `bytes` at `url`. */
  required(
    url: string,
    bytes: number,
    options: { error?: string; mimeType?: string } = {},
  ): PaymentRequired {
    const q = this.#desk.quote;
    return {
      x402Version: X402_VERSION,
      error: options.error ?? "PAYMENT-SIGNATURE header is required",
      resource: {
        url,
        description: `${bytes} bytes at ${q.price} wei per byte`,
        ...(options.mimeType ? { mimeType: options.mimeType } : {}),
      },
      accepts: [{
        scheme: X402_SCHEME,
        network: this.network,
        amount: this.price(bytes),
        asset: NATIVE_ASSET,
        payTo: q.payee,
        maxTimeoutSeconds: this.#timeout,
        extra: {
          hub: q.hub,
          name: CHANNEL_HUB_NAME,
          version: CHANNEL_HUB_VERSION,
          pricePerByte: q.price,
          pricePerMiB: q.price * MiB,
          bytes,
          creditBytes: q.creditBytes,
          minChallengePeriod: this.#minChallenge,
        },
      }],
    };
  }

  /**
   * Charges a response of `bytes` (content `cid`) to the voucher in `header` (a `PAYMENT-SIGNATURE` value):
   * the desk takes the voucher, then serves the bytes within the channel's credit (at once: the next voucher
   * comes with the next request).
   *
   * @throws {PaymentMalformedError} the header is not a payload of this scheme
   * @throws {PaymentNetworkError} the payment is for another scheme or chain
   * @throws {VoucherError} the desk refused the voucher (another channel, signer, a replay, a lower amount…)
   * @throws {PaymentRequiredError} the channel owes more than its credit allows with this response
   * @throws {PayRateLimitedError} `client` (its address) names new channels too often
   */
  async charge(
    header: string,
    cid: CID,
    bytes: number,
    signal: AbortSignal,
    client = "unknown",
  ): Promise<HttpCharge> {
    const { accepted, payload } = parsePaymentSignature(header);
    if (accepted.scheme !== X402_SCHEME) {
      throw new PaymentNetworkError(
        `Payment scheme "${
          accepted.scheme.slice(0, 40)
        }" is not taken here: pay with "${X402_SCHEME}"`,
      );
    }
    if (accepted.network !== this.network) {
      throw new PaymentNetworkError(
        `Voucher is for network "${
          accepted.network.slice(0, 40)
        }", but this gateway is paid on "${this.network}"`,
      );
    }
    const channel = payload.channel as Hex;
    const peer = `${HTTP_PEER_PREFIX}${channel}`;
    if (this.#desk.account(peer)?.channel === undefined && !this.#takeToken(client)) {
      throw new PayRateLimitedError(client);
    }
    await this.#desk.takeVoucher(peer, {
      voucher: {
        channel,
        cumulativeAmount: payload.cumulativeAmount,
        receiptsRoot: payload.receiptsRoot as Hex,
        receiptCount: payload.receiptCount,
      },
      signature: payload.signature as Hex,
      receipts: [],
    });
    await this.#desk.authorize(peer, cid, bytes, { signal, waitMs: 0 });
    const account = this.#desk.account(peer)!;
    let settled = false;
    return {
      peer,
      settlement: {
        success: true,
        transaction: "",
        network: this.network,
        payer: account.payer ?? "",
        extra: {
          channel,
          cumulativeAmount: account.accepted,
          chargedAmount: this.price(bytes),
          servedBytes: account.servedBytes,
        },
      },
      settle: (sent) => {
        if (settled) return;
        settled = true;
        const unsent = bytes - Math.min(bytes, Math.max(0, sent));
        if (unsent > 0) this.#desk.served(peer, cid, unsent, false);
      },
    };
  }

  /** The `PAYMENT-RESPONSE` body of a refused payment. */
  refusal(code: string): SettlementResponse {
    return { success: false, errorReason: code, transaction: "", network: this.network, payer: "" };
  }
}
