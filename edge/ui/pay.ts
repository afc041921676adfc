/// <reference lib="dom" />
/** The earnings view: what this node earned serving and spent fetching, from `GET /api/pay`. */
import { $, api, esc } from "./lib.ts";

interface PayState {
  mode: "volunteer" | "paid";
  account?: string;
  earnedWei?: string | number;
  spentWei?: string | number;
}

/** "0.0123 ETH" from wei, exact to 6 decimals (BigInt: wei overflow doubles). */
export function ether(wei: string | number | undefined): string {
  let v: bigint;
  try {
    v = BigInt(wei ?? 0);
  } catch {
    return "?";
  }
  const sign = v < 0n ? "-" : "";
  if (v < 0n) v = -v;
  const whole = v / 10n ** 18n;
  const frac = ((v % 10n ** 18n) / 10n ** 12n).toString().padStart(6, "0").replace(/0+$/, "");
  const text = `${sign}${whole}${frac ? `.${frac}` : ""} ETH`;
  return v > 0n && whole === 0n && !frac ? `${sign}< 0.000001 ETH` : text;
}

/** Shows the panel when the node answers /api/pay; hides it when the node has no such route (404). */
export async function refreshPay(): Promise<void> {
  const panel = $("pay");
  let res: Response;
  try {
    res = await api("/api/pay");
  } catch {
    return; // unreachable: the health line says so
  }
  if (!res.ok) {
    panel.hidden = true;
    await res.body?.cancel();
    return;
  }
  const pay = (await res.json()) as PayState;
  const stat = (value: string, label: string, title = "") =>
    `<div class="stat"${
      title ? ` title="${esc(title)}"` : ""
    }><b>${value}</b><span>${label}</span></div>`;
  $("pay-stats").innerHTML = pay.mode === "paid"
    ? stat(esc(ether(pay.earnedWei)), "earned serving", `${pay.earnedWei ?? 0} wei`) +
      stat(esc(ether(pay.spentWei)), "spent fetching", `${pay.spentWei ?? 0} wei`) +
      stat(
        esc(pay.account ? `${pay.account.slice(0, 6)}…${pay.account.slice(-4)}` : "?"),
        "account",
        pay.account,
      )
    : stat("volunteer", "serves and fetches for free (no chain)");
  panel.hidden = false;
  if (pay.mode === "paid") await refreshChannels();
}

interface ChannelRow {
  peer: string;
  channel: string;
  payee?: string;
  status: string;
  depositWei: string;
  spentWei: string;
  lockedWei: string;
}

/** The channels this node pays through, from `GET /api/channels`: whom, deposit, what is still locked. */
async function refreshChannels(): Promise<void> {
  const list = document.getElementById("pay-channels");
  if (!list) return;
  let rows: ChannelRow[] = [];
  try {
    const res = await api("/api/channels");
    if (res.ok) rows = ((await res.json()) as { channels?: ChannelRow[] }).channels ?? [];
    else await res.body?.cancel();
  } catch {
    return;
  }
  const short = (s: string) => s.length > 14 ? `${s.slice(0, 6)}…${s.slice(-4)}` : s;
  list.innerHTML = rows.length === 0
    ? "<li>no open channels</li>"
    : rows.map((r) =>
      `<li title="${esc(r.channel)}">${esc(short(r.payee ?? r.peer))} · ${
        esc(r.status)
      } · deposit ${esc(ether(r.depositWei))} · spent ${esc(ether(r.spentWei))} · locked ${
        esc(ether(r.lockedWei))
      }</li>`
    ).join("");
}
