/**
 * `verifiedFetch`: a file from any gateway, every byte checked here. It fetches the manifest as a raw block
 * and the data chunks in runs of up to 4 MiB (one ranged GET each, cut at the manifest's chunk boundaries:
 * a request per 256 KiB block costs a browser more than the block), checks each chunk against its CID with
 * the BLAKE3 kernel, asks a chunk that fails again as a raw block (`/mesh/<cid>?format=raw`, signed by the
 * gateway), rebuilds a stripe with the erasure kernel when a block is missing or bad (asking for the
 * stripe's other blocks, parity included), and streams the bytes in order, for any range. No byte reaches
 * the caller unchecked, so an untrusted gateway is safe to use.
 *
 * Bad bytes under the gateway's own signature (`Meshgate-Delivery`, see `mesh/delivery_format.ts`) are a
 * proof: it is checked here, posted to another gateway's `POST /api/evidence`, and the rest is fetched from
 * another gateway. Bad bytes without a valid signature of them (a tampering network, a gateway that signs
 * nothing) also switch gateways, but accuse nobody.
 *
 * Runs in browsers (`/meshgate.js`, the bundle) and in Deno (`src/mod.ts`).
 *
 * @module
 */
import { contentDisposition } from "../content/disposition.ts";
import { type CID, matchesCid, parseCid, RAW_CODE } from "../content/cid.ts";
import { MAX_CHUNK_SIZE } from "../content/chunker.ts";
import {
  chunkCount,
  chunkLength,
  decodeManifest,
  type Manifest,
  MAX_MANIFEST_BYTES,
  stripeDataCount,
} from "../content/manifest.ts";
import { readFile, UnrecoverableError } from "../content/read.ts";
import { blake3 } from "../kernels/blake3.ts";
import { prepareKernels } from "../kernels/_load.ts";
import { MeshError } from "../errors.ts";
import {
  DELIVERY_HEADER,
  fraudProof,
  parseDeliveryHeader,
  toHex,
  verifyDeliveryWeb,
} from "../mesh/delivery_format.ts";

/** What verifiedFetch tells as it goes: for a page's status line, and for tests. */
export type VerifiedFetchEvent =
  | { type: "bad_block"; gateway: string; cid: string; reason: string; provable: boolean }
  | { type: "switched"; from: string; to: string }
  | { type: "rebuilt"; cid: string }
  | {
    type: "reported";
    to: string;
    peer: string;
    cid: string;
    status: number;
    answer: unknown;
  };

export interface VerifiedFetchOptions {
  /**
   * Gateway base URL(s), e.g. `https://gw.example`. The first is used until it fails or sends bad bytes;
   * the others take over and receive reports. Default: the origin of a URL argument, else the page's.
   */
  gateway?: string | readonly string[];
  /** Bytes [start, end) of the file (end exclusive, default its end), or an HTTP `bytes=a-b` value. */
  range?: { start: number; end?: number } | string;
  signal?: AbortSignal;
  /** Blocks requested ahead of the reader. Default: one stripe (k), at most 16. */
  prefetch?: number;
  /** Post proofs of bad bytes to another gateway. Default: true. */
  report?: boolean;
  /** Hears bad blocks, gateway switches, rebuilt blocks and reports. */
  onEvent?: (event: VerifiedFetchEvent) => void;
  /** The fetch to use. Default: the global one. */
  fetch?: typeof fetch;
  /**
   * The most bytes one ranged GET of the data asks for. Default: the whole read, which is fastest. A fetch
   * that pays per request (`X402Client.fetch`) pays each one up front, so a bound here is what is paid
   * ahead of the bytes: the next run is asked for as the reader's prefetch reaches it.
   */
  runBytes?: number;
}

/** verifiedFetch could not deliver: every problem it met is listed, most recent last. */
export class VerifiedFetchError extends MeshError {
  override name = "VerifiedFetchError";
  constructor(code: string, message: string, readonly problems: string[], cause?: unknown) {
    const seen = [...new Set(problems)];
    const tail = seen.length ? ` (${seen.slice(-4).join("; ")})` : "";
    super(code, `${message}${tail}`, { cause });
  }
}

