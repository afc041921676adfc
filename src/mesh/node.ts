/**
 * A Meshgate mesh node: js-libp2p with TCP and WebSockets, noise, yamux, identify, ping, the Meshgate DHT and
 * the chunk exchange, under a persistent Ed25519 identity.
 *
 * @module
 */
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import type { CircuitRelayService } from "@libp2p/circuit-relay-v2";
import { dcutr } from "@libp2p/dcutr";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey, peerIdFromString } from "@libp2p/peer-id";
import { warn } from "./_log.ts";
import { type GossipSub, gossipsub } from "@libp2p/gossipsub";
import { identify } from "@libp2p/identify";
import type { Identify } from "@libp2p/identify";
import type { KadDHT, SingleKadDHT } from "@libp2p/kad-dht";
import type { AbortOptions, Connection, Libp2p, PeerId, PrivateKey } from "@libp2p/interface";
import { ping } from "@libp2p/ping";
import type { Ping } from "@libp2p/ping";
import { tcp } from "@libp2p/tcp";
import { webSockets } from "@libp2p/websockets";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p, type Libp2pOptions } from "libp2p";
import { MemoryDatastore } from "datastore-core";
import type { Datastore } from "interface-datastore";
import { join } from "node:path";
import type { CID } from "../content/cid.ts";
import {
  findProviders,
  meshDht,
  type MeshDhtInit,
  provide,
  PROVIDER_VALIDITY_MS,
  type ProviderInfo,
} from "./dht.ts";
import {
  DATASTORE_FILE,
  ProviderLimitedDatastore,
  type ProviderLimits,
  SqliteDatastore,
} from "./datastore.ts";
import { STREAM_WINDOW_BYTES } from "./_framing.ts";
import { meshGater } from "./gater.ts";
import {
  ChunkExchange,
  chunkExchange,
  type ChunkExchangeInit,
  type ChunkSource,
  type ExchangeCallOptions,
  type FetchedChunk,
  type MisbehaviourListener,
  type MisbehaviourReport,
  type PeerTarget,
  type StoreResult,
} from "./exchange.ts";
import { loadOrCreatePrivateKey } from "./identity.ts";
import { resolvePeerTarget } from "./_target.ts";
import {
  type CircuitGate,
  type RelayedBytes,
  relayedBytes,
  type RelayLimits,
  relayLimits,
  RelayMeter,
  RelayRefusedError,
  relayServer,
  type RelayStats,
  relayTransport,
  reservationRefusal,
} from "./relay.ts";

/** Listen addresses when none are given: TCP on 4001 and WebSockets on 4002, all interfaces. */
export const DEFAULT_LISTEN: readonly string[] = [
  "/ip4/0.0.0.0/tcp/4001",
  "/ip4/0.0.0.0/tcp/4002/ws",
];

