/**
 * The gateway: IPFS-style path gateway routes over a Meshgate node, plus uploads, health and metrics.
 * Web-standard only (Request/Response/streams), so tests drive it with `app.request()` and no socket.
 */
import { type Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { type CID, parseCid } from "../src/content/cid.ts";
import { contentDisposition } from "../src/content/disposition.ts";
import type { Manifest } from "../src/content/manifest.ts";
import type { MeshgateNode } from "../src/node.ts";
import { DEFAULT_FIND_TIMEOUT_MS, type ProviderInfo } from "../src/mesh/dht.ts";
import { MeshError } from "../src/errors.ts";
import { type Prefer, PREFERENCES } from "../src/reputation/select.ts";
import { httpStatus } from "./errors.ts";
import { parseRange } from "./range.ts";
import { typeFromName } from "../src/units.ts";
import {
  Counter,
  Gauge,
  Histogram,
  PROMETHEUS_CONTENT_TYPE,
  Registry,
  SampledCounter,
} from "./metrics.ts";
import { mountPage } from "./page.ts";
import { addPayMetrics, addPayRoutes } from "./pay.ts";
import { addMarketRoutes } from "./market.ts";
import { addReputationMetrics, addReputationRoutes } from "./reputation.ts";
import { addLeaseRoutes, checkLeasing, leaseDuration, leaseUpload } from "./leases.ts";
import { writeGuard } from "./auth.ts";
import { addPeerRoutes } from "./peers.ts";
import { DELIVERY_HEADER, formatDeliveryHeader } from "../src/mesh/delivery_format.ts";
import type { HttpPaywall } from "../src/pay/x402.ts";
import { x402Paywall } from "./x402.ts";

export const VERSION = "0.1.0";
const IMMUTABLE = "public, max-age=29030400, immutable";
const RAW_TYPE = "application/vnd.ipld.raw";
/** Headers of content answers a page on another origin may read (verifiedFetch reads the signature). */
const EXPOSED = [DELIVERY_HEADER, "Content-Range", "Content-Length", "ETag", "X-Ipfs-Path"].join(
  ", ",
);

export interface GatewayOptions {
  /** Largest accepted upload in bytes. Default: 1 GiB. */
  maxUploadBytes?: number;
  /** Public base URL for links in upload answers. Default: the request's own origin. */
  publicUrl?: string;
  /**
   * Writes (uploads, every state-changing `/api` route) need `Authorization: Bearer <apiToken>`. Absent: a
   * gateway on loopback, where only writes from other sites' pages are refused (see ./auth.ts).
   */
  apiToken?: string;
  /** Content answers are paid with x402 vouchers through this paywall (`./x402.ts`). Default: free. */
  x402?: HttpPaywall;
}

/**
 * Types a browser renders without running script. Anything else served on the node's own origin (HTML,
 * SVG, XML, JS, unknown types) gets `Content-Security-Policy: sandbox`: an opaque origin, no script, so an
 * uploaded page cannot call the node's API. PDF is here because Chromium refuses to show a sandboxed PDF,
 * and its viewer runs PDF script in its own context, not the page's origin.
 */
const INERT =
  /^(?:image\/(?:png|jpeg|gif|webp|avif|apng|bmp|x-icon|vnd\.microsoft\.icon)|(?:audio|video|font)\/[a-z0-9.+-]+|text\/plain|application\/pdf)$/;

export function canRunScript(type: string): boolean {
  return !INERT.test(type.split(";")[0]!.trim().toLowerCase());
}

/** `<cid>.mesh.<host>`: the subdomain gateway, each CID its own origin (CIDv1 base32 fits a DNS label). */
const SUBDOMAIN = /^(b[a-z2-7]{20,})\.mesh\./i;

/** Ends the body of an answer that failed after its headers were sent; it has been logged already. */
class BodyAborted extends Error {
  override name = "BodyAborted";
}

/**
 * `onError` for `Deno.serve(…, app.fetch)`: Deno reports there what broke a response body. An aborted
 * content body was logged as one JSON line already; anything else gets one, instead of Deno's own print.
 */
export function onServeError(err: unknown): Response {
  if (!(err instanceof BodyAborted)) {
    console.error(
      JSON.stringify({
        level: "error",
        msg: "http server",
        error: String((err as Error)?.stack ?? err),
      }),
    );
  }
  return new Response(null, { status: 500 });
}

/** Reads a request body, telling `failed` when reading it broke: the client's fault, not the node's. */
async function* clientBody(
  stream: ReadableStream<Uint8Array> | null,
  failed: (e: unknown) => void,
): AsyncGenerator<Uint8Array> {
  if (!stream) return;
  const reader = stream.getReader();
  let done = false;
  try {
    while (true) {
      let next;
      try {
        next = await reader.read();
      } catch (e) {
        done = true;
        failed(e);
        throw e;
      }
      if ((done = next.done)) return;
      yield next.value;
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
  }
}

export interface Gateway {
  app: Hono;
  metrics: Registry;
  /** Set false while shutting down, so /readyz answers 503 and load balancers move away. */
  ready: boolean;
}

/** The methods of the gateway's content routes, for a 405 to a method they do not take. */
function allowed(path: string): string | undefined {
  if (path === "/mesh") return "POST";
  if (/^\/(mesh|ipfs)\/[^/]+/.test(path)) return "GET, HEAD";
  return undefined;
}

/** True when an If-None-Match header value matches `etag` (weak comparison, as for GET). */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === "*") return true;
  const bare = etag.replace(/^W\//, "");
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === bare);
}

