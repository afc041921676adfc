/**
 * The paying side of pay as you go over HTTP, for pages (in `/meshgate.js`) and Deno: an {@link X402Client}
 * whose `fetch` pays a gateway that answers `402` with `PAYMENT-REQUIRED` (x402 v2, scheme
 * `meshgate-channel`; the protocol is in the README). On a gateway's first 402 it opens a ChannelHub channel
 * to the gateway's payee, with an EIP-1193 wallet when the page has one (`window.ethereum`), else with a key
 * kept in the page for the session (fund its address: on the devnet a test helper does); then every paid
 * request carries a fresh cumulative EIP-712 voucher in `PAYMENT-SIGNATURE`, worth exactly the price of the
 * bytes it asks for (known from its `Range`, else from the gateway's 402).
 *
 * Vouchers are cumulative, so they must reach the gateway in order: requests to one gateway are signed and
 * sent one at a time, until their answer's headers arrive (bodies stream side by side). An answer whose
 * `PAYMENT-RESPONSE` does not show the voucher taken (refused, or from a cache) costs nothing: the next
 * voucher reuses its amount.
 *
 * Without viem (the bundle stays small): EIP-712, secp256k1 and legacy (EIP-155) transactions are done here
 * over `@noble/hashes` and `@noble/curves`.
 *
 * ```js
 * import { X402Client, verifiedFetch } from "https://gw.example/meshgate.js";
 * const pay = new X402Client({ rpc: "https://rpc.example" }); // or a page with a wallet: new X402Client()
 * const res = await verifiedFetch(cid, { gateway: "https://gw.example", fetch: pay.fetch });
 * ```
 *
 * @module
 */
import { keccak_256 } from "@noble/hashes/sha3.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { MeshError } from "../errors.ts";
import {
  caip2,
  EMPTY_ROOT,
  encodeHeader,
  parsePaymentRequired,
  parseSettlementResponse,
  PAYMENT_REQUIRED,
  PAYMENT_RESPONSE,
  PAYMENT_SIGNATURE,
  type PaymentPayload,
  type PaymentRequirements,
  X402_SCHEME,
  X402_VERSION,
} from "../pay/x402_format.ts";

// ---------------------------------------------------------------------------------------------------------
// Bytes, hashes, EIP-712

const enc = new TextEncoder();

