/**
 * The service worker of verified streaming (`deno task build:ui` bundles it into `edge/ui/dist/sw.js`, served
 * by every gateway at `/sw.js`). A page that registers it can write `<video src="/verified/<cid>">`: the worker
 * answers the element's requests, Range requests included, with bytes checked by `verifiedFetch`.
 *
 * The file is read in windows of whole stripes (at least 1 MiB): a range fetches only the windows it touches,
 * and the windows just past the reader are fetched ahead of it, so playback does not wait on the network and a
 * seek costs one window. A seek moves the focus: prefetches far from every reader are dropped.
 *
 * Gateways: the worker's own origin, or those of `/sw.js?gateway=URL,URL`.
 *
 * @module
 */
/// <reference lib="webworker" />
import { matchesCid, parseCid } from "../content/cid.ts";
import { decodeManifest, type Manifest, MAX_MANIFEST_BYTES } from "../content/manifest.ts";
import { MeshError } from "../errors.ts";
import { verifiedFetch } from "./verified_fetch.ts";

declare const self: ServiceWorkerGlobalScope;

/** Types a browser renders without running script (the gateway's list, `edge/app.ts`); all others are
 * answered under `Content-Security-Policy: sandbox`. */
const INERT =
  /^(?:image\/(?:png|jpeg|gif|webp|avif|apng|bmp|x-icon|vnd\.microsoft\.icon)|(?:audio|video|font)\/[a-z0-9.+-]+|text\/plain|application\/pdf)$/;

function canRunScript(type: string): boolean {
  return !INERT.test(type.split(";")[0]!.trim().toLowerCase());
}

/** A window is at least this many bytes of whole stripes. */
const WINDOW_BYTES = 1 << 20;
/** Windows fetched ahead of each reader. */
const AHEAD = 4;
/** Verified windows kept per worker (a seek back needs no fetch). */
const KEEP_WINDOWS = 64;

const gateways = (() => {
  const listed = new URL(self.location.href).searchParams.get("gateway");
  return listed ? listed.split(",").map((s) => s.trim()).filter(Boolean) : [self.location.origin];
})();

interface FileState {
  manifest: Manifest;
  window: number;
  /** Verified bytes of window i, or its fetch under way. */
  windows: Map<number, { bytes: Promise<Uint8Array>; abort: AbortController; done: boolean }>;
  /** The window each open answer reads next. */
  readers: Set<{ at: number }>;
}

const files = new Map<string, Promise<FileState>>();
/** What the worker asked for, for a page's status line and for tests (message `{ type: "stats" }`). */
const stats = { windows: 0, bytes: 0, aborted: 0, furthest: 0 };

async function fileState(cid: string): Promise<FileState> {
  let p = files.get(cid);
  if (!p) {
    p = (async () => {
      const id = parseCid(cid);
      let problem = "";
      for (const gw of gateways) {
        try {
          const res = await fetch(`${gw}/mesh/${cid}?format=raw`);
          if (!res.ok) {
            problem = `${gw}: HTTP ${res.status}`;
            continue;
          }
          const bytes = new Uint8Array(await res.arrayBuffer());
          if (bytes.length > MAX_MANIFEST_BYTES || !matchesCid(id, bytes)) {
            problem = `${gw}: the manifest does not match its CID`;
            continue;
          }
          const manifest = decodeManifest(bytes);
          const stripe = manifest.k * manifest.chunkSize;
          return {
            manifest,
            window: stripe * Math.max(1, Math.ceil(WINDOW_BYTES / stripe)),
            windows: new Map(),
            readers: new Set(),
          };
        } catch (e) {
          problem = `${gw}: ${(e as Error).message ?? e}`;
        }
      }
      throw new MeshError("not_found", `No gateway gave the manifest of ${cid} (${problem})`);
    })();
    p.catch(() => files.delete(cid));
    files.set(cid, p);
  }
  return await p;
}

/** Verified bytes of window `w`, fetched once. */
function windowBytes(cid: string, f: FileState, w: number): Promise<Uint8Array> {
  const held = f.windows.get(w);
  if (held) return held.bytes;
  const abort = new AbortController();
  const start = w * f.window;
  const end = Math.min(f.manifest.size, start + f.window);
  stats.windows++;
  stats.furthest = Math.max(stats.furthest, end);
  const entry = {
    abort,
    done: false,
    bytes: verifiedFetch(cid, { gateway: gateways, range: { start, end }, signal: abort.signal })
      .then((r) => r.bytes()).then((b) => (stats.bytes += b.length, b)),
  };
  entry.bytes.then(() => entry.done = true, () => f.windows.delete(w));
  f.windows.set(w, entry);
  // The oldest finished windows make room.
  for (const [i, e] of f.windows) {
    if (f.windows.size <= KEEP_WINDOWS) break;
    if (e.done && i !== w) f.windows.delete(i);
  }
  return entry.bytes;
}

