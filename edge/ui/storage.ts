/// <reference lib="dom" />
/**
 * The storage view, from `GET /api/leases`: what this node keeps for whom and until when, and what others
 * keep for it, with each lease's audits (how healthy it is) and what its proven time is worth. Hidden on a
 * node without leases.
 */
import { $, api, esc, size } from "./lib.ts";
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
  const panel = $("storage");
  let res: Response;
  try {
    res = await api("/api/leases");
  } catch {
    return;
  }
  if (!res.ok) {
    panel.hidden = true;
    await res.body?.cancel();
    return;
  }
  const { asClient = [], asHolder = [] } = (await res.json()) as {
    asClient?: LeaseRow[];
    asHolder?: LeaseRow[];
  };
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
  panel.hidden = asClient.length + asHolder.length === 0;
}