export function toHex(bytes: Uint8Array): string {
  let s = "0x";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(hex: string): Uint8Array {
  const h = hex.startsWith("0x") ? hex.slice(2) : hex;
  if (h.length % 2 || !/^[0-9a-fA-F]*$/.test(h)) throw new TypeError(`"${hex}" is not hex`);
  return Uint8Array.from(
    { length: h.length / 2 },
    (_, i) => parseInt(h.slice(2 * i, 2 * i + 2), 16),
  );
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

const keccak = (b: Uint8Array) => keccak_256(b);

/** A uint256 (or an address, or bytes32) as one 32-byte ABI word. */
function word(x: bigint | string): Uint8Array {
  const n = typeof x === "bigint" ? x : BigInt(x);
  if (n < 0n || n >= 1n << 256n) throw new RangeError(`${x} does not fit 32 bytes`);
  return fromHex(n.toString(16).padStart(64, "0"));
}

const DOMAIN_TYPEHASH = keccak(
  enc.encode("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
);
const VOUCHER_TYPEHASH = keccak(
  enc.encode(
    "Voucher(bytes32 channel,uint256 cumulativeAmount,bytes32 receiptsRoot,uint64 receiptCount)",
  ),
);

/** The hub a voucher is signed for: its EIP-712 domain. */
export interface HubDomain {
  name: string;
  version: string;
  chainId: number;
  hub: string;
}

/** A voucher, as `ChannelHub.Voucher`. */
export interface ChannelVoucher {
  channel: string;
  cumulativeAmount: bigint;
  receiptsRoot: string;
  receiptCount: bigint;
}

/** The EIP-712 digest of `voucher` for `domain`: what `ChannelHub.hashVoucher` computes. */
export function voucherDigest(domain: HubDomain, voucher: ChannelVoucher): Uint8Array {
  const separator = keccak(concat(
    DOMAIN_TYPEHASH,
    keccak(enc.encode(domain.name)),
    keccak(enc.encode(domain.version)),
    word(BigInt(domain.chainId)),
    word(domain.hub),
  ));
  const struct = keccak(concat(
    VOUCHER_TYPEHASH,
    word(voucher.channel),
    word(voucher.cumulativeAmount),
    word(voucher.receiptsRoot),
    word(voucher.receiptCount),
  ));
  return keccak(concat(Uint8Array.of(0x19, 0x01), separator, struct));
}

/** A fresh secp256k1 key, as 0x hex. */
export function newSessionKey(): string {
  return toHex(secp256k1.utils.randomSecretKey());
}

/** The address of a private key (0x, lower case). */
export function addressOf(key: string): string {
  return toHex(keccak(secp256k1.getPublicKey(fromHex(key), false).subarray(1)).subarray(12));
}

const N = secp256k1.Point.CURVE().n;

/** Signs a 32-byte digest: `r || s || v` with low s and v 27/28, as the hub takes it. */
export function signDigest(key: string, digest: Uint8Array): string {
  const sig = secp256k1.sign(digest, fromHex(key), { prehash: false, format: "recovered" });
  return toHex(concat(sig.subarray(1, 65), Uint8Array.of(27 + sig[0]!)));
}

/** Who signed `digest` (0x address), or undefined for a signature that recovers no one. */
export function recoverSigner(digest: Uint8Array, signature: string): string | undefined {
  try {
    const b = fromHex(signature);
    if (b.length !== 65) return undefined;
    const v = b[64]! >= 27 ? b[64]! - 27 : b[64]!;
    const sig = secp256k1.Signature.fromBytes(
      concat(Uint8Array.of(v), b.subarray(0, 64)),
      "recovered",
    );
    const pub = sig.recoverPublicKey(digest).toBytes(false);
    return toHex(keccak(pub.subarray(1)).subarray(12));
  } catch {
    return undefined;
  }
}

/** A wallet's signature made canonical for the hub: v 27/28 and low s. */
function canonical(signature: string): string {
  const b = fromHex(signature);
  if (b.length !== 65) throw new X402Error("x402_wallet", "The wallet's signature is not 65 bytes");
  let v = b[64]! < 27 ? b[64]! + 27 : b[64]!;
  let s = BigInt(toHex(b.subarray(32, 64)));
  if (s > N >> 1n) {
    s = N - s;
    v = v === 27 ? 28 : 27;
  }
  return toHex(concat(b.subarray(0, 32), word(s), Uint8Array.of(v)));
}

// ---------------------------------------------------------------------------------------------------------
// Transactions

type RlpItem = Uint8Array | RlpItem[];

function rlp(item: RlpItem): Uint8Array {
  const length = (n: number, offset: number) => {
    if (n < 56) return Uint8Array.of(offset + n);
    const b = fromHex(n.toString(16).padStart(Math.ceil(n.toString(16).length / 2) * 2, "0"));
    return concat(Uint8Array.of(offset + 55 + b.length), b);
  };
  if (item instanceof Uint8Array) {
    if (item.length === 1 && item[0]! < 0x80) return item;
    return concat(length(item.length, 0x80), item);
  }
  const body = concat(...item.map(rlp));
  return concat(length(body.length, 0xc0), body);
}

/** An integer as RLP wants it: big-endian, no leading zeros (0 is empty). */
function int(n: bigint): Uint8Array {
  if (n === 0n) return new Uint8Array(0);
  const h = n.toString(16);
  return fromHex(h.length % 2 ? `0${h}` : h);
}

/** A transaction to send: to a contract, with value and calldata. */
export interface TxRequest {
  to: string;
  value: bigint;
  data: string;
}

/** The minimal EIP-1193 provider: what `window.ethereum` is. */
export interface Eip1193Provider {
  request(args: { method: string; params?: unknown[] }): Promise<unknown>;
}

/** JSON-RPC over HTTP as an EIP-1193 provider (reads, and raw transactions). */
export function httpProvider(url: string, doFetch: typeof fetch = fetch): Eip1193Provider {
  let id = 0;
  return {
    async request({ method, params = [] }) {
      const res = await doFetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params }),
      });
      const body = await res.json() as { result?: unknown; error?: { message?: string } };
      if (body.error) {
        throw new X402Error("x402_chain", `${method}: ${body.error.message ?? "RPC error"}`);
      }
      return body.result;
    },
  };
}