/** Options of {@link createMeshNode}. Every field documents its default. */
export interface MeshNodeInit {
  /** Directory of the node's state; its identity key lives in `<dataDir>/peer.key` (created on first start,
   * mode 0600). Default: none, and a fresh identity each run (tests, throwaway clients). */
  dataDir?: string;
  /** Where libp2p keeps the peer store and the DHT's records. Default: `<dataDir>/mesh.sqlite` (so they
   * survive a restart), or memory without `dataDir`. */
  datastore?: Datastore;
  /** Multiaddrs to listen on. Default: {@link DEFAULT_LISTEN}. */
  listen?: string[];
  /** The transports, as libp2p transport factories. Default: TCP and WebSockets. The simulation
   * (`./sim.ts`) puts a thousand nodes in one process over `@libp2p/memory` with this. */
  transports?: Libp2pOptions["transports"];
  /** Multiaddrs to announce instead of the listen addresses (a public address behind NAT). Default: none. */
  announce?: string[];
  /** Multiaddrs (with `/p2p/<id>`) of peers to join through; dialled at start, and again every
   * `bootstrapIntervalMs` while the node has no connection at all. Default: none. */
  bootstrap?: string[];
  /** Retry period of the bootstrap dials while isolated, in ms. Default: 30 000. */
  bootstrapIntervalMs?: number;
  /** Local mode (a mesh on one host or a LAN: tests, `deno task cluster`): loopback and private addresses are
   * kept, handed out and dialled, and loopback peers skip libp2p's connection rate limits and the per-IP cap.
   * False is public mode (the CLI's default, `--local` turns it off): nothing is exempt, and private, loopback
   * and link-local addresses are neither kept for peers nor dialled (see `./gater.ts`). Default: true. */
  allowLoopback?: boolean;
  /** Caps on the provider records kept for others (see `./datastore.ts`). Default: 50 000 per peer, 500 000 in
   * all. */
  providerRecords?: ProviderLimits;
  /** Connection limits (libp2p's connection manager and this node's gater). Every field documents its default. */
  connections?: {
    /** Most connections in all. Default: 300 (libp2p's). */
    maxConnections?: number;
    /** Most inbound connections still being upgraded (noise, yamux) at once. Default: 10 (libp2p's). */
    maxIncomingPendingConnections?: number;
    /** Most inbound connections one host may open per second. Default: 5 (libp2p's). */
    inboundConnectionThreshold?: number;
    /** Most addresses of one peer tried in a dial (a peer's record may list many). Default: 8. */
    maxPeerAddrsToDial?: number;
    /** Most connections from one IP at once. Default: 16. */
    maxConnectionsPerIp?: number;
    /** Most connections of one peer at once. Default: 3. */
    maxConnectionsPerPeer?: number;
    /** Most streams of all protocols one connection may open towards this node. Default: 256. */
    maxInboundStreams?: number;
    /** How often libp2p's connection monitor pings each connection (and aborts it when the ping fails), in
     * ms; 0 turns the monitor off. Default: 10 000 (libp2p's). The simulation turns it off: its thousand
     * nodes share one thread, where a late ping measures the thread, and a node that leaves closes its
     * in-memory connections, so no dead connection is left to find. */
    pingIntervalMs?: number;
  };
  /** The local chunk store that serves peers. Default: none (the node serves nothing and refuses to keep). */
  store?: ChunkSource;
  /** Called for every misbehaviour of a peer seen by the exchange. Default: none. */
  onMisbehaviour?: MisbehaviourListener;
  /** Chunk exchange limits and timeouts (`store` and `onMisbehaviour` are taken from above). */
  exchange?: Omit<ChunkExchangeInit, "store" | "onMisbehaviour">;
  /** DHT options (`allowLoopback` is taken from above). */
  dht?: Omit<MeshDhtInit, "allowLoopback">;
  /** Run gossipsub as the `pubsub` service (the market's intents travel on it). Default: false. */
  pubsub?: boolean;
  /** Relay circuits for nodes that cannot be dialled (`./relay.ts`), within `limits`, charging the reserving
   * peers through `gate` (a pay desk). Default: not a relay. */
  relay?: { limits?: Partial<RelayLimits>; gate?: CircuitGate };
  /** Relays (multiaddrs ending in `/p2p/<id>`) to reserve a slot on and be reachable through; start fails
   * with {@link RelayRefusedError} when none gives one. Default: none. */
  relayVia?: string[];
  /** Told of the bytes each relay carried for this node (for paying it). Default: none. */
  onRelayed?: (relay: string, bytes: number) => void;
  /** libp2p's logger (`Libp2pOptions["logger"]`). Default: libp2p's (debug-style, off unless `DEBUG` names it).
   * The simulation passes one that does nothing: libp2p makes loggers per connection and stream, and a
   * thousand nodes' worth of them is a seventh of the heap kept per connection. */
  logger?: Libp2pOptions["logger"];
  /** Start at once. Default: true. */
  start?: boolean;
}

