/**
 * Pay as you go over HTTP against a paid gateway on anvil, over real sockets, with the real client
 * (`X402Client`, the one in the bundle): unpaid content answers are 402 with `PAYMENT-REQUIRED`; paid ones
 * carry a fresh voucher each, and what the desk redeems is exactly price x bytes served; a client that stops
 * paying is cut off within its credit; and every bad payment is refused with its own clear error.
 */
import assert from "node:assert/strict";
import { type Hex, toHex } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import {
  addressOf,
  newSessionKey,
  signDigest,
  voucherDigest,
  X402Client,
  type X402Event,
} from "../../src/client/x402.ts";
import { cidOf } from "../../src/content/cid.ts";
import { openChannel } from "../../src/pay/channel.ts";
import { HTTP_PEER_PREFIX } from "../../src/pay/x402.ts";
import {
  EMPTY_ROOT,
  encodeHeader,
  parsePaymentRequired,
  parseSettlementResponse,
  PAYMENT_REQUIRED,
  PAYMENT_RESPONSE,
  PAYMENT_SIGNATURE,
  X402_SCHEME,
} from "../../src/pay/x402_format.ts";
import { createWalletClient, http } from "viem";
import { meshChain } from "../../src/pay/chain.ts";
import type { PayClient } from "../../src/pay/_tx.ts";
import { PRICE, startPaidGateway } from "./_paid.ts";

const KiB = 1024;
const MiB = 1024 * KiB;
const CREDIT = 1 * MiB;

function bytesOf(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed * 7 + (i >> 9)) & 255;
  return out;
}

