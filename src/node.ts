/**
 * A Meshgate node: the chunk store and the content pipeline composed into one object that the gateway
 * and the CLI drive. Later layers (mesh, money) plug in here, never into the layers below.
 */
import { CID, DAG_JSON_CODE, RAW_CODE } from "./content/cid.ts";
import { decodeManifest, type Manifest } from "./content/manifest.ts";
import { ingest, type IngestOptions, type IngestResult } from "./content/ingest.ts";
import { readFile, type ReadOptions } from "./content/read.ts";
import { ChunkStore } from "./store/store.ts";
import type { ChainConfig } from "./pay/mod.ts";
import { createMeshNode, type MeshNode, type MeshNodeInit } from "./mesh/node.ts";
import { fetchFromMesh, placeFile, provideAll } from "./mesh/distribute.ts";
import { MeshError } from "./errors.ts";

export interface NodeConfig {
  /** Where chunks, pins and the node's identity live. */
  dataDir: string;
  /** Store size cap in bytes. Default: 10 GiB. */
  maxStoreBytes?: number;
  /** Bytes of verified chunks kept in memory for hot content. Default: 64 MiB. */
  cacheBytes?: number;
  /** The chain with Meshgate's contracts, when payments are on. Absent: volunteer mode, all free. */
  chain?: ChainConfig;
  /**
   * Join the mesh with these libp2p settings (listen addresses, bootstrap peers, …); the identity lives in
   * `dataDir`. Absent: a lone node that serves only its own store.
   */
  mesh?: Omit<MeshNodeInit, "dataDir" | "store">;
}

/** Raised for content this node cannot find. */
export class NotFoundError extends MeshError {
  override name = "NotFoundError";
  constructor(cid: CID) {
    super("not_found", `No content found for ${cid}`, { status: 404 });
  }
}

/** Least-recently-used map bounded by the total byte length of its values. */
class ByteCache<V extends { byteLength: number } | Uint8Array> {
  #map = new Map<string, V>();
  #bytes = 0;
  constructor(readonly maxBytes: number) {}

