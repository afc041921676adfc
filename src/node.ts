/**
 * A Meshgate node: services (the chunk store, the parity workers, the mesh, paid delivery, and whatever
 * later layers add) composed into one object that the gateway and the CLI drive. The node's body holds only
 * the content operations over them: put, read, chunk, manifest. Services start in dependency order and stop
 * in reverse (src/service.ts); a new subsystem joins by adding one, never by editing the layers below.
 */
import { CID, DAG_JSON_CODE, RAW_CODE } from "./content/cid.ts";
import { decodeManifest, type Manifest } from "./content/manifest.ts";
import {
  DEFAULT_K,
  DEFAULT_M,
  ingest,
  type IngestOptions,
  type IngestResult,
} from "./content/ingest.ts";
import { readFile, type ReadOptions } from "./content/read.ts";
import { ParityPool } from "./content/parity_pool.ts";
import { ChunkStore } from "./store/store.ts";
import { type RepairOptions, type RepairReport, repairStore, writeBack } from "./store/repair.ts";
import { ByteCache } from "./store/cache.ts";
import { UploadClaims, type UploadWrites } from "./store/claims.ts";
import { pinnedChunks } from "./store/own.ts";
import type { ChainConfig } from "./pay/mod.ts";
import type { PaidDelivery, PaidDeliveryInit, PaidRelaying } from "./pay/mod.ts";
import { loadPay } from "./pay/load.ts";
import { createMeshNode, type MeshNode, type MeshNodeInit } from "./mesh/node.ts";
import { relayLimits, relayTerms } from "./mesh/relay.ts";
import { type PlacementReport, startPlacement, type StripePlacement } from "./mesh/place.ts";
import { type Durability, localDurability } from "./mesh/placement.ts";
import { DurabilityRecords } from "./mesh/durability.ts";
import { ProvideQueue } from "./mesh/provide.ts";
import {
  ChunkLocator,
  fetchFromMesh,
  PAYER_REFUSALS,
  type RankPeers,
  RequestBudget,
} from "./mesh/fetch.ts";
import { BatchReader } from "./mesh/batch.ts";
import type { SpendBudget } from "./mesh/exchange.ts";
import { meshPeers } from "./mesh/peers.ts";
import { PeerHealth, type PeerStanding } from "./mesh/health.ts";
import { VolunteerQuota } from "./mesh/quota.ts";
import { type Drill, drillSource } from "./mesh/drill.ts";
import { ReputationService } from "./reputation/service.ts";
import { fraudProof } from "./reputation/evidence.ts";
import { OfferService } from "./market/offer_service.ts";
import {
  OFFER_NAMESPACE,
  offerSelector,
  type OfferTerms,
  offerValidator,
} from "./market/offers.ts";
import { warn } from "./mesh/_log.ts";
import { MarketService } from "./market/service.ts";
import { loadDeals } from "./market/deals_load.ts";
import { marketDht } from "./market/intent.ts";
import type { ReputationBook } from "./reputation/book.ts";
import { type Candidate, order, type Prefer, Selection } from "./reputation/select.ts";
import { MeshError } from "./errors.ts";
import { LeaseService, type LeasingSettings } from "./market/leasing.ts";
import { chainBeacon } from "./market/beacon.ts";
import { LookupService } from "./market/lookups.ts";
import { type Service, ServiceList } from "./service.ts";

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
  /** Bytes of chunks kept for each peer that puts them (counted in `dataDir`); past it puts are refused
   * with `quota_exceeded`. Default: `DEFAULT_VOLUNTEER_QUOTA`, 1 GiB. */
  volunteerQuotaBytes?: number;
  /** Chunks (files) kept for each peer that puts them; past it puts are refused with `quota_exceeded`.
   * Default: `DEFAULT_VOLUNTEER_QUOTA_CHUNKS`, 4096. */
  volunteerQuotaChunks?: number;
  /** Longest search of the mesh for a CID asked by name (a manifest or block), in ms. Default: 3000. */
  findTimeoutMs?: number;
  /** Take part in the market (`market/`: intents on gossipsub and in the DHT, sealed quotes); with `mesh` only.
   * Default: false. */
  market?: boolean;
  /** Misbehave on purpose, so a mesh can be watched catching it (`mesh/drill.ts`). Default: none. */
  drill?: Drill;
  /** The prices of this node's signed offer besides delivery's (which is `pay.price`), wei: per GiB-month
   * stored, per 1,000 lookups, per GiB relayed (`market/offers.ts`). Default: 0 each (a volunteer's). */
  offer?: { storedPerGiBMonth?: bigint; per1000Lookups?: bigint; relayedPerGiB?: bigint };
  /** Paid relaying (with `chain`, `pay` and a mesh with `relay` or `relayVia`): the relay's desk charges
   * `offer.relayedPerGiB`; `maxSpend` caps what this node pays its relays (`pay/relay_pay.ts`). */
  relayPay?: {
    paymentWaitMs?: number;
    creditBytes?: number;
    batchBytes?: number;
    maxSpend?: bigint;
  };
  /** Offer lookups to others (`market/lookups.ts`; with a mesh only), at the offer's `per1000Lookups` (paid
   * ones need `chain` and `pay`). Default: false (the node still signs statements of what it holds). */
  serveLookups?: boolean;
  /** Storage leases (with a mesh only): audit schedule, capacity (`market/leasing.ts`); the price is the
   * offer's `storedPerGiBMonth`. */
  leases?: Omit<LeasingSettings, "storedPerGiBMonth">;
  /**
   * More services (reputation, markets, …), built in order after the core ones from the components so far
   * and started after them. Default: none.
   */
  services?: { name: string; create: (components: NodeComponents) => Service | Promise<Service> }[];
}