/** Who signs and sends for the client: a wallet, or a key kept in the page. */
export interface ChannelSigner {
  readonly kind: "wallet" | "session";
  address(): Promise<string>;
  chainId(): Promise<number>;
  signVoucher(domain: HubDomain, voucher: ChannelVoucher): Promise<string>;
  /** Sends `tx` and waits for it to be mined; its receipt's logs. */
  send(tx: TxRequest): Promise<{ hash: string; logs: { topics: string[]; data: string }[] }>;
}

async function mined(provider: Eip1193Provider, hash: string) {
  for (let i = 0; i < 1200; i++) {
    const r = await provider.request({ method: "eth_getTransactionReceipt", params: [hash] }) as
      | { status: string; logs: { topics: string[]; data: string; address: string }[] }
      | null;
    if (r) {
      if (r.status !== "0x1") throw new X402Error("x402_chain", `Transaction ${hash} reverted`);
      return { hash, logs: r.logs };
    }
    await new Promise((ok) => setTimeout(ok, i < 20 ? 50 : 250));
  }
  throw new X402Error("x402_chain", `Transaction ${hash} was not mined in time`);
}

const hexQ = (n: bigint) => `0x${n.toString(16)}`;

/** A key kept in memory, sending through the JSON-RPC at `rpc` (its address must hold ETH). */
export function sessionSigner(rpc: string, key = newSessionKey(), doFetch?: typeof fetch) {
  const provider = httpProvider(rpc, doFetch);
  const from = addressOf(key);
  let chain: number | undefined;
  const signer: ChannelSigner = {
    kind: "session",
    address: () => Promise.resolve(from),
    async chainId() {
      return chain ??= Number(await provider.request({ method: "eth_chainId" }));
    },
    signVoucher: (domain, voucher) =>
      Promise.resolve(signDigest(key, voucherDigest(domain, voucher))),
    async send(tx) {
      const chainId = BigInt(await signer.chainId());
      const call = { from, to: tx.to, value: hexQ(tx.value), data: tx.data };
      const [nonce, gasPrice, gas] = await Promise.all([
        provider.request({ method: "eth_getTransactionCount", params: [from, "pending"] }),
        provider.request({ method: "eth_gasPrice" }),
        provider.request({ method: "eth_estimateGas", params: [call] }),
      ]).then((r) => r.map((x) => BigInt(x as string)));
      const fields = [
        int(nonce!),
        int(gasPrice!),
        int(gas! + gas! / 5n),
        fromHex(tx.to),
        int(tx.value),
        fromHex(tx.data),
      ];
      // EIP-155: the chain id is signed in, v = chainId * 2 + 35 + recovery.
      const digest = keccak(rlp([...fields, int(chainId), int(0n), int(0n)]));
      const sig = secp256k1.sign(digest, fromHex(key), { prehash: false, format: "recovered" });
      const raw = rlp([
        ...fields,
        int(chainId * 2n + 35n + BigInt(sig[0]!)),
        int(BigInt(toHex(sig.subarray(1, 33)))),
        int(BigInt(toHex(sig.subarray(33, 65)))),
      ]);
      const hash = await provider.request({
        method: "eth_sendRawTransaction",
        params: [toHex(raw)],
      });
      return await mined(provider, hash as string);
    },
  };
  return signer;
}