/** The libp2p services of a mesh node. */
export interface MeshServices extends Record<string, unknown> {
  identify: Identify;
  ping: Ping;
  dht: KadDHT;
  exchange: ChunkExchange;
  /** With `pubsub: true` only. */
  pubsub?: GossipSub;
  /** With `relay` only. */
  relay?: CircuitRelayService;
  /** With `relayVia` only. */
  relayed?: RelayedBytes;
}

/** A running (or stopped) mesh node. */
export interface MeshNode {
  /** The node's peer ID, base58btc (`12D3KooW…`). */
  readonly peerId: string;
  /** The node's identity key (from `<dataDir>/peer.key`): what it signs as its peer ID with. */
  readonly privateKey: PrivateKey;
  /** The libp2p node underneath, for advanced use. */
  readonly libp2p: Libp2p<MeshServices>;
  /** libp2p's datastore: the peer store and the DHT's records (provider records capped). */
  readonly datastore: ProviderLimitedDatastore;
  /** Addresses others can dial, each ending in `/p2p/<peerId>`. Empty while stopped. */
  multiaddrs(): string[];
  /** Starts listening, dials the bootstrap peers (waiting at most 10 s for them). Idempotent. */
  start(): Promise<void>;
  /** Closes every connection and listener. Idempotent. */
  stop(): Promise<void>;
  /** Dials a peer (no-op when connected). */
  connect(peer: PeerTarget, options?: AbortOptions): Promise<void>;
  /** Peer IDs of the peers connected now. */
  connectedPeers(): string[];
  /** Peers in the DHT routing table. */
  routingTableSize(): number;
  /** Announces in the DHT that this node holds `cid`; fails ("provide_unreached") when no peer was sent the
   * record. */
  provide(cid: CID, options?: AbortOptions): Promise<void>;
  /** Finds who holds `cid` through the DHT, each provider once. */
  findProviders(cid: CID, options?: AbortOptions): AsyncIterable<ProviderInfo>;
  /** Fetches and verifies one chunk from `peer`; `null` when it lacks it. */
  fetchChunk(peer: PeerTarget, cid: CID, options?: ExchangeCallOptions): Promise<Uint8Array | null>;
  /** Fetches and verifies chunks from `peer`, in order. */
  fetchChunks(
    peer: PeerTarget,
    cids: readonly CID[],
    options?: ExchangeCallOptions,
  ): AsyncIterable<FetchedChunk>;
  /** Asks `peer` to keep chunks; one accepted/refused answer per chunk. */
  storeChunks(
    peer: PeerTarget,
    chunks: readonly { cid: CID; bytes: Uint8Array }[],
    options?: ExchangeCallOptions,
  ): Promise<StoreResult[]>;
  /** Asks `peer` which chunks it holds. */
  hasChunks(
    peer: PeerTarget,
    cids: readonly CID[],
    options?: ExchangeCallOptions,
  ): Promise<boolean[]>;
  /** Challenges `peer` to prove it holds `cids` (see {@link ChunkExchange.proveChunks}). */
  proveChunks(
    peer: PeerTarget,
    nonce: Uint8Array,
    cids: readonly CID[],
    options?: ExchangeCallOptions,
  ): Promise<(Uint8Array | null)[]>;
  /** Misbehaviour seen so far, by peer ID (in memory). */
  misbehaviour(): ReadonlyMap<string, readonly MisbehaviourReport[]>;
  /** A relay's circuits (with `relay` only). */
  relayStats(): RelayStats | undefined;
  /** Bytes relays carried for this node, by relay peer ID. */
  relayedBytes(): ReadonlyMap<string, number>;
}

