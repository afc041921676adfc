/// <reference lib="dom" />
/**
 * The operators view: every operator this node has dealt with, its score and each factor, its state (new,
 * vetted, suspended, excluded) and, in words, why, from `GET /api/operators`. Click a column to sort by it.
 */
import { $, esc, loadPanel, size } from "./lib.ts";

interface Operator {
  peer: string;
  state: "new" | "vetted" | "suspended" | "excluded";
  score: number;
  factors: { reliability: number; speed: number; uptime: number; audit: number; trade: number };
  reliabilityLong: number;
  reasons: string[];
  deliveries: number;
  failures: number;
  bytes: number;
  ttfbMs?: number;
  lastSeen: string;
  evidence?: unknown;
}

type Column =
  | "peer"
  | "state"
  | "score"
  | "reliability"
  | "speed"
  | "uptime"
  | "audit"
  | "trade"
  | "deliveries"
  | "lastSeen";

const STATE_ORDER = { vetted: 0, new: 1, suspended: 2, excluded: 3 };
let sortBy: Column = "score";
let descending = true;
let last: Operator[] = [];

function key(o: Operator, c: Column): number | string {
  switch (c) {
    case "peer":
      return o.peer;
    case "state":
      return STATE_ORDER[o.state];
    case "reliability":
    case "speed":
    case "uptime":
    case "audit":
    case "trade":
      return o.factors[c];
    case "lastSeen":
      return o.lastSeen;
    default:
      return o[c];
  }
}

/** A factor as a small bar and its value: the eye finds the weak one. */
function bar(x: number): string {
  const pct = Math.round(x * 100);
  const tone = x >= 0.8 ? "ok" : x > 0.1 ? "warn" : "bad";
  return `<span class="bar ${tone}" title="${x.toFixed(3)}"><i style="width:${pct}%"></i></span>` +
    `<span class="num">${x.toFixed(2)}</span>`;
}

function render(): void {
  const body = $("operators-body");
  const rows = last.slice().sort((a, b) => {
    const x = key(a, sortBy), y = key(b, sortBy);
    const d = x < y ? -1 : x > y ? 1 : 0;
    return descending ? -d : d;
  });
  for (const th of document.querySelectorAll<HTMLElement>("#operators th[data-sort]")) {
    th.setAttribute(
      "aria-sort",
      th.dataset.sort === sortBy ? (descending ? "descending" : "ascending") : "none",
    );
  }
  if (rows.length === 0) {
    body.innerHTML =
      '<tr><td colspan="10" class="empty">No operators yet: they appear as this node fetches from them.</td></tr>';
    return;
  }
  body.innerHTML = rows.map((o) => {
    const short = o.peer.length > 16 ? `${o.peer.slice(0, 8)}…${o.peer.slice(-6)}` : o.peer;
    const why = o.reasons.length ? o.reasons.map(esc).join("; ") : "no faults seen";
    const evidence = o.evidence
      ? ` <a href="/api/operators/${
        encodeURIComponent(o.peer)
      }" target="_blank" rel="noopener">evidence</a>`
      : "";
    return `<tr class="state-${o.state}">
      <td title="${esc(o.peer)}"><code>${esc(short)}</code></td>
      <td><span class="badge ${o.state}">${o.state}</span></td>
      <td class="num">${o.score.toFixed(2)}</td>
      <td>${bar(o.factors.reliability)}</td>
      <td>${bar(o.factors.speed)}</td>
      <td>${bar(o.factors.uptime)}</td>
      <td>${bar(o.factors.audit)}</td>
      <td>${bar(o.factors.trade)}</td>
      <td class="num" title="${esc(size(o.bytes))} verified">${o.deliveries} / ${o.failures}</td>
      <td class="why">${why}${evidence}</td>
    </tr>`;
  }).join("");
}

/** Sorting by a column header: a click, or Enter on it. */
export function setupOperators(): void {
  for (const th of document.querySelectorAll<HTMLElement>("#operators th[data-sort]")) {
    const sort = () => {
      const c = th.dataset.sort as Column;
      descending = c === sortBy ? !descending : c !== "peer";
      sortBy = c;
      render();
    };
    th.addEventListener("click", sort);
    th.addEventListener("keydown", (e) => {
      if (e.key === "Enter") sort();
    });
  }
}

export async function refreshOperators(): Promise<void> {
  const got = await loadPanel<{ operators: Operator[] }>("operators", "/api/operators");
  if (!got) return;
  last = got.operators;
  render();
}