/** An EIP-1193 wallet (`window.ethereum`): it signs vouchers (`eth_signTypedData_v4`) and sends. */
export function walletSigner(wallet: Eip1193Provider): ChannelSigner {
  let from: string | undefined;
  const address = async () => {
    if (from) return from;
    const accounts = await wallet.request({ method: "eth_requestAccounts" }) as string[];
    if (!accounts?.[0]) throw new X402Error("x402_wallet", "The wallet gave no account");
    return from = accounts[0].toLowerCase();
  };
  return {
    kind: "wallet",
    address,
    async chainId() {
      return Number(await wallet.request({ method: "eth_chainId" }));
    },
    async signVoucher(domain, voucher) {
      const who = await address();
      const typed = {
        types: {
          EIP712Domain: [
            { name: "name", type: "string" },
            { name: "version", type: "string" },
            { name: "chainId", type: "uint256" },
            { name: "verifyingContract", type: "address" },
          ],
          Voucher: [
            { name: "channel", type: "bytes32" },
            { name: "cumulativeAmount", type: "uint256" },
            { name: "receiptsRoot", type: "bytes32" },
            { name: "receiptCount", type: "uint64" },
          ],
        },
        primaryType: "Voucher",
        domain: {
          name: domain.name,
          version: domain.version,
          chainId: domain.chainId,
          verifyingContract: domain.hub,
        },
        message: {
          channel: voucher.channel,
          cumulativeAmount: voucher.cumulativeAmount.toString(),
          receiptsRoot: voucher.receiptsRoot,
          receiptCount: voucher.receiptCount.toString(),
        },
      };
      const sig = canonical(
        await wallet.request({
          method: "eth_signTypedData_v4",
          params: [who, JSON.stringify(typed)],
        }) as string,
      );
      // A wallet that signed something else would have every voucher refused: say so here.
      if (recoverSigner(voucherDigest(domain, voucher), sig) !== who) {
        throw new X402Error("x402_wallet", "The wallet's voucher signature is not its account's");
      }
      return sig;
    },
    async send(tx) {
      const hash = await wallet.request({
        method: "eth_sendTransaction",
        params: [{ from: await address(), to: tx.to, value: hexQ(tx.value), data: tx.data }],
      });
      return await mined(wallet, hash as string);
    },
  };
}

const selector = (sig: string) => toHex(keccak(enc.encode(sig)).subarray(0, 4));
const OPEN = selector("open(address,uint64)");
const TOP_UP = selector("topUp(bytes32)");
const CHANNEL_OPENED = toHex(
  keccak(enc.encode("ChannelOpened(bytes32,address,address,uint256,uint64)")),
);

// ---------------------------------------------------------------------------------------------------------
// The client

/** The client could not pay (or would not: a price over its cap, a gateway that overcharges). */
export class X402Error extends MeshError {
  override name = "X402Error";
}

/** What the client did, for a page's status line and for tests. */
export type X402Event =
  | { type: "channel_opened"; gateway: string; channel: string; deposit: bigint; payTo: string }
  | { type: "topped_up"; gateway: string; channel: string; deposit: bigint }
  | { type: "paid"; url: string; amount: bigint; cumulative: bigint; bytes: number; header: string }
  | { type: "refused"; url: string; status: number; code: string; message: string };

