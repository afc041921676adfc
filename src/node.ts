/**
 * A Meshgate node: the chunk store and the content pipeline composed into one object that the gateway
 * and the CLI drive. Later layers (mesh, money) plug in here, never into the layers below.
 */
import { CID, DAG_JSON_CODE, RAW_CODE } from "./content/cid.ts";
import { decodeManifest, type Manifest } from "./content/manifest.ts";
import { ingest, type IngestOptions, type IngestResult } from "./content/ingest.ts";
import { readFile, type ReadOptions } from "./content/read.ts";
import { ParityPool } from "./content/parity_pool.ts";
import { ChunkStore } from "./store/store.ts";
import { type RepairOptions, type RepairReport, repairStore } from "./store/repair.ts";
import type { ChainConfig } from "./pay/mod.ts";
import type { PaidDelivery, PaidDeliveryInit } from "./pay/mod.ts";
import { loadPay } from "./pay/load.ts";
import { createMeshNode, type MeshNode, type MeshNodeInit } from "./mesh/node.ts";
import { placeFile } from "./mesh/place.ts";
import { ProvideQueue } from "./mesh/provide.ts";
import { ChunkLocator, fetchFromMesh } from "./mesh/fetch.ts";
import { MeshError } from "./errors.ts";

export interface NodeConfig {
  /** Where chunks, pins and the node's identity live. */
  dataDir: string;
  /** Store size cap in bytes. Default: 10 GiB. */
  maxStoreBytes?: number;
  /** Bytes of verified chunks kept in memory for hot content. Default: 64 MiB. */
  cacheBytes?: number;
  /** Worker threads computing stripe parity of uploads; 0: on the main thread. Default: one per core. */
  parityWorkers?: number;
  /** The chain with Meshgate's contracts, when payments are on. Absent: volunteer mode, all free. */
  chain?: ChainConfig;
  /** Paid delivery over `chain` (ignored without it and without `mesh`): the account that pays the operators
   * this node fetches from and is paid for what it serves, and its price (0: serves for free). Default: none. */
  pay?: Omit<PaidDeliveryInit, "chain">;
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
    super("not_found", `No content found for ${cid}`);
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
  /** Paid delivery (desk and paying client), when `chain` and `pay` are configured. */
  delivery?: PaidDelivery;
  #provide?: ProvideQueue;
  #locator?: ChunkLocator;
  /** Workers for upload parity; they start with the first upload and stop when idle. */
  #parity?: ParityPool;

  private constructor(store: ChunkStore, cacheBytes: number, chain?: ChainConfig) {
    this.store = store;
    this.chain = chain;
    this.#cache = new ByteCache(cacheBytes);
  }

