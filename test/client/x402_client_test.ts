/**
 * The paying client against gateways that lie in their quote (a real HTTP server on 127.0.0.1 answering 402
 * the way a bad gateway would): a malformed `PAYMENT-REQUIRED`, an amount that is not price x bytes, a price
 * over the cap, another chain than the wallet's. Each is refused with its own clear error, before anything
 * is signed or sent on chain.
 */
import assert from "node:assert/strict";
import { X402Client, X402Error } from "../../src/client/x402.ts";
import { MeshError } from "../../src/errors.ts";
import { encodeHeader, PAYMENT_REQUIRED, X402_SCHEME } from "../../src/pay/x402_format.ts";

function requirements(over: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    x402Version: 2,
    resource: { url: "http://gw/mesh/x" },
    accepts: [{
      scheme: X402_SCHEME,
      network: "eip155:31337",
      amount: "1000",
      asset: "0x0000000000000000000000000000000000000000",
      payTo: "0x" + "12".repeat(20),
      maxTimeoutSeconds: 60,
      extra: {
        hub: "0x" + "34".repeat(20),
        name: "Meshgate ChannelHub",
        version: "1",
        pricePerByte: "10",
        pricePerMiB: String(10 << 20),
        bytes: 100,
        creditBytes: 1 << 20,
        minChallengePeriod: 3600,
        ...extra,
      },
      ...over,
    }],
  };
}

Deno.test("the client refuses a gateway's bad quote with a clear error, before paying anything", async () => {
  let quote = "";
  const sent: string[] = [];
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: resolve }, async (req) => {
    if (req.method === "POST") {
      // The chain's RPC, as the session key sees it: only its chain id is ever asked here.
      const { id, method } = await req.json();
      sent.push(method);
      return Response.json({
        jsonrpc: "2.0",
        id,
        result: method === "eth_chainId" ? "0x7a69" : null,
      });
    }
    if (req.headers.has("payment-signature")) sent.push("voucher");
    return new Response("{}", { status: 402, headers: { [PAYMENT_REQUIRED]: quote } });
  });
  const url = `http://127.0.0.1:${(await promise).port}`;
  try {
    const client = new X402Client({ rpc: url, maxPricePerByte: 100n });
    const cases: [string, string, RegExp][] = [
      [
        "not base64 at all",
        "payment_malformed",
        /PAYMENT-REQUIRED header is malformed: it is not base64/,
      ],
      [btoa("[]"), "payment_malformed", /does not hold a JSON object/],
      [
        encodeHeader({ x402Version: 2, accepts: {} }),
        "payment_malformed",
        /"accepts" must be a list/,
      ],
      [
        encodeHeader(requirements({ payTo: "0x1234" })),
        "payment_malformed",
        /"payTo" must be 20 bytes/,
      ],
      [
        encodeHeader(requirements({}, { pricePerByte: "-5" })),
        "payment_malformed",
        /"extra.pricePerByte" must be a non-negative integer/,
      ],
      [
        encodeHeader(requirements({ amount: "100000" }, { pricePerByte: "1000" })),
        "price_above_cap",
        /asks 1000 wei per byte, above the cap of 100/,
      ],
      [
        encodeHeader(requirements({ network: "eip155:1" })),
        "x402_wallet",
        /is paid on eip155:1, but the wallet is on eip155:31337/,
      ],
      [
        encodeHeader(requirements({ amount: "5000" })),
        "x402_overcharged",
        /asks 5000 wei for 100 bytes at 10 wei each/,
      ],
    ];
    for (const [header, code, message] of cases) {
      quote = header;
      await assert.rejects(client.fetch(`${url}/mesh/x`), (e: unknown) => {
        assert.ok(e instanceof MeshError, String(e));
        assert.equal(e.code, code, e.message);
        assert.match(e.message, message);
        if (code.startsWith("x402")) assert.ok(e instanceof X402Error);
        return true;
      }, header.slice(0, 40));
    }
    // Nothing was signed, sent or deposited: the only call to the chain asked its id.
    assert.deepEqual([...new Set(sent)], ["eth_chainId"]);
    assert.equal(client.spent, 0n);
    assert.equal(client.channel(url), undefined);
  } finally {
    await server.shutdown();
  }
});