export interface X402ClientInit {
  /** The wallet that opens the channel and signs. Default: `window.ethereum` when present. */
  wallet?: Eip1193Provider;
  /** Without a wallet: the chain's JSON-RPC URL, through which the session key sends. */
  rpc?: string;
  /** Without a wallet: the session key (0x). Default: a fresh one, kept in memory only. */
  sessionKey?: string;
  /** Highest price paid, wei per byte. Default: 1 gwei (`DEFAULT_MAX_PRICE` of mesh peers). */
  maxPricePerByte?: bigint;
  /** Most wei promised to all gateways together. Default: 0.1 ETH. */
  maxSpend?: bigint;
  /** Bytes of service a deposit (and each top-up) buys. Default: 256 MiB. */
  depositBytes?: number;
  /** The fetch underneath. Default: the global one. */
  fetch?: typeof fetch;
  onEvent?: (event: X402Event) => void;
}

interface Channel {
  gateway: string;
  terms: PaymentRequirements;
  domain: HubDomain;
  id?: string;
  deposit: bigint;
  /** Cumulative amount of the last voucher the gateway took. */
  cumulative: bigint;
  /** Serializes sign -> answer headers: vouchers must arrive in order. */
  queue: Promise<unknown>;
}

/** A channel as the client knows it. */
export interface X402Channel {
  gateway: string;
  channel?: string;
  payTo: string;
  deposit: bigint;
  cumulative: bigint;
}

/** Codes of refusals after which the gateway holds the voucher (it is spent). */
const TAKEN = new Set(["payment_required"]);

/** Pays gateways with channel vouchers in x402 headers; use {@link X402Client.fetch} as the fetch. */
export class X402Client {
  readonly #signer: ChannelSigner;
  readonly #fetch: typeof fetch;
  readonly #maxPrice: bigint;
  readonly #maxSpend: bigint;
  readonly #depositBytes: bigint;
  readonly #emit: (e: X402Event) => void;
  /** Per gateway origin. */
  readonly #channels = new Map<string, Channel>();
  #spent = 0n;

  constructor(init: X402ClientInit = {}) {
    // deno-lint-ignore no-explicit-any
    const injected = (globalThis as any).ethereum as Eip1193Provider | undefined;
    const wallet = init.wallet ?? (init.rpc === undefined ? injected : undefined);
    this.#fetch = init.fetch ?? globalThis.fetch.bind(globalThis);
    if (wallet) this.#signer = walletSigner(wallet);
    else if (init.rpc) this.#signer = sessionSigner(init.rpc, init.sessionKey, this.#fetch);
    else {
      throw new X402Error(
        "x402_wallet",
        "X402Client needs a wallet (window.ethereum or { wallet }) or { rpc } for a session key",
      );
    }
    this.#maxPrice = init.maxPricePerByte ?? 1_000_000_000n;
    this.#maxSpend = init.maxSpend ?? 100_000_000_000_000_000n;
    this.#depositBytes = BigInt(init.depositBytes ?? 256 * 1024 * 1024);
    this.#emit = init.onEvent ?? (() => {});
  }

  /** "wallet" or "session". */
  get kind(): "wallet" | "session" {
    return this.#signer.kind;
  }

  /** The paying account (the session key's address: fund it). */
  address(): Promise<string> {
    return this.#signer.address();
  }

  /** Wei promised so far, to every gateway. */
  get spent(): bigint {
    return this.#spent;
  }

  /** The channel paying `gateway` (an origin or any URL on it). */
  channel(gateway: string): X402Channel | undefined {
    const ch = this.#channels.get(new URL(gateway).origin);
    return ch && {
      gateway: ch.gateway,
      ...(ch.id ? { channel: ch.id } : {}),
      payTo: ch.terms.payTo,
      deposit: ch.deposit,
      cumulative: ch.cumulative,
    };
  }

  /**
   * A `PAYMENT-SIGNATURE` value for the channel to `gateway` at `cumulative` wei, signed but not sent: for
   * callers that pay their own way (and tests).
   */
  async paymentHeader(gateway: string, cumulative: bigint): Promise<string> {
    const ch = this.#channels.get(new URL(gateway).origin);
    if (!ch?.id) throw new X402Error("x402_state", `No channel to ${gateway} yet`);
    return await this.#header(ch, cumulative);
  }