  get(key: string): V | undefined {
    const value = this.#map.get(key);
    if (value !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    if (value.byteLength > this.maxBytes / 8) return; // one object must not flush the cache
    const old = this.#map.get(key);
    if (old) this.#bytes -= old.byteLength;
    this.#map.delete(key);
    this.#map.set(key, value);
    this.#bytes += value.byteLength;
    for (const [k, v] of this.#map) {
      if (this.#bytes <= this.maxBytes) break;
      this.#map.delete(k);
      this.#bytes -= v.byteLength;
    }
  }

  delete(key: string): void {
    const old = this.#map.get(key);
    if (old) this.#bytes -= old.byteLength;
    this.#map.delete(key);
  }
}

export interface NodeStats {
  repaired: number;
  uploads: number;
  /** Chunks fetched from other peers. */
  fetched: number;
  /** Chunks handed to other peers by placement. */
  placed: number;
}

export class MeshgateNode {
  readonly store: ChunkStore;
  /** Where payments settle; undefined in volunteer mode. */
  readonly chain?: ChainConfig;
  #cache: ByteCache<Uint8Array>;
  #manifests = new ByteCache<Manifest & { byteLength: number }>(4 * 1024 * 1024);
  /** Chunks claimed by uploads in progress: a failed upload must not delete what another one uses. */
  #claims = new Map<string, number>();
  #stats: NodeStats = { repaired: 0, uploads: 0, fetched: 0, placed: 0 };
  /** The libp2p side, when this node is part of a mesh. */
  mesh?: MeshNode;

  private constructor(store: ChunkStore, cacheBytes: number, chain?: ChainConfig) {
    this.store = store;
    this.chain = chain;
    this.#cache = new ByteCache(cacheBytes);
  }

  static async create(config: NodeConfig): Promise<MeshgateNode> {
    const store = await ChunkStore.open(config.dataDir, { maxBytes: config.maxStoreBytes });
    const node = new MeshgateNode(store, config.cacheBytes ?? 64 * 1024 * 1024, config.chain);
    if (config.mesh) {
      // What peers may ask of this node: its store, and chunks they hand over are announced as held here.
      const source = {
        get: (cid: CID) => store.get(cid),
        has: (cid: CID) => store.has(cid),
        put: async (cid: CID, bytes: Uint8Array) => {
          await store.put(cid, bytes);
          await store.flush();
          if (node.mesh) provideAll(node.mesh, [cid]);
        },
      };
      try {
        node.mesh = await createMeshNode({
          ...config.mesh,
          dataDir: config.dataDir,
          store: source,
        });
      } catch (e) {
        await store.close();
        throw e;
      }
    }
    return node;
  }

  /**
   * Stores a file from a stream and pins its manifest. On failure (too large, interrupted, store full)
   * the chunks this upload newly wrote are removed again, and nothing is pinned.
   */
  async put(
    source: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
    options: IngestOptions = {},
  ): Promise<IngestResult> {
    const written: CID[] = [];
    const claimed: string[] = [];
    const sink = async (cid: CID, bytes: Uint8Array) => {
      const key = cid.toString();
      this.#claims.set(key, (this.#claims.get(key) ?? 0) + 1);
      claimed.push(key);
      if (await this.store.put(cid, bytes)) written.push(cid);
    };
    try {
      const result = await ingest(source, sink, options);
      await this.store.flush();
      await this.store.pin(result.cid);
      this.#stats.uploads++;
      if (this.mesh) await this.#distribute(result, options.signal);
      return result;
    } catch (e) {
      for (const key of claimed) this.#release(key);
      await Promise.all(
        written.filter((cid) => !this.#claims.has(cid.toString())).map((cid) =>
          this.store.delete(cid)
        ),
      );
      claimed.length = 0;
      throw e;
    } finally {
      for (const key of claimed) this.#release(key);
    }
  }

  /** Places the file's stripes on peers; what went elsewhere is dropped here (the manifest stays). */
  async #distribute({ cid, manifest }: IngestResult, signal?: AbortSignal): Promise<void> {
    const report = await placeFile(this.mesh!, cid, manifest, (c) => this.store.get(c), { signal });
    this.#stats.placed += report.remote.size;
    for (const key of report.remote.keys()) {
      if (key !== cid.toString() && !this.#claims.has(key)) await this.store.delete(CID.parse(key));
    }
  }

  #release(key: string): void {
    const n = (this.#claims.get(key) ?? 1) - 1;
    if (n > 0) this.#claims.set(key, n);
    else this.#claims.delete(key);
  }

  /**
   * One chunk, verified: from memory, the store, or else the mesh; null when nobody has it. `cache` keeps
   * it in memory for next time.
   */
  async chunk(cid: CID, cache = true, signal?: AbortSignal): Promise<Uint8Array | null> {
    const key = cid.toString();
    const hit = this.#cache.get(key);
    if (hit) return hit;
    let bytes = await this.store.get(cid);
    if (!bytes && this.mesh) {
      bytes = await fetchFromMesh(this.mesh, cid, { signal });
      if (bytes) this.#stats.fetched++;
    }
    if (bytes && cache) this.#cache.set(key, bytes);
    return bytes;
  }

  /** The raw block of `cid`: a chunk or a manifest's encoded bytes. */
  async block(cid: CID): Promise<Uint8Array> {
    const bytes = await this.chunk(cid);
    if (!bytes) throw new NotFoundError(cid);
    return bytes;
  }

  /**
   * What `cid` names as a file: the decoded manifest of a dag-json CID, or, for a raw CID, a one-chunk
   * manifest of that chunk, so both are served by the same code.
   */
  async manifest(cid: CID): Promise<Manifest> {
    const key = cid.toString();
    const hit = this.#manifests.get(key);
    if (hit) return hit;
    const bytes = await this.block(cid);
    let manifest: Manifest;
    if (cid.code === DAG_JSON_CODE) manifest = decodeManifest(bytes);
    else if (cid.code === RAW_CODE) {
      manifest = {
        name: "",
        type: "application/octet-stream",
        size: bytes.length,
        chunkSize: Math.max(1, bytes.length),
        k: 1,
        m: 0,
        stripes: bytes.length ? [[cid]] : [],
      };
    } else throw new NotFoundError(cid);
    this.#manifests.set(key, { ...manifest, byteLength: bytes.length });
    return manifest;
  }

  /** Streams bytes of a file, repairing lost or corrupt chunks from their stripes and storing them again. */
  read(
    manifest: Manifest,
    options: Omit<ReadOptions, "onRepaired"> = {},
  ): ReadableStream<Uint8Array> {
    return readFile(manifest, (cid) => this.chunk(cid), {
      ...options,
      onRepaired: (cid, bytes) => {
        this.#stats.repaired++;
        this.#cache.set(cid.toString(), bytes);
        const keep = this.store.put(cid, bytes).then(async () => {
          await this.store.flush();
          if (this.mesh) await provideAll(this.mesh, [cid]);
        });
        keep.catch((e) => {
          console.error(
            JSON.stringify({
              level: "warn",
              msg: "repair write-back failed",
              cid: `${cid}`,
              error: `${e}`,
            }),
          );
        });
      },
    });
  }

  stats(): NodeStats {
    return { ...this.#stats };
  }

  async stop(): Promise<void> {
    await this.mesh?.stop();
    await this.store.close();
  }
}
