/// <reference lib="dom" />
/** What every view shares: element lookup, escaping, sizes, and API calls that carry the saved token. */

export const $ = <T extends HTMLElement = HTMLElement>(id: string): T =>
  document.getElementById(id) as T;

const ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};
export const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]!);

export function size(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}

const TOKEN_KEY = "meshgate.apiToken";

/** The API token this browser saved for this node (each origin has its own storage). */
export function savedToken(): string | null {
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled
  }
}

export function saveToken(token: string | null): void {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: the token lasts until the page closes
  }
}

export function authHeaders(): Record<string, string> {
  const token = savedToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** fetch() of this node's API with the saved token. */
export function api(path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(path, { ...init, headers: { ...authHeaders(), ...init.headers } });
}

/** What the node says about a file's placement (absent on nodes that do not report it). */
export interface Durability {
  /** Holders that can be lost at once with the file still readable. */
  survives: number;
  /** Distinct peers (this node included) that hold its chunks. */
  holders: number;
  /** Extra bytes stored beyond the file's size, as a fraction: 0.25 is 25%. */
  overhead: number;
  warning?: string;
}

export interface FileEntry {
  cid: string;
  name?: string;
  type: string;
  size: number;
  k: number;
  m: number;
  missing?: boolean;
  durability?: Durability;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** One line a person can trust: the placement's real survival and overhead, or only the stripe shape. */
export function durabilityHtml(f: Pick<FileEntry, "k" | "m" | "durability">): string {
  const d = f.durability;
  if (!d) {
    return `<span class="durability">${f.k}+${f.m} stripes <span class="dim">· placement ` +
      "not reported by this node</span></span>";
  }
  const survives = d.survives > 0
    ? `survives the loss of any ${plural(d.survives, "holder")}`
    : "lost if any holder is lost";
  const overhead = Number.isFinite(d.overhead)
    ? `${Math.round(d.overhead * 100)}% space overhead`
    : "";
  const warning = d.warning ? ` <span class="warning">⚠ ${esc(d.warning)}</span>` : "";
  return `<span class="durability${d.survives > 0 ? "" : " warning"}">${survives}</span>` +
    `<span class="durability dim"> · ${plural(d.holders, "holder")}${
      overhead ? ` · ${overhead}` : ""
    }</span>${warning}`;
}

/**
 * Loads a panel's data from `path`: shows the panel (and its nav link) when the node answers, hides both
 * when it has no such route (any refusal, e.g. 404 on a node without that service). Resolves undefined when
 * hidden, or when the node is unreachable (then nothing changes: the health line says so).
 */
export async function loadPanel<T>(panelId: string, path: string): Promise<T | undefined> {
  const panel = $(panelId);
  let res: Response;
  try {
    res = await api(path);
  } catch {
    return undefined;
  }
  const link = document.querySelector<HTMLElement>(`nav a[href="#${panelId}"]`);
  if (!res.ok) {
    panel.hidden = true;
    if (link) link.hidden = true;
    await res.body?.cancel();
    return undefined;
  }
  const body = (await res.json()) as T;
  panel.hidden = false;
  if (link) link.hidden = false;
  return body;
}

/** `12D3KooW…abcdef`: a peer ID or address short enough for a table cell (the full one in a title). */
export const short = (s: string, head = 8, tail = 6): string =>
  s.length > head + tail + 2 ? `${s.slice(0, head)}…${s.slice(-tail)}` : s;

/** "3 min" since an ISO time. */
export function since(iso: string, now = Date.now()): string {
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}