  /** A fetch that pays the gateways that ask for it. */
  readonly fetch: typeof fetch = async (input, init) => {
    const req = new Request(input, init);
    if (req.method !== "GET") return await this.#fetch(req);
    const origin = new URL(req.url).origin;
    const known = this.#channels.get(origin);
    const bytes = known && rangeBytes(req.headers.get("range"));
    if (known?.id && bytes !== undefined) {
      return await this.#paid(req, known, bytes, known.terms.extra.pricePerByte * BigInt(bytes));
    }
    const res = await this.#fetch(req.clone());
    if (res.status !== 402 || !res.headers.has(PAYMENT_REQUIRED)) return res;
    const required = parsePaymentRequired(res.headers.get(PAYMENT_REQUIRED));
    const terms = required.accepts[0];
    if (!terms) return res;
    await res.body?.cancel().catch(() => {});
    if (terms.amount !== terms.extra.pricePerByte * BigInt(terms.extra.bytes)) {
      throw new X402Error(
        "x402_overcharged",
        `${origin} asks ${terms.amount} wei for ${terms.extra.bytes} bytes at ${terms.extra.pricePerByte} wei each`,
      );
    }
    const ch = await this.#channelFor(origin, terms);
    return await this.#paid(req, ch, terms.extra.bytes, terms.amount);
  };

