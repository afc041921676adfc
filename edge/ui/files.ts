/// <reference lib="dom" />
/**
 * The files view: what this node keeps, with each file's real durability, to play, open, link or unpin;
 * and a form that opens any CID or gateway URL with every byte checked in this browser (verifiedFetch from
 * /meshgate.js). Media play through the service worker (/sw.js) at `/verified/<cid>` once it controls the
 * page, so seeking fetches only the stripes it needs; before that, from the gateway as it sends them.
 */
import { $, api, durabilityHtml, esc, type FileEntry, size } from "./lib.ts";

/** Largest file the open form reads whole into the page (a blob); larger ones get a link. */
const MAX_BLOB = 256 * 1024 * 1024;

/** True once /sw.js controls this page: `/verified/<cid>` is then answered with verified bytes. */
const verifiedStreaming = () => Boolean(navigator.serviceWorker?.controller);

/** Registers the worker of verified streaming; the page works without it (as the gateway sends). */
export async function registerVerifiedStreaming(): Promise<void> {
  try {
    await navigator.serviceWorker?.register("/sw.js");
  } catch {
    // no service workers here (an insecure origin other than localhost, a private window)
  }
}

/** The element that shows `type` from `src`; other types in a sandboxed frame (no script, opaque origin). */
function mediaFor(type: string, src: string, label: string): string {
  const l = esc(label);
  if (type.startsWith("video/")) {
    return `<video controls autoplay src="${esc(src)}" aria-label="${l}"></video>`;
  }
  if (type.startsWith("audio/")) {
    return `<audio controls autoplay src="${esc(src)}" aria-label="${l}"></audio>`;
  }
  if (type.startsWith("image/")) return `<img alt="${l}" src="${esc(src)}">`;
  // A type the browser would download instead of showing leaves a blank frame (a sandbox refuses downloads).
  if (!SHOWN.test(type)) {
    return `<p class="no-preview">No preview for ${
      esc(type.split(";")[0]!)
    }: download it below.</p>`;
  }
  return `<iframe sandbox src="${esc(src)}" title="${l}"></iframe>`;
}

/** Types a browser shows in a frame. */
const SHOWN = /^(text\/|application\/(json|pdf|xml)|image\/svg)/;

/** The file name a gateway's Content-Disposition gives, if any. */
function nameOf(headers: Headers): string | undefined {
  const d = headers.get("content-disposition") ?? "";
  const star = /filename\*=UTF-8''([^;]+)/i.exec(d);
  if (star) {
    try {
      return decodeURIComponent(star[1]!);
    } catch {
      // a malformed escape: the plain name below, if any
    }
  }
  return /filename="([^"]+)"/i.exec(d)?.[1];
}

function show(title: string, media: string, caption: string): void {
  const viewer = $("viewer");
  viewer.innerHTML = `<h2 id="viewer-h" tabindex="-1">${esc(title)}</h2>${media}` +
    `<div class="caption">${caption}</div>`;
  viewer.scrollIntoView({ behavior: "smooth" });
  $("viewer-h").focus({ preventScroll: true });
}

function view(f: FileEntry): void {
  const media = /^(video|audio|image)\//.test(f.type);
  const verified = media && verifiedStreaming();
  const src = verified ? `/verified/${f.cid}` : `/mesh/${f.cid}`;
  show(
    f.name || f.cid,
    mediaFor(f.type, src, f.name || f.cid),
    `${size(f.size)} · ${esc(f.type)} · ${
      verified ? "verified in this browser" : "as this node sends it"
    } · <a href="/mesh/${esc(f.cid)}" download>download</a>`,
  );
}

