/// <reference lib="dom" />
/**
 * The market view, over `/api/market/*` (hidden on a node without `--market`).
 *
 * - Buy: post an intent to the mesh; the sealed quotes that arrive are opened by this node with the intent's
 *   own key (never by anyone else) and shown in place, best first by price and the seller's trust; accept
 *   one to fund its escrow, then release and rate the deal.
 * - Sell: listings (add, remove), the intents seen under their topics (answer one held for the operator),
 *   the quotes sent; deals (confirm one the node did not confirm by itself).
 *
 * Lists are redrawn only when what they show changed, so a half-filled form or a focused button survives the
 * refresh.
 */
import { $, api, esc } from "./lib.ts";
import { ether } from "./pay.ts";

interface Intent {
  topic: string;
  item: string;
  quantity: number;
  maxPrice: string;
  currency: string;
  expiry: number;
  buyer: string;
}
interface QuoteRow {
  id: string;
  seller: string;
  item: string;
  quantity: number;
  price: string;
  currency: string;
  terms: string;
  deliveryTime: number;
  validUntil: number;
  trust: number;
  effective: string;
  payout?: { address: string };
}
interface Deal {
  id: string;
  /** The accepted quote's ID. */
  terms: string;
  role: "buyer" | "seller";
  quote: QuoteRow;
  amount: string;
  status: string;
  rated?: number;
}
interface Listing {
  id: string;
  topic: string;
  item: string;
  stock: number;
  currency: string;
  price: { unit: string };
  auto: boolean;
}
interface Sent {
  intent: string;
  buyer: string;
  quote: { item: string; quantity: number; price: string; currency: string };
  delivered: boolean;
  error?: string;
}
interface Sealed {
  from: string;
  intent: string;
  bytes: number;
}

const short = (s: string) => s.length > 16 ? `${s.slice(0, 8)}…${s.slice(-4)}` : s;
/** An amount: ether for wei (the exact wei on hover), else as given. */
const amount = (v: string, currency: string) =>
  currency === "wei"
    ? `<span class="mk-amount" title="${esc(v)} wei">${esc(ether(v))}</span>`
    : `<span class="mk-amount">${esc(v)} ${esc(currency)}</span>`;
const when = (ms: number) => esc(new Date(ms).toISOString().slice(0, 16).replace("T", " "));
const duration = (ms: number) =>
  ms >= 86_400_000
    ? `${Math.round(ms / 86_400_000)} d`
    : ms >= 3_600_000
    ? `${Math.round(ms / 3_600_000)} h`
    : `${Math.round(ms / 60_000)} min`;

const SKELETON = `
<h2 id="market-h">Market</h2>
<p class="dim">Say what you want to the whole mesh; sellers answer with quotes sealed to a key made for that
intent alone, so only this node can open them and no seller sees another's price.</p>
<div class="market-cols">
  <div>
    <h3>Buy</h3>
    <form id="mk-want" class="mk-form" aria-label="Post an intent">
      <label>Topic <input name="topic" required maxlength="64" placeholder="bikes"></label>
      <label>Item <input name="item" required maxlength="128" placeholder="tune-up"></label>
      <label>Quantity <input name="quantity" type="number" min="1" value="1" required></label>
      <label>Highest price <input name="maxPrice" required inputmode="numeric" pattern="[0-9]+"
        placeholder="wei"></label>
      <label>Currency <input name="currency" value="wei" required></label>
      <label>Open for (minutes) <input name="ttl" type="number" min="1" value="60" required></label>
      <button type="submit">Post intent</button>
    </form>
    <div id="mk-intents"></div>
  </div>
  <div>
    <h3>Sell</h3>
    <form id="mk-list" class="mk-form" aria-label="Add a listing">
      <label>Topic <input name="topic" required maxlength="64" placeholder="bikes"></label>
      <label>Item <input name="item" required maxlength="128" placeholder="tune-up"></label>
      <label>Stock <input name="stock" type="number" min="0" value="1" required></label>
      <label>Unit price <input name="unit" required inputmode="numeric" pattern="[0-9]+"
        placeholder="wei"></label>
      <label>Currency <input name="currency" value="wei" required></label>
      <label>Delivery (hours) <input name="hours" type="number" min="0" value="24" required></label>
      <label class="wide">Terms <input name="terms" maxlength="512" placeholder="shipping, warranty…"></label>
      <label class="check"><input name="auto" type="checkbox" checked> quote matching intents at once</label>
      <button type="submit">Add listing</button>
    </form>
    <h4>Listings</h4>
    <ul id="mk-listings" class="mk-list" aria-label="listings"></ul>
    <h4>Matching intents</h4>
    <ul id="mk-seen" class="mk-list" aria-label="intents seen under the listings' topics"></ul>
    <h4>Quotes sent</h4>
    <ul id="mk-sent" class="mk-list" aria-label="quotes sent"></ul>
  </div>
</div>
<h3>Deals</h3>
<p id="mk-account" class="dim"></p>
<ul id="mk-deals" class="mk-list" aria-label="deals"></ul>
<p id="mk-msg" class="mk-msg" role="status" aria-live="polite"></p>`;