/** What services are built from: the node's parts, as far as they exist when a service is created. */
export interface NodeComponents {
  readonly dataDir: string;
  readonly store: ChunkStore;
  readonly chain?: ChainConfig;
  readonly mesh?: MeshNode;
  readonly delivery?: PaidDelivery;
  /** Paid relaying, when configured (`pay/relay_pay.ts`). */
  readonly relaying?: PaidRelaying;
  /** What this node saw of each operator, and how it shares it (with a mesh only). */
  readonly reputation?: ReputationService;
  /** This node's signed offer and those of others (with a mesh only): `market/offer_service.ts`. */
  readonly offers?: OfferService;
  /** Intents, listings and sealed quotes (with `market` only). */
  readonly market?: MarketService;
  /** Every service so far, by name (later services may look up earlier ones). */
  readonly services: ServiceList;
}

export const DEFAULT_FIND_TIMEOUT_MS = 3000;
/** How long a chunk nobody had counts as missing: a holder that comes back is found within this. */
export const MISSING_TTL_MS = 10_000;
/** Missing chunks remembered at most. */
const MISSING_MAX = 10_000;

/** Raised for content this node cannot find. */
export class NotFoundError extends MeshError {
  override name = "NotFoundError";
  constructor(cid: CID, detail = "") {
    super("not_found", `No content found for ${cid}${detail}`);
  }
}

/** How {@link MeshgateNode.chunk} goes to the mesh when memory and disk miss. */
export interface ChunkFetchOptions {
  /** Runs before going to the mesh. */
  beforeMesh?: () => Promise<void>;
  /** What the file read has cost so far: paid delivery caps it per file. */
  budget?: SpendBudget;
  /** The read's budget of mesh requests. */
  requests?: RequestBudget;
  /** Whom to ask first: `reputation/select.ts` (default balanced). */
  prefer?: Prefer;
  /** Find the chunk through a paid lookup (`market/lookups.ts`) by operator `via` (default: the best known
   * offer of lookups), before the node's own search. */
  lookup?: { via?: string };
}

export interface NodeStats {
  repaired: number;
  uploads: number;
  /** Chunks fetched from other peers. */
  fetched: number;
  /** Chunks handed to other peers by placement. */
  placed: number;
  /** Chunks peers refused to keep (full store, spent quota): this node kept them. */
  refused: number;
}

/** What the node's body keeps beside its components. */
interface NodeParts {
  cacheBytes: number;
  findTimeoutMs: number;
  parity?: ParityPool;
  health: PeerHealth;
  provide?: ProvideQueue;
  locator?: ChunkLocator;
  quota?: VolunteerQuota;
  lookups?: LookupService;
}

/** An upload's result and what its placement is worth. */
export interface PutResult extends IngestResult {
  durability: Durability;
  /** Where the placement put each block, by CID (holders' peer IDs, this node's included); mesh only. */
  where?: ReadonlyMap<string, ReadonlySet<string>>;
}