  /** The channel for `origin`, checked against what it asks now (a new payee or hub: a new channel). */
  async #channelFor(origin: string, terms: PaymentRequirements): Promise<Channel> {
    const have = this.#channels.get(origin);
    const same = have && have.terms.payTo === terms.payTo &&
      have.terms.extra.hub === terms.extra.hub &&
      have.terms.network === terms.network;
    if (same) {
      have.terms = terms;
      return have;
    }
    if (terms.extra.pricePerByte > this.#maxPrice) {
      throw new X402Error(
        "price_above_cap",
        `${origin} asks ${terms.extra.pricePerByte} wei per byte, above the cap of ${this.#maxPrice}`,
      );
    }
    const chainId = await this.#signer.chainId();
    if (terms.network !== caip2(chainId)) {
      throw new X402Error(
        "x402_wallet",
        `${origin} is paid on ${terms.network}, but the wallet is on ${caip2(chainId)}`,
      );
    }
    const ch: Channel = {
      gateway: origin,
      terms,
      domain: {
        name: terms.extra.name,
        version: terms.extra.version,
        chainId,
        hub: terms.extra.hub,
      },
      deposit: 0n,
      cumulative: 0n,
      queue: Promise.resolve(),
    };
    this.#channels.set(origin, ch);
    return ch;
  }

  /** Opens the channel, or tops it up, so that it holds `needed` wei. */
  async #fund(ch: Channel, needed: bigint): Promise<void> {
    if (ch.id && needed <= ch.deposit) return;
    const price = ch.terms.extra.pricePerByte;
    const add = max(price * this.#depositBytes, needed - ch.deposit);
    if (!ch.id) {
      const period = BigInt(Math.max(ch.terms.extra.minChallengePeriod, 3600));
      const data = OPEN + toHex(concat(word(ch.terms.payTo), word(period))).slice(2);
      const { logs } = await this.#signer.send({ to: ch.terms.extra.hub, value: add, data });
      const log = logs.find((l) => l.topics[0] === CHANNEL_OPENED);
      if (!log) throw new X402Error("x402_chain", "The hub reported no ChannelOpened");
      ch.id = log.topics[1]!.toLowerCase();
      ch.deposit = add;
      this.#emit({
        type: "channel_opened",
        gateway: ch.gateway,
        channel: ch.id,
        deposit: add,
        payTo: ch.terms.payTo,
      });
      return;
    }
    await this.#signer.send({ to: ch.terms.extra.hub, value: add, data: TOP_UP + ch.id.slice(2) });
    ch.deposit += add;
    this.#emit({ type: "topped_up", gateway: ch.gateway, channel: ch.id, deposit: ch.deposit });
  }

  async #header(ch: Channel, cumulative: bigint): Promise<string> {
    const voucher = {
      channel: ch.id!,
      cumulativeAmount: cumulative,
      receiptsRoot: EMPTY_ROOT,
      receiptCount: 0n,
    };
    const payload: PaymentPayload = {
      x402Version: X402_VERSION,
      accepted: { scheme: X402_SCHEME, network: ch.terms.network },
      payload: { ...voucher, signature: await this.#signer.signVoucher(ch.domain, voucher) },
    };
    return encodeHeader(payload);
  }

  /** Sends `req` with a voucher worth `amount` more, in turn with the other requests to its gateway. */
  #paid(req: Request, ch: Channel, bytes: number, amount: bigint): Promise<Response> {
    const run = ch.queue.then(async () => {
      for (let attempt = 0;; attempt++) {
        req.signal.throwIfAborted(); // nothing signed for a request that will not be sent
        if (this.#spent + amount > this.#maxSpend) {
          throw new X402Error(
            "spending_cap",
            `Paying ${amount} wei more would pass the cap of ${this.#maxSpend} wei`,
          );
        }
        const next = ch.cumulative + amount;
        await this.#fund(ch, next);
        const header = await this.#header(ch, next);
        const paid = new Request(req);
        paid.headers.set(PAYMENT_SIGNATURE, header);
        const spend = () => {
          ch.cumulative = next;
          this.#spent += amount;
        };
        let res: Response;
        try {
          res = await this.#fetch(paid);
        } catch (e) {
          // The gateway may have taken it before the answer was lost: count it, so that the next voucher
          // is above it (a lost answer costs at most this amount, never a stuck channel).
          spend();
          throw e;
        }
        const raw = res.headers.get(PAYMENT_RESPONSE);
        const settlement = raw ? parseSettlementResponse(raw) : undefined;
        const taken = settlement?.success === true && settlement.extra?.cumulativeAmount === next;
        const reason = settlement?.success === false ? settlement.errorReason ?? "" : "";
        if (taken) {
          const length = Number(res.headers.get("content-length"));
          const price = ch.terms.extra.pricePerByte;
          if (settlement.extra!.chargedAmount !== price * BigInt(length)) {
            await res.body?.cancel().catch(() => {});
            throw new X402Error(
              "x402_overcharged",
              `${ch.gateway} says it charged ${
                settlement.extra!.chargedAmount
              } wei for ${length} bytes at ${price} wei each`,
            );
          }
        }
        if (taken || TAKEN.has(reason)) spend();
        // Our own voucher seen before: an earlier answer was lost after the gateway took it. Once more.
        if (reason === "voucher_replay" && attempt === 0) {
          await res.body?.cancel().catch(() => {});
          spend();
          continue;
        }
        if (taken) {
          this.#emit({ type: "paid", url: req.url, amount, cumulative: next, bytes, header });
        } else if (!res.ok) {
          const body = await res.clone().json().catch(() => ({})) as Record<string, string>;
          this.#emit({
            type: "refused",
            url: req.url,
            status: res.status,
            code: body.error ?? reason,
            message: body.message ?? "",
          });
        }
        return res;
      }
    });
    ch.queue = run.catch(() => {});
    return run;
  }
}

/** Bytes a `Range: bytes=a-b` asks for; undefined for no range or an open one (the 402 tells). */
function rangeBytes(range: string | null): number | undefined {
  const m = range && /^bytes=(\d+)-(\d+)$/.exec(range.trim());
  if (!m) return undefined;
  const n = Number(m[2]) - Number(m[1]) + 1;
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function max(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