/**
 * The stored media type of an upload. curl's `--data-binary @file` sends
 * `application/x-www-form-urlencoded` unless told otherwise, and a form encoding says nothing about the
 * file, so (like a missing type) it yields to the name's extension, then to `application/octet-stream`.
 * A given type is kept lower-cased with its charset, the one parameter that says how to show the bytes
 * (or, for the very type the name's extension gives, the extension's charset): a .txt file is stored as
 * `text/plain; charset=utf-8` whether the CLI, a browser or curl uploaded it.
 */
export function uploadType(header: string | undefined, name: string | undefined): string {
  const [first, ...params] = (header ?? "").split(";");
  const type = first!.trim().toLowerCase();
  const form = /^(application\/x-www-form-urlencoded|multipart\/form-data)$/;
  if (type && !form.test(type)) {
    const charset = params.map((p) =>
      /^\s*charset\s*=\s*"?([a-z0-9._:-]{1,40})"?\s*$/i.exec(p)?.[1]
    )
      .find((c) => c !== undefined);
    if (charset) return `${type}; charset=${charset.toLowerCase()}`;
    // A browser sends `text/plain` for notes.txt: the extension's type is the same, with its charset.
    const named = name ? typeFromName(name) : undefined;
    return named?.split(";")[0] === type ? named : type;
  }
  return (name && typeFromName(name)) || "application/octet-stream";
}

const emptyUpload = () =>
  new MeshError("empty_upload", "The upload is empty: send the file's bytes as the body");

/** The body, refused when it ends before its first byte, so an empty POST pins nothing. */
async function nonEmpty(
  body: ReadableStream<Uint8Array> | null,
): Promise<ReadableStream<Uint8Array>> {
  if (!body) throw emptyUpload();
  const reader = body.getReader();
  let first: ReadableStreamReadResult<Uint8Array>;
  do first = await reader.read(); while (!first.done && !first.value.length);
  if (first.done) throw emptyUpload();
  let head: Uint8Array | undefined = first.value;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (head) {
        controller.enqueue(head);
        head = undefined;
        return;
      }
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
}