let ready = false;
let hasDeals = false;
const drawn = new Map<string, string>();

/** Sets `id`'s HTML only when it changed. */
function draw(id: string, html: string): void {
  if (drawn.get(id) === html) return;
  drawn.set(id, html);
  $(id).innerHTML = html;
}

function say(text: string, bad = false): void {
  const m = $("mk-msg");
  m.textContent = text;
  m.classList.toggle("bad", bad);
}

async function call(
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await api(path, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const json = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(String(json.message ?? `HTTP ${res.status}`));
  return json;
}

async function act(what: string, fn: () => Promise<unknown>): Promise<void> {
  say(`${what}…`);
  try {
    await fn();
    say(`${what}: done`);
  } catch (e) {
    say(`${what}: ${(e as Error).message}`, true);
  }
  drawn.clear(); // redraw all: the button pressed was disabled
  await refreshMarket();
}

function quotesHtml(id: string, quotes: QuoteRow[], sealed: Sealed[], dealt: Set<string>): string {
  const arrived = sealed.filter((s) => s.intent === id);
  const head = `<p class="mk-sealed dim">${arrived.length} sealed quote${
    arrived.length === 1 ? "" : "s"
  } arrived${
    arrived.length ? ` (${arrived[0]!.bytes} bytes of ciphertext each)` : ""
  }; ${quotes.length} opened here with this intent's key</p>`;
  if (!quotes.length) return head;
  const items = quotes.map((q, i) => {
    const accept = hasDeals && q.payout && !dealt.has(q.id)
      ? `<button data-act="accept" data-id="${
        esc(q.id)
      }" aria-label="Accept and fund the quote of ${esc(short(q.seller))}">Accept and fund</button>`
      : dealt.has(q.id)
      ? '<span class="dim">accepted</span>'
      : "";
    return `<li class="mk-quote${
      i === 0 ? " best" : ""
    }"><div><span class="mk-opened">opened</span> ${
      amount(q.price, q.currency)
    } <span class="dim">from <span title="${esc(q.seller)}">${
      esc(short(q.seller))
    }</span> · trust ${Math.round(q.trust * 100)}% · ranked at ${
      amount(q.effective, q.currency)
    } · delivery in ${esc(duration(q.deliveryTime))} · valid until ${
      when(q.validUntil)
    }</span></div>${q.terms ? `<div class="mk-terms">${esc(q.terms)}</div>` : ""}${
      accept ? `<div>${accept}</div>` : ""
    }</li>`;
  }).join("");
  return `${head}<ol class="mk-quotes" aria-label="opened quotes, best first">${items}</ol>`;
}

function dealActions(d: Deal): string {
  const label = (what: string) => `${what} deal ${short(d.id)}`;
  if (d.role === "buyer") {
    if (d.status === "funded" || d.status === "confirmed") {
      return `<button data-act="release" data-id="${esc(d.id)}" aria-label="${
        esc(label("Release"))
      }">Release</button>`;
    }
    if (d.status === "released" || d.status === "refunded") {
      if (d.rated !== undefined) return `<span class="dim">rated ${d.rated}</span>`;
      return `<span class="mk-rate"><label>Rating <select data-rate="${esc(d.id)}">
        ${[1, 0.75, 0.5, 0.25, 0].map((v) => `<option value="${v}">${v}</option>`).join("")}
        </select></label> <button data-act="rate" data-id="${esc(d.id)}" aria-label="${
        esc(label("Rate"))
      }">Rate</button></span>`;
    }
    return "";
  }
  return d.status === "funded"
    ? `<button data-act="confirm" data-id="${esc(d.id)}" aria-label="${
      esc(label("Confirm"))
    }">Confirm</button>`
    : "";
}

function setup(panel: HTMLElement): void {
  panel.innerHTML = SKELETON;
  const nav = document.querySelector("header nav, nav");
  if (nav && !nav.querySelector('a[href="#market"]')) {
    nav.insertAdjacentHTML("beforeend", '<a href="#market">Market</a>');
  }
  const want = $<HTMLFormElement>("mk-want");
  want.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(want);
    void act("Posting the intent", async () => {
      await call("POST", "/api/market/intents", {
        topic: f.get("topic"),
        item: f.get("item"),
        quantity: Number(f.get("quantity")),
        maxPrice: String(f.get("maxPrice")),
        currency: f.get("currency"),
        ttlMs: Number(f.get("ttl")) * 60_000,
      });
      want.reset();
    });
  });
  const list = $<HTMLFormElement>("mk-list");
  list.addEventListener("submit", (e) => {
    e.preventDefault();
    const f = new FormData(list);
    void act("Adding the listing", async () => {
      await call("POST", "/api/market/listings", {
        topic: f.get("topic"),
        item: f.get("item"),
        stock: Number(f.get("stock")),
        currency: f.get("currency"),
        price: { unit: String(f.get("unit")) },
        terms: f.get("terms") ?? "",
        deliveryTime: Number(f.get("hours")) * 3_600_000,
        auto: f.get("auto") === "on",
      });
      list.reset();
    });
  });
  panel.addEventListener("click", (e) => {
    const b = (e.target as HTMLElement).closest<HTMLButtonElement>("button[data-act]");
    if (!b) return;
    const id = b.dataset.id!;
    const path = encodeURIComponent(id);
    b.disabled = true;
    switch (b.dataset.act) {
      case "withdraw":
        void act("Withdrawing the intent", () => call("DELETE", `/api/market/intents/${path}`));
        break;
      case "accept":
        void act("Funding the escrow", () => call("POST", `/api/market/quotes/${path}/accept`));
        break;
      case "release":
        void act("Releasing the deal", () => call("POST", `/api/market/deals/${path}/release`));
        break;
      case "confirm":
        void act("Confirming the deal", () => call("POST", `/api/market/deals/${path}/confirm`));
        break;
      case "rate": {
        const select = panel.querySelector<HTMLSelectElement>(
          `select[data-rate="${CSS.escape(id)}"]`,
        );
        const value = Number(select?.value ?? 1);
        void act(
          "Rating the deal",
          () => call("POST", `/api/market/deals/${path}/rate`, { value }),
        );
        break;
      }
      case "remove":
        void act("Removing the listing", () => call("DELETE", `/api/market/listings/${path}`));
        break;
      case "answer":
        void act("Quoting the intent", () => call("POST", `/api/market/intents/${path}/answer`));
        break;
    }
  });
}

