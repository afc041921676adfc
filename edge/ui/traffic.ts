/// <reference lib="dom" />
/**
 * The live throughput chart: every 2 s the page reads this node's `/metrics` and plots the rate of its byte
 * counters over the last 2 minutes, in plain SVG: what the gateway sent (file bytes in HTTP answers), and
 * what the mesh sent and received (chunk bytes to and from peers).
 */
import { $, esc, size } from "./lib.ts";

const SERIES = [
  { metric: "mesh_bytes_served_total", label: "gateway out", cls: "s1" },
  { metric: "mesh_peer_bytes_sent_total", label: "mesh out", cls: "s2" },
  { metric: "mesh_peer_bytes_received_total", label: "mesh in", cls: "s3" },
] as const;
const SAMPLES = 60;
export const TRAFFIC_INTERVAL_MS = 2000;
const W = 600;
const H = 160;

/** Rates in bytes/s, oldest first, one array per series. */
const rates: number[][] = SERIES.map(() => []);
let last: { at: number; values: number[] } | undefined;

/** The sum of a metric's samples in Prometheus text (every label set). */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) sum += v;
  }
  return sum;
}

const rate = (bps: number) => `${size(Math.round(bps))}/s`;

function draw(): void {
  const max = Math.max(1024, ...rates.flat());
  const x = (i: number, n: number) => (W * (SAMPLES - n + i)) / (SAMPLES - 1);
  const y = (v: number) => H - 4 - ((H - 8) * v) / max;
  const lines = rates.map((r, s) =>
    r.length < 2
      ? ""
      : `<polyline class="${SERIES[s]!.cls}" points="${
        r.map((v, i) => `${x(i, r.length).toFixed(1)},${y(v).toFixed(1)}`).join(" ")
      }"/>`
  ).join("");
  const grid = [0.25, 0.5, 0.75].map((f) =>
    `<line class="grid" x1="0" x2="${W}" y1="${y(max * f)}" y2="${y(max * f)}"/>`
  ).join("");
  const now = SERIES.map((s, i) => `${s.label} ${rate(rates[i]!.at(-1) ?? 0)}`).join(", ");
  $("traffic-chart").innerHTML =
    `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="${
      esc(`Throughput over the last 2 minutes: ${now}`)
    }">${grid}${lines}</svg><div class="axis"><span>peak ${
      esc(rate(max))
    }</span><span>2 min ago</span><span>now</span></div>`;
  $("traffic-legend").innerHTML = SERIES.map((s, i) =>
    `<li><i class="${s.cls}" aria-hidden="true"></i>${s.label} <b>${
      esc(rate(rates[i]!.at(-1) ?? 0))
    }</b></li>`
  ).join("");
}

export async function refreshTraffic(): Promise<void> {
  let text: string;
  try {
    const res = await fetch("/metrics");
    if (!res.ok) return void (await res.body?.cancel());
    text = await res.text();
  } catch {
    return;
  }
  const at = performance.now();
  const values = SERIES.map((s) => metricSum(text, s.metric));
  if (last) {
    const dt = (at - last.at) / 1000;
    values.forEach((v, i) => {
      const r = rates[i]!;
      r.push(dt > 0 ? Math.max(0, v - last!.values[i]!) / dt : 0);
      if (r.length > SAMPLES) r.shift();
    });
  }
  last = { at, values };
  draw();
}