export function createGateway(node: MeshgateNode, options: GatewayOptions = {}): Gateway {
  const maxUpload = options.maxUploadBytes ?? 1024 ** 3;
  const metrics = new Registry();
  const requests = metrics.add(
    new Counter("mesh_http_requests_total", "HTTP requests by method, route and status"),
  );
  const duration = metrics.add(
    new Histogram(
      "mesh_http_request_duration_seconds",
      "Time to response headers, by route",
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    ),
  );
  const served = metrics.add(
    new Counter("mesh_bytes_served_total", "Content bytes sent in response bodies"),
  );
  const uploaded = metrics.add(
    new Counter("mesh_bytes_uploaded_total", "Content bytes accepted by uploads"),
  );
  metrics.add(
    new Gauge("mesh_store_bytes", "Bytes of chunks in the store", () => node.store.stats().bytes),
  );
  metrics.add(
    new Gauge("mesh_store_max_bytes", "Store size cap", () => node.store.stats().maxBytes),
  );
  metrics.add(
    new Gauge("mesh_store_chunks", "Chunks in the store", () => node.store.stats().chunks),
  );
  metrics.add(new Gauge("mesh_store_pins", "Pinned roots", () => node.store.stats().pins));
  // Counts kept since start only grow: Prometheus counters, named _total.
  metrics.add(
    new SampledCounter(
      "mesh_store_corrupt_chunks_total",
      "Chunks found corrupt on read since start",
      () => node.store.stats().corrupt,
    ),
  );
  metrics.add(
    new SampledCounter(
      "mesh_chunks_repaired_total",
      "Chunks rebuilt from their stripes since start",
      () => node.stats().repaired,
    ),
  );
  metrics.add(
    new Gauge("mesh_peers", "Peers connected now", () => node.mesh?.connectedPeers().length ?? 0),
  );
  metrics.add(
    new SampledCounter(
      "mesh_chunks_requested_total",
      "Chunks peers asked this node for",
      () => node.mesh?.libp2p.services.exchange.chunksRequested ?? 0,
    ),
  );
  metrics.add(
    new SampledCounter(
      "mesh_chunks_fetched_total",
      "Chunks fetched from other peers since start",
      () => node.stats().fetched,
    ),
  );
  // Announcements wait for quiet (provide.ts): a reader's DHT finds a new holder only once they ran.
  const announced = () => node.announcements?.stats();
  metrics.add(
    new Gauge(
      "mesh_provide_pending",
      "Provider announcements waiting or running",
      () => announced()?.pending ?? 0,
    ),
  );
  metrics.add(
    new SampledCounter(
      "mesh_provided_total",
      "Provider announcements made since start",
      () => announced()?.provided ?? 0,
    ),
  );
  metrics.add(
    new SampledCounter(
      "mesh_provide_failed_total",
      "Provider announcements that reached no peer or timed out since start",
      () => announced()?.failed ?? 0,
    ),
  );
  metrics.add(
    new SampledCounter(
      "mesh_chunks_placed_total",
      "Chunks handed to other peers since start",
      () => node.stats().placed,
    ),
  );
  metrics.add(
    new SampledCounter(
      "mesh_peer_misbehaviour_total",
      "Reports of peers that sent bad bytes or oversize messages",
      () => [...(node.mesh?.misbehaviour().values() ?? [])].reduce((n, r) => n + r.length, 0),
    ),
  );
  const meshTraffic = (key: "sentBytes" | "receivedBytes") => () =>
    node.mesh?.libp2p.services.exchange.trafficTotal()[key] ?? 0;
  metrics.add(
    new SampledCounter(
      "mesh_peer_bytes_sent_total",
      "Chunk bytes sent to peers (answers, chunks they took to keep) since start",
      meshTraffic("sentBytes"),
    ),
  );
  metrics.add(
    new SampledCounter(
      "mesh_peer_bytes_received_total",
      "Verified chunk bytes received from peers since start",
      meshTraffic("receivedBytes"),
    ),
  );
  addPayMetrics(metrics, node);
  addReputationMetrics(metrics, () => node.reputation?.book);
  metrics.add(new Gauge("mesh_build_info", "Build information", () => [[{ version: VERSION }, 1]]));

  const gateway: Gateway = { app: new Hono(), metrics, ready: true };
  const app = gateway.app;

  app.use(async (c, next) => {
    const started = performance.now();
    await next();
    const route = c.req.routePath || "unmatched";
    requests.inc({ method: c.req.method, route, status: String(c.res.status) });
    duration.observe({ route }, (performance.now() - started) / 1000);
  });
  // An error may be gone tomorrow (the content found, the node back): never let a cache keep it.
  app.use(async (c, next) => {
    await next();
    if (c.res.status >= 400) {
      c.header("Cache-Control", "no-store");
      c.header("ETag", undefined);
    }
  });
  if (options.x402) app.use(x402Paywall(() => options.x402, node));
  // A content origin answers only its content: no page, no API, no uploads.
  app.use(async (c, next) => {
    const label = SUBDOMAIN.exec(c.req.header("host") ?? new URL(c.req.url).host)?.[1];
    if (!label) return await next();
    if ((c.req.method !== "GET" && c.req.method !== "HEAD") || c.req.path !== "/") {
      return c.json({
        error: "not_found",
        message: `The origin of ${label} serves only GET /, its content`,
      }, 404);
    }
    return await serveCid(c, parseCid(label.toLowerCase()), `/ipfs/${label.toLowerCase()}`, false);
  });
  // Content is public and checks itself: any page may read it, as from an IPFS gateway (no credentials).
  for (const prefix of ["/mesh", "/ipfs"]) {
    app.use(`${prefix}/*`, async (c, next) => {
      await next();
      c.header("Access-Control-Allow-Origin", "*");
      c.header("Access-Control-Expose-Headers", EXPOSED);
    });
  }
  // Before the write guard: a proof of fraud checks itself, so any page or gateway may hand one over.
  addReputationRoutes(app, () => node.reputation?.book, () => node.offers);
  app.use(
    writeGuard({
      token: options.apiToken,
      origins: options.publicUrl ? [options.publicUrl] : [],
    }),
  );

  app.onError((err, c) => {
    if (err instanceof MeshError) {
      return c.json({ error: err.code, message: err.message }, httpStatus(err) as 400);
    }
    if (err instanceof HTTPException) {
      return c.json({ error: "http_error", message: err.message }, err.status);
    }
    console.error(
      JSON.stringify({ level: "error", msg: "unhandled", error: String(err?.stack ?? err) }),
    );
    return c.json({ error: "internal", message: "Internal server error" }, 500);
  });
  app.notFound((c) => {
    // A known path asked with another method: which methods it takes (RFC 9110's 405 and Allow).
    const allow = allowed(c.req.path);
    if (allow) {
      c.header("Allow", allow);
      return c.json({
        error: "method_not_allowed",
        message: `${c.req.method} ${c.req.path} is not served; use ${allow}`,
      }, 405);
    }
    return c.json({ error: "not_found", message: `No route for ${c.req.path}` }, 404);
  });

  mountPage(app);
  app.get("/livez", (c) => c.text("ok"));
  app.get("/readyz", (c) => {
    const stats = node.store.stats();
    const chain = node.chain;
    const payments = chain
      ? { mode: "paid", chainId: chain.chainId, contracts: chain.contracts }
      : { mode: "volunteer" };
    const mesh = node.mesh && {
      peerId: node.mesh.peerId,
      multiaddrs: node.mesh.multiaddrs(),
      peers: node.mesh.connectedPeers().length,
    };
    const body = { ready: gateway.ready, store: stats, payments, mesh: mesh ?? null };
    return c.json(body, gateway.ready ? 200 : 503);
  });
  app.get(
    "/metrics",
    (c) => c.body(metrics.render(), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE }),
  );

  addPayRoutes(app, node);
  addMarketRoutes(app, () => node.market, { token: options.apiToken });
  addLeaseRoutes(app, node);
  addPeerRoutes(app, node);

  // Unpins a file: the node stops keeping it for itself (its chunks become evictable, as those kept for
  // peers). A write: behind the guard like uploads.
  app.delete("/api/files/:cid", async (c) => {
    const cid = parseCid(c.req.param("cid"));
    if (!node.store.isPinned(cid)) {
      throw new MeshError("not_found", `${cid} is not pinned on this node`);
    }
    await node.store.unpin(cid);
    return c.json({ cid: cid.toString(), pinned: false });
  });

  app.get("/api/files", async (c) => {
    const files = [];
    for (const cid of node.store.pins()) {
      try {
        const m = await node.manifest(cid);
        files.push({
          cid: cid.toString(),
          name: m.name,
          type: m.type,
          size: m.size,
          k: m.k,
          m: m.m,
          durability: await node.durability(cid) ?? null,
        });
      } catch {
        files.push({ cid: cid.toString(), missing: true });
      }
    }
    return c.json({ files });
  });

  // Who the DHT says holds a CID: what operators and tests use to check discovery. The lookup ends at its
  // deadline with what it found so far.
  app.get("/api/providers/:cid", async (c) => {
    const cid = parseCid(c.req.param("cid"));
    const asked = c.req.query("timeout");
    if (asked !== undefined && !/^\d+$/.test(asked)) {
      throw new MeshError(
        "bad_request",
        `Query parameter "timeout" must be an integer (ms), got "${asked}"`,
      );
    }
    const timeout = Math.min(asked === undefined ? DEFAULT_FIND_TIMEOUT_MS : Number(asked), 30_000);
    const started = performance.now();
    const providers: ProviderInfo[] = [];
    if (node.mesh) {
      const signal = AbortSignal.any([c.req.raw.signal, AbortSignal.timeout(timeout)]);
      try {
        for await (const p of node.mesh.findProviders(cid, { signal })) providers.push(p);
      } catch (e) {
        if (!signal.aborted) throw e;
      }
    }
    return c.json({ cid: cid.toString(), providers, ms: Math.round(performance.now() - started) });
  });

  app.post("/mesh", async (c) => {
    const query = c.req.query();
    const declared = c.req.header("content-length");
    const expectedSize = declared === undefined ? undefined : Number(declared);
    if (expectedSize !== undefined && !Number.isSafeInteger(expectedSize)) {
      throw new MeshError("bad_request", `Invalid Content-Length "${declared}"`);
    }
    const int = (name: string) => {
      const v = query[name];
      if (v === undefined) return undefined;
      if (!/^\d+$/.test(v)) {
        throw new MeshError(
          "bad_request",
          `Query parameter "${name}" must be an integer, got "${v}"`,
        );
      }
      return Number(v);
    };
    if (expectedSize === 0) throw emptyUpload();
    const lease = query.lease === undefined ? undefined : leaseDuration("lease", query.lease);
    if (lease !== undefined) checkLeasing(node);
    const type = uploadType(c.req.header("content-type"), query.name);
    let bodyFailed = false;
    const raw = c.req.raw.body &&
      ReadableStream.from(clientBody(c.req.raw.body, () => bodyFailed = true));
    let result;
    try {
      const body = await nonEmpty(raw);
      result = await node.put(body, {
        name: query.name ?? "",
        type,
        k: int("k"),
        m: int("m"),
        chunkSize: int("chunkSize"),
        expectedSize,
        maxBytes: maxUpload,
        signal: c.req.raw.signal,
        prefer: preferOf(c),
      });
    } catch (e) {
      if (e instanceof MeshError || e instanceof RangeError) throw e;
      if (bodyFailed || c.req.raw.signal.aborted) {
        // The body's own error names Deno's resource, not the client's doing: said plainly.
        throw new MeshError(
          "upload_failed",
          "The upload did not complete: the connection closed before the body ended",
          { cause: e },
        );
      }
      // Not the client's doing: the disk (or the node) failed while storing.
      throw new MeshError("store_failed", `The node could not store the upload: ${e}`, {
        cause: e,
      });
    }
    const { cid, manifest, durability } = result;
    uploaded.inc({}, manifest.size);
    const leased = lease === undefined ? {} : await leaseUpload(node, result, lease);
    const path = `/mesh/${cid}`;
    const base = options.publicUrl ?? new URL(c.req.url).origin;
    c.header("Location", path);
    return c.json({
      cid: cid.toString(),
      url: `${base}${path}`,
      size: manifest.size,
      name: manifest.name,
      type: manifest.type,
      chunkSize: manifest.chunkSize,
      k: manifest.k,
      m: manifest.m,
      durability,
      ...leased,
    }, 201);
  });

  /**
   * Answers one CID. `sandbox`: served on the node's own origin (the path gateway), so script-capable
   * content is sandboxed; on its own subdomain origin it runs as a site. Content headers are set only on
   * the content answer itself: an error never inherits the immutable caching or the ETag.
   */
  const serveCid = async (c: Context, cid: CID, ipfsPath: string, sandbox: boolean) => {
    const accept = c.req.header("accept") ?? "";
    const format = c.req.query("format");
    let raw: boolean;
    if (format === "raw") raw = true;
    else if (format === "car") {
      throw new MeshError("not_acceptable", "CAR responses are not supported; use format=raw");
    } else if (format !== undefined) {
      throw new MeshError("bad_request", `Unknown format "${format}"; use "raw"`);
    } else raw = accept.includes(RAW_TYPE);

    const etag = raw ? `"${cid}.raw"` : `"${cid}"`;
    const headers: Record<string, string> = {
      "ETag": etag,
      "Cache-Control": IMMUTABLE,
      "X-Ipfs-Path": ipfsPath,
      "X-Content-Type-Options": "nosniff",
    };
    if (raw) headers["Vary"] = "Accept";
    // Content addressed: the tag is known without touching the store, so a revalidation costs nothing.
    if (etagMatches(c.req.header("if-none-match"), etag)) return c.body(null, 304, headers);

    const signal = c.req.raw.signal;
    if (raw) {
      const bytes = await node.block(cid, signal);
      if (format === undefined) headers["Content-Location"] = `${c.req.path}?format=raw`;
      if (sandbox) headers["Content-Security-Policy"] = "sandbox";
      // Signed by the node's identity: bad bytes under this signature are a portable proof against it.
      const delivery = await node.reputation?.signDelivery(cid, bytes);
      if (delivery) headers[DELIVERY_HEADER] = formatDeliveryHeader(delivery);
      served.inc({}, bytes.length);
      return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
        ...headers,
        "Content-Type": RAW_TYPE,
        "Content-Length": String(bytes.length),
        "Content-Disposition": contentDisposition("attachment", `${cid}.bin`),
      });
    }
    const manifest = await node.manifest(cid, signal, lookupOf(c));
    if (sandbox && canRunScript(manifest.type)) headers["Content-Security-Policy"] = "sandbox";
    return await serveFile(c, cid, manifest, headers);
  };

  const serveFile = async (
    c: Context,
    cid: CID,
    manifest: Manifest,
    headers: Record<string, string>,
  ) => {
    const range = parseRange(c.req.header("range"), manifest.size);
    if (range.kind === "unsatisfiable") {
      c.header("Content-Range", `bytes */${manifest.size}`);
      return c.json(
        { error: "range_not_satisfiable", message: `The range is outside 0-${manifest.size - 1}` },
        416,
      );
    }
    headers["Accept-Ranges"] = "bytes";
    headers["Content-Type"] = manifest.type;
    if (manifest.name) headers["Content-Disposition"] = contentDisposition("inline", manifest.name);
    const [start, end] = range.kind === "partial" ? [range.start, range.end] : [0, manifest.size];
    headers["Content-Length"] = String(end - start);
    if (range.kind === "partial") {
      headers["Content-Range"] = `bytes ${start}-${end - 1}/${manifest.size}`;
    }
    const status = range.kind === "partial" ? 206 : 200;
    if (c.req.method === "HEAD" || end === start) return c.body(null, status, headers);

    const signal = c.req.raw.signal;
    const stream = node.read(manifest, {
      start,
      end,
      signal,
      prefer: preferOf(c),
      lookup: lookupOf(c),
    });
    const reader = stream.getReader();
    // The first chunk is read before answering, so a missing file gets a status code, not a cut body.
    const first = await reader.read();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (first.value) {
          sent += first.value.length;
          served.inc({}, first.value.length);
          controller.enqueue(first.value);
        }
        if (first.done) controller.close();
      },
      async pull(controller) {
        let next;
        try {
          next = await reader.read();
        } catch (e) {
          // The status line is gone: erroring the body makes the server abort the connection, so the
          // client sees a broken transfer (Content-Length unmet), never a complete-looking short 200.
          if (!signal.aborted) {
            console.error(JSON.stringify({
              level: "error",
              msg: "read failed after the headers were sent; connection aborted",
              cid: cid.toString(),
              range: `${start}-${end - 1}`,
              sent,
              cause: String(e),
            }));
          }
          controller.error(
            new BodyAborted(`Read of ${cid} failed after the headers`, { cause: e }),
          );
          return;
        }
        if (next.done) return controller.close();
        sent += next.value.length;
        served.inc({}, next.value.length);
        controller.enqueue(next.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return c.body(body, status, headers);
  };

  const serve = (c: Context) => serveCid(c, parseCid(c.req.param("cid")!), c.req.path, true);
  for (const prefix of ["/mesh", "/ipfs"]) app.get(`${prefix}/:cid`, serve);
  return gateway;
}