/** Builds a mesh node from `init` and (unless `start: false`) starts it. */
export async function createMeshNode(init: MeshNodeInit = {}): Promise<MeshNode> {
  for (const addr of init.bootstrap ?? []) checkBootstrapAddress(addr);
  for (const addr of init.relayVia ?? []) checkBootstrapAddress(addr, "Relay");
  // A relay is dialable by definition; and one node metering both ends of circuits would count them twice.
  if (init.relay && init.relayVia?.length) {
    throw new TypeError("A relay needs no relay: give either relay or relayVia");
  }
  const limitsOfRelay = init.relay ? relayLimits(init.relay.limits) : undefined;
  // Custom transports (the simulation's in-memory links) relay nothing; the default ones dial circuits.
  const relaying = init.transports === undefined;
  const privateKey = init.dataDir === undefined
    ? await generateKeyPair("Ed25519")
    : await loadOrCreatePrivateKey(init.dataDir);
  const inner = init.datastore ??
    (init.dataDir === undefined
      ? new MemoryDatastore()
      : new SqliteDatastore(join(init.dataDir, DATASTORE_FILE)));
  const datastore = new ProviderLimitedDatastore(
    inner,
    peerIdFromPrivateKey(privateKey).toString(),
    init.providerRecords,
  );
  const local = init.allowLoopback ?? true;
  const limits = init.connections ?? {};
  let connections: (peer?: PeerId) => Connection[] = () => [];
  const libp2p = await createLibp2p<MeshServices>({
    privateKey,
    datastore,
    ...(init.logger ? { logger: init.logger } : {}),
    // Provider records name peers by ID; their addresses come from the peer store, which hides addresses
    // first seen over an hour ago (libp2p's default), and GET_PROVIDERS leaves out providers without
    // addresses. Keep them as long as a record lives.
    peerStore: { maxAddressAge: init.dht?.providerValidityMs ?? PROVIDER_VALIDITY_MS },
    start: false,
    addresses: {
      listen: [
        ...(init.listen ?? DEFAULT_LISTEN),
        ...(init.relayVia ?? []).map((r) => `${r}/p2p-circuit`),
      ],
      ...(init.announce ? { announce: init.announce } : {}),
    },
    transports: init.transports ?? [tcp(), webSockets(), relayTransport()],
    // libp2p refuses a host opening over 5 connections a second; a local cluster comes from one host, so in
    // local mode loopback is allow-listed (exempt from that, the pending limit and maxConnections).
    connectionManager: {
      allow: local ? ["/ip4/127.0.0.0/ipcidr/8", "/ip6/::1/ipcidr/128"] : [],
      maxConnections: limits.maxConnections ?? 300,
      maxIncomingPendingConnections: limits.maxIncomingPendingConnections ?? 10,
      inboundConnectionThreshold: limits.inboundConnectionThreshold ?? 5,
      maxPeerAddrsToDial: limits.maxPeerAddrsToDial ?? 8,
    },
    ...(limits.pingIntervalMs === undefined ? {} : {
      connectionMonitor: limits.pingIntervalMs > 0
        ? { pingInterval: limits.pingIntervalMs }
        : { enabled: false },
    }),
    connectionGater: meshGater({
      local,
      maxConnectionsPerIp: limits.maxConnectionsPerIp,
      maxConnectionsPerPeer: limits.maxConnectionsPerPeer,
      connections: (peer) => connections(peer),
    }),
    connectionEncrypters: [noise()],
    // A small receive window per stream bounds what a peer's streams can make this node buffer (_framing.ts).
    streamMuxers: [yamux({
      maxInboundStreams: limits.maxInboundStreams ?? 256,
      streamOptions: { maxStreamWindowSize: STREAM_WINDOW_BYTES },
    })],
    services: {
      identify: identify(),
      // kad-dht takes `ping` as a component: without it peers never enter the routing table. It pings
      // peers of a full bucket while libp2p's connection monitor pings every connection: with ping's
      // default of one outbound stream, the second fails and the monitor aborts the connection.
      ping: ping({ maxOutboundStreams: 2 }),
      dht: meshDht({ ...init.dht, allowLoopback: local }),
      exchange: chunkExchange({
        ...init.exchange,
        store: init.store,
        onMisbehaviour: init.onMisbehaviour,
      }),
      // Publishing with nobody subscribed yet is not an error: a buyer's intent also goes to the DHT.
      ...(init.pubsub ? { pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) } : {}),
      // DCUtR upgrades a relayed connection to a direct one where both ends have a dialable address.
      ...(relaying ? { dcutr: dcutr() } : {}),
      ...(limitsOfRelay ? { relay: relayServer(limitsOfRelay) } : {}),
      ...(init.relayVia?.length ? { relayed: relayedBytes(init.onRelayed ?? (() => {})) } : {}),
    },
  });
  connections = (peer) => libp2p.getConnections(peer);
  const meter = limitsOfRelay ? new RelayMeter(libp2p, init.relay?.gate) : undefined;
  meter?.start();
  const node = new Libp2pMeshNode(
    privateKey,
    libp2p,
    datastore,
    init,
    init.datastore === undefined,
    meter,
  );
  if (init.start !== false) {
    try {
      await node.start();
    } catch (e) {
      await node.stop().catch(() => {});
      throw e;
    }
  }
  return node;
}

