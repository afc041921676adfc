/// <reference lib="dom" />
/**
 * The earnings and spending view, from `GET /api/pay`: what this node earned serving (vouchers taken,
 * redeemed on chain, and the gas those redeems cost) and spent fetching, and each payment channel, both
 * ways: whom, bytes, vouchers, wei. `GET /api/channels` adds deposits and what is still locked.
 */
import { $, api, esc, loadPanel, short, size } from "./lib.ts";

type Wei = string | number;

interface ChannelIn {
  direction: "in";
  peer: string;
  channel?: string;
  payer?: string;
  servedBytes: Wei;
  earnedWei: Wei;
  redeemedWei: Wei;
  vouchers: number;
  banned?: string;
}

interface ChannelOut {
  direction: "out";
  peer: string;
  channel?: string;
  payee?: string;
  depositWei: Wei;
  spentWei: Wei;
  acceptedWei: Wei;
  paidBytes: Wei;
  vouchers: number;
}

interface PayState {
  mode: "volunteer" | "paid";
  chainId?: number;
  account?: string;
  price?: Wei;
  earnedWei?: Wei;
  redeemedWei?: Wei;
  spentWei?: Wei;
  vouchersReceived?: number;
  vouchersSent?: number;
  redeems?: number;
  redeemGas?: Wei;
  redeemGasWei?: Wei;
  channels?: (ChannelIn | ChannelOut)[];
}

/** "0.0123 ETH" from wei, exact to 6 decimals (BigInt: wei overflow doubles); below a millionth of an ETH,
 * gwei or wei, so that two small prices never read the same. */
export function ether(wei: string | number | undefined): string {
  let v: bigint;
  try {
    v = BigInt(wei ?? 0);
  } catch {
    return "?";
  }
  const sign = v < 0n ? "-" : "";
  if (v < 0n) v = -v;
  const decimal = (x: bigint, unit: bigint, digits: number) => {
    const whole = x / unit;
    const frac = ((x % unit) * 10n ** BigInt(digits) / unit).toString().padStart(digits, "0")
      .replace(/0+$/, "");
    return `${whole}${frac ? `.${frac}` : ""}`;
  };
  if (v === 0n) return "0 ETH";
  if (v < 10n ** 9n) return `${sign}${v} wei`;
  if (v < 10n ** 12n) return `${sign}${decimal(v, 10n ** 9n, 3)} gwei`;
  return `${sign}${decimal(v, 10n ** 18n, 6)} ETH`;
}

const stat = (value: string, label: string, title = "", cls = "") =>
  `<div class="stat${cls ? ` ${cls}` : ""}"${
    title ? ` title="${esc(title)}"` : ""
  }><b>${value}</b><span>${label}</span></div>`;

const weiStat = (wei: Wei | undefined, label: string) =>
  stat(esc(ether(wei)), label, `${wei ?? 0} wei`);

/** Shows the panel when the node answers /api/pay; hides it when the node has no such route (404). */
export async function refreshPay(): Promise<void> {
  const pay = await loadPanel<PayState>("pay", "/api/pay");
  if (!pay) return;
  if (pay.mode !== "paid") {
    $("pay-stats").innerHTML = stat("volunteer", "serves and fetches for free (no chain)");
    $("pay-ledger").hidden = true;
    return;
  }
  const gas = Number(pay.redeemGas ?? 0);
  $("pay-stats").innerHTML = weiStat(pay.earnedWei, "earned serving") +
    weiStat(pay.redeemedWei, "redeemed on chain") +
    stat(
      `${esc(ether(pay.redeemGasWei))}`,
      `gas of ${pay.redeems ?? 0} redeem${pay.redeems === 1 ? "" : "s"} (${
        gas.toLocaleString("en")
      })`,
      `${pay.redeemGasWei ?? 0} wei`,
    ) +
    weiStat(pay.spentWei, "spent fetching") +
    stat(
      `${pay.vouchersReceived ?? 0} / ${pay.vouchersSent ?? 0}`,
      "vouchers taken / signed",
    ) +
    stat(
      esc(pay.account ? `${pay.account.slice(0, 6)}…${pay.account.slice(-4)}` : "?"),
      `account${pay.chainId ? ` · chain ${pay.chainId}` : ""}`,
      pay.account,
      "small",
    );
  const channels = pay.channels ?? [];
  $("pay-ledger").hidden = false;
  $("pay-ledger-body").innerHTML = channels.length === 0
    ? '<tr><td colspan="6" class="empty">No payments yet: they appear as peers fetch from this node or it fetches from them.</td></tr>'
    : channels.map((c) => {
      const who = c.direction === "in" ? c.payer ?? c.peer : c.payee ?? c.peer;
      const bytes = Number(c.direction === "in" ? c.servedBytes : c.paidBytes);
      const wei = c.direction === "in"
        ? `${esc(ether(c.earnedWei))} <span class="dim">(${
          esc(ether(c.redeemedWei))
        } redeemed)</span>`
        : `${esc(ether(c.spentWei))} <span class="dim">(${
          esc(ether(c.acceptedWei))
        } acknowledged)</span>`;
      const way = c.direction === "in" ? "earning" : "paying";
      const banned = c.direction === "in" && c.banned
        ? ` <span class="warning">${esc(c.banned)}</span>`
        : "";
      return `<tr>
        <td><span class="badge ${c.direction === "in" ? "vetted" : "new"}">${way}</span></td>
        <td title="${esc(who)}"><code>${esc(short(who))}</code>${banned}</td>
        <td data-label="channel" title="${esc(c.channel ?? "")}"><code>${
        esc(c.channel ? short(c.channel, 6, 4) : "—")
      }</code></td>
        <td class="num">${esc(size(bytes))}</td>
        <td class="num" data-label="vouchers">${c.vouchers}</td>
        <td class="num wei">${wei}</td>
      </tr>`;
    }).join("");
  await refreshChannels();
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
  list.innerHTML = rows.length === 0
    ? "<li>no open channels</li>"
    : rows.map((r) =>
      `<li title="${esc(r.channel)}">${esc(short(r.payee ?? r.peer, 6, 4))} · ${
        esc(r.status)
      } · deposit ${esc(ether(r.depositWei))} · spent ${esc(ether(r.spentWei))} · locked ${
        esc(ether(r.lockedWei))
      }</li>`
    ).join("");
}