/** The request's `?lookup=paid` (and `?via=<peer>`): missing chunks found through a paid lookup. */
function lookupOf(c: Context): { via?: string } | undefined {
  const v = c.req.query("lookup");
  const via = c.req.query("via");
  if (v === undefined || v === "free") {
    if (via !== undefined) {
      throw new MeshError("bad_request", 'Query parameter "via" goes with "lookup=paid"');
    }
    return undefined;
  }
  if (v !== "paid") {
    throw new MeshError(
      "bad_request",
      `Query parameter "lookup" is "paid" or "free", got "${v.slice(0, 40)}"`,
    );
  }
  if (via !== undefined && !/^[1-9A-HJ-NP-Za-km-z]{40,64}$/.test(via)) {
    throw new MeshError(
      "bad_request",
      `Query parameter "via" is a peer ID, got "${via.slice(0, 80)}"`,
    );
  }
  return via === undefined ? {} : { via };
}

/** The request's `?prefer=`: whom the mesh asks first, or who keeps the chunks (`reputation/select.ts`). */
function preferOf(c: Context): Prefer | undefined {
  const v = c.req.query("prefer");
  if (v === undefined) return undefined;
  if (!(PREFERENCES as readonly string[]).includes(v)) {
    throw new MeshError(
      "bad_request",
      `Query parameter "prefer" is one of ${PREFERENCES.join(", ")}, got "${v.slice(0, 40)}"`,
    );
  }
  return v as Prefer;
}