const BOOTSTRAP_DIAL_TIMEOUT_MS = 10_000;

function checkBootstrapAddress(addr: string, what = "Bootstrap"): void {
  let id: string | undefined;
  try {
    id = multiaddr(addr).getComponents().findLast((c) => c.name === "p2p")?.value;
  } catch (e) {
    throw new TypeError(`${what} address "${addr}" is not a multiaddr`, { cause: e });
  }
  if (id === undefined) {
    throw new TypeError(`${what} address "${addr}" must end in "/p2p/<peer id>"`);
  }
  try {
    peerIdFromString(id);
  } catch (e) {
    throw new TypeError(`${what} address "${addr}" names no valid peer ID ("${id}")`, { cause: e });
  }
}

class Libp2pMeshNode implements MeshNode {
  readonly privateKey: PrivateKey;
  readonly libp2p: Libp2p<MeshServices>;
  readonly datastore: ProviderLimitedDatastore;
  readonly peerId: string;
  readonly #bootstrap: string[];
  readonly #bootstrapIntervalMs: number;
  /** The datastore was opened here (not passed in), so it is closed here. */
  readonly #ownsDatastore: boolean;
  #timer: ReturnType<typeof setInterval> | undefined;
  #stopping: AbortController | undefined;
  #isolationWarned = false;
  readonly #relayVia: string[];
  readonly #meter: RelayMeter | undefined;

  constructor(
    privateKey: PrivateKey,
    libp2p: Libp2p<MeshServices>,
    datastore: ProviderLimitedDatastore,
    init: MeshNodeInit,
    ownsDatastore: boolean,
    meter: RelayMeter | undefined,
  ) {
    this.#relayVia = init.relayVia ?? [];
    this.#meter = meter;
    this.privateKey = privateKey;
    this.libp2p = libp2p;
    this.datastore = datastore;
    this.#ownsDatastore = ownsDatastore;
    this.peerId = libp2p.peerId.toString();
    this.#bootstrap = init.bootstrap ?? [];
    this.#bootstrapIntervalMs = init.bootstrapIntervalMs ?? 30_000;
  }

  multiaddrs(): string[] {
    return this.libp2p.getMultiaddrs().map(String);
  }

