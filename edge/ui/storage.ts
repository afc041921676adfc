/// <reference lib="dom" />
/**
 * The storage view, from `GET /api/leases`: what this node keeps for whom and until when, and what others
 * keep for it, with each lease's audits (how healthy it is) and what its proven time is worth. Hidden on a
 * node without leases.
 */
import { $, esc, loadPanel, size } from "./lib.ts";
import { ether } from "./pay.ts";

interface LeaseRow {
  id: string;
  holder: string;
  client: string;
  chunks: number;
  bytes: number;
  end: string;
  live: boolean;
  passed: number;
  failed: number;
  lastPassed?: boolean;
  collected?: string;
  owedWei: string;
}

const short = (peer: string) => peer.length > 16 ? `${peer.slice(0, 8)}…${peer.slice(-4)}` : peer;
const until = (iso: string) => esc(iso.slice(0, 16).replace("T", " "));

function health(l: LeaseRow): string {
  if (!l.live) return l.collected ? "ended, collected" : "ended";
  if (l.passed + l.failed === 0) return "not audited yet";
  const tag = l.lastPassed === false ? "failing" : "healthy";
  return `${tag} · ${l.passed} passed, ${l.failed} failed`;
}

export async function refreshStorage(): Promise<void> {
  const got = await loadPanel<{ asClient?: LeaseRow[]; asHolder?: LeaseRow[] }>(
    "storage",
    "/api/leases",
  );
  if (!got) return;
  const { asClient = [], asHolder = [] } = got;
  const rows = (list: LeaseRow[], who: (l: LeaseRow) => string, last: (l: LeaseRow) => string) =>
    list.length === 0
      ? '<tr><td colspan="4" class="empty">None</td></tr>'
      : list.map((l) =>
        `<tr><td title="${esc(who(l))}">${esc(short(who(l)))}</td><td>${l.chunks} · ${
          esc(size(l.bytes))
        }</td><td>${until(l.end)}</td><td>${esc(last(l))}</td></tr>`
      ).join("");
  $("storage-kept").innerHTML = rows(asHolder, (l) => l.client, (l) => (l.live ? "live" : "ended"));
  $("storage-mine").innerHTML = rows(
    asClient,
    (l) => l.holder,
    (l) => `${health(l)} · owed ${ether(l.owedWei)}`,
  );
  // The storage view appears once this node has leases (storage-market nodes).
  const empty = asClient.length + asHolder.length === 0;
  $("storage").hidden = empty;
  const link = document.querySelector<HTMLElement>('nav a[href="#storage"]');
  if (link) link.hidden = empty;
}
