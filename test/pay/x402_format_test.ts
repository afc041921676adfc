/**
 * The x402 header codec (`src/pay/x402_format.ts`) and the client's own EIP-712 and secp256k1
 * (`src/client/x402.ts`, no viem): round trips, every malformed header refused with its reason, and vouchers
 * signed in the page that viem (as the desk and the hub check them) takes for the key's own.
 */
import assert from "node:assert/strict";
import { type Hex, toHex } from "viem";
import { httpStatus } from "../../edge/errors.ts";
import { MeshError } from "../../src/errors.ts";
import {
  addressOf,
  newSessionKey,
  recoverSigner,
  signDigest,
  voucherDigest,
} from "../../src/client/x402.ts";
import {
  caip2,
  decodeHeader,
  EMPTY_ROOT,
  encodeHeader,
  MAX_HEADER_CHARS,
  parsePaymentRequired,
  parsePaymentSignature,
  parseSettlementResponse,
  X402_SCHEME,
} from "../../src/pay/x402_format.ts";
import { EMPTY_RECEIPTS_ROOT } from "../../src/pay/receipts.ts";
import {
  channelHubDomain,
  checkSignature,
  hashVoucher,
  recoverVoucherSigner,
} from "../../src/pay/voucher.ts";

const hub = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
const channel = toHex(0xc0ffeen, { size: 32 });
const signature = `0x${"11".repeat(64)}1b`;

function payload(over: Record<string, unknown> = {}, top: Record<string, unknown> = {}) {
  return encodeHeader({
    x402Version: 2,
    accepted: { scheme: X402_SCHEME, network: "eip155:31337" },
    payload: { channel, cumulativeAmount: "1000", signature, ...over },
    ...top,
  });
}

function refused(value: string | undefined, reason: RegExp) {
  assert.throws(() => parsePaymentSignature(value), (e: unknown) => {
    assert.ok(e instanceof MeshError);
    assert.equal(e.code, "payment_malformed");
    assert.equal(httpStatus(e), 400);
    assert.match(e.message, /^PAYMENT-SIGNATURE header is malformed: /);
    assert.match(e.message, reason);
    return true;
  });
}

Deno.test("x402 headers: a payment, requirements and a settlement read back as written", () => {
  const p = parsePaymentSignature(payload({ cumulativeAmount: (1n << 200n).toString() }));
  assert.equal(p.accepted.scheme, X402_SCHEME);
  assert.equal(p.accepted.network, caip2(31337));
  assert.equal(p.payload.channel, channel);
  assert.equal(p.payload.cumulativeAmount, 1n << 200n);
  assert.equal(p.payload.receiptsRoot, EMPTY_ROOT);
  assert.equal(EMPTY_ROOT, EMPTY_RECEIPTS_ROOT);
  assert.equal(p.payload.receiptCount, 0n);

  const required = {
    x402Version: 2,
    error: "PAYMENT-SIGNATURE header is required",
    resource: { url: "http://x/mesh/b" },
    accepts: [
      { scheme: "exact", network: "eip155:1" }, // another scheme: skipped
      {
        scheme: X402_SCHEME,
        network: "eip155:31337",
        amount: 5n * 1024n,
        asset: "0x0000000000000000000000000000000000000000",
        payTo: hub,
        maxTimeoutSeconds: 60,
        extra: {
          hub,
          name: "Meshgate ChannelHub",
          version: "1",
          pricePerByte: 5n,
          pricePerMiB: 5n << 20n,
          bytes: 1024,
          creditBytes: 8 << 20,
          minChallengePeriod: 3600,
        },
      },
    ],
  };
  const r = parsePaymentRequired(encodeHeader(required));
  assert.equal(r.accepts.length, 1);
  assert.equal(r.accepts[0]!.amount, 5120n);
  assert.equal(r.accepts[0]!.extra.pricePerMiB, 5n << 20n);
  assert.equal(r.error, required.error);

  const s = parseSettlementResponse(encodeHeader({
    success: true,
    transaction: "",
    network: "eip155:31337",
    payer: hub,
    extra: { channel, cumulativeAmount: 7n, chargedAmount: 3n, servedBytes: 9n },
  }));
  assert.deepEqual(s.extra, { channel, cumulativeAmount: 7n, chargedAmount: 3n, servedBytes: 9n });
  // UTF-8 survives base64 (a description in any language).
  assert.deepEqual(decodeHeader("X", encodeHeader({ d: "débit ✓" })), { d: "débit ✓" });
});

Deno.test("x402 headers: each malformed PAYMENT-SIGNATURE is refused with its reason (400)", () => {
  refused(undefined, /it is empty/);
  refused("  ", /it is empty/);
  refused("not base64!", /it is not base64/);
  refused("abc", /it is not base64/);
  refused(btoa("{not json"), /does not hold UTF-8 JSON/);
  refused(btoa("\xff\xfe{}"), /does not hold UTF-8 JSON/);
  refused(btoa("[1,2]"), /does not hold a JSON object/);
  refused("A".repeat(MAX_HEADER_CHARS + 4), /over 8192 characters/);
  refused(payload({}, { x402Version: 1 }), /"x402Version" must be 2/);
  refused(payload({}, { accepted: "meshgate-channel" }), /"accepted" must name/);
  refused(encodeHeader({ x402Version: 2, accepted: { scheme: "s", network: "n" } }), /"payload"/);
  refused(payload({ channel: "0x1234" }), /"payload.channel" must be 32 bytes/);
  refused(payload({ signature: "0x1234" }), /"payload.signature" must be 65 bytes/);
  for (const bad of ["-1", "01", "1.5", "1e9", "", 1.5, -3, null, (1n << 256n).toString()]) {
    refused(
      payload({ cumulativeAmount: bad }),
      /"payload.cumulativeAmount" must be a non-negative/,
    );
  }
  refused(payload({ receiptsRoot: "0x00" }), /"payload.receiptsRoot"/);
});

Deno.test("the page's vouchers: its EIP-712 digest is the hub's, its signatures recover to its key", async () => {
  for (let i = 0; i < 8; i++) {
    const key = newSessionKey();
    const chainId = [1, 31337, 8453, 2 ** 40][i % 4]!;
    const voucher = {
      channel: toHex(BigInt(i) * 0x1234567n + 1n, { size: 32 }),
      cumulativeAmount: (1n << BigInt(i * 30)) + BigInt(i),
      receiptsRoot: i % 2 ? EMPTY_ROOT : toHex(BigInt(i + 99), { size: 32 }),
      receiptCount: BigInt(i * 7),
    };
    const domain = { name: "Meshgate ChannelHub", version: "1", chainId, hub };
    const digest = voucherDigest(domain, voucher);
    const viemDomain = channelHubDomain(chainId, hub);
    const v = {
      ...voucher,
      channel: voucher.channel as Hex,
      receiptsRoot: voucher.receiptsRoot as Hex,
    };
    assert.equal(toHex(digest), hashVoucher(viemDomain, v));
    const sig = signDigest(key, digest);
    checkSignature(sig as Hex); // low s, v 27/28: what the hub takes
    const signer = await recoverVoucherSigner(viemDomain, v, sig as Hex);
    assert.equal(signer.toLowerCase(), addressOf(key));
    assert.equal(recoverSigner(digest, sig), addressOf(key));
    // For another chain the same signature recovers a stranger.
    const other = await recoverVoucherSigner(channelHubDomain(chainId + 1, hub), v, sig as Hex);
    assert.notEqual(other.toLowerCase(), addressOf(key));
  }
});
