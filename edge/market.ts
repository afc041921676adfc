/**
 * The market over HTTP (`src/market/`): a buyer's intents and the quotes it opened, a seller's listings.
 *
 * - `GET /api/market/intents`: own live intents (with how many quotes each has); `POST` one
 *   (`{topic, item, specs?, quantity, maxPrice, currency, expiry | ttlMs}`) to post it to the mesh (201).
 * - `DELETE /api/market/intents/<id>`: withdraw it.
 * - `GET /api/market/quotes?intent=<id>`: the opened quotes to it, best first, with trust and effective price.
 * - `GET /api/market/listings`, `POST` one, `DELETE /api/market/listings/<id>`; `GET /api/market/seen`:
 *   others' intents under the listings' topics, and the quotes sent.
 * - Deals (with a chain): `POST /api/market/quotes/<id>/accept` funds the escrow for the quote `id` (201);
 *   `POST /api/market/deals/<id>/release` pays the seller; `POST /api/market/deals/<id>/rate`
 *   (`{value: 0..1, comment?: 0x…32 bytes}`) signs, keeps and spreads the rating; `GET /api/market/deals`;
 *   `POST /api/market/deals/<id>/confirm` (the seller, for a deal its node did not confirm by itself).
 * - `GET /api/market`: this node's peer and, with a chain, its deal account (the page asks it first).
 * - `GET /api/market/inbox`: the sealed quotes as they arrived (sender, intent, ciphertext size: never a
 *   price), so the page shows what came sealed beside what the node opened.
 * - `POST /api/market/intents/<id>/answer`: the seller quotes an intent held for it (a listing with
 *   `auto: false`).
 *
 * Quotes and listings are private: unlike the rest of the API, even reading them needs the API token when the
 * gateway has one (writes pass the write guard as every write does).
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { MeshError } from "../src/errors.ts";
import { intentId, type IntentTerms } from "../src/market/intent.ts";
import type { ListingInit } from "../src/market/listing.ts";
import type { Deal } from "../src/market/deals.ts";
import { quoteId } from "../src/market/quote.ts";
import type { MarketService } from "../src/market/service.ts";
import { httpStatus } from "./errors.ts";

const MAX_BODY_BYTES = 16 * 1024;

async function body(c: Context): Promise<Record<string, unknown>> {
  const text = await c.req.text();
  if (text.length > MAX_BODY_BYTES) throw new MeshError("too_large", "At most 16 KiB");
  try {
    const v = JSON.parse(text);
    if (v && typeof v === "object" && !Array.isArray(v)) return v;
  } catch {
    // below
  }
  throw new MeshError("bad_request", "The body is a JSON object");
}

export function addMarketRoutes(
  app: Hono,
  market: () => MarketService | undefined,
  options: { token?: string } = {},
): void {
  const fail = (c: Context, err: MeshError) =>
    c.json({ error: err.code, message: err.message }, httpStatus(err) as 400);
  app.use("/api/market/*", async (c, next) => {
    if (options.token && c.req.header("authorization") !== `Bearer ${options.token}`) {
      return c.json({ error: "unauthorized", message: "The market API needs the API token" }, 401);
    }
    if (!market()) {
      return c.json({ error: "not_found", message: "This node runs no market (--market)" }, 404);
    }
    await next();
  });
  app.get("/api/market", (c) => {
    const m = market()!;
    const d = m.deals;
    return c.json({
      peer: m.peer,
      deals: d ? { address: d.address, chainId: d.chainId, escrow: d.escrow } : null,
    });
  });
  app.get("/api/market/inbox", (c) =>
    c.json({
      sealed: market()!.inbox().filter((e) => e.kind === "quote").map((e) => {
        const s = e.body as { intent?: string; ct?: string };
        return {
          at: e.at,
          from: e.from,
          intent: s.intent,
          bytes: Math.floor((s.ct?.length ?? 0) * 3 / 4),
        };
      }),
    }));
  app.post("/api/market/intents/:id/answer", async (c) => {
    const sent = await market()!.answer(c.req.param("id")).catch((e) => e);
    if (sent instanceof MeshError) return fail(c, sent);
    if (sent instanceof Error) throw sent;
    if (!sent) {
      return c.json({ error: "not_found", message: "No such intent, or no listing fills it" }, 404);
    }
    return c.json({ ...sent, quote: { ...sent.quote } }, 201);
  });
  app.get("/api/market/intents", (c) => c.json({ intents: market()!.intents() }));
  app.post("/api/market/intents", async (c) => {
    const b = await body(c);
    const ttl = typeof b.ttlMs === "number" ? b.ttlMs : undefined;
    const terms = {
      topic: b.topic,
      item: b.item,
      specs: b.specs ?? {},
      quantity: b.quantity,
      maxPrice: b.maxPrice,
      currency: b.currency,
      expiry: b.expiry ?? (ttl !== undefined ? Date.now() + ttl : undefined),
    } as IntentTerms;
    try {
      const intent = await market()!.want(terms);
      return c.json({ id: intentId(intent), intent }, 201);
    } catch (e) {
      if (e instanceof MeshError) return fail(c, e);
      throw e;
    }
  });
  app.delete("/api/market/intents/:id", async (c) => {
    const gone = await market()!.withdraw(c.req.param("id"));
    return gone
      ? c.json({ withdrawn: c.req.param("id") })
      : c.json({ error: "not_found", message: "No such intent" }, 404);
  });
  app.get("/api/market/quotes", (c) => {
    const id = c.req.query("intent") ?? "";
    if (!market()!.hasIntent(id)) {
      return c.json({
        error: "not_found",
        message: `No intent "${id.slice(0, 80)}" here (withdrawn, expired, or another node's?)`,
      }, 404);
    }
    const quotes = market()!.quotes(id).map((r) => ({
      id: quoteId(r.quote),
      ...r.quote,
      trust: r.trust,
      effective: r.effective.toString(),
    }));
    return c.json({ intent: id, quotes });
  });
  const deal = (d: Deal) => ({ ...d, amount: d.amount.toString() });
  const attempt = async (c: Context, fn: () => Promise<unknown>, status = 200) => {
    try {
      return c.json(await fn() as Record<string, unknown>, status as 200);
    } catch (e) {
      if (e instanceof MeshError) return fail(c, e);
      throw e;
    }
  };
  app.post(
    "/api/market/quotes/:id/accept",
    (c) => attempt(c, async () => deal(await market()!.accept(c.req.param("id"))), 201),
  );
  app.post(
    "/api/market/deals/:id/release",
    (c) => attempt(c, async () => deal(await market()!.release(c.req.param("id")))),
  );
  app.post(
    "/api/market/deals/:id/confirm",
    (c) =>
      attempt(c, async () => {
        const desk = market()!.deals;
        if (!desk) throw new MeshError("deal_unfundable", "This node has no escrow (no chain)");
        return deal(await desk.confirm(c.req.param("id")));
      }),
  );
  app.post("/api/market/deals/:id/rate", async (c) => {
    const b = await body(c);
    if (typeof b.value !== "number" || !(b.value >= 0 && b.value <= 1)) {
      return fail(c, new MeshError("bad_request", "value is a number from 0 to 1"));
    }
    const comment = typeof b.comment === "string" ? b.comment as `0x${string}` : undefined;
    return attempt(c, async () => ({
      rating: await market()!.rate(c.req.param("id"), b.value as number, comment),
    }));
  });
  app.get(
    "/api/market/deals",
    (c) => c.json({ deals: (market()!.deals?.list() ?? []).map(deal) }),
  );
  app.get("/api/market/listings", (c) => c.json({ listings: market()!.listings.all() }));
  app.post("/api/market/listings", async (c) => {
    try {
      return c.json(market()!.addListing(await body(c) as unknown as ListingInit), 201);
    } catch (e) {
      if (e instanceof MeshError) return fail(c, e);
      throw e;
    }
  });
  app.delete(
    "/api/market/listings/:id",
    (c) =>
      market()!.removeListing(c.req.param("id"))
        ? c.json({ removed: c.req.param("id") })
        : c.json({ error: "not_found", message: "No such listing" }, 404),
  );
  app.get(
    "/api/market/seen",
    (c) => c.json({ seen: market()!.seen(), held: market()!.held(), sent: market()!.sent() }),
  );
}
