/**
 * Finding a chunk that is not held locally: where it is (ChunkLocator), and fetching it (fetchFromMesh).
 */
import type { CID } from "../content/cid.ts";
import type { MeshNode } from "./node.ts";
import { meshPeers, meshTable } from "./peers.ts";
import { warn } from "./_log.ts";

const log = (msg: string, fields: Record<string, unknown>) => warn("mesh:fetch", msg, fields);

/** Peers that failed to answer, and until when they are not asked again (ms since epoch). */
const unreachable = new WeakMap<MeshNode, Map<string, number>>();
const UNREACHABLE_MS = 30_000;

function isUnreachable(mesh: MeshNode, peer: string): boolean {
  const until = unreachable.get(mesh)?.get(peer);
  return until !== undefined && until > Date.now();
}

function markUnreachable(mesh: MeshNode, peer: string): void {
  let map = unreachable.get(mesh);
  if (!map) unreachable.set(mesh, map = new Map());
  map.set(peer, Date.now() + UNREACHABLE_MS);
}

/**
 * Where chunks are, learned by asking every known peer at once which of a batch it holds (one round trip,
 * in parallel), instead of probing peers one by one per chunk. Remembers up to 100 000 locations.
 */
export class ChunkLocator {
  #where = new Map<string, string>();

  constructor(readonly mesh: MeshNode, readonly limit = 100_000) {}

  /** Asks all reachable known peers which of `cids` they hold. Failures only make a peer skipped. */
  async locate(cids: readonly CID[], signal?: AbortSignal): Promise<void> {
    const peers = (await meshPeers(this.mesh)).filter((p) => !isUnreachable(this.mesh, p));
    await Promise.all(peers.map(async (peer) => {
      try {
        const held = await this.mesh.hasChunks(peer, cids, { signal });
        held.forEach((has, i) => has && this.#remember(cids[i]!.toString(), peer));
      } catch (e) {
        if (signal?.aborted) return;
        if ((e as { code?: string }).code === "peer_unreachable") markUnreachable(this.mesh, peer);
      }
    }));
  }

  holder(cid: CID): string | undefined {
    return this.#where.get(cid.toString());
  }

  forget(cid: CID): void {
    this.#where.delete(cid.toString());
  }

  /** The first peer to answer is kept: it is the quickest to reach. */
  #remember(key: string, peer: string): void {
    if (this.#where.has(key)) return;
    this.#where.set(key, peer);
    if (this.#where.size > this.limit) this.#where.delete(this.#where.keys().next().value!);
  }
}

export interface FetchOptions {
  signal?: AbortSignal;
  /** Known peers asked directly before the DHT, nearest first (placement puts chunks there). Default 8. */
  nearest?: number;
  /** Providers tried from the DHT. Default 4. */
  providers?: number;
  /** Longest wait for the DHT lookup, in ms. Default 10 000. */
  lookupTimeoutMs?: number;
  /** Known locations, asked first. */
  locator?: ChunkLocator;
}

/**
 * A chunk from the mesh, verified, or null when no peer asked has it. Asks the XOR-nearest connected peers
 * first (where placement puts chunks), then the providers the DHT knows. A peer that fails or sends bad
 * bytes is skipped (the exchange records bad bytes as misbehaviour).
 */
export async function fetchFromMesh(
  mesh: MeshNode,
  cid: CID,
  options: FetchOptions = {},
): Promise<Uint8Array | null> {
  const tried = new Set<string>([mesh.peerId]);
  /** The chunk from `peer`, null when it lacks it, undefined when it could not be asked. */
  const attempt = async (peer: string | { peerId: string; multiaddrs: string[] }) => {
    const id = typeof peer === "string" ? peer : peer.peerId;
    if (tried.has(id) || isUnreachable(mesh, id)) return undefined;
    tried.add(id);
    try {
      return await mesh.fetchChunk(peer, cid, { signal: options.signal });
    } catch (e) {
      if (options.signal?.aborted) throw e;
      if ((e as { code?: string }).code === "peer_unreachable") markUnreachable(mesh, id);
      else {log("peer failed or sent bad bytes", {
          peer: id,
          cid: cid.toString(),
          error: String(e),
        });}
      return undefined;
    }
  };
  const located = options.locator?.holder(cid);
  if (located) {
    const bytes = await attempt(located);
    if (bytes) return bytes;
    options.locator!.forget(cid);
  }
  // Peers that are gone do not count against the budget: keep going down the list until enough answered.
  const near = await meshTable(mesh);
  let answered = 0;
  for (const peer of near.closest(cid.multihash.digest, near.peers.length)) {
    const bytes = await attempt(peer);
    if (bytes) return bytes;
    if (bytes === null && ++answered >= (options.nearest ?? 8)) break;
  }
  let asked = 0;
  const timeout = AbortSignal.timeout(options.lookupTimeoutMs ?? 10_000);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    for await (const provider of mesh.findProviders(cid, { signal })) {
      const bytes = await attempt(provider);
      if (bytes) return bytes;
      // As above: providers already asked (the near round) or gone do not use up the budget.
      if (bytes === null && ++asked >= (options.providers ?? 4)) break;
    }
  } catch (e) {
    if (options.signal?.aborted) throw e;
  }
  return null;
}
