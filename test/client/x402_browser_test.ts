/**
 * Pay as you go over HTTP in headless Chromium, with the client in `/meshgate.js`, against a paid gateway on
 * anvil: a page with a session key (funded by the devnet's test helper) downloads 16 MiB through
 * `verifiedFetch`, paying every request with a voucher in `PAYMENT-SIGNATURE`, and what the operator redeems
 * is exactly price x the bytes it served; a page with an EIP-1193 wallet pays the same way; a page that stops
 * paying is cut off within the credit.
 */
import assert from "node:assert/strict";
import type { Browser } from "playwright-core";
import { browserTest, launchChromium } from "../_browser.ts";
import { payAccount } from "../../src/pay/delivery.ts";
import { HTTP_PEER_PREFIX } from "../../src/pay/x402.ts";
import { PRICE, startPaidGateway } from "../edge/_paid.ts";
import { byteAt, content } from "./_fixture.ts";

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const SEED = 14;
const CREDIT = 2 * MiB;

Deno.test({
  ...browserTest,
  sanitizeOps: false,
  sanitizeResources: false,
  name: "Chromium: a page pays a gateway with x402 vouchers for 16 MiB, redeemed to price x bytes",
  async fn(t) {
    const gw = await startPaidGateway({ creditBytes: CREDIT });
    let browser: Browser | undefined;
    try {
      const cid = await gw.put(content(SEED, SIZE), "k=4&m=2&chunkSize=262144");
      const head = await fetch(`${gw.url}/mesh/${cid}?format=raw`, { method: "HEAD" });
      const manifestBytes = Number(head.headers.get("content-length"));
      browser = await launchChromium();
      const rpc = gw.devnet.config.rpc;

      await t.step(
        "a session key pays for 16 MiB, voucher by voucher; redeemed = price x bytes",
        async () => {
          // Its own context: another step's answers in the HTTP cache would be served unpaid.
          const page = await (await browser!.newContext()).newPage();
          const errors: string[] = [];
          page.on("pageerror", (e) => errors.push(String(e)));
          await page.goto(`${gw.url}/livez`);
          const address = await page.evaluate(async ({ url, rpc }) => {
            const m = await import(`${url}/meshgate.js`);
            // deno-lint-ignore no-explicit-any
            const w = globalThis as any;
            w.events = [];
            w.pay = new m.X402Client({ rpc, onEvent: (e: unknown) => w.events.push(e) });
            w.m = m;
            return await w.pay.address() as string;
          }, { url: gw.url, rpc });
          await gw.fund(address);
          const got = await page.evaluate(async ({ url, cid, seed, byteAtSource }) => {
            const byteAt = (0, eval)(`(${byteAtSource})`) as (seed: number, i: number) => number;
            // deno-lint-ignore no-explicit-any
            const w = globalThis as any;
            const res: Response = await w.m.verifiedFetch(cid, {
              gateway: url,
              fetch: w.pay.fetch,
              runBytes: 4 * 1024 * 1024,
            });
            const reader = res.body!.getReader();
            let length = 0;
            let wrong = 0;
            while (true) {
              const { value, done } = await reader.read();
              if (done) break;
              for (let i = 0; i < value.length; i++) {
                if (value[i] !== byteAt(seed, length + i)) wrong++;
              }
              length += value.length;
            }
            const ch = w.pay.channel(url);
            // deno-lint-ignore no-explicit-any
            const paid = w.events.filter((e: any) => e.type === "paid");
            return {
              status: res.status,
              length,
              wrong,
              kind: w.pay.kind,
              channel: ch.channel as string,
              cumulative: String(ch.cumulative),
              vouchers: paid.length,
              // deno-lint-ignore no-explicit-any
              paidBytes: paid.reduce((n: number, e: any) => n + e.bytes, 0),
              // deno-lint-ignore no-explicit-any
              refused: w.events.filter((e: any) => e.type === "refused").length,
            };
          }, { url: gw.url, cid, seed: SEED, byteAtSource: byteAt.toString() });
          assert.deepEqual(errors, []);
          assert.equal(got.status, 200);
          assert.equal(got.length, SIZE);
          assert.equal(got.wrong, 0);
          assert.equal(got.kind, "session");
          assert.equal(got.refused, 0);
          // The manifest, then the data in runs of 4 MiB: one voucher per request.
          assert.equal(got.paidBytes, SIZE + manifestBytes);
          assert.ok(got.vouchers >= 5, `${got.vouchers} vouchers`);
          const account = gw.desk.account(`${HTTP_PEER_PREFIX}${got.channel}`)!;
          const served = BigInt(SIZE + manifestBytes);
          assert.equal(account.servedBytes, served);
          assert.equal(account.accepted, PRICE * served);
          assert.equal(BigInt(got.cumulative), PRICE * served);
          // What the desk redeems under its gas rule (worth 10 redeems now; all that is worth one at stop).
          await gw.desk.redeemAll({ factor: 1 });
          assert.equal(await gw.redeemed(got.channel), PRICE * served);
          console.log(
            `16 MiB paid with ${got.vouchers} vouchers: ${
              PRICE * served
            } wei redeemed for ${served} bytes`,
          );
          await page.close();
        },
      );

      await t.step(
        "a page with an EIP-1193 wallet opens its channel and signs through it",
        async () => {
          const wallet = payAccount("dev:6").address; // unlocked in anvil: it signs and sends
          // Its own context: another step's answers in the HTTP cache would be served unpaid.
          const page = await (await browser!.newContext()).newPage();
          await page.goto(`${gw.url}/livez`);
          const got = await page.evaluate(async ({ url, rpc, wallet, cid }) => {
            let id = 0;
            const call = async (method: string, params: unknown[] = []) => {
              const res = await fetch(rpc, {
                method: "POST",
                headers: { "Content-Type": "application/json" },
                body: JSON.stringify({ jsonrpc: "2.0", id: ++id, method, params }),
              });
              const body = await res.json();
              if (body.error) throw new Error(body.error.message);
              return body.result;
            };
            // deno-lint-ignore no-explicit-any
            (globalThis as any).ethereum = {
              request: ({ method, params }: { method: string; params?: unknown[] }) =>
                method === "eth_requestAccounts" ? Promise.resolve([wallet]) : call(method, params),
            };
            const m = await import(`${url}/meshgate.js`);
            const pay = new m.X402Client();
            const res: Response = await pay.fetch(`${url}/mesh/${cid}`, {
              headers: { Range: "bytes=1000-1999" },
            });
            const ch = pay.channel(url);
            return {
              kind: pay.kind,
              status: res.status,
              bytes: (await res.arrayBuffer()).byteLength,
              channel: ch.channel,
              cumulative: String(ch.cumulative),
            };
          }, { url: gw.url, rpc, wallet, cid });
          assert.equal(got.kind, "wallet");
          assert.equal(got.status, 206);
          assert.equal(got.bytes, 1000);
          assert.equal(BigInt(got.cumulative), PRICE * 1000n);
          const account = gw.desk.account(`${HTTP_PEER_PREFIX}${got.channel}`)!;
          assert.equal(account.payer, wallet);
          assert.equal(account.accepted, PRICE * 1000n);
          await page.close();
        },
      );

      await t.step("a page on another origin pays too (preflight, exposed headers)", async () => {
        const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
        const site = Deno.serve(
          { hostname: "127.0.0.1", port: 0, onListen: resolve },
          () =>
            new Response("<!doctype html><title>site</title>", {
              headers: { "Content-Type": "text/html" },
            }),
        );
        try {
          const page = await (await browser!.newContext()).newPage();
          await page.goto(`http://127.0.0.1:${(await promise).port}/`);
          const address = await page.evaluate(async ({ url, rpc }) => {
            const m = await import(`${url}/meshgate.js`);
            // deno-lint-ignore no-explicit-any
            const w = globalThis as any;
            w.pay = new m.X402Client({ rpc });
            return await w.pay.address() as string;
          }, { url: gw.url, rpc });
          await gw.fund(address);
          const got = await page.evaluate(async ({ url, cid }) => {
            // deno-lint-ignore no-explicit-any
            const pay = (globalThis as any).pay;
            const a = await pay.fetch(`${url}/mesh/${cid}`, { headers: { Range: "bytes=0-999" } });
            const b = await pay.fetch(`${url}/mesh/${cid}`, {
              headers: { Range: "bytes=1000-1999" },
            });
            return {
              status: [a.status, b.status],
              bytes: (await a.arrayBuffer()).byteLength + (await b.arrayBuffer()).byteLength,
              cumulative: String(pay.channel(url).cumulative),
              origin: location.origin,
            };
          }, { url: gw.url, cid });
          assert.notEqual(got.origin, gw.url);
          assert.deepEqual(got.status, [206, 206]);
          assert.equal(got.bytes, 2000);
          // The second voucher went up by exactly its price: the page read PAYMENT-RESPONSE.
          assert.equal(BigInt(got.cumulative), PRICE * 2000n);
          await page.close();
        } finally {
          await site.shutdown();
        }
      });

      await t.step("a page that stops paying is cut off within the credit", async () => {
        // Its own context: another step's answers in the HTTP cache would be served unpaid.
        const page = await (await browser!.newContext()).newPage();
        await page.goto(`${gw.url}/livez`);
        const address = await page.evaluate(async ({ url, rpc }) => {
          const m = await import(`${url}/meshgate.js`);
          // deno-lint-ignore no-explicit-any
          const w = globalThis as any;
          w.pay = new m.X402Client({ rpc });
          return await w.pay.address() as string;
        }, { url: gw.url, rpc });
        await gw.fund(address);
        const got = await page.evaluate(async ({ url, cid }) => {
          // deno-lint-ignore no-explicit-any
          const pay = (globalThis as any).pay;
          // Paid honestly first (this opens the channel)…
          const first = await pay.fetch(`${url}/mesh/${cid}`, {
            headers: { Range: "bytes=0-65535" },
          });
          await first.arrayBuffer();
          // …then fresh vouchers of 1 wei more each: the request is signed for, the bytes are not paid.
          let cumulative = pay.channel(url).cumulative as bigint;
          let unpaid = 0;
          for (let i = 0; i < 100; i++) {
            cumulative += 1n;
            const res = await fetch(`${url}/mesh/${cid}`, {
              cache: "no-store",
              headers: {
                "PAYMENT-SIGNATURE": await pay.paymentHeader(url, cumulative),
                Range: `bytes=${i * 65536}-${i * 65536 + 65535}`,
              },
            });
            if (res.status !== 206) {
              const body = await res.json();
              return { unpaid, status: res.status, error: body.error, message: body.message };
            }
            unpaid += (await res.arrayBuffer()).byteLength;
          }
          return { unpaid, status: 206, error: "", message: "never cut off" };
        }, { url: gw.url, cid });
        assert.equal(got.status, 402, got.message);
        assert.equal(got.error, "payment_required");
        assert.match(got.message, /more than a credit of 2097152 bytes allows: send a voucher/);
        assert.ok(got.unpaid <= CREDIT, `${got.unpaid} bytes unpaid, over the credit`);
        assert.ok(got.unpaid > CREDIT - 65536, `${got.unpaid} bytes: the credit was served`);
        await page.close();
      });
    } finally {
      await browser?.close();
      await gw.stop();
    }
  },
});