export class MeshgateNode {
  readonly store: ChunkStore;
  /** Where payments settle; undefined in volunteer mode. */
  readonly chain?: ChainConfig;
  /** The libp2p side, when this node is part of a mesh. */
  readonly mesh?: MeshNode;
  /** Paid delivery (desk and paying client), when `chain` and `pay` are configured. */
  readonly delivery?: PaidDelivery;
  /** Paid relaying (desk of a relay, payer of a relayed node), when configured. */
  readonly relaying?: PaidRelaying;
  /** Operators' standing as this node sees it (with a mesh only): `reputation/`. */
  readonly reputation?: ReputationService;
  /** This node's signed offer and those of others (with a mesh only). */
  readonly offers?: OfferService;
  /** The market (with `market` only): `market/service.ts`. */
  readonly market?: MarketService;
  /** Every service of the node, in start order. */
  readonly services: ServiceList;
  readonly #cache: ByteCache<Uint8Array>;
  readonly #manifests = new ByteCache<Manifest & { byteLength: number }>(4 * 1024 * 1024);
  readonly #claims: UploadClaims;
  readonly #parity?: ParityPool;
  readonly #durability: DurabilityRecords;
  readonly #findTimeoutMs: number;
  /** Whom this node's reads avoid (bad bytes) and ask last (failed until they reconnect). In memory. */
  readonly #health: PeerHealth;
  readonly #provide?: ProvideQueue;
  readonly #locator?: ChunkLocator;
  /** Lookups on behalf of others, and paid lookups through them (with a mesh only). */
  readonly lookups?: LookupService;
  #stats: NodeStats = { repaired: 0, uploads: 0, fetched: 0, placed: 0, refused: 0 };
  /** Whom reads avoid and ask last (the in-memory health), told also to the reputation book. */
  readonly #standing: PeerStanding;
  /** Chunks the whole mesh was asked for and nobody had, until when (ms): asked again only after. */
  readonly #missing = new Map<string, number>();

  private constructor(components: NodeComponents, parts: NodeParts) {
    this.store = components.store;
    this.chain = components.chain;
    this.mesh = components.mesh;
    this.delivery = components.delivery;
    this.relaying = components.relaying;
    this.reputation = components.reputation;
    this.offers = components.offers;
    this.market = components.market;
    this.services = components.services;
    this.#durability = new DurabilityRecords(this.store.dir);
    this.#cache = new ByteCache(parts.cacheBytes);
    this.#claims = new UploadClaims(this.store);
    this.#parity = parts.parity;
    this.#findTimeoutMs = parts.findTimeoutMs;
    this.#health = parts.health;
    this.#standing = scoredStanding(parts.health, components.reputation?.book);
    this.#provide = parts.provide;
    this.#locator = parts.locator;
    this.lookups = parts.lookups;
    // A full store evicts the oldest chunks kept for peers; never its own (pinned files, uploads going on).
    const quota = parts.quota;
    if (quota) {
      this.store.reclaim = async (need) => {
        const own = await pinnedChunks(this.store);
        const remove = async (cid: CID) => {
          const gone = await this.store.delete(cid);
          if (gone) await this.#provide?.withdraw([cid]); // every path that deletes a chunk withdraws it
          return gone;
        };
        const leased = this.services.get<LeaseService>("leases")?.book; // a lease is a promise to keep
        return quota.evict(
          need,
          remove,
          (key) =>
            own.has(key) || this.#claims.has(CID.parse(key)) ||
            leased?.leasedElsewhere(key, Date.now()) === true,
        );
      };
    }
  }