Deno.test({
  name: "x402: a paid gateway asks, the client pays voucher by voucher, bad payments are refused",
  // anvil and libp2p are stopped, but their last timers and sockets may outlive the test's tick.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const gw = await startPaidGateway({ creditBytes: CREDIT });
    try {
      const file = bytesOf(3 * MiB + 777, 1);
      const cid = await gw.put(file);
      const chainId = gw.devnet.config.chainId;

      await t.step(
        "unpaid content is 402 with PAYMENT-REQUIRED; HEAD, errors and the API are free",
        async () => {
          const sent = async () =>
            Number(
              /^mesh_bytes_served_total (\d+)$/m.exec(
                await (await fetch(`${gw.url}/metrics`)).text(),
              )?.[1],
            );
          const before = await sent();
          const res = await fetch(`${gw.url}/mesh/${cid}`);
          assert.equal(res.status, 402);
          const body = await res.json();
          assert.equal(body.error, "payment_required");
          assert.match(
            body.message,
            /charges \d+ wei for these 3146505 bytes: send a PAYMENT-SIGNATURE/,
          );
          assert.equal(res.headers.get("access-control-allow-origin"), "*");
          assert.match(res.headers.get("access-control-expose-headers")!, /PAYMENT-REQUIRED/);
          assert.equal(res.headers.get("cache-control"), "no-store");
          const required = parsePaymentRequired(res.headers.get(PAYMENT_REQUIRED));
          const raw = JSON.parse(atob(res.headers.get(PAYMENT_REQUIRED)!));
          assert.equal(raw.x402Version, 2);
          assert.equal(raw.resource.url, `${gw.url}/mesh/${cid}`);
          assert.equal(required.accepts.length, 1);
          const a = required.accepts[0]!;
          assert.equal(a.scheme, X402_SCHEME);
          assert.equal(a.network, `eip155:${chainId}`);
          assert.equal(a.amount, PRICE * BigInt(file.length));
          assert.equal(a.payTo, gw.payee.toLowerCase());
          assert.equal(a.extra.hub, gw.hub.toLowerCase());
          assert.equal(a.extra.pricePerByte, PRICE);
          assert.equal(a.extra.pricePerMiB, PRICE * BigInt(MiB));
          assert.equal(a.extra.bytes, file.length);
          assert.equal(a.extra.creditBytes, CREDIT);
          assert.equal(a.extra.minChallengePeriod, 3600);
          // A range costs its own bytes.
          const ranged = await fetch(`${gw.url}/mesh/${cid}`, {
            headers: { Range: "bytes=10-1033" },
          });
          assert.equal(ranged.status, 402);
          await ranged.body?.cancel();
          const r = parsePaymentRequired(ranged.headers.get(PAYMENT_REQUIRED)).accepts[0]!;
          assert.equal(r.amount, PRICE * 1024n);
          // Priced from its manifest: asking read no chunk (one the gateway might have had to buy).
          assert.equal(await sent(), before);
          const head = await fetch(`${gw.url}/mesh/${cid}`, { method: "HEAD" });
          assert.equal(head.status, 200);
          assert.equal(head.headers.get("content-length"), String(file.length));
          const missing = await fetch(`${gw.url}/mesh/${cidOf(bytesOf(100, 9))}`);
          assert.equal(missing.status, 404);
          const outside = await fetch(`${gw.url}/mesh/${cid}`, {
            headers: { Range: "bytes=99999999-" },
          });
          assert.equal(outside.status, 416);
          await outside.body?.cancel();
          await missing.body?.cancel();
          const api = await fetch(`${gw.url}/api/pay`);
          assert.equal(api.status, 200);
          await api.body?.cancel();
          const preflight = await fetch(`${gw.url}/mesh/${cid}`, { method: "OPTIONS" });
          assert.equal(preflight.status, 204);
          assert.match(preflight.headers.get("access-control-allow-headers")!, /PAYMENT-SIGNATURE/);
        },
      );

      const events: X402Event[] = [];
      const key = newSessionKey();
      const client = new X402Client({
        rpc: gw.devnet.config.rpc,
        sessionKey: key,
        onEvent: (e) => events.push(e),
      });
      assert.equal(client.kind, "session");
      await gw.fund(await client.address());
      let served = 0;

      await t.step(
        "the client opens a channel and pays each request; redeemed = price x bytes",
        async () => {
          const res = await client.fetch(`${gw.url}/mesh/${cid}`);
          assert.equal(res.status, 200);
          assert.deepEqual(new Uint8Array(await res.arrayBuffer()), file);
          served += file.length;
          const s = parseSettlementResponse(res.headers.get(PAYMENT_RESPONSE));
          assert.equal(s.success, true);
          assert.equal(s.network, `eip155:${chainId}`);
          assert.equal(s.payer.toLowerCase(), addressOf(key));
          assert.equal(s.extra!.chargedAmount, PRICE * BigInt(file.length));
          assert.equal(res.headers.get("cache-control"), "private, max-age=29030400, immutable");
          const ch = client.channel(gw.url)!;
          assert.ok(ch.channel);
          assert.equal(ch.cumulative, PRICE * BigInt(served));
          assert.ok(events.some((e) => e.type === "channel_opened"));
          // Ranges are paid up front (their size is known): one request each.
          for (const [a, b] of [[0, 99], [MiB, 2 * MiB - 1], [file.length - 5, file.length - 1]]) {
            const r = await client.fetch(`${gw.url}/mesh/${cid}`, {
              headers: { Range: `bytes=${a}-${b}` },
            });
            assert.equal(r.status, 206);
            assert.deepEqual(new Uint8Array(await r.arrayBuffer()), file.subarray(a, b + 1));
            served += b - a + 1;
          }
          // A raw block: its size comes from the 402.
          const manifest = await client.fetch(`${gw.url}/mesh/${cid}?format=raw`);
          assert.equal(manifest.status, 200);
          served += (await manifest.arrayBuffer()).byteLength;
          // Concurrent requests: their vouchers still arrive in order.
          const many = await Promise.all(
            Array.from({ length: 6 }, (_, i) =>
              client.fetch(`${gw.url}/mesh/${cid}`, {
                headers: { Range: `bytes=${i * 1000}-${i * 1000 + 4095}` },
              }).then(async (
                r,
              ) => (assert.equal(r.status, 206), (await r.arrayBuffer()).byteLength))),
          );
          served += many.reduce((x, y) => x + y, 0);
          const account = gw.desk.account(`${HTTP_PEER_PREFIX}${ch.channel}`)!;
          assert.equal(account.servedBytes, BigInt(served));
          assert.equal(account.accepted, PRICE * BigInt(served));
          assert.equal(client.channel(gw.url)!.cumulative, PRICE * BigInt(served));
          assert.equal(events.filter((e) => e.type === "paid").length, 1 + 3 + 1 + 6);
          await gw.desk.redeemAll({ factor: 1 });
          assert.equal(await gw.redeemed(ch.channel!), PRICE * BigInt(served));
        },
      );

      const ch = client.channel(gw.url)!.channel!;
      const domain = { name: "Meshgate ChannelHub", version: "1", chainId, hub: gw.hub };
      const header = (
        over: {
          amount?: bigint;
          channel?: string;
          key?: string;
          chain?: number;
          network?: string;
          sig?: string;
        },
      ) => {
        const voucher = {
          channel: over.channel ?? ch,
          cumulativeAmount: over.amount ?? client.channel(gw.url)!.cumulative + PRICE * 100n,
          receiptsRoot: EMPTY_ROOT,
          receiptCount: 0n,
        };
        const d = { ...domain, chainId: over.chain ?? chainId };
        return encodeHeader({
          x402Version: 2,
          accepted: { scheme: X402_SCHEME, network: over.network ?? `eip155:${chainId}` },
          payload: {
            ...voucher,
            signature: over.sig ?? signDigest(over.key ?? key, voucherDigest(d, voucher)),
          },
        });
      };
      const refused = async (value: string, status: number, code: string, message: RegExp) => {
        const res = await fetch(`${gw.url}/mesh/${cid}`, {
          headers: { [PAYMENT_SIGNATURE]: value, Range: "bytes=0-99" },
        });
        const body = await res.json();
        assert.equal(res.status, status, JSON.stringify(body));
        assert.equal(body.error, code);
        assert.match(body.message, message);
        assert.ok(res.headers.has(PAYMENT_REQUIRED), "says how to pay");
        const s = parseSettlementResponse(res.headers.get(PAYMENT_RESPONSE));
        assert.equal(s.success, false);
        assert.equal(s.errorReason, code);
      };

      await t.step(
        "bad payments are refused, each with a clear error, and nothing is served",
        async () => {
          const before = gw.desk.account(`${HTTP_PEER_PREFIX}${ch}`)!;
          await refused(
            "this is not base64!",
            400,
            "payment_malformed",
            /PAYMENT-SIGNATURE header is malformed: it is not base64/,
          );
          await refused(
            btoa('{"x402Version":2}'),
            400,
            "payment_malformed",
            /"accepted" must name/,
          );
          await refused(
            header({ network: "eip155:1" }),
            402,
            "voucher_network",
            /for network "eip155:1", but this gateway is paid on "eip155:31337"/,
          );
          await refused(
            header({ chain: 1 }),
            402,
            "voucher_signer",
            /Voucher is signed by "0x[0-9a-fA-F]{40}", not the payer/,
          );
          await refused(
            header({ key: generatePrivateKey() }),
            402,
            "voucher_signer",
            /not the payer "0x/,
          );
          await refused(
            header({ sig: `0x${"ab".repeat(32)}${"ff".repeat(32)}1b` }),
            402,
            "voucher_signature",
            /s is zero or high/,
          );
          await refused(
            header({ channel: toHex(123n, { size: 32 }) }),
            402,
            "voucher_channel_unusable",
            /does not exist/,
          );
          // A real channel of the same payer, to another payee: a voucher for another channel.
          const payer = createWalletClient({
            account: privateKeyToAccount(key as Hex),
            chain: meshChain(gw.devnet.config),
            transport: http(gw.devnet.config.rpc),
          }) as PayClient;
          const other = await openChannel(payer, {
            address: gw.hub,
            payee: privateKeyToAccount(generatePrivateKey()).address,
            deposit: 10n ** 16n,
            challengePeriod: 3600n,
          });
          await refused(
            header({ channel: other.channel }),
            402,
            "voucher_channel_unusable",
            /pays "0x[0-9a-fA-F]{40}", not this operator/,
          );
          // Replayed: the very header of a paid request, sent again.
          const paid = events.filter((e) => e.type === "paid").at(-1) as { header: string };
          await refused(paid.header, 402, "voucher_replay", /was already accepted/);
          // Below what was accepted, properly signed.
          await refused(
            header({ amount: before.accepted - 1n }),
            402,
            "voucher_amount",
            /is below the accepted/,
          );
          const after = gw.desk.account(`${HTTP_PEER_PREFIX}${ch}`)!;
          assert.equal(after.servedBytes, before.servedBytes, "nothing served");
          assert.equal(after.accepted, before.accepted, "nothing accepted");
          assert.equal(
            after.banned,
            undefined,
            "a forger naming the channel cannot get its payer banned",
          );
          // The honest client goes on.
          const ok = await client.fetch(`${gw.url}/mesh/${cid}`, {
            headers: { Range: "bytes=0-9" },
          });
          assert.equal(ok.status, 206);
          assert.deepEqual(new Uint8Array(await ok.arrayBuffer()), file.subarray(0, 10));
          served += 10;
        },
      );

      await t.step(
        "an answer lost after the gateway took its voucher leaves no channel stuck",
        async () => {
          let lose = false;
          const lossy = new X402Client({
            rpc: gw.devnet.config.rpc,
            fetch: async (input, init) => {
              const res = await fetch(input, init);
              if (!lose || !new Request(input, init).headers.has(PAYMENT_SIGNATURE)) return res;
              lose = false;
              await res.body?.cancel();
              throw new TypeError("the connection broke");
            },
          });
          await gw.fund(await lossy.address());
          const first = await lossy.fetch(`${gw.url}/mesh/${cid}`, {
            headers: { Range: "bytes=0-999" },
          });
          assert.equal(first.status, 206);
          await first.arrayBuffer();
          lose = true;
          await assert.rejects(
            lossy.fetch(`${gw.url}/mesh/${cid}`, { headers: { Range: "bytes=0-999" } }),
            /the connection broke/,
          );
          const after = await lossy.fetch(`${gw.url}/mesh/${cid}`, {
            headers: { Range: "bytes=0-999" },
          });
          assert.equal(after.status, 206);
          assert.equal((await after.arrayBuffer()).byteLength, 1000);
          const c = lossy.channel(gw.url)!;
          assert.equal(c.cumulative, PRICE * 3000n);
          assert.equal(gw.desk.account(`${HTTP_PEER_PREFIX}${c.channel}`)!.accepted, PRICE * 3000n);
        },
      );

      await t.step("a client that stops paying is cut off within its credit", async () => {
        const account = () => gw.desk.account(`${HTTP_PEER_PREFIX}${ch}`)!;
        const paidBytes = (a: { accepted: bigint; base: bigint }) => (a.accepted - a.base) / PRICE;
        let unpaid = 0;
        let cut: Response | undefined;
        // Fresh vouchers of 1 wei more each: they authenticate the request but pay nothing.
        for (let i = 0; i < 64 && !cut; i++) {
          const res = await fetch(`${gw.url}/mesh/${cid}`, {
            headers: {
              [PAYMENT_SIGNATURE]: await client.paymentHeader(gw.url, account().accepted + 1n),
              Range: `bytes=0-${64 * KiB - 1}`,
            },
          });
          if (res.status === 206) unpaid += (await res.arrayBuffer()).byteLength;
          else cut = res;
        }
        assert.ok(cut, "cut off");
        assert.equal(cut.status, 402);
        const body = await cut.json();
        assert.equal(body.error, "payment_required");
        assert.match(
          body.message,
          /owes "\d+" wei, more than a credit of 1048576 bytes allows: send a voucher/,
        );
        assert.ok(unpaid <= CREDIT && unpaid > CREDIT - 64 * KiB, `${unpaid} bytes unpaid`);
        const a = account();
        assert.ok(a.servedBytes - paidBytes(a) <= BigInt(CREDIT));
        // No voucher at all: 402 at once.
        const none = await fetch(`${gw.url}/mesh/${cid}`, { headers: { Range: "bytes=0-9" } });
        assert.equal(none.status, 402);
        await none.body?.cancel();
      });
      await t.step(
        "made-up channels cost the chain little: a client naming many is told 429",
        async () => {
          const codes: string[] = [];
          for (let i = 0; i < 9 && !codes.includes("pay_rate_limited"); i++) {
            const res = await fetch(`${gw.url}/mesh/${cid}`, {
              headers: {
                [PAYMENT_SIGNATURE]: header({
                  channel: toHex(1000n + BigInt(i), { size: 32 }),
                  key: generatePrivateKey(),
                }),
                Range: "bytes=0-9",
              },
            });
            const body = await res.json();
            codes.push(body.error);
            if (body.error === "pay_rate_limited") {
              assert.equal(res.status, 429);
              assert.match(body.message, /"127\.0\.0\.1" asks for chain look-ups too often/);
            } else assert.equal(body.error, "voucher_channel_unusable");
          }
          assert.equal(codes.at(-1), "pay_rate_limited", codes.join(" "));
          // A bound channel costs no look-up: its payer goes on.
          const ok = await client.fetch(`${gw.url}/mesh/${cid}`, {
            headers: { Range: "bytes=0-9" },
          });
          assert.equal(ok.status, 206);
          await ok.body?.cancel();
        },
      );
    } finally {
      await gw.stop();
    }
  },
});