/** What the open form was given: a CID, /mesh/<cid>, ipfs://<cid> or a gateway's URL of one. */
function openTarget(input: string): { cid: string; gateway: string } {
  const s = input.trim();
  const path = /\/(?:mesh|ipfs)\/([^/?#]+)/;
  if (/^https?:\/\//i.test(s)) {
    const url = new URL(s);
    const m = path.exec(url.pathname);
    if (m) return { cid: m[1]!, gateway: url.origin };
    const sub = /^(b[a-z2-7]{20,})\.mesh\.(.+)$/i.exec(url.host);
    if (sub) return { cid: sub[1]!.toLowerCase(), gateway: `${url.protocol}//${sub[2]}` };
    throw new Error("that URL names no CID (…/mesh/<cid> or …/ipfs/<cid>)");
  }
  const m = path.exec(s);
  if (m) return { cid: m[1]!, gateway: location.origin };
  if (/^ipfs:\/\//i.test(s)) {
    return { cid: s.slice(7).split(/[/?#]/)[0]!, gateway: location.origin };
  }
  if (!/^[a-z0-9]{20,}$/i.test(s)) throw new Error("enter a CID or a gateway URL of one");
  return { cid: s, gateway: location.origin };
}

type VerifiedFetch = (cid: string, options?: Record<string, unknown>) => Promise<Response>;

async function openAny(input: string): Promise<void> {
  const status = $("open-status");
  status.className = "dim";
  status.textContent = "Opening…";
  try {
    const { cid, gateway } = openTarget(input);
    // The bundle is loaded on first use, not with the page (a variable keeps esbuild from inlining it).
    const bundle = "/meshgate.js";
    const { verifiedFetch } = (await import(bundle)) as { verifiedFetch: VerifiedFetch };
    const head = await verifiedFetch(cid, { gateway, range: "bytes=0-0" });
    await head.body?.cancel();
    const type = head.headers.get("content-type") ?? "application/octet-stream";
    const total = Number(/\/(\d+)$/.exec(head.headers.get("content-range") ?? "")?.[1] ?? 0);
    const here = gateway === location.origin;
    const media = /^(video|audio)\//.test(type);
    let src: string;
    let how = "every byte checked against its CID in this browser";
    if (here && media && verifiedStreaming()) src = `/verified/${cid}`;
    else if (total <= MAX_BLOB) {
      const blob = await (await verifiedFetch(cid, { gateway })).blob();
      src = URL.createObjectURL(blob);
    } else {
      src = `${gateway}/mesh/${cid}`;
      how = `too large to check in the page (${size(total)}): as the gateway sends it`;
    }
    const name = nameOf(head.headers);
    show(
      name ?? cid,
      mediaFor(type, src, name ?? cid),
      `${size(total)} · ${esc(type)} · from ${esc(gateway)} · ${how} · <a href="${
        esc(src)
      }" download="${esc(name ?? cid)}">download</a>`,
    );
    status.className = "ok";
    status.textContent = `Opened ${cid.slice(0, 16)}…`;
  } catch (e) {
    status.className = "warning";
    status.textContent = `Cannot open it: ${(e as Error).message}`;
  }
}

export function setupFiles(onChange: () => void): void {
  $<HTMLFormElement>("open").onsubmit = (e) => {
    e.preventDefault();
    openAny($<HTMLInputElement>("open-input").value);
  };
  changed = onChange;
}

let changed: () => void = () => {};

async function unpin(f: FileEntry, button: HTMLButtonElement): Promise<void> {
  if (!confirm(`Unpin ${f.name || f.cid}? This node stops keeping it for itself.`)) return;
  button.disabled = true;
  const res = await api(`/api/files/${f.cid}`, { method: "DELETE" }).catch(() => undefined);
  if (!res?.ok) {
    const body = await res?.json().catch(() => null) as { message?: string } | null;
    button.disabled = false;
    button.textContent = "Unpin failed";
    button.title = body?.message ?? "the node did not answer";
    return;
  }
  changed();
}

export async function refreshFiles(): Promise<void> {
  const body = $("files");
  try {
    const { files } = (await (await api("/api/files")).json()) as { files: FileEntry[] };
    if (!files.length) {
      body.innerHTML =
        '<tr><td colspan="6" class="empty">Nothing yet: drop a file above.</td></tr>';
      return;
    }
    body.innerHTML = "";
    for (const f of files) {
      const tr = document.createElement("tr");
      if (f.missing) {
        tr.innerHTML = `<td colspan="4" class="empty">manifest missing</td><td class="cid">${
          esc(f.cid)
        }</td><td></td>`;
      } else {
        const name = esc(f.name || "(unnamed)");
        const play = /^(video|audio)\//.test(f.type) ? "Play" : "View";
        tr.innerHTML =
          `<td class="name"><a href="/mesh/${esc(f.cid)}" target="_blank">${name}</a></td>` +
          `<td class="size">${size(f.size)}</td><td class="type">${esc(f.type)}</td>` +
          `<td>${durabilityHtml(f)}</td><td class="cid" title="${esc(f.cid)}">${esc(f.cid)}</td>` +
          `<td class="actions"><button data-act="view" aria-label="${play} ${name}">${play}</button> ` +
          `<button data-act="copy" aria-label="Copy the link of ${name}">Copy link</button> ` +
          `<button data-act="unpin" class="quiet" aria-label="Unpin ${name}">Unpin</button></td>`;
        tr.querySelector<HTMLElement>('[data-act="view"]')!.onclick = () => view(f);
        const copy = tr.querySelector<HTMLElement>('[data-act="copy"]')!;
        copy.onclick = () => {
          navigator.clipboard?.writeText(`${location.origin}/mesh/${f.cid}`);
          copy.textContent = "Copied";
          setTimeout(() => copy.textContent = "Copy link", 1200);
        };
        const un = tr.querySelector<HTMLButtonElement>('[data-act="unpin"]')!;
        un.onclick = () => unpin(f, un);
      }
      body.appendChild(tr);
    }
  } catch (e) {
    body.innerHTML = `<tr><td colspan="6" class="empty">Cannot list files: ${
      esc((e as Error).message)
    }</td></tr>`;
  }
}
