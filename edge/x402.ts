/**
 * Pay as you go over HTTP at the gateway: a Hono middleware that makes content answers paid (x402 v2 HTTP
 * transport, scheme `meshgate-channel`; the protocol is in the README). The domain is `src/pay/x402.ts`;
 * this file only turns it into statuses and headers.
 *
 * A content answer (one carrying `X-Ipfs-Path`: `/mesh/<cid>`, `/ipfs/<cid>`, a subdomain origin) with a body
 * is charged `price x its bytes`: without `PAYMENT-SIGNATURE` it becomes `402` with `PAYMENT-REQUIRED`; with
 * one the voucher pays for it (or it becomes the refusal: `400` malformed, `402` refused or past the credit,
 * `403` banned, `429` rate limited, each with `PAYMENT-REQUIRED` and a failed `PAYMENT-RESPONSE`), and the
 * answer carries `PAYMENT-RESPONSE`. Bytes the client never took (a cancelled body) are not owed. HEAD,
 * `304`, empty bodies and errors are free.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { parseCid } from "../src/content/cid.ts";
import { MeshError } from "../src/errors.ts";
import type { MeshgateNode } from "../src/node.ts";
import type { HttpCharge, HttpPaywall } from "../src/pay/x402.ts";
import {
  encodeHeader,
  PAYMENT_REQUIRED,
  PAYMENT_RESPONSE,
  PAYMENT_SIGNATURE,
} from "../src/pay/x402_format.ts";
import { httpStatus } from "./errors.ts";
import { parseRange } from "./range.ts";

/** Headers a page on another origin may read on paid answers. */
export const X402_EXPOSED = [PAYMENT_REQUIRED, PAYMENT_RESPONSE];

/** The CID of a content path (`/mesh/<cid>`, `/ipfs/<cid>`, or the subdomain's `/`). */
function cidOf(c: Context) {
  const path = c.res.headers.get("x-ipfs-path") ?? "";
  return parseCid(/^\/(?:mesh|ipfs)\/([^/?#]+)/.exec(path)?.[1] ?? "");
}

/** Sets the answer to `res` as it is: Hono's setter would copy the old answer's headers onto it. */
function replace(c: Context, res: Response): void {
  c.res = undefined;
  c.res = res;
}

function unpaidMessage(wall: HttpPaywall, bytes: number): string {
  return `This gateway charges ${wall.price(bytes)} wei for these ${bytes} bytes: ` +
    `send a ${PAYMENT_SIGNATURE} header`;
}

/** A refusal: `{ error, message }` with how to pay, and (for a payment that was sent) why it failed. */
function refusal(
  wall: HttpPaywall,
  url: string,
  bytes: number,
  mimeType: string | null,
  r: { status: number; code: string; message: string; paid: boolean },
): Response {
  const headers = new Headers({
    "Content-Type": "application/json",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": X402_EXPOSED.join(", "),
    [PAYMENT_REQUIRED]: encodeHeader(wall.required(url, bytes, {
      error: r.message,
      mimeType: mimeType ?? undefined,
    })),
  });
  if (r.paid) headers.set(PAYMENT_RESPONSE, encodeHeader(wall.refusal(r.code)));
  return new Response(JSON.stringify({ error: r.code, message: r.message }), {
    status: r.status,
    headers,
  });
}

/**
 * Makes content answers paid through `paywall` (absent: the node charges nothing, all passes). With `node`,
 * an unpaid GET of a file is priced from its manifest alone, so asking never makes the gateway read a chunk
 * (one it may have to buy from the mesh); a manifest that cannot be had fails as the GET would.
 */
export function x402Paywall(
  paywall: () => HttpPaywall | undefined,
  node?: Pick<MeshgateNode, "manifest">,
): MiddlewareHandler {
  return async (c, next) => {
    const wall = paywall();
    if (!wall) return await next();
    // A page on another origin sends PAYMENT-SIGNATURE: the browser asks first.
    if (c.req.method === "OPTIONS" && /^\/(?:mesh|ipfs)\//.test(c.req.path)) {
      return c.body(null, 204, {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": "GET, HEAD",
        "Access-Control-Allow-Headers": `${PAYMENT_SIGNATURE}, Range, Accept, If-None-Match`,
        "Access-Control-Max-Age": "600",
      });
    }
    // Files only: a raw block's size is known once it is read (as its GET does), a revalidation is free.
    const file = /^\/(?:mesh|ipfs)\/([^/?#]+)$/.exec(c.req.path)?.[1];
    if (
      node && file && c.req.method === "GET" && !c.req.header(PAYMENT_SIGNATURE) &&
      c.req.query("format") === undefined && !c.req.header("if-none-match") &&
      !(c.req.header("accept") ?? "").includes("application/vnd.ipld.raw")
    ) {
      const manifest = await node.manifest(parseCid(file), c.req.raw.signal);
      const range = parseRange(c.req.header("range"), manifest.size);
      const bytes = range.kind === "partial"
        ? range.end - range.start
        : range.kind === "full"
        ? manifest.size
        : 0;
      if (bytes > 0) {
        return refusal(wall, c.req.url, bytes, manifest.type, {
          status: 402,
          code: "payment_required",
          message: unpaidMessage(wall, bytes),
          paid: false,
        });
      }
    }
    await next();
    const res = c.res;
    const bytes = Number(res.headers.get("content-length") ?? NaN);
    const chargeable = c.req.method === "GET" && (res.status === 200 || res.status === 206) &&
      res.headers.has("x-ipfs-path") && res.body !== null && Number.isSafeInteger(bytes) &&
      bytes > 0;
    if (!chargeable) return;
    const url = c.req.url;
    const header = c.req.header(PAYMENT_SIGNATURE);
    const refuse = async (status: number, code: string, message: string) => {
      await res.body?.cancel().catch(() => {});
      replace(
        c,
        refusal(wall, url, bytes, res.headers.get("content-type"), {
          status,
          code,
          message,
          paid: header !== undefined,
        }),
      );
    };
    if (header === undefined) {
      return await refuse(402, "payment_required", unpaidMessage(wall, bytes));
    }
    let charge: HttpCharge;
    try {
      // Deno.serve's connection info; behind a proxy every client is the proxy, a shared budget.
      const env = c.env as { remoteAddr?: { hostname?: string } } | undefined;
      const client = env?.remoteAddr?.hostname ?? "unknown";
      charge = await wall.charge(header, cidOf(c), bytes, c.req.raw.signal, client);
    } catch (e) {
      if (!(e instanceof MeshError)) throw e;
      return await refuse(httpStatus(e), e.code, e.message);
    }
    // Counts what the server really took of the body: a client that goes away owes only that.
    const reader = res.body!.getReader();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        let next;
        try {
          next = await reader.read();
        } catch (e) {
          charge.settle(sent);
          controller.error(e);
          return;
        }
        if (next.done) {
          charge.settle(sent);
          controller.close();
          return;
        }
        sent += next.value.length;
        controller.enqueue(next.value);
      },
      cancel(reason) {
        charge.settle(sent);
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    const headers = new Headers(res.headers);
    headers.set(PAYMENT_RESPONSE, encodeHeader(charge.settlement));
    // Paid for by one client: no shared cache may hand it to others.
    headers.set("Cache-Control", "private, max-age=29030400, immutable");
    const exposed = headers.get("access-control-expose-headers");
    headers.set(
      "Access-Control-Expose-Headers",
      [exposed, ...X402_EXPOSED].filter(Boolean).join(", "),
    );
    replace(c, new Response(body, { status: res.status, headers }));
  };
}