/** False once the node answered that it has no market (404): only a restart with `--market` gives it one,
 * and the page is loaded anew then, so until then the view stops asking. */
let offered = true;

export async function refreshMarket(): Promise<void> {
  if (!offered) return;
  let panel = document.getElementById("market");
  let info: Response;
  try {
    info = await api("/api/market");
  } catch {
    return;
  }
  const link = document.querySelector<HTMLElement>('nav a[href="#market"]');
  if (!info.ok) {
    if (panel) panel.hidden = true;
    if (link) link.hidden = true;
    if (info.status === 404) offered = false;
    await info.body?.cancel();
    return;
  }
  const me = await info.json() as {
    peer: string;
    deals: { address: string; chainId: number } | null;
  };
  if (!panel) {
    panel = document.createElement("section");
    panel.id = "market";
    document.querySelector("main")?.append(panel);
  }
  if (!ready) {
    setup(panel);
    ready = true;
  }
  panel.hidden = false;
  if (link) link.hidden = false;
  hasDeals = me.deals !== null;
  draw(
    "mk-account",
    me.deals
      ? `Deals go through the escrow on chain ${me.deals.chainId}, from account <code>${
        esc(me.deals.address)
      }</code>.`
      : "This node has no chain: it posts and answers intents, but takes no escrow deals.",
  );
  const [intents, deals, listings, seen] = await Promise.all([
    call("GET", "/api/market/intents"),
    call("GET", "/api/market/deals"),
    call("GET", "/api/market/listings"),
    call("GET", "/api/market/seen"),
  ]).catch(() => [] as Record<string, unknown>[]);
  if (!intents) return;
  const own = intents.intents as { id: string; intent: Intent }[];
  const dealList = deals!.deals as Deal[];
  const dealt = new Set(dealList.map((d) => d.terms));
  const quotes = await Promise.all(
    own.map((o) =>
      call("GET", `/api/market/quotes?intent=${encodeURIComponent(o.id)}`).then((r) =>
        r.quotes as QuoteRow[]
      )
    ),
  );
  // After the quotes: a quote is in the inbox (sealed) before it is opened, so none is counted opened and
  // not arrived.
  const sealed = await call("GET", "/api/market/inbox").catch(() => ({ sealed: [] }));
  draw(
    "mk-intents",
    own.length === 0
      ? '<p class="empty">No open intents.</p>'
      : own.map((o, i) =>
        `<article class="mk-intent" data-intent="${esc(o.id)}"><header><strong>${
          esc(o.intent.quantity)
        } × ${esc(o.intent.item)}</strong> <span class="dim">in ${esc(o.intent.topic)} · at most ${
          amount(o.intent.maxPrice, o.intent.currency)
        } · open until ${when(o.intent.expiry)}</span> <button data-act="withdraw" data-id="${
          esc(o.id)
        }" aria-label="Withdraw the intent for ${esc(o.intent.item)}">Withdraw</button></header>${
          quotesHtml(o.id, quotes[i]!, sealed.sealed as Sealed[], dealt)
        }</article>`
      ).join(""),
  );
  const rows = listings!.listings as Listing[];
  draw(
    "mk-listings",
    rows.length === 0
      ? '<li class="empty">No listings</li>'
      : rows.map((l) =>
        `<li class="mk-listing">${esc(l.item)} <span class="dim">in ${esc(l.topic)}</span> · ${
          amount(l.price.unit, l.currency)
        } each · stock ${l.stock} · ${
          l.auto ? "quotes at once" : "quotes by hand"
        } <button data-act="remove" data-id="${esc(l.id)}" aria-label="Remove the listing ${
          esc(l.item)
        }">Remove</button></li>`
      ).join(""),
  );
  const s = seen as { seen: Intent[]; held: { id: string; intent: Intent }[]; sent: Sent[] };
  const held = new Map(s.held.map((h) => [h.intent, h.id]));
  draw(
    "mk-seen",
    s.seen.length === 0 ? '<li class="empty">None seen</li>' : s.seen.map((i) => {
      const hid = held.get(i);
      return `<li>${esc(i.quantity)} × ${esc(i.item)} <span class="dim">in ${
        esc(i.topic)
      } · at most ${amount(i.maxPrice, i.currency)} · from ${esc(short(i.buyer))}</span>${
        hid
          ? ` <button data-act="answer" data-id="${esc(hid)}" aria-label="Quote the intent for ${
            esc(i.item)
          }">Quote</button>`
          : ""
      }</li>`;
    }).join(""),
  );
  draw(
    "mk-sent",
    s.sent.length === 0
      ? '<li class="empty">None sent</li>'
      : s.sent.map((q) =>
        `<li>${esc(q.quote.quantity)} × ${esc(q.quote.item)} at ${
          amount(q.quote.price, q.quote.currency)
        } <span class="dim">to ${esc(short(q.buyer))} · ${
          q.delivered ? "delivered, sealed" : `not delivered (${esc(q.error ?? "pending")})`
        }</span></li>`
      ).join(""),
  );
  draw(
    "mk-deals",
    dealList.length === 0 ? '<li class="empty">No deals</li>' : dealList.map((d) => {
      const actions = dealActions(d);
      return `<li class="mk-deal" data-deal="${esc(d.id)}"><code title="${esc(d.id)}">${
        esc(short(d.id))
      }</code> · ${esc(d.role)} · ${esc(d.quote.item)} · ${
        amount(d.amount, "wei")
      } · <span class="mk-status">${esc(d.status)}</span>${
        actions ? ` <span class="mk-actions">${actions}</span>` : ""
      }</li>`;
    }).join(""),
  );
}

/** Draws the view and keeps it fresh (quotes and deals move within seconds). */
export function setupMarket(): void {
  void refreshMarket();
  setInterval(() => {
    if (!document.hidden) void refreshMarket();
  }, 2000);
}
