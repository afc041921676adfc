/**
 * Serves the page for people: the files `deno task build:ui` bundles from edge/ui into edge/ui/dist
 * (committed, so serving needs no build tool), and `/meshgate.js`, the browser bundle (verifiedFetch and
 * the kernels), which any site may import. Read once, on first request, then kept in memory.
 */
import type { Context, Hono } from "hono";

const DIST = new URL("./ui/dist/", import.meta.url);

/** Route path to built file and media type. */
const ROUTES: [path: string, file: string, type: string][] = [
  ["/", "index.html", "text/html; charset=utf-8"],
  ["/ui/app.js", "app.js", "text/javascript; charset=utf-8"],
  ["/ui/style.css", "style.css", "text/css; charset=utf-8"],
  ["/favicon.ico", "favicon.ico", "image/x-icon"],
  ["/meshgate.js", "meshgate.js", "text/javascript; charset=utf-8"],
  // The service worker of verified streaming: at the root, so its scope covers /verified/<cid>.
  ["/sw.js", "sw.js", "text/javascript; charset=utf-8"],
];

interface Asset {
  bytes: Uint8Array<ArrayBuffer>;
  etag: string;
}

const loaded = new Map<string, Promise<Asset>>();

async function load(file: string): Promise<Asset> {
  // fetch, not Deno.readFile: it also works when this module is loaded from a remote URL.
  const res = await fetch(new URL(file, DIST));
  if (!res.ok) throw new Error(`edge/ui/dist/${file} is missing: run "deno task build:ui"`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = [...digest.slice(0, 12)].map((b) => b.toString(16).padStart(2, "0")).join("");
  return { bytes, etag: `"${hex}"` };
}

function asset(file: string): Promise<Asset> {
  let p = loaded.get(file);
  if (!p) {
    p = load(file);
    p.catch(() => loaded.delete(file)); // retried on the next request
    loaded.set(file, p);
  }
  return p;
}

/** Adds the page's routes to `app`. */
export function mountPage(app: Hono): void {
  for (const [path, file, type] of ROUTES) {
    app.get(path, async (c: Context) => {
      const { bytes, etag } = await asset(file);
      // The page changes with the node's version, not per request: revalidate, never go stale.
      const headers = {
        "Content-Type": type,
        "Cache-Control": "no-cache",
        ETag: etag,
        "X-Content-Type-Options": "nosniff",
        // The bundle is for any site's pages (a module script from another origin needs CORS).
        ...(file === "meshgate.js" ? { "Access-Control-Allow-Origin": "*" } : {}),
      };
      if (c.req.header("if-none-match") === etag) return c.body(null, 304, headers);
      return c.body(bytes, 200, headers);
    });
  }
}
