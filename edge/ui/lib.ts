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
