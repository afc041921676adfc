/**
 * Gateways for the verifiedFetch tests: real nodes (each with a mesh, so it keeps a reputation book and signs
 * its raw answers) behind real `Deno.serve` on 127.0.0.1, and a proxy that can rewrite what passes through.
 */
import type { PrivateKey } from "@libp2p/interface";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { createGateway, onServeError } from "../../edge/app.ts";
import { type CID, parseCid } from "../../src/content/cid.ts";
import { decodeManifest, type Manifest } from "../../src/content/manifest.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { MeshgateNode } from "../../src/node.ts";
import { signDelivery } from "../../src/reputation/evidence.ts";
import { DELIVERY_HEADER, formatDeliveryHeader } from "../../src/mesh/delivery_format.ts";

export interface TestGateway {
  url: string;
  node: MeshgateNode;
  dir: string;
  peerId: string;
  key: PrivateKey;
  stop(): Promise<void>;
}

/** A node with a mesh on loopback (no peers) and its gateway. */
export async function startGateway(): Promise<TestGateway> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-vf-" });
  const node = await MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    mesh: { listen: ["/ip4/127.0.0.1/tcp/0"] },
  });
  const gw = createGateway(node);
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: resolve, onError: onServeError },
    gw.app.fetch,
  );
  const addr = await promise;
  return {
    url: `http://127.0.0.1:${addr.port}`,
    node,
    dir,
    peerId: node.mesh!.peerId,
    key: await loadOrCreatePrivateKey(dir),
    async stop() {
      await server.shutdown();
      await node.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** Deterministic bytes that a page can recompute: byte i of file `seed`. */
export function byteAt(seed: number, i: number): number {
  let x = Math.imul(i ^ seed, 0x9e3779b1) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x85ebca6b) >>> 0;
  return (x ^ (x >>> 13)) & 255;
}

export function content(seed: number, size: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = byteAt(seed, i);
  return out;
}

/** Uploads `bytes` to each gateway (the same options give the same CIDs everywhere). */
export async function upload(
  gateways: string[],
  bytes: Uint8Array,
  options: { k: number; m: number; chunkSize: number; name?: string },
): Promise<{ cid: string; manifest: Manifest }> {
  let cid = "";
  for (const url of gateways) {
    const q = new URLSearchParams({
      name: options.name ?? "data.bin",
      k: String(options.k),
      m: String(options.m),
      chunkSize: String(options.chunkSize),
    });
    const res = await fetch(`${url}/mesh?${q}`, {
      method: "POST",
      headers: { "Content-Type": "application/octet-stream" },
      body: bytes as Uint8Array<ArrayBuffer>,
    });
    if (res.status !== 201) throw new Error(`upload: ${res.status} ${await res.text()}`);
    const got = (await res.json()).cid as string;
    if (cid && got !== cid) throw new Error(`the gateways made different CIDs: ${cid}, ${got}`);
    cid = got;
  }
  const raw = await fetch(`${gateways[0]}/mesh/${cid}?format=raw`);
  return { cid, manifest: decodeManifest(new Uint8Array(await raw.arrayBuffer())) };
}

/** What a proxy does with one answer: undefined passes it on as it is. */
export type Tamper = (
  cid: CID,
  res: Response,
  req: Request,
) => Promise<Response | undefined> | Response | undefined;

export interface TestProxy {
  url: string;
  /** Raw block requests seen, by CID. */
  asked: Map<string, number>;
  stop(): Promise<void>;
}

/**
 * A proxy on 127.0.0.1 in front of `upstream`; `tamper` may replace raw block answers, `tamperFile` the
 * answers for a file's bytes (`/mesh/<cid>` without `format=raw`, ranges included).
 */
export async function startProxy(
  upstream: string,
  tamper: Tamper,
  tamperFile?: Tamper,
): Promise<TestProxy> {
  const asked = new Map<string, number>();
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: resolve }, async (req) => {
    const url = new URL(req.url);
    const res = await fetch(`${upstream}${url.pathname}${url.search}`, {
      method: req.method,
      headers: req.headers,
      body: req.body,
      signal: req.signal,
    });
    const m = /^\/mesh\/([^/]+)$/.exec(url.pathname);
    if (m && tamperFile && url.searchParams.get("format") !== "raw") {
      return await tamperFile(parseCid(m[1]!), res, req) ?? res;
    }
    if (!m || url.searchParams.get("format") !== "raw") return res;
    const cid = parseCid(m[1]!);
    asked.set(cid.toString(), (asked.get(cid.toString()) ?? 0) + 1);
    return await tamper(cid, res, req) ?? res;
  });
  const addr = await promise;
  return { url: `http://127.0.0.1:${addr.port}`, asked, stop: () => server.shutdown() };
}

/** The answer with one bit of its body flipped; re-signed with `key` (a lying operator) or not (a tampering
 * network, which keeps the honest signature of other bytes). */
export async function flipped(res: Response, cid: CID, key?: PrivateKey): Promise<Response> {
  const bytes = new Uint8Array(await res.arrayBuffer());
  bytes[bytes.length >> 1]! ^= 0x10;
  const headers = new Headers(res.headers);
  if (key) {
    const peer = peerIdFromPrivateKey(key).toString();
    const d = await signDelivery(key, cid, bytes);
    headers.set(DELIVERY_HEADER, formatDeliveryHeader({ peer, ...d }));
  }
  return new Response(bytes, { status: res.status, headers });
}

/**
 * A file answer (whole or ranged) with the same bit flipped in each of data chunks `bad` (indexes into the
 * file) as {@link flipped} flips in the chunk's raw answer: what an operator that lies about those chunks
 * sends however they are asked.
 */
export async function flippedFile(
  res: Response,
  manifest: Manifest,
  bad: number[],
): Promise<Response> {
  const bytes = new Uint8Array(await res.arrayBuffer());
  const range = /^bytes (\d+)-/.exec(res.headers.get("content-range") ?? "");
  const from = range ? Number(range[1]) : 0;
  for (const i of bad) {
    const length = Math.min(manifest.chunkSize, manifest.size - i * manifest.chunkSize);
    const at = i * manifest.chunkSize + (length >> 1) - from;
    if (at >= 0 && at < bytes.length) bytes[at]! ^= 0x10;
  }
  return new Response(bytes, { status: res.status, headers: res.headers });
}
