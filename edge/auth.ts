/**
 * Who may change a node's state over HTTP. Reads stay public; a write (any method but GET, HEAD and
 * OPTIONS, on any route) passes two checks, as kubo keeps its RPC apart from its gateway:
 * - a browser's cross-site request is refused (403): its `Origin` must be this gateway's own, and
 *   `Sec-Fetch-Site` must not be `cross-site`. Without a token the gateway must also be addressed by a
 *   loopback name, so a DNS-rebound name (evil.example resolving to 127.0.0.1) cannot pass as its own origin;
 * - with a token (required when the gateway listens beyond loopback), `Authorization: Bearer <token>` (401).
 */
import type { MiddlewareHandler } from "hono";

export interface WriteGuardOptions {
  /** Bearer token every write must carry. Absent: none is needed (a gateway on loopback). */
  token?: string;
  /** Further origins whose pages may write, e.g. the public URL behind a reverse proxy. */
  origins?: string[];
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

/** True for addresses and names that reach only this machine: 127.0.0.0/8, ::1, localhost, *.localhost. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  return h === "::1" || h === "localhost" || h.endsWith(".localhost") ||
    /^127(\.\d{1,3}){3}$/.test(h);
}

/** Compares in time independent of where the strings differ. */
function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < x.length; i++) diff |= x[i]! ^ (y[i] ?? 0);
  return diff === 0;
}

const refuse = (status: 401 | 403, error: string, message: string) =>
  new Response(JSON.stringify({ error, message }), {
    status,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-store" },
  });

/** Middleware that lets reads through and checks writes (see the module comment). */
export function writeGuard(options: WriteGuardOptions = {}): MiddlewareHandler {
  const extra = new Set((options.origins ?? []).map((o) => new URL(o).origin));
  return async (c, next) => {
    if (SAFE_METHODS.has(c.req.method)) return await next();
    const url = new URL(c.req.url);
    const host = c.req.header("host") ?? url.host;
    const origin = c.req.header("origin");
    if (origin !== undefined) {
      const own = origin === `${url.protocol}//${host}` &&
        (options.token !== undefined || isLoopback(new URL(origin).hostname));
      if (!own && !extra.has(origin)) {
        return refuse(
          403,
          "forbidden",
          `Writes from another site's page are refused (Origin: ${origin})`,
        );
      }
    }
    if (c.req.header("sec-fetch-site") === "cross-site") {
      return refuse(403, "forbidden", "Cross-site writes are refused (Sec-Fetch-Site: cross-site)");
    }
    if (options.token !== undefined) {
      const auth = c.req.header("authorization") ?? "";
      const given = /^Bearer\s+(\S+)\s*$/i.exec(auth)?.[1];
      if (given === undefined || !sameSecret(given, options.token)) {
        return refuse(
          401,
          "unauthorized",
          "This gateway needs its API token for writes: Authorization: Bearer <token> " +
            "(the token is in the node's data directory, api.token, or MESH_API_TOKEN)",
        );
      }
    }
    await next();
  };
}

export const TOKEN_FILE = "api.token";

/**
 * The API token kept in `<dataDir>/api.token` (mode 0600), made on first use. `created` tells the caller
 * to show it, once.
 */
export async function loadApiToken(dataDir: string): Promise<{ token: string; created: boolean }> {
  const path = `${dataDir}/${TOKEN_FILE}`;
  try {
    const token = (await Deno.readTextFile(path)).trim();
    if (token) return { token, created: false };
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const token = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
  await Deno.mkdir(dataDir, { recursive: true });
  await Deno.writeTextFile(path, `${token}\n`, { mode: 0o600 });
  await Deno.chmod(path, 0o600); // an existing empty file keeps its mode otherwise
  return { token, created: true };
}
