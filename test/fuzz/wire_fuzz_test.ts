/** Property tests of what peers send: exchange frames, pay messages, vouchers; and HTTP Range headers. */
import { Uint8ArrayList } from "uint8arraylist";
import { type Hex, toHex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { assert, fc, jsonish, mutated, onlyRejects, onlyThrows, RUNS } from "./_arb.ts";
import { decodeFrame, encodeFrame } from "../../src/mesh/_framing.ts";
import { ExchangeProtocolError } from "../../src/mesh/errors.ts";
import { encodeMessage, parseAmount, PayProtocolError } from "../../src/pay/_wire.ts";
import { encodeQuote, parseQuote, parseVoucherMessage } from "../../src/pay/pay_protocol.ts";
import {
  channelHubDomain,
  hashVoucher,
  signVoucher,
  verifyVoucher,
  type Voucher,
} from "../../src/pay/voucher.ts";
import { VoucherError, VoucherSignatureError } from "../../src/pay/errors.ts";
import { parseRange } from "../../edge/range.ts";
import { cidOf } from "../../src/content/cid.ts";

/** The payload of an encoded frame (what FrameReader hands decodeFrame): the length prefix removed. */
function payloadOf(list: Uint8ArrayList): Uint8ArrayList {
  let i = 0;
  while (list.get(i) & 0x80) i++;
  return list.sublist(i + 1);
}

Deno.test("decodeFrame(encodeFrame(h, b)) round-trips any JSON header and body", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.uint8Array({ maxLength: 300 }), (header, body) => {
      const frame = decodeFrame(payloadOf(encodeFrame(header, body)), 1 << 20);
      // JSON turns -0 into 0: compare what survives JSON, as a peer would see it.
      assert.deepEqual(frame.header, JSON.parse(JSON.stringify(header)));
      assert.deepEqual(frame.body, body);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("decodeFrame: any payload decodes or throws ExchangeProtocolError", () => {
  const valid = fc.sample(
    fc.tuple(fc.jsonValue(), fc.uint8Array({ maxLength: 40 })),
    { numRuns: 20, seed: 3 },
  ).map(([h, b]) => payloadOf(encodeFrame(h, b)).subarray());
  fc.assert(
    fc.property(mutated(valid), fc.integer({ min: 0, max: 1024 }), (bytes, max) => {
      const frame = onlyThrows(
        () => decodeFrame(new Uint8ArrayList(bytes), max),
        ExchangeProtocolError,
      );
      if (frame) assert.ok(frame.body instanceof Uint8Array && frame.body.length <= bytes.length);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("parseRange: any header gives full, unsatisfiable, or a range inside the entity", () => {
  const header = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.tuple(
      fc.constantFrom("bytes=", "BYTES =", " bytes= ", "bytes=-", "items="),
      fc.oneof(fc.bigInt({ min: 0n, max: 10n ** 30n }).map(String), fc.constant("")),
      fc.constantFrom("-", " - ", ",", "--", ""),
      fc.oneof(fc.bigInt({ min: 0n, max: 10n ** 30n }).map(String), fc.constant("")),
      fc.constantFrom("", ", 0-1", " "),
    ).map((parts) => parts.join("")),
  );
  fc.assert(
    fc.property(fc.option(header), fc.nat({ max: 2 ** 40 }), (h, size) => {
      const r = parseRange(h, size);
      if (r.kind === "partial") {
        assert.ok(Number.isSafeInteger(r.start) && Number.isSafeInteger(r.end), JSON.stringify(r));
        assert.ok(0 <= r.start && r.start < r.end && r.end <= size, JSON.stringify(r));
      }
    }),
    { numRuns: RUNS },
  );
});

Deno.test("parseRange: every satisfiable first-last range is served exactly", () => {
  fc.assert(
    fc.property(
      fc.nat({ max: 1e9 }),
      fc.nat({ max: 1e9 }),
      fc.nat({ max: 1e9 }),
      (a, len, extra) => {
        const size = a + len + 1 + extra;
        const r = parseRange(`bytes=${a}-${a + len}`, size);
        assert.deepEqual(r, { kind: "partial", start: a, end: a + len + 1 });
      },
    ),
    { numRuns: RUNS },
  );
});

const hex32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => toHex(b));
const amount = fc.oneof(
  fc.bigInt({ min: 0n, max: (1n << 256n) + 5n }).map(String),
  fc.nat().map((n) => n),
  jsonish,
);

Deno.test("parseVoucherMessage: any JSON object parses or throws PayProtocolError", () => {
  const receipt = fc.record({
    cid: fc.oneof(fc.constant(cidOf(new Uint8Array([1])).toString()), fc.string(), jsonish),
    size: amount,
    time: amount,
  }, { requiredKeys: [] });
  const message = fc.record({
    op: fc.constant("voucher"),
    voucher: fc.oneof(
      fc.record({
        channel: fc.oneof(hex32, fc.string(), jsonish),
        cumulativeAmount: amount,
        receiptsRoot: fc.oneof(hex32, jsonish),
        receiptCount: amount,
      }, { requiredKeys: [] }),
      jsonish,
    ),
    signature: fc.oneof(
      fc.uint8Array({ minLength: 65, maxLength: 65 }).map((b) => toHex(b)),
      fc.string(),
      jsonish,
    ),
    receipts: fc.oneof(fc.array(fc.oneof(receipt, jsonish), { maxLength: 3 }), jsonish),
  }, { requiredKeys: [] });
  fc.assert(
    fc.property(fc.oneof(message, fc.dictionary(fc.string(), jsonish)), (m) => {
      // What readMessage hands over: the JSON the peer sent, parsed.
      const parsed = JSON.parse(new TextDecoder().decode(encodeMessage(m)));
      onlyThrows(() => parseVoucherMessage(parsed), PayProtocolError);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("parseQuote(encodeQuote(q)) round-trips; any object parses or throws PayProtocolError", () => {
  const address = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => toHex(b));
  const quote = fc.record({
    chainId: fc.nat(),
    hub: address,
    payee: address,
    price: fc.bigInt({ min: 0n, max: 10n ** 40n }),
    creditBytes: fc.nat(),
    batchBytes: fc.nat(),
  });
  fc.assert(
    fc.property(quote, (q) => {
      const wire = JSON.parse(new TextDecoder().decode(encodeMessage(encodeQuote(q as never))));
      const back = parseQuote(wire);
      assert.equal(back.price, q.price);
      assert.equal(back.hub.toLowerCase(), q.hub);
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(
      fc.dictionary(
        fc.constantFrom("op", "chainId", "hub", "payee", "price", "creditBytes", "batchBytes", "x"),
        jsonish,
      ),
      (m) => {
        onlyThrows(() => parseQuote({ op: "quote", ...m }), PayProtocolError);
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("parseAmount accepts exactly the decimal non-negative integers", () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: 10n ** 77n }), (n) => {
      assert.equal(parseAmount(n.toString(), "x"), n);
    }),
    { numRuns: RUNS },
  );
  fc.assert(
    fc.property(jsonish, (raw) => {
      onlyThrows(() => parseAmount(raw, "x"), PayProtocolError);
    }),
    { numRuns: RUNS },
  );
});

const payer = privateKeyToAccount(generatePrivateKey());
const domain = channelHubDomain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3");

Deno.test("verifyVoucher: a peer's voucher and signature of any shape fail only with VoucherError", async () => {
  const channel = toHex(7n, { size: 32 });
  const voucher: Voucher = {
    channel,
    cumulativeAmount: 5n,
    receiptsRoot: toHex(1n, { size: 32 }),
    receiptCount: 1n,
  };
  const good = await signVoucher(payer, domain, voucher);
  // Signatures as parseVoucherMessage lets them through: 65 bytes of hex, random or one byte off a real one.
  const signature = fc.oneof(
    fc.uint8Array({ minLength: 65, maxLength: 65 }).map((b) => toHex(b)),
    fc.tuple(fc.integer({ min: 2, max: 131 }), fc.constantFrom(..."0123456789abcdef")).map(
      ([i, c]) => (good.slice(0, i) + c + good.slice(i + 1)) as Hex,
    ),
  );
  const amount = fc.bigInt({ min: 0n, max: (1n << 256n) - 1n });
  await fc.assert(
    fc.asyncProperty(
      signature,
      amount,
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      async (sig, cumulativeAmount, receiptCount) => {
        await onlyRejects(
          () =>
            verifyVoucher({
              domain,
              voucher: { ...voucher, cumulativeAmount, receiptCount },
              signature: sig,
              channel,
              payer: payer.address,
              accepted: 0n,
            }),
          VoucherError,
        );
      },
    ),
    { numRuns: 300 },
  );
  // And the real one still verifies.
  assert.equal(
    await verifyVoucher({ domain, voucher, signature: good, channel, payer: payer.address }),
    payer.address,
  );
});

Deno.test("hashVoucher: out-of-range fields throw only TypeError or RangeError", () => {
  fc.assert(
    fc.property(
      fc.oneof(hex32, fc.string({ maxLength: 70 })),
      fc.bigInt({ min: -(1n << 300n), max: 1n << 300n }),
      fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
      (channel, cumulativeAmount, receiptCount) => {
        const v = {
          channel: channel as Hex,
          cumulativeAmount,
          receiptsRoot: channel as Hex,
          receiptCount,
        };
        onlyThrows(() => hashVoucher(domain, v), TypeError, RangeError);
      },
    ),
    { numRuns: RUNS },
  );
});

// Found by the property above: an all-zero signature made noble throw a bare Error ("expected valid r");
// the hub's own rule (0 < r < n) now refuses it first.
Deno.test("verifyVoucher: a signature with r = 0 is a VoucherSignatureError", async () => {
  const channel = toHex(7n, { size: 32 });
  await assert.rejects(
    verifyVoucher({
      domain,
      voucher: {
        channel,
        cumulativeAmount: 0n,
        receiptsRoot: toHex(1n, { size: 32 }),
        receiptCount: 0n,
      },
      signature: `0x${"00".repeat(65)}`,
      channel,
      payer: payer.address,
    }),
    VoucherSignatureError,
  );
});