  async start(): Promise<void> {
    if (this.libp2p.status === "started") return;
    if (this.#ownsDatastore && this.datastore.inner instanceof SqliteDatastore) {
      this.datastore.inner.open();
    }
    try {
      await this.libp2p.start();
    } catch (e) {
      if (this.#relayVia.length === 0) throw e;
      throw new RelayRefusedError(this.#relayVia.join(", "), reservationRefusal(e), { cause: e });
    }
    if (this.#relayVia.length > 0 && !this.multiaddrs().some((a) => a.includes("/p2p-circuit"))) {
      throw new RelayRefusedError(this.#relayVia.join(", "), "no circuit address came of it");
    }
    this.#stopping = new AbortController();
    if (this.#bootstrap.length > 0) {
      await this.#dialBootstrap();
      this.#timer = setInterval(() => {
        if (this.libp2p.getConnections().length === 0) void this.#dialBootstrap();
      }, this.#bootstrapIntervalMs);
    }
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#stopping?.abort();
    await this.libp2p.stop();
    // libp2p has stopped writing.
    if (this.#ownsDatastore && this.datastore.inner instanceof SqliteDatastore) {
      this.datastore.inner.close();
    }
  }

  /** Dials every bootstrap peer at once; failures are logged, not thrown (others may answer, or later). */
  async #dialBootstrap(): Promise<void> {
    const signal = AbortSignal.any([
      this.#stopping!.signal,
      AbortSignal.timeout(BOOTSTRAP_DIAL_TIMEOUT_MS),
    ]);
    const log = this.libp2p.logger.forComponent("meshgate:bootstrap");
    const failed: Record<string, string> = {};
    await Promise.all(this.#bootstrap.map(async (addr) => {
      try {
        await this.libp2p.dial(multiaddr(addr), { signal });
      } catch (e) {
        log("could not dial %s - %e", addr, e);
        failed[addr] = String((e as Error).message ?? e).slice(0, 200);
      }
    }));
    // A node that joined nobody says why, once (a wrong peer ID fails the handshake); the retries while
    // isolated go to the debug log.
    if (this.#stopping!.signal.aborted || this.#isolationWarned) return;
    if (this.libp2p.getConnections().length > 0) return;
    this.#isolationWarned = true;
    warn("mesh:bootstrap", "no bootstrap peer answered; retrying while isolated", {
      failed,
      retryMs: this.#bootstrapIntervalMs,
    });
  }

  async connect(peer: PeerTarget, options: AbortOptions = {}): Promise<void> {
    await this.libp2p.dial(await resolvePeerTarget(this.libp2p.peerStore, peer), options);
  }

  connectedPeers(): string[] {
    return this.libp2p.getPeers().map(String);
  }

  routingTableSize(): number {
    return (this.libp2p.services.dht as SingleKadDHT).routingTable.size;
  }

  provide(cid: CID, options?: AbortOptions): Promise<void> {
    return provide(this.libp2p.services.dht, cid, options).then(() => {});
  }

  findProviders(cid: CID, options?: AbortOptions): AsyncIterable<ProviderInfo> {
    return findProviders(this.libp2p.contentRouting, cid, options);
  }

  fetchChunk(
    peer: PeerTarget,
    cid: CID,
    options?: ExchangeCallOptions,
  ): Promise<Uint8Array | null> {
    return this.libp2p.services.exchange.fetchChunk(peer, cid, options);
  }

  fetchChunks(
    peer: PeerTarget,
    cids: readonly CID[],
    options?: ExchangeCallOptions,
  ): AsyncIterable<FetchedChunk> {
    return this.libp2p.services.exchange.fetchChunks(peer, cids, options);
  }

  storeChunks(
    peer: PeerTarget,
    chunks: readonly { cid: CID; bytes: Uint8Array }[],
    options?: ExchangeCallOptions,
  ): Promise<StoreResult[]> {
    return this.libp2p.services.exchange.storeChunks(peer, chunks, options);
  }

  hasChunks(
    peer: PeerTarget,
    cids: readonly CID[],
    options?: ExchangeCallOptions,
  ): Promise<boolean[]> {
    return this.libp2p.services.exchange.hasChunks(peer, cids, options);
  }

  proveChunks(
    peer: PeerTarget,
    nonce: Uint8Array,
    cids: readonly CID[],
    options?: ExchangeCallOptions,
  ): Promise<(Uint8Array | null)[]> {
    return this.libp2p.services.exchange.proveChunks(peer, nonce, cids, options);
  }

  misbehaviour(): ReadonlyMap<string, readonly MisbehaviourReport[]> {
    return this.libp2p.services.exchange.misbehaviour();
  }

  relayStats(): RelayStats | undefined {
    return this.#meter?.stats(this.libp2p.services.relay?.reservations.size ?? 0);
  }

  relayedBytes(): ReadonlyMap<string, number> {
    return this.libp2p.services.relayed?.totals() ?? new Map();
  }
}