  static async create(config: NodeConfig): Promise<MeshgateNode> {
    const store = await ChunkStore.open(config.dataDir, { maxBytes: config.maxStoreBytes });
    const node = new MeshgateNode(store, config.cacheBytes ?? 64 * 1024 * 1024, config.chain);
    const workers = config.parityWorkers ?? navigator.hardwareConcurrency;
    if (workers > 0) node.#parity = new ParityPool(workers);
    if (config.mesh) {
      // What peers may ask of this node: its store, and chunks they hand over are announced as held here.
      const source = {
        get: (cid: CID) => store.get(cid),
        has: (cid: CID) => store.has(cid),
        put: async (cid: CID, bytes: Uint8Array) => {
          await store.put(cid, bytes, { verified: true }); // the exchange checked them
          await store.flush();
          node.#provide?.add([cid]);
        },
      };
      // Payments ride on the chunk exchange's hooks: the desk meters what peers get, the client pays.
      const delivery = config.chain && config.pay
        ? (await loadPay()).paidDelivery({ ...config.pay, chain: config.chain })
        : undefined;
      try {
        node.mesh = await createMeshNode({
          ...config.mesh,
          dataDir: config.dataDir,
          store: source,
          exchange: { ...config.mesh.exchange, ...delivery?.exchange },
        });
        await delivery?.start(node.mesh.libp2p);
        node.delivery = delivery;
      } catch (e) {
        await node.mesh?.stop();
        await store.close();
        if (/EADDRINUSE/.test(String(e))) {
          const listen = config.mesh.listen?.join(", ") ?? "the default mesh ports 4001/4002";
          throw new MeshError(
            "mesh_listen",
            `Cannot listen on ${listen}: in use (another node running?). Choose free ones with --listen, or run with --no-mesh`,
            { cause: e },
          );
        }
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
      // ingest computed `cid` from these very bytes
      if (await this.store.put(cid, bytes, { verified: true })) written.push(cid);
    };
    let result: IngestResult;
    try {
      result = await ingest(source, sink, { parityPool: this.#parity, ...options });
      await this.store.flush();
      await this.store.pin(result.cid);
    } catch (e) {
      for (const key of claimed.splice(0)) this.#release(key);
      await Promise.all(
        written.filter((cid) => !this.#claims.has(cid.toString())).map((cid) =>
          this.store.delete(cid)
        ),
      );
      throw e;
    } finally {
      for (const key of claimed) this.#release(key);
    }
    this.#stats.uploads++;
    if (this.mesh) await this.#distribute(result, options.signal);
    return result;
  }

  /** Places the file's stripes on peers; what went elsewhere is dropped here (the manifest stays). */
  async #distribute({ cid, manifest }: IngestResult, signal?: AbortSignal): Promise<void> {
    const report = await placeFile(this.mesh!, cid, manifest, (c) => this.store.get(c), {
      signal,
      provide: this.#provide,
    });
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
  async chunk(
    cid: CID,
    cache = true,
    signal?: AbortSignal,
    /** Runs before going to the mesh, only when memory and disk miss. */
    beforeMesh?: () => Promise<void>,
  ): Promise<Uint8Array | null> {
    const key = cid.toString();
    const hit = this.#cache.get(key);
    if (hit) return hit;
    let bytes = await this.store.get(cid);
    if (!bytes && this.mesh) {
      await beforeMesh?.();
      bytes = await fetchFromMesh(this.mesh, cid, { signal, locator: this.#locator });
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

  /**
   * Streams bytes of a file, repairing lost or corrupt chunks from their stripes and storing them again.
   * Only small files enter the chunk cache: streaming a large one through it would evict the hot set.
   */
  read(
    manifest: Manifest,
    options: Omit<ReadOptions, "onRepaired"> = {},
  ): ReadableStream<Uint8Array> {
    const cache = manifest.size <= this.#cache.maxBytes / 16;
    // Over the network one stripe ahead does not hide the round trips: keep two in flight.
    const prefetch = options.prefetch ?? (this.mesh ? 2 : 1) * manifest.k;
    // In a mesh, find the holders of a whole stripe with one parallel round before fetching its chunks.
    // Only for chunks missing here, and once per stripe.
    const located = new Map<number, Promise<void>>();
    const locate = (cid: CID, signal: AbortSignal, stripe: number) => {
      const locator = this.#locator;
      if (!locator || locator.holder(cid)) return Promise.resolve();
      if (!located.has(stripe)) {
        located.set(stripe, locator.locate(manifest.stripes[stripe]!, signal));
      }
      return located.get(stripe)!;
    };
    return readFile(
      manifest,
      (cid, signal, stripe) => this.chunk(cid, cache, signal, () => locate(cid, signal, stripe)),
      {
        ...options,
        prefetch,
        onRepaired: (cid, bytes) => {
          this.#stats.repaired++;
          this.#cache.set(cid.toString(), bytes);
          // rebuildStripe checked every rebuilt chunk against its CID
          const keep = this.store.put(cid, bytes, { verified: true }).then(async () => {
            await this.store.flush();
            this.#provide?.add([cid]);
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
      },
    );
  }

  stats(): NodeStats {
    return { ...this.#stats };
  }

  /** Checks the chunks of every pinned file on disk and rebuilds lost ones from their stripes. */
  repair(options: Omit<RepairOptions, "roots"> = {}): Promise<RepairReport> {
    return repairStore(this.store, options);
  }

  async stop(): Promise<void> {
    this.#parity?.close();
    this.#provide?.stop();
    // While the mesh is up: pay what this node owes, then redeem what it earned.
    await this.delivery?.stop();
    await this.mesh?.stop();
    await this.store.close();
  }
}