/** A raw answer longer than any block may be: refused before it is all read. */
export class BlockTooLargeError extends MeshError {
  override name = "BlockTooLargeError";
  constructor(cid: CID, gateway: string, limit: number) {
    super(
      "block_too_large",
      `${gateway} sent more than ${limit} bytes for block ${cid}, over the limit of a block`,
    );
  }
}

const MAX_PREFETCH = 16;
/** Manifests already verified (by CID, so safe to reuse from any gateway), for seeks and repeats. */
const manifests = new Map<string, Manifest>();
const MAX_MANIFESTS = 64;
/** Bytes of verified data chunks the fast path reads past the last chunk the reader asked for. */
const AHEAD_BYTES = 8 * 1024 * 1024;
/** Stripes of verified blocks kept for rebuilds (the one being read and the one before). */
const KEEP_STRIPES = 2;

/**
 * A Response whose body methods reject with verifiedFetch's own error: a browser turns a failed body
 * stream into a bare "Failed to fetch" when read through `arrayBuffer()` and the like.
 */
class VerifiedResponse extends Response {
  override async bytes(): Promise<Uint8Array<ArrayBuffer>> {
    if (!this.body) return new Uint8Array(0);
    const reader = this.body.getReader();
    const parts: Uint8Array[] = [];
    let length = 0;
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(value);
      length += value.length;
    }
    const out = new Uint8Array(length);
    let at = 0;
    for (const p of parts) (out.set(p, at), at += p.length);
    return out;
  }
  override async arrayBuffer(): Promise<ArrayBuffer> {
    return (await this.bytes()).buffer;
  }
  override async text(): Promise<string> {
    return new TextDecoder().decode(await this.bytes());
  }
  override async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }
  override async blob(): Promise<Blob> {
    return new Blob([await this.bytes()], { type: this.headers.get("content-type") ?? "" });
  }
}

