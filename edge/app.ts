/**
 * The gateway: IPFS-style path gateway routes over a Meshgate node, plus uploads, health and metrics.
 * Web-standard only (Request/Response/streams), so tests drive it with `app.request()` and no socket.
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { type CID, parseCid, RAW_CODE } from "../src/content/cid.ts";
import type { Manifest } from "../src/content/manifest.ts";
import type { MeshgateNode } from "../src/node.ts";
import { DEFAULT_FIND_TIMEOUT_MS, type ProviderInfo } from "../src/mesh/dht.ts";
import { MeshError } from "../src/errors.ts";
import { httpStatus } from "./errors.ts";
import { parseRange } from "./range.ts";
import { Counter, Gauge, Histogram, PROMETHEUS_CONTENT_TYPE, Registry } from "./metrics.ts";
import { PAGE_HTML } from "./page.ts";

export const VERSION = "0.1.0";
const IMMUTABLE = "public, max-age=29030400, immutable";
const RAW_TYPE = "application/vnd.ipld.raw";

export interface GatewayOptions {
  /** Largest accepted upload in bytes. Default: 1 GiB. */
  maxUploadBytes?: number;
  /** Public base URL for links in upload answers. Default: the request's own origin. */
  publicUrl?: string;
}

export interface Gateway {
  app: Hono;
  metrics: Registry;
  /** Set false while shutting down, so /readyz answers 503 and load balancers move away. */
  ready: boolean;
}

function contentDisposition(kind: "inline" | "attachment", name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, "_").replace(/["\\]/g, "_");
  if (ascii === name) return `${kind}; filename="${name}"`;
  return `${kind}; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** True when an If-None-Match header value matches `etag` (weak comparison, as for GET). */
function etagMatches(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === "*") return true;
  const bare = etag.replace(/^W\//, "");
  return header.split(",").some((t) => t.trim().replace(/^W\//, "") === bare);
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
  metrics.add(
    new Gauge(
      "mesh_store_corrupt_chunks",
      "Chunks found corrupt on read since start",
      () => node.store.stats().corrupt,
    ),
  );
  metrics.add(
    new Gauge(
      "mesh_chunks_repaired",
      "Chunks rebuilt from their stripes since start",
      () => node.stats().repaired,
    ),
  );
  metrics.add(
    new Gauge("mesh_peers", "Peers connected now", () => node.mesh?.connectedPeers().length ?? 0),
  );
  metrics.add(
    new Gauge(
      "mesh_chunks_fetched",
      "Chunks fetched from other peers since start",
      () => node.stats().fetched,
    ),
  );
  metrics.add(
    new Gauge(
      "mesh_chunks_placed",
      "Chunks handed to other peers since start",
      () => node.stats().placed,
    ),
  );
  metrics.add(
    new Gauge(
      "mesh_peer_misbehaviour",
      "Reports of peers that sent bad bytes or oversize messages",
      () => [...(node.mesh?.misbehaviour().values() ?? [])].reduce((n, r) => n + r.length, 0),
    ),
  );
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
  app.notFound((c) => c.json({ error: "not_found", message: `No route for ${c.req.path}` }, 404));

  app.get("/", (c) => c.html(PAGE_HTML));
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
    const body = c.req.raw.body ?? new ReadableStream({ start: (ctl) => ctl.close() });
    const type = c.req.header("content-type")?.split(";")[0]?.trim() || "application/octet-stream";
    let result;
    try {
      result = await node.put(body, {
        name: query.name ?? "",
        type,
        k: int("k"),
        m: int("m"),
        chunkSize: int("chunkSize"),
        expectedSize,
        maxBytes: maxUpload,
        signal: c.req.raw.signal,
      });
    } catch (e) {
      if (e instanceof MeshError || e instanceof RangeError) throw e;
      throw new MeshError("upload_failed", `The upload did not complete: ${e}`, { cause: e });
    }
    const { cid, manifest } = result;
    uploaded.inc({}, manifest.size);
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
    }, 201);
  });

  const serve = async (c: import("hono").Context) => {
    const cid = parseCid(c.req.param("cid")!);
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
    c.header("ETag", etag);
    c.header("Cache-Control", IMMUTABLE);
    c.header("X-Ipfs-Path", c.req.path);
    if (raw) c.header("Vary", "Accept");
    // Content addressed: the tag is known without touching the store, so a revalidation costs nothing.
    if (etagMatches(c.req.header("if-none-match"), etag)) return c.body(null, 304);

    if (raw) {
      const bytes = await node.block(cid);
      if (format === undefined) c.header("Content-Location", `${c.req.path}?format=raw`);
      served.inc({}, bytes.length);
      return c.body(bytes as Uint8Array<ArrayBuffer>, 200, {
        "Content-Type": RAW_TYPE,
        "Content-Length": String(bytes.length),
        "Content-Disposition": contentDisposition("attachment", `${cid}.bin`),
        "X-Content-Type-Options": "nosniff",
      });
    }
    return await serveFile(c, cid, await node.manifest(cid));
  };

  const serveFile = async (c: import("hono").Context, cid: CID, manifest: Manifest) => {
    const range = parseRange(c.req.header("range"), manifest.size);
    c.header("Accept-Ranges", "bytes");
    c.header("Content-Type", manifest.type);
    if (manifest.name) c.header("Content-Disposition", contentDisposition("inline", manifest.name));
    else if (cid.code === RAW_CODE) c.header("X-Content-Type-Options", "nosniff");
    if (range.kind === "unsatisfiable") {
      c.header("Content-Range", `bytes */${manifest.size}`);
      return c.json(
        { error: "range_not_satisfiable", message: `The range is outside 0-${manifest.size - 1}` },
        416,
      );
    }
    const [start, end] = range.kind === "partial" ? [range.start, range.end] : [0, manifest.size];
    c.header("Content-Length", String(end - start));
    if (range.kind === "partial") {
      c.header("Content-Range", `bytes ${start}-${end - 1}/${manifest.size}`);
    }
    const status = range.kind === "partial" ? 206 : 200;
    if (c.req.method === "HEAD" || end === start) return c.body(null, status);

    const stream = node.read(manifest, { start, end, signal: c.req.raw.signal });
    const reader = stream.getReader();
    // The first chunk is read before answering, so a missing file gets a status code, not a cut body.
    const first = await reader.read();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (first.value) {
          served.inc({}, first.value.length);
          controller.enqueue(first.value);
        }
        if (first.done) controller.close();
      },
      async pull(controller) {
        const { value, done } = await reader.read();
        if (done) return controller.close();
        served.inc({}, value.length);
        controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }, { highWaterMark: 0 });
    return c.body(body, status);
  };

  for (const prefix of ["/mesh", "/ipfs"]) app.get(`${prefix}/:cid`, serve);
  return gateway;
}
