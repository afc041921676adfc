/**
 * The mesh layer: a libp2p node with Meshgate's DHT and chunk exchange.
 *
 * @module
 */
export { createMeshNode, DEFAULT_LISTEN } from "./node.ts";
export type { MeshNode, MeshNodeInit, MeshServices } from "./node.ts";
export {
  CHUNK_PROTOCOL,
  ChunkExchange,
  chunkExchange,
  DeliveryRefusedError,
  MAX_CHUNK_BYTES,
  MAX_CIDS_PER_REQUEST,
  MAX_FRAME_BYTES,
  MAX_HEADER_BYTES,
} from "./exchange.ts";
export type {
  ChunkExchangeComponents,
  ChunkExchangeInit,
  ChunkSource,
  DeliveryGate,
  DeliveryPayer,
  ExchangeCallOptions,
  FetchedChunk,
  MisbehaviourListener,
  MisbehaviourReport,
  PeerTarget,
  StoreRefusal,
  StoreResult,
} from "./exchange.ts";
export {
  cancelProvide,
  DEFAULT_FIND_TIMEOUT_MS,
  findProviders,
  KAD_PROTOCOL,
  meshDht,
  provide,
  PROVIDER_VALIDITY_MS,
  providerKey,
  REPUBLISH_INTERVAL_MS,
  REPUBLISH_THRESHOLD_MS,
} from "./dht.ts";
export type { MeshDhtInit, ProviderInfo } from "./dht.ts";
export { KEY_FILE, loadOrCreatePrivateKey } from "./identity.ts";
export {
  ExchangeProtocolError,
  KeyFileError,
  MessageTooLargeError,
  PeerTimeoutError,
  PeerUnreachableError,
} from "./errors.ts";
export {
  type Durability,
  durabilityOf,
  localDurability,
  peerKey,
  PeerTable,
  type PlaceStripeOptions,
  type StripeHolders,
  survivableLosses,
} from "./placement.ts";
export { DurabilityRecords, PLACEMENT_DIR } from "./durability.ts";
export { meshPeers } from "./peers.ts";
export { placeFile, type PlacementReport } from "./place.ts";
export { ProvideQueue, type ProvideQueueInit, type ProvideStats } from "./provide.ts";
export { DATASTORE_FILE, SqliteDatastore } from "./datastore.ts";
export { ChunkLocator, fetchFromMesh } from "./fetch.ts";
export { defaultStanding, PeerHealth, type PeerHealthInit, type PeerStanding } from "./health.ts";
export { DEFAULT_VOLUNTEER_QUOTA, QuotaExceededError, VolunteerQuota } from "./quota.ts";
export {
  type CircuitGate,
  DEFAULT_RELAY_LIMITS,
  RELAY_HOP_PROTOCOL,
  RELAY_STOP_PROTOCOL,
  RelayedBytes,
  relayedCid,
  type RelayLimits,
  RelayMeter,
  RelayRefusedError,
  type RelayStats,
  RelayUnpaidError,
} from "./relay.ts";
