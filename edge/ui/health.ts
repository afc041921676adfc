/// <reference lib="dom" />
/** The node view: readiness and the store's use. */
import { $, size } from "./lib.ts";

export async function refreshHealth(): Promise<void> {
  try {
    const res = await fetch("/readyz");
    const { store } = await res.json();
    $("health").innerHTML = `<span class="dot ${res.ok ? "ok" : "bad"}"></span>${
      res.ok ? "ready" : "not ready"
    }`;
    const used = store.bytes / store.maxBytes;
    const stat = (value: string, label: string, extra = "") =>
      `<div class="stat"><b>${value}</b><span>${label}</span>${extra}</div>`;
    $("stats").innerHTML = stat(String(store.chunks), "chunks stored") +
      stat(
        size(store.bytes),
        `of ${size(store.maxBytes)} used`,
        '<div class="meter"><div></div></div>',
      ) +
      stat(String(store.pins), "files pinned") +
      stat(String(store.corrupt), "corrupt chunks caught") +
      stat('<a href="/metrics">/metrics</a>', "Prometheus");
    // Set through the DOM, not a style attribute, so a strict style-src policy allows it.
    $("stats").querySelector<HTMLElement>(".meter div")!.style.width = `${
      Math.min(100, used * 100).toFixed(1)
    }%`;
  } catch {
    $("health").innerHTML = '<span class="dot bad"></span>unreachable';
  }
}