/** Settles when `signal` aborts (never rejects). */
function abortOf(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** The CID and the gateway a URL or path names. */
function target(input: string): { cid: CID; origin?: string } {
  const s = input.trim();
  const path = /^\/(?:mesh|ipfs)\/([^/?#]+)/;
  if (/^ipfs:\/\//i.test(s)) return { cid: parseCid(s.slice(7).split(/[/?#]/)[0]!) };
  if (path.test(s)) return { cid: parseCid(path.exec(s)![1]!) };
  if (/^https?:\/\//i.test(s)) {
    const url = new URL(s);
    const m = path.exec(url.pathname);
    if (m) return { cid: parseCid(m[1]!), origin: url.origin };
    const sub = /^(b[a-z2-7]{20,})\.mesh\.(.+)$/i.exec(url.host);
    if (sub) return { cid: parseCid(sub[1]!.toLowerCase()), origin: `${url.protocol}//${sub[2]}` };
    throw new MeshError(
      "bad_request",
      `"${s.slice(0, 100)}" names no CID (/mesh/<cid> or /ipfs/<cid>)`,
    );
  }
  return { cid: parseCid(s) };
}

/** [start, end) of a `size`-byte file, from the option. */
function byteRange(
  range: VerifiedFetchOptions["range"],
  size: number,
): [number, number] | undefined {
  if (range === undefined) return undefined;
  let start: number;
  let end: number;
  if (typeof range === "string") {
    const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
    if (!m || (m[1] === "" && m[2] === "")) {
      throw new MeshError(
        "bad_request",
        `A range is "bytes=a-b", "bytes=a-" or "bytes=-n": "${range}"`,
      );
    }
    if (m[1] === "") [start, end] = [Math.max(0, size - Number(m[2])), size];
    else [start, end] = [Number(m[1]), m[2] === "" ? size : Math.min(size, Number(m[2]) + 1)];
  } else {
    start = range.start;
    end = Math.min(size, range.end ?? size);
  }
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new MeshError("bad_request", `Bad range ${JSON.stringify(range)}`);
  }
  if (start >= size && !(start === 0 && size === 0)) {
    throw new MeshError(
      "range_not_satisfiable",
      `The range ${JSON.stringify(range)} is outside 0-${size - 1}`,
    );
  }
  return [start, end];
}

/** The body of `res`, refused past `limit` bytes without reading further. */
async function readBounded(res: Response, limit: number, tooLarge: () => Error) {
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > limit) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge();
  }
  if (!res.body) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let length = 0;
  const reader = res.body.getReader();
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    length += value.length;
    if (length > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge();
    }
    parts.push(value);
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(length);
  let at = 0;
  for (const p of parts) (out.set(p, at), at += p.length);
  return out;
}

/** The gateways of one call: the first good one is asked; bad bytes or failures move on. */
class Gateways {
  readonly urls: string[];
  readonly #bad = new Set<string>();
  constructor(urls: string[], readonly emit: (e: VerifiedFetchEvent) => void) {
    this.urls = urls.map((u) => u.replace(/\/+$/, ""));
  }
  current(): string {
    return this.urls.find((u) => !this.#bad.has(u)) ?? this.urls[0]!;
  }
  /** Stops asking `url` (while another is left); says where requests go now. */
  drop(url: string): void {
    const before = this.current();
    this.#bad.add(url);
    const now = this.current();
    if (now !== before) this.emit({ type: "switched", from: before, to: now });
  }
  /** A gateway other than `not` to hand a report to, preferring good ones. */
  other(not: string): string | undefined {
    return this.urls.find((u) => u !== not && !this.#bad.has(u)) ??
      this.urls.find((u) => u !== not);
  }
}

/**
 * Fetches `cidOrUrl` (a CID, `/mesh/<cid>`, `ipfs://<cid>` or a gateway URL) with every byte verified. The
 * answer is a `Response`: 200, or 206 with `Content-Range` for a range; its body streams verified bytes in
 * order and errors (never delivers a wrong byte) if the rest cannot be had. It rejects when the file cannot
 * even start: unknown CID, a manifest that fails its CID or does not decode, the first block lost.
 */
export async function verifiedFetch(
  cidOrUrl: string,
  options: VerifiedFetchOptions = {},
): Promise<Response> {
  const { cid, origin } = target(cidOrUrl);
  const given = options.gateway === undefined
    ? []
    : typeof options.gateway === "string"
    ? [options.gateway]
    : [...options.gateway];
  // deno-lint-ignore no-explicit-any
  const page = (globalThis as any).location?.origin as string | undefined;
  const urls = given.length ? given : origin ? [origin] : page ? [page] : [];
  if (urls.length === 0) {
    throw new MeshError("bad_request", "verifiedFetch needs a gateway: pass { gateway: URL }");
  }
  const doFetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const emit = options.onEvent ?? (() => {});
  const pool = new Gateways(urls, emit);
  const signal = options.signal ?? new AbortController().signal;
  const problems: string[] = [];
  const reported = new Set<string>();
  // Compiled off the main thread where the engine can, before the first block needs them.
  await prepareKernels(["blake3", "erasure", "erasure.relaxed"]);

  /** Handles bytes that failed their CID: a proof when the gateway signed them, and another gateway. */
  const badBytes = async (gw: string, block: CID, bytes: Uint8Array, headers: Headers) => {
    const d = parseDeliveryHeader(headers.get(DELIVERY_HEADER));
    const hash = toHex(blake3(bytes));
    let provable = false;
    if (d && d.hash === hash) provable = await verifyDeliveryWeb(d.peer, block, d) !== false;
    problems.push(`${gw}: bytes for ${block} do not match the CID`);
    emit({
      type: "bad_block",
      gateway: gw,
      cid: block.toString(),
      reason: "bytes do not match the CID",
      provable,
    });
    pool.drop(gw);
    const to = pool.other(gw);
    if (!provable || !d || options.report === false || !to || reported.has(d.peer)) return;
    reported.add(d.peer);
    const proof = fraudProof(d.peer, block, d);
    // Posted beside the read, not awaited by it; the answer reaches onEvent.
    doFetch(`${to}/api/evidence`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(proof),
    }).then(
      async (res) => {
        const answer = await res.json().catch(() => null);
        emit({
          type: "reported",
          to,
          peer: d.peer,
          cid: block.toString(),
          status: res.status,
          answer,
        });
      },
      (e) => problems.push(`${to}: the report failed: ${e}`),
    );
  };

  /** One raw block from the current gateway, verified; null when it could not be had there. */
  const fetchBlock = async (
    block: CID,
    limit: number,
    sig: AbortSignal,
    gw = pool.current(),
  ) => {
    let res: Response;
    try {
      res = await doFetch(`${gw}/mesh/${block}?format=raw`, { signal: sig });
    } catch (e) {
      sig.throwIfAborted();
      problems.push(`${gw}: ${(e as Error).message ?? e}`);
      pool.drop(gw);
      return null;
    }
    if (!res.ok) {
      const body = await res.json().catch(() => undefined) as { message?: string } | undefined;
      problems.push(
        `${gw}: HTTP ${res.status} for ${block}${body?.message ? `: ${body.message}` : ""}`,
      );
      // A gateway that lacks a block may have the next; one that fails is left.
      if (res.status >= 500 && res.status !== 502 && res.status !== 504) pool.drop(gw);
      return null;
    }
    let bytes: Uint8Array;
    try {
      bytes = await readBounded(res, limit, () => new BlockTooLargeError(block, gw, limit));
    } catch (e) {
      sig.throwIfAborted();
      problems.push(e instanceof MeshError ? e.message : `${gw}: ${(e as Error).message ?? e}`);
      pool.drop(gw);
      return null;
    }
    if (!matchesCid(block, bytes)) {
      await badBytes(gw, block, bytes, res.headers);
      return null;
    }
    return bytes;
  };

  /** The manifest (or a one-block file for a raw CID) from the first gateway that has a good one. */
  const describe = async (): Promise<{ manifest: Manifest; single?: Uint8Array }> => {
    const known = manifests.get(cid.toString());
    if (known) return { manifest: known };
    const limit = cid.code === RAW_CODE ? MAX_CHUNK_SIZE : MAX_MANIFEST_BYTES;
    for (let tries = 0; tries < pool.urls.length; tries++) {
      const before = pool.current();
      const bytes = await fetchBlock(cid, limit, signal);
      if (bytes && cid.code === RAW_CODE) {
        const manifest = {
          name: "",
          type: "application/octet-stream",
          size: bytes.length,
          chunkSize: Math.max(1, bytes.length),
          k: 1,
          m: 0,
          stripes: [[cid]],
        };
        return { manifest, single: bytes };
      }
      // Bytes that match a CID are what its author made: an invalid manifest is no gateway's fault.
      if (bytes) {
        const manifest = decodeManifest(bytes);
        if (manifests.size >= MAX_MANIFESTS) manifests.delete(manifests.keys().next().value!);
        manifests.set(cid.toString(), manifest);
        return { manifest };
      }
      if (pool.current() === before) pool.drop(before);
    }
    const notFound = problems.length > 0 && problems.every((p) => / 404 /.test(p));
    throw new VerifiedFetchError(
      notFound ? "not_found" : "unrecoverable",
      `No gateway gave ${cid}`,
      problems,
    );
  };

  const { manifest, single } = await describe();
  const [start, end] = byteRange(options.range, manifest.size) ?? [0, manifest.size];

  /**
   * The fast path: the data chunks of the read in one ranged GET of the file (a request per block costs a
   * browser more than the block, and a request per run waits a round trip between runs), cut at the
   * manifest's chunk boundaries, each piece checked against its CID as it completes. The body is read at
   * most `aheadChunks` past the last chunk the reader asked for, so the bytes in flight stay bounded (TCP
   * holds the rest back). A piece that fails is asked again as a raw block from the same gateway: signed,
   * so bad bytes there are provable; once missing or bad there too, the stripe is rebuilt, and the chunks
   * after it are streamed again from the gateway in use then. Each data chunk takes this path at most
   * once; asked again (a rebuild, a retry) it is fetched as a raw block.
   */
  const chunks = chunkCount(manifest);
  const aheadChunks = Math.max(2, Math.ceil(AHEAD_BYTES / manifest.chunkSize));
  if (options.runBytes !== undefined && !(options.runBytes >= 1)) {
    throw new RangeError(`runBytes must be a positive number of bytes, not ${options.runBytes}`);
  }
  const runChunks = options.runBytes === undefined
    ? Infinity
    : Math.max(1, Math.floor(options.runBytes / manifest.chunkSize));
  const dataIndex = new Map<string, number>();
  manifest.stripes.forEach((cids, s) => {
    for (let j = 0; j < stripeDataCount(manifest, s); j++) {
      const key = cids[j]!.toString();
      if (!dataIndex.has(key)) dataIndex.set(key, s * manifest.k + j);
    }
  });
  const streamed = new Map<number, Promise<Uint8Array | null>>();
  // Runs outlive a chunk's request; they stop when the caller cancels the body or aborts.
  const stopRuns = new AbortController();
  const runSignal = AbortSignal.any([signal, stopRuns.signal]);
  const runStopped = abortOf(runSignal);
  const usedFast = new Set<number>();
  const dataCid = (i: number) => manifest.stripes[Math.floor(i / manifest.k)]![i % manifest.k]!;
  // Runs stop where the read does (a rebuild asking past it gets a run of one).
  const readEnd = Math.ceil(end / manifest.chunkSize);
  /** One past the highest chunk the reader has asked for; a run waits while it is far ahead of it. */
  let asked = 0;
  let advanced = Promise.withResolvers<void>();
  const ask = (index: number) => {
    if (index + 1 <= asked) return;
    asked = index + 1;
    advanced.resolve();
    advanced = Promise.withResolvers<void>();
  };
  /** Restarts after a bad piece, bounded so a gateway that sends only bad bytes ends in raw fetches. */
  let restarts = pool.urls.length + 1;
  const fallback = (i: number, gw: string) =>
    fetchBlock(dataCid(i), MAX_CHUNK_SIZE, runSignal, gw).catch(() => null);
  /** Streams chunks [first, last) from the gateway in use, resolving `waiting[i - base]`. */
  const runOver = async (
    first: number,
    last: number,
    base: number,
    waiting: PromiseWithResolvers<Uint8Array | null>[],
  ) => {
    const gw = pool.current();
    let i = first;
    let restart = false;
    try {
      const from = first * manifest.chunkSize;
      const to = Math.min(manifest.size, last * manifest.chunkSize);
      const res = await doFetch(`${gw}/mesh/${cid}`, {
        headers: { Range: `bytes=${from}-${to - 1}` },
        signal: runSignal,
      });
      const whole = res.status === 200 && from === 0 && to === manifest.size;
      if ((res.status !== 206 && !whole) || !res.body) {
        await res.body?.cancel().catch(() => {});
        problems.push(`${gw}: HTTP ${res.status} for bytes ${from}-${to - 1} of ${cid}`);
        return;
      }
      const reader = res.body.getReader();
      let piece: Uint8Array | undefined;
      let have = 0;
      try {
        while (i < last) {
          while (i >= asked + aheadChunks && !runSignal.aborted) {
            await Promise.race([advanced.promise, runStopped]);
          }
          const { value, done } = await reader.read();
          if (done) break;
          let at = 0;
          while (at < value.length && i < last) {
            const length = chunkLength(manifest, i);
            let bytes: Uint8Array;
            if (have === 0 && value.length - at >= length) {
              // A whole piece inside one read: checked in place, no copy.
              bytes = value.subarray(at, at + length);
              at += length;
            } else {
              piece ??= new Uint8Array(length);
              const n = Math.min(length - have, value.length - at);
              piece.set(value.subarray(at, at + n), have);
              have += n;
              at += n;
              if (have < length) continue;
              bytes = piece;
              piece = undefined;
              have = 0;
            }
            if (!matchesCid(dataCid(i), bytes)) {
              // Asked again as a signed raw block; the chunks after it in a new run.
              waiting[i - base]!.resolve(fallback(i, gw));
              i++;
              restart = restarts-- > 0;
              return;
            }
            waiting[i - base]!.resolve(bytes);
            i++;
          }
        }
      } finally {
        await reader.cancel().catch(() => {});
      }
    } catch (e) {
      if (!runSignal.aborted) problems.push(`${gw}: ${(e as Error).message ?? e}`);
    } finally {
      if (restart && i < last && !runSignal.aborted) {
        // After the raw retry, which may have left this gateway for another.
        await waiting[i - 1 - base]!.promise.catch(() => null);
        void runOver(i, last, base, waiting);
      } else {
        // Whatever the run did not deliver is asked block by block.
        for (; i < last; i++) {
          waiting[i - base]!.resolve(runSignal.aborted ? null : fallback(i, gw));
        }
      }
    }
  };
  const streamRun = (first: number) => {
    let last = first;
    const cap = Math.min(chunks, first < readEnd ? readEnd : first + 1, first + runChunks);
    const waiting: PromiseWithResolvers<Uint8Array | null>[] = [];
    while (last < cap && !usedFast.has(last)) {
      const d = Promise.withResolvers<Uint8Array | null>();
      usedFast.add(last);
      streamed.set(last, d.promise);
      waiting.push(d);
      last++;
    }
    void runOver(first, last, first, waiting);
  };
  const fastChunk = (index: number) => {
    if (!streamed.has(index)) streamRun(index);
    ask(index);
    const p = streamed.get(index)!;
    streamed.delete(index);
    return p;
  };

  // Verified blocks of the stripes near the reader, so a rebuild reuses what was fetched.
  const blocks = new Map<number, Map<string, Promise<Uint8Array | null>>>();
  if (single) blocks.set(0, new Map([[cid.toString(), Promise.resolve(single)]]));
  const get = (block: CID, sig: AbortSignal, stripe: number) => {
    let held = blocks.get(stripe);
    if (!held) {
      blocks.set(stripe, held = new Map());
      for (const s of blocks.keys()) if (s <= stripe - KEEP_STRIPES) blocks.delete(s);
    }
    const key = block.toString();
    let p = held.get(key);
    if (!p) {
      const index = dataIndex.get(key);
      p = index !== undefined && (streamed.has(index) || !usedFast.has(index))
        ? fastChunk(index)
        : fetchBlock(block, MAX_CHUNK_SIZE, sig);
      held.set(key, p);
      // A miss is asked again next time (the rebuild's second round, another gateway).
      p.then((b) => b || held.delete(key), () => held.delete(key));
    }
    return p;
  };

  const stream = readFile(manifest, get, {
    start,
    end,
    signal,
    prefetch: Math.min(MAX_PREFETCH, options.prefetch ?? manifest.k),
    onRepaired: (c) => emit({ type: "rebuilt", cid: c.toString() }),
  });
  const fail = (e: unknown) =>
    e instanceof UnrecoverableError
      ? new VerifiedFetchError("unrecoverable", `${cid}: ${e.message}`, problems, e)
      : e;
  const reader = stream.getReader();
  // The first piece is read before answering: a file that cannot start rejects instead.
  const first = await reader.read().catch((e) => {
    throw fail(e);
  });
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      if (first.value) controller.enqueue(first.value);
      if (first.done) controller.close();
    },
    async pull(controller) {
      try {
        const next = await reader.read();
        if (next.done) controller.close();
        else controller.enqueue(next.value);
      } catch (e) {
        controller.error(fail(e));
      }
    },
    cancel: (reason) => (stopRuns.abort(reason), reader.cancel(reason)),
  }, { highWaterMark: 0 });

  const headers = new Headers({
    "Content-Type": manifest.type,
    "Content-Length": String(end - start),
    "Accept-Ranges": "bytes",
    "ETag": `"${cid}"`,
  });
  // The name is the verified manifest's, as the gateway sends it: a page shows and saves it by that name.
  if (manifest.name) {
    headers.set("Content-Disposition", contentDisposition("inline", manifest.name));
  }
  const ranged = options.range !== undefined;
  if (ranged) headers.set("Content-Range", `bytes ${start}-${end - 1}/${manifest.size}`);
  return new VerifiedResponse(body, { status: ranged ? 206 : 200, headers });
}
