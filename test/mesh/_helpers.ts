/**
 * Shared pieces of the mesh tests: loopback nodes that are always stopped, and a Map-based chunk store.
 *
 * Deno's op and resource sanitizers stay ON for the mesh tests, so a socket, listener or timer of ours that
 * outlives `stop()` fails the test. Two things in libp2p would trip them without being leaks of ours:
 *
 * - mortice (the peer store's lock) opens one process-wide `BroadcastChannel` on first use and never closes it
 *   (under Node it is `unref()`ed; Deno's BroadcastChannel has no `unref`). {@link warmUpLibp2p} creates it here,
 *   at module load, outside any test. The same channel keeps a plain `deno run` script alive after `stop()`:
 *   a CLI must call `Deno.exit()` after a graceful shutdown.
 * - libp2p's address manager debounces peer-store updates by 1 s and does not cancel that timer on stop; the
 *   inbound-connection rate limiter keeps a 1 s expiry timer per remote host. {@link stopNodes} waits them out.
 */
import { join } from "node:path";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { type CID, verifyChunk } from "../../src/content/cid.ts";
import { MeshError } from "../../src/errors.ts";
import type { ChunkSource } from "../../src/mesh/exchange.ts";
import { createMeshNode, type MeshNode, type MeshNodeInit } from "../../src/mesh/node.ts";
import type { StripeHolders } from "../../src/mesh/placement.ts";

/** Deno.test options of every mesh test: both sanitizers on (the resource one is off by default since 2.8). */
export const SANITIZE = { sanitizeOps: true, sanitizeResources: true } as const;

export const TCP = "/ip4/127.0.0.1/tcp/0";
export const WS = "/ip4/127.0.0.1/tcp/0/ws";

/** How long libp2p's own timers outlive `stop()` (1 s debounce and rate-limit windows) plus slack. */
const SETTLE_MS = 1100;

async function warmUpLibp2p(): Promise<void> {
  const node = await createMeshNode({ start: false, listen: [] });
  await node.libp2p.peerStore.merge(peerIdFromPrivateKey(await generateKeyPair("Ed25519")), {});
}
await warmUpLibp2p();

/** Starts a loopback node (TCP unless `listen` says otherwise). */
export function startNode(init: MeshNodeInit = {}): Promise<MeshNode> {
  return createMeshNode({ listen: [TCP], ...init });
}

/** Stops every node, then waits until libp2p's own short timers have fired. */
export async function stopNodes(...nodes: MeshNode[]): Promise<void> {
  await Promise.all(nodes.map((n) => n.stop()));
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
}

/** Polls `check` every 25 ms until it holds; throws after `timeoutMs`. */
export async function waitFor(check: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/**
 * Resolves when `node` sees a connection to `peer` close, within `timeoutMs`. Listens from the call on, so
 * call it before what makes the peer hang up. Not "no longer connected": a peer that hung up may be dialled
 * again at once (kad-dht tags its closest peers keep-alive, and libp2p re-dials those).
 */
export function hangUpSeen(node: MeshNode, peer: string, timeoutMs = 5000): Promise<void> {
  const { promise, resolve, reject } = Promise.withResolvers<void>();
  const timer = setTimeout(
    () => (done(), reject(new Error(`Timed out waiting for ${peer} to hang up`))),
    timeoutMs,
  );
  const onClose = (e: Event) => {
    const c = (e as CustomEvent<{ remotePeer: { toString(): string } }>).detail;
    if (c.remotePeer.toString() === peer) (done(), resolve());
  };
  const done = () => {
    clearTimeout(timer);
    node.libp2p.removeEventListener("connection:close", onClose);
  };
  node.libp2p.addEventListener("connection:close", onClose);
  return promise;
}

/** A chunk store in a Map, with a capacity in chunks, that verifies what it keeps like the disk store will. */
export class MemorySource implements ChunkSource {
  readonly chunks = new Map<string, Uint8Array>();
  constructor(readonly capacity = Infinity) {}

  get(cid: CID): Promise<Uint8Array | null> {
    return Promise.resolve(this.chunks.get(cid.toString()) ?? null);
  }

  has(cid: CID): Promise<boolean> {
    return Promise.resolve(this.chunks.has(cid.toString()));
  }

  put(cid: CID, bytes: Uint8Array): Promise<void> {
    verifyChunk(cid, bytes, "put");
    if (!this.chunks.has(cid.toString()) && this.chunks.size >= this.capacity) {
      return Promise.reject(new MeshError("store_full", "The store is full"));
    }
    this.chunks.set(cid.toString(), bytes.slice());
    return Promise.resolve();
  }
}

/** `n` random bytes (any length: getRandomValues is limited to 64 KiB per call). */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

/** Every file under `dir`, as latin1 text (binary files too: a secret in clear would show). */
export async function filesText(dir: string): Promise<string> {
  let out = "";
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) out += await filesText(p);
    else if (e.isFile) out += new TextDecoder("latin1").decode(await Deno.readFile(p));
  }
  return out;
}

/** Every record in the node's libp2p datastore (DHT records, provider entries, peer store), as text. */
export async function datastoreText(node: MeshNode): Promise<string> {
  let out = "";
  for await (const { key, value } of node.datastore.query({})) {
    out += key.toString() + new TextDecoder("latin1").decode(value);
  }
  return out;
}

/** Every `size`-subset of `items` (a brute-force check of what `survivableLosses` claims). */
export function* subsets<T>(items: readonly T[], size: number, from = 0): Generator<T[]> {
  if (size === 0) return yield [];
  for (let i = from; i <= items.length - size; i++) {
    for (const rest of subsets(items, size - 1, i + 1)) yield [items[i]!, ...rest];
  }
}

/** The fewest chunks a stripe (or the manifest) has left beyond what it needs, once `lost` are gone. */
export function margin(placement: StripeHolders[], lost: ReadonlySet<string>): number {
  let worst = Infinity;
  for (const { need, holders } of placement) {
    const left = holders.filter((hs) => hs.some((h) => !lost.has(h))).length;
    worst = Math.min(worst, left - need);
  }
  return worst;
}