  /** Builds the node's services and starts them; a failed start stops what had started. */
  static async create(config: NodeConfig): Promise<MeshgateNode> {
    const services = new ServiceList();
    const store = await ChunkStore.open(config.dataDir, { maxBytes: config.maxStoreBytes });
    services.add("store", { stop: () => store.close() });
    // Workers start with the first upload and stop when idle.
    const workers = config.parityWorkers ?? navigator.hardwareConcurrency;
    const parity = workers > 0 ? new ParityPool(workers) : undefined;
    if (parity) services.add("parity", { stop: () => parity.close() });
    const health = new PeerHealth();

    let node: MeshgateNode | undefined;
    let mesh: MeshNode | undefined;
    let delivery: PaidDelivery | undefined;
    let relaying: PaidRelaying | undefined;
    let provide: ProvideQueue | undefined;
    let locator: ChunkLocator | undefined;
    let quota: VolunteerQuota | undefined;
    let lookups: LookupService | undefined;
    let reputation: ReputationService | undefined;
    let offers: OfferService | undefined;
    let market: MarketService | undefined;
    try {
      if (config.mesh) {
        quota = VolunteerQuota.open(
          config.dataDir,
          config.volunteerQuotaBytes,
          config.volunteerQuotaChunks,
        );
        const volunteer = quota;
        services.add("quota", { stop: () => volunteer.close() });
        const keep = quota.charged({
          has: (cid) => store.has(cid),
          put: (cid, bytes) => store.put(cid, bytes, { verified: true }), // the exchange checked them
        });
        // What peers may ask of this node: its store, and chunks they hand over (within their quota) are
        // announced as held here.
        const honest = {
          verified: true, // the store checks what it reads against the CID
          get: (cid: CID) => {
            provide?.touch(); // serving: announcements wait for a quiet moment
            return store.get(cid);
          },
          has: (cid: CID) => store.has(cid),
          put: async (cid: CID, bytes: Uint8Array, from?: string) => {
            await keep(cid, bytes, from);
            await store.flush();
            provide?.add([cid]);
          },
        };
        const source = config.drill ? drillSource(honest, config.drill) : honest;
        // Payments ride on the chunk exchange's hooks: the desk meters what peers get, the client pays.
        delivery = config.chain && config.pay
          ? (await loadPay()).paidDelivery({
            dataDir: config.dataDir,
            // Paid lookups are paid at the desk, also when deliveries are free.
            desk: config.serveLookups === true && (config.offer?.per1000Lookups ?? 0n) > 0n,
            ...config.pay,
            chain: config.chain,
            refuseChannel: (id) =>
              relaying?.desk?.holds(id)
                ? "pays for relaying at this operator; delivery takes a channel of its own"
                : undefined,
          })
          : undefined;
        const paying = delivery;
        relaying = paying && (config.mesh.relay || config.mesh.relayVia?.length)
          ? (await loadPay()).paidRelaying({
            chain: config.chain!,
            wallet: paying.wallet,
            transactions: paying.transactions,
            pricePerGiB: config.mesh.relay ? config.offer?.relayedPerGiB : undefined,
            dataDir: config.dataDir,
            ...config.relayPay,
            refuseChannel: (id) =>
              paying.desk?.holds(id)
                ? "pays for delivery at this operator; relaying takes a channel of its own"
                : undefined,
          })
          : undefined;
        const marketRecords = config.market ? marketDht() : undefined;
        const meshNode = mesh = await createMeshNode({
          ...config.mesh,
          dataDir: config.dataDir,
          store: source,
          onMisbehaviour: (peer, report) => {
            health.misbehaved(peer, report);
            // Bad bytes over an authenticated stream: certain here. Signed, they are a proof every node can
            // check: it goes to them all; unsigned, only this node knows.
            if (report.kind === "bad_bytes" && report.signed && reputation) {
              const proof = fraudProof(peer, report.cid, report.signed);
              void reputation.report(proof).catch((e) =>
                warn("reputation", "a proof of fraud failed its check", { peer, error: String(e) })
              );
            } else if (report.kind === "bad_bytes") {
              reputation?.book.excluded(peer, {
                kind: "bad_bytes",
                at: report.at,
                evidence: { cid: report.cid.toString(), seen: "directly" },
              });
            }
            config.mesh?.onMisbehaviour?.(peer, report);
          },
          exchange: { ...config.mesh.exchange, ...delivery?.exchange },
          ...(config.mesh.relay ? { relay: { ...config.mesh.relay, gate: relaying?.desk } } : {}),
          ...(relaying ? { onRelayed: relaying.onRelayed } : {}),
          // Offers (and, with the market, intents) are DHT records under their own prefixes: checked
          // (signature, expiry) before they are kept.
          dht: {
            ...config.mesh.dht,
            validators: {
              ...config.mesh.dht?.validators,
              [OFFER_NAMESPACE]: offerValidator,
              ...marketRecords?.validators,
            },
            selectors: {
              ...config.mesh.dht?.selectors,
              [OFFER_NAMESPACE]: offerSelector,
              ...marketRecords?.selectors,
            },
          },
          ...(config.market ? { pubsub: true } : {}),
          start: false,
        });
        services.add("mesh", {
          start: () =>
            meshNode.start().catch((e) => {
              throw listenError(e, config.mesh!.listen);
            }),
          stop: () => meshNode.stop(),
        });
        services.add("health", {
          start: () => void health.attach(meshNode.libp2p),
          stop: () => health.detach(),
        });
        const identity = meshNode.privateKey;
        const standing = reputation = new ReputationService({
          dataDir: config.dataDir,
          privateKey: identity,
          peerId: meshNode.peerId,
        });
        services.add("reputation", {
          start: () => standing.start(meshNode.libp2p),
          stop: () => standing.stop(),
        });
        const selling = offers = new OfferService({
          privateKey: identity,
          peerId: meshNode.peerId,
          terms: () => offerTerms(config, store),
        });
        services.add("offers", {
          start: () => selling.start(meshNode.libp2p, meshNode.libp2p.services.dht),
          stop: () => selling.stop(),
        });
        if (config.market) {
          // With a chain: ratings checked on it feed the book; with the pay account too, escrow deals.
          const onChain = config.chain &&
            (await loadDeals()).chainMarket({
              chain: config.chain,
              account: config.pay?.account,
              // One nonce sequence per account: deals queue behind paid delivery's transactions.
              wallet: delivery?.wallet,
              transactions: delivery?.transactions,
              book: standing.book,
              dataDir: config.dataDir,
            });
          const ratings = onChain ? onChain.ratings : undefined;
          if (ratings) {
            services.add("ratings", {
              start: () => ratings.start(),
              stop: () => ratings.stop(),
            });
          }
          const m = market = new MarketService({
            privateKey: identity,
            peerId: meshNode.peerId,
            dataDir: config.dataDir,
            // A seller this node knows nothing of has no trust yet.
            trust: (p) => standing.book.record(p) ? standing.book.score(p).score : 0,
            deals: onChain ? onChain.deals : undefined,
            ratings,
          });
          services.add("market", { start: () => m.start(meshNode.libp2p), stop: () => m.stop() });
        }
        // Paid delivery: of a chunk's known holders, the cheapest is asked first.
        const payer = delivery?.payer;
        locator = new ChunkLocator(
          meshNode,
          undefined,
          health,
          payer && ((peer) => payer.quote(peer).then((q) => q.price)),
          rankByReputation(standing.book),
        );
        // Announces what this node keeps, in the background; stopped before the mesh.
        const announce = provide = new ProvideQueue(meshNode, { held: () => store.cids() });
        services.add("provide", {
          start: () => void announce.start(),
          stop: () => announce.stop(),
        });
        services.add(
          "leases",
          new LeaseService({
            ...config.leases,
            // One storage price: the offer's.
            storedPerGiBMonth: String(config.offer?.storedPerGiBMonth ?? 0n),
            dataDir: config.dataDir,
            store,
            libp2p: meshNode.libp2p,
            privateKey: identity,
            peerId: meshNode.peerId,
            reputation: standing.book,
            onDeleted: (cids) => announce.withdraw(cids),
            mesh: meshNode, // re-places what a holder lost, recovered through the node's reads
            fetchChunk: (cid) => node ? node.chunk(cid, false) : Promise.resolve(null),
            ...(payer ? { pay: (peer, wei) => payer.payStorage(peer, wei) } : {}), // proven periods
            // Paid leases are audited from the chain's block hashes, checked by the holder on its own.
            ...(delivery ? { beacon: chainBeacon(delivery.wallet) } : {}),
          }),
        );
        const paid = delivery;
        // Stopped before the mesh: it pays what this node owes and redeems what it earned over it.
        if (paid) {
          services.add("delivery", {
            start: () => paid.start(meshNode.libp2p),
            stop: () => paid.stop(),
          });
        }
        const relayPaid = relaying;
        if (relayPaid) {
          services.add("relaying", {
            start: () => relayPaid.start(meshNode.libp2p),
            stop: () => relayPaid.stop(),
          });
        }
        // Stopped before delivery: the lookup payments under way are sent first.
        const looking = lookups = new LookupService({
          mesh: meshNode,
          privateKey: identity,
          has: (cid) => store.has(cid),
          serve: config.serveLookups,
          per1000Lookups: config.offer?.per1000Lookups,
          desk: paid?.desk,
          payer: paid?.payer,
          pay: paid ? await loadPay() : undefined,
          book: standing.book,
          offers: selling,
        });
        services.add("lookups", {
          start: () => looking.start(meshNode.libp2p),
          stop: () => looking.stop(),
        });
      }
      const components: NodeComponents = {
        dataDir: config.dataDir,
        store,
        chain: config.chain,
        mesh,
        delivery,
        relaying,
        reputation,
        offers,
        market,
        services,
      };
      for (const { name, create } of config.services ?? []) {
        services.add(name, await create(components));
      }
      node = new MeshgateNode(components, {
        cacheBytes: config.cacheBytes ?? 64 * 1024 * 1024,
        findTimeoutMs: config.findTimeoutMs ?? DEFAULT_FIND_TIMEOUT_MS,
        parity,
        health,
        provide,
        locator,
        quota,
        lookups,
      });
    } catch (e) {
      await services.stop().catch(() => {});
      await store.close();
      throw e;
    }
    await services.start();
    return node;
  }