/** Fetches the windows ahead of every reader; drops unfinished ones no reader is near. */
function refocus(cid: string, f: FileState): void {
  const last = Math.ceil(f.manifest.size / f.window) - 1;
  const wanted = new Set<number>();
  for (const r of f.readers) {
    for (let w = r.at; w <= Math.min(last, r.at + AHEAD); w++) wanted.add(w);
  }
  for (const [w, e] of f.windows) {
    if (!e.done && !wanted.has(w)) (e.abort.abort(), f.windows.delete(w), stats.aborted++);
  }
  for (const w of wanted) windowBytes(cid, f, w).catch(() => {});
}

/** [start, end) of a `Range` header against `size` bytes, or undefined when it cannot be met. */
function parseRange(header: string | null, size: number): [number, number] | undefined {
  if (!header) return [0, size];
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === "" && m[2] === "")) return undefined;
  if (m[1] === "") return [Math.max(0, size - Number(m[2])), size];
  const start = Number(m[1]);
  const end = m[2] === "" ? size : Math.min(size, Number(m[2]) + 1);
  return start < size && start < end ? [start, end] : undefined;
}

async function answer(cid: string, request: Request): Promise<Response> {
  let f: FileState;
  try {
    f = await fileState(cid);
  } catch (e) {
    const code = (e as MeshError).code ?? "error";
    const status = code === "not_found" ? 404 : code === "invalid_cid" ? 400 : 502;
    return Response.json({ error: code, message: (e as Error).message ?? String(e) }, { status });
  }
  const size = f.manifest.size;
  const range = parseRange(request.headers.get("range"), size);
  if (!range) {
    return Response.json({
      error: "range_not_satisfiable",
      message: `The range "${request.headers.get("range")}" is outside 0-${size - 1}`,
    }, { status: 416, headers: { "Content-Range": `bytes */${size}` } });
  }
  const [start, end] = range;
  const reader = { at: Math.floor(start / f.window) };
  let pos = start;
  const body = new ReadableStream<Uint8Array>({
    start() {
      f.readers.add(reader);
      refocus(cid, f);
    },
    async pull(controller) {
      if (pos >= end) {
        f.readers.delete(reader);
        return controller.close();
      }
      const w = Math.floor(pos / f.window);
      reader.at = w;
      refocus(cid, f);
      try {
        const bytes = await windowBytes(cid, f, w);
        const from = pos - w * f.window;
        const to = Math.min(bytes.length, end - w * f.window);
        controller.enqueue(bytes.slice(from, to));
        pos = w * f.window + to;
      } catch (e) {
        f.readers.delete(reader);
        controller.error(e);
      }
    },
    cancel() {
      f.readers.delete(reader);
      refocus(cid, f);
    },
  }, { highWaterMark: 0 });
  const headers = new Headers({
    "Content-Type": f.manifest.type || "application/octet-stream",
    "Content-Length": String(end - start),
    "Accept-Ranges": "bytes",
    ETag: `"${cid}"`,
  });
  // As on the path gateway: what could run script gets an opaque origin without it, never the node's.
  if (canRunScript(f.manifest.type)) headers.set("Content-Security-Policy", "sandbox");
  headers.set("X-Content-Type-Options", "nosniff");
  const ranged = request.headers.has("range");
  if (ranged) headers.set("Content-Range", `bytes ${start}-${end - 1}/${size}`);
  return new Response(request.method === "HEAD" ? null : body, {
    status: ranged ? 206 : 200,
    headers,
  });
}

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));
self.addEventListener("message", (event) => {
  if (event.data?.type === "stats") event.ports[0]?.postMessage({ ...stats });
});
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== self.location.origin) return;
  const m = /^\/verified\/([^/?#]+)$/.exec(url.pathname);
  if (!m || (event.request.method !== "GET" && event.request.method !== "HEAD")) return;
  event.respondWith(answer(m[1]!, event.request));
});