  /**
   * Stores a file from a stream and pins its manifest. On failure (too large, interrupted, store full)
   * the chunks this upload newly wrote are removed again, and nothing is pinned.
   */
  async put(
    source: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array>,
    options: IngestOptions & { prefer?: Prefer } = {},
  ): Promise<PutResult> {
    const writes = this.#claims.begin();
    let result: IngestResult;
    // Placement streams each stripe to its holders as soon as it is sealed, while the upload arrives.
    const placing = this.mesh
      ? await startPlacement(this.mesh, options.m ?? DEFAULT_M, (c) => this.store.get(c), {
        signal: options.signal,
        provide: this.#provide,
        ...(this.reputation
          ? {
            candidates: placementCandidates(
              this.reputation.book,
              options.prefer,
              (options.k ?? DEFAULT_K) + (options.m ?? DEFAULT_M),
            ),
          }
          : {}),
      })
      : undefined;
    try {
      result = await ingest(source, writes.put, {
        parityPool: this.#parity,
        ...options,
        ...(placing ? { onStripe: (i, cids, chunks) => placing.add(cids, i, chunks) } : {}),
      });
      await this.store.flush();
      await this.store.pin(result.cid);
    } catch (e) {
      placing?.abort(e);
      await writes.abort();
      throw e;
    } finally {
      writes.done();
    }
    this.#stats.uploads++;
    const placed = placing ? await this.#distribute(result, writes, placing) : undefined;
    const durability = placed?.durability ?? localDurability(result.cid, result.manifest);
    await this.#durability.save(result.cid, durability);
    return { ...result, durability, ...(placed ? { where: placed.where } : {}) };
  }

  /**
   * Finishes the placement (its stripes went out while the upload arrived); drops here only what it does
   * not need here (the manifest, and what no peer took or a stripe needs a second copy of, stay), and only
   * chunks this upload wrote itself: one that was here before belongs to another file or another peer's placement.
   */
  async #distribute(
    { cid, manifest }: IngestResult,
    writes: UploadWrites,
    placing: StripePlacement,
  ): Promise<Pick<PlacementReport, "durability" | "where">> {
    const report = await placing.finish(cid, manifest);
    this.#stats.placed += report.placed;
    for (const r of report.refused) this.#stats.refused += r.chunks;
    // Only what this upload wrote itself: a chunk that was here before belongs to another file or peer.
    // A few at once: the upload's answer waits for these (a whole file's chunks on a large mesh).
    const drop = report.drop.filter((chunk) => writes.wrote(chunk) && !this.#claims.has(chunk));
    for (let i = 0; i < drop.length; i += 16) {
      const some = drop.slice(i, i + 16);
      await Promise.all(some.map((chunk) => this.store.delete(chunk)));
      await this.#provide?.withdraw(some); // every path that deletes a chunk withdraws it
    }
    return report;
  }

  /** What the placement of pinned root `cid` is worth, as recorded at upload; undefined if unknown. */
  async durability(cid: CID): Promise<Durability | undefined> {
    const recorded = await this.#durability.get(cid);
    if (recorded || this.mesh) return recorded;
    return localDurability(cid, await this.manifest(cid)); // a lone node keeps every chunk
  }

  /**
   * One chunk, verified: from memory, the store, or else the mesh; null when nobody has it. `cache` keeps
   * it in memory for next time.
   */
  async chunk(
    cid: CID,
    cache = true,
    signal?: AbortSignal,
    { beforeMesh, budget, requests, prefer, lookup }: ChunkFetchOptions = {},
  ): Promise<Uint8Array | null> {
    const key = cid.toString();
    const hit = this.#cache.get(key);
    if (hit) return hit;
    let bytes = await this.store.get(cid);
    const missing = this.#missing.get(key);
    if (!bytes && missing !== undefined && missing > Date.now()) return null;
    if (!bytes && lookup && this.lookups) bytes = await this.lookups.read(cid, lookup.via, signal);
    // With no peer to ask, nothing is worth waiting for.
    if (!bytes && this.mesh && (await meshPeers(this.mesh)).length > 0) {
      await beforeMesh?.();
      const outcome = { failed: 0 };
      bytes = await fetchFromMesh(this.mesh, cid, {
        outcome,
        signal,
        locator: this.#locator,
        standing: this.#standing,
        ...(budget ? { budget } : {}),
        ...(requests ? { requests } : {}),
        ...(prefer ? { prefer } : {}),
      });
      if (bytes) this.#stats.fetched++;
      // Missing only when every peer asked answered so: a holder that could not be reached (restarting,
      // say) may have it a moment later.
      else if (!signal?.aborted && outcome.failed === 0) this.#rememberMissing(key);
    }
    if (bytes && cache) this.#cache.set(key, bytes);
    return bytes;
  }

  /** Nobody had `key`: asking the whole mesh again within {@link MISSING_TTL_MS} would find nobody again. */
  #rememberMissing(key: string): void {
    if (this.#missing.size >= MISSING_MAX) {
      this.#missing.delete(this.#missing.keys().next().value!);
    }
    this.#missing.set(key, Date.now() + MISSING_TTL_MS);
  }

  /**
   * The raw block of `cid`: a chunk or a manifest's encoded bytes. The mesh is searched for at most the find
   * timeout; then it is not found (a caller aborting through `signal` gets its own abort instead).
   */
  async block(
    cid: CID,
    signal?: AbortSignal,
    lookup?: ChunkFetchOptions["lookup"],
  ): Promise<Uint8Array> {
    const deadline = AbortSignal.timeout(this.#findTimeoutMs);
    let bytes: Uint8Array | null;
    try {
      bytes = await this.chunk(
        cid,
        true,
        signal ? AbortSignal.any([signal, deadline]) : deadline,
        lookup ? { lookup } : {},
      );
    } catch (e) {
      // A holder too dear to pay is an answer, not a miss.
      if (signal?.aborted || !deadline.aborted || PAYER_REFUSALS.has((e as MeshError).code)) {
        throw e;
      }
      bytes = null;
    }
    if (!bytes) {
      throw new NotFoundError(cid, deadline.aborted ? ` within ${this.#findTimeoutMs} ms` : "");
    }
    return bytes;
  }

  /**
   * What `cid` names as a file: the decoded manifest of a dag-json CID, or, for a raw CID, a one-chunk
   * manifest of that chunk, so both are served by the same code.
   */
  async manifest(
    cid: CID,
    signal?: AbortSignal,
    lookup?: ChunkFetchOptions["lookup"],
  ): Promise<Manifest> {
    const key = cid.toString();
    const hit = this.#manifests.get(key);
    if (hit) return hit;
    const bytes = await this.block(cid, signal, lookup);
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
    options: Omit<ReadOptions, "onRepaired"> & {
      prefer?: Prefer;
      lookup?: ChunkFetchOptions["lookup"];
    } = {},
  ): ReadableStream<Uint8Array> {
    const cache = manifest.size <= this.#cache.maxBytes / 16;
    // Over the network one stripe ahead does not hide the round trips: keep two in flight.
    const prefetch = options.prefetch ?? (this.mesh ? 2 : 1) * manifest.k;
    // In a mesh, find the holders of a whole stripe with one parallel round before fetching its chunks.
    // Only for chunks missing here, and once per stripe.
    const located = new Map<number, Promise<void>>();
    const budget: SpendBudget = { spentWei: 0n };
    const requests = new RequestBudget();
    // The stripes of a prefetch window are located in one round (one `has` per peer), not one each.
    const group = Math.max(1, Math.ceil(prefetch / manifest.k));
    const lastStripe = Math.floor(
      Math.max(0, Math.ceil((options.end ?? manifest.size) / manifest.chunkSize) - 1) / manifest.k,
    );
    const locate = (cid: CID, signal: AbortSignal, stripe: number) => {
      const locator = this.#locator;
      if (!locator || locator.holder(cid)) return Promise.resolve();
      if (!located.has(stripe)) {
        const stripes: number[] = [];
        for (let s = stripe; s < stripe + group && s <= lastStripe; s++) {
          if (!located.has(s)) stripes.push(s);
        }
        if (!stripes.length) stripes.push(stripe);
        const round = locator.locate(stripes.flatMap((s) => manifest.stripes[s]!), signal);
        for (const s of stripes) located.set(s, round);
      }
      return located.get(stripe)!;
    };
    // Chunks asked at once go to their located holders a few per request (mesh/batch.ts); what that
    // does not give is fetched the usual way.
    const batch = this.mesh && this.#locator
      ? new BatchReader({
        mesh: this.mesh,
        locator: this.#locator,
        standing: this.#standing,
        held: (cid) => this.#cache.get(cid.toString()) !== undefined || this.store.has(cid),
        locate,
        requests,
        budget,
        chunkBytes: manifest.chunkSize,
      })
      : undefined;
    return readFile(
      manifest,
      async (cid, signal, stripe) => {
        // A paid read finds each missing chunk through its lookup operator (not the batch's own search).
        const early = options.lookup ? undefined : await batch?.get(cid, stripe, signal);
        if (early) {
          this.#stats.fetched++;
          if (cache) this.#cache.set(cid.toString(), early);
          return early;
        }
        return this.chunk(cid, cache, signal, {
          beforeMesh: () => locate(cid, signal, stripe),
          budget,
          requests,
          prefer: options.prefer,
          ...(options.lookup ? { lookup: options.lookup } : {}),
        });
      },
      {
        ...options,
        prefetch,
        onRepaired: (cid, bytes) => {
          this.#stats.repaired++;
          this.#cache.set(cid.toString(), bytes);
          void writeBack(this.store, cid, bytes).then((kept) => kept && this.#provide?.add([cid]));
        },
      },
    );
  }

  stats(): NodeStats {
    return { ...this.#stats };
  }

  /** Announcements of held chunks in the DHT (undefined without a mesh): progress and cost. */
  get announcements(): ProvideQueue | undefined {
    return this.#provide;
  }

  /** Checks the chunks of every pinned file on disk and rebuilds lost ones from their stripes. */
  repair(options: Omit<RepairOptions, "roots"> = {}): Promise<RepairReport> {
    return repairStore(this.store, options);
  }

  /** Stops every service in reverse start order: delivery settles while the mesh is up; the store last. */
  async stop(): Promise<void> {
    await this.services.stop();
  }
}

/** The mesh options a market node adds: gossipsub, and the DHT's validator and selector of intent records. */

/** A taken mesh port, said in one line with the way out. */
function listenError(e: unknown, listen: string[] | undefined): unknown {
  if (!/EADDRINUSE/.test(String(e))) return e;
  const where = listen?.join(", ") ?? "the default mesh ports 4001/4002";
  return new MeshError(
    "mesh_listen",
    `Cannot listen on ${where}: in use (another node running?). Choose free ones with --listen, or run with --no-mesh`,
    { cause: e },
  );
}

/** This node's offer terms now: delivery's price from the desk (per byte, stated per GiB), the rest from
 * `config.offer`, the store's free space, and where payment goes (none for a volunteer). */
function offerTerms(config: NodeConfig, store: ChunkStore): Omit<OfferTerms, "validUntil"> {
  const paid = config.chain && config.pay ? config.pay : undefined;
  const { usedBytes, maxBytes } = store.stats();
  return {
    prices: {
      servedPerGiB: String((paid?.price ?? 0n) << 30n),
      storedPerGiBMonth: String(config.offer?.storedPerGiBMonth ?? 0n),
      per1000Lookups: String(config.offer?.per1000Lookups ?? 0n),
      // A paid relay charges whole wei per byte: the price it states is that, per GiB.
      relayedPerGiB: String(
        config.mesh?.relay && paid
          ? (config.offer?.relayedPerGiB ?? 0n) >> 30n << 30n
          : config.offer?.relayedPerGiB ?? 0n,
      ),
    },
    capacityBytes: Math.max(0, maxBytes - usedBytes),
    payout: paid ? { chainId: config.chain!.chainId, address: paid.account.address } : null,
    ...(config.mesh?.relay ? { relay: relayTerms(relayLimits(config.mesh.relay.limits)) } : {}),
  };
}

/**
 * Whom to ask first: drawn by reputation × price × latency (`reputation/select.ts`), newcomers kept to their
 * share; the excluded and suspended (weight 0) go last, where standing skips them anyway.
 */
function rankByReputation(book: ReputationBook): RankPeers {
  return (peers, prices, prefer) => {
    const candidates = peers.map((p) => {
      const price = prices.get(p);
      return book.candidate(p, price === undefined ? {} : { price: Number(price) });
    });
    let drawn = order(candidates, { prefer: prefer as Prefer | undefined });
    // Paid reads go to the lowest expected cost first (price over the chance of success), as the README
    // promises; the draw orders those of equal cost. Free reads are drawn by weight alone.
    if (prices.size > 0) {
      const cost = (c: Candidate) => c.price === undefined ? Infinity : c.price / c.score;
      drawn = drawn.slice().sort((a, b) => cost(a) - cost(b));
    }
    const first = drawn.map((c) => c.peer);
    const picked = new Set(first);
    return [...first, ...peers.filter((p) => !picked.has(p))];
  };
}

/** Up to this many candidates per chunk of a stripe are drawn for placement; XOR closeness picks among them. */
const PLACEMENT_DRAW = 2;

/**
 * Who may keep a file's chunks: never the excluded or suspended; when there are more than
 * {@link PLACEMENT_DRAW} × chunks-per-stripe, that many drawn by reputation × price (`Selection`, newcomers
 * kept to their share), so a good operator keeps more and a Sybil crowd stays within the newcomers' share.
 */
function placementCandidates(book: ReputationBook, prefer: Prefer | undefined, want: number) {
  return (peers: readonly string[]): string[] => {
    const candidates = peers.map((p) => book.candidate(p)).filter((c) => c.score > 0);
    if (candidates.length <= PLACEMENT_DRAW * want) return candidates.map((c) => c.peer);
    return new Selection(candidates, { prefer }).pick(PLACEMENT_DRAW * want).map((c) => c.peer);
  };
}

/**
 * `health` (whom to skip now) with every outcome also written to the reputation `book`: verified deliveries
 * with their size and time, failures (a timeout or an error after the peer took the request), unreachable
 * dials; an excluded or suspended operator is avoided.
 */
function scoredStanding(health: PeerHealth, book: ReputationBook | undefined): PeerStanding {
  if (!book) return health;
  return {
    avoided: (peer) => {
      if (health.avoided(peer)) return true;
      const state = book.record(peer) && book.score(peer).state;
      return state === "excluded" || state === "suspended";
    },
    skipped: (peer) => health.skipped(peer),
    answered: (peer) => health.answered(peer),
    delivered: (peer, bytes, ms) => book.delivered(peer, bytes, ms),
    failed: (peer, error) => {
      health.failed(peer, error);
      const code = (error as { code?: unknown } | null)?.code;
      if (code === "peer_unreachable") book.unreachable(peer);
      else if (code !== "price_above_cap" && code !== "spending_cap") book.failed(peer);
    },
    misbehaved: (peer, report) => health.misbehaved(peer, report),
  };
}
