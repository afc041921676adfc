/**
 * The Kademlia DHT of the mesh: `@libp2p/kad-dht` on Meshgate's own protocol ID, so Meshgate nodes form their
 * own network instead of joining the IPFS one, always in server mode.
 *
 * @module
 */
import {
  type KadDHT,
  kadDHT,
  type KadDHTComponents,
  passthroughMapper,
  removePrivateAddressesMapper,
  type Selectors,
  type Validators,
} from "@libp2p/kad-dht";
import type { AbortOptions, ContentRouting } from "@libp2p/interface";
import { sha256 } from "multiformats/hashes/sha2";
import { CID, RAW_CODE } from "../content/cid.ts";

/** Protocol ID of Meshgate's DHT. */
export const KAD_PROTOCOL = "/meshgate/kad/1.0.0";

/** Options of the mesh DHT. Every field documents its default. */
export interface MeshDhtInit {
  /** Keep loopback and private addresses in peer records (needed for a mesh on one host or a LAN). When false,
   * peers are only known by public addresses, as on the internet. Default: true. */
  allowLoopback?: boolean;
  /** Validators of records under custom key prefixes (signed offers, attestations), by prefix. Default: none. */
  validators?: Validators;
  /** Selectors choosing the best of several records under a custom prefix, by prefix. Default: none. */
  selectors?: Selectors;
  /** Peers per k-bucket. Default: 20 (kad-dht's). */
  kBucketSize?: number;
  /** How often, in ms, the node looks itself up to keep its neighbourhood fresh. Default: kad-dht's (5 min). */
  querySelfInterval?: number;
  /** The same during start-up, until the routing table has peers. Default: kad-dht's (1 s). */
  initialQuerySelfInterval?: number;
}

/** Builds the DHT service: server mode from the start (kad-dht would wait to see a public address). */
export function meshDht(init: MeshDhtInit = {}): (components: KadDHTComponents) => KadDHT {
  return kadDHT({
    protocol: KAD_PROTOCOL,
    clientMode: false,
    peerInfoMapper: (init.allowLoopback ?? true) ? passthroughMapper : removePrivateAddressesMapper,
    validators: init.validators,
    selectors: init.selectors,
    kBucketSize: init.kBucketSize,
    querySelfInterval: init.querySelfInterval,
    initialQuerySelfInterval: init.initialQuerySelfInterval,
  });
}

/** Domain separation of provider keys: see {@link providerKey}. */
const PROVIDER_KEY_PREFIX = new TextEncoder().encode("/meshgate/provider/1.0.0/");

/**
 * The DHT key under which the providers of `cid` are recorded: a CIDv1 whose multihash is
 * sha2-256("/meshgate/provider/1.0.0/" ‖ the content's multihash).
 *
 * Why not the content's own multihash, as IPFS does: kad-dht 16.4.5 sends the multihash as the key of
 * ADD_PROVIDER / GET_PROVIDERS, and the receiving handlers parse it back with `CID.decode`, which reads a bare
 * multihash only when it is sha2-256 (as a CIDv0). A BLAKE3 multihash is rejected ("Invalid CID"), the stream is
 * reset, and no record is ever stored or found (the same handler trap as libp2p/js-libp2p-kad-dht#381). Hashing
 * the multihash to a sha2-256 key keeps provider records keyed by content (raw and dag-json CIDs of the same
 * bytes share them) and works with the handlers as they are.
 */
export async function providerKey(cid: CID): Promise<CID> {
  const mh = cid.multihash.bytes;
  const input = new Uint8Array(PROVIDER_KEY_PREFIX.length + mh.length);
  input.set(PROVIDER_KEY_PREFIX);
  input.set(mh, PROVIDER_KEY_PREFIX.length);
  return CID.createV1(RAW_CODE, await sha256.digest(input));
}

/** A peer that announced it holds some content, with the addresses it can be dialled on. */
export interface ProviderInfo {
  peerId: string;
  multiaddrs: string[];
}

/**
 * Announces in the DHT that this node provides `cid`: a provider record under {@link providerKey} on the k
 * closest peers to that key.
 * Waits until the routing table has a peer: a lone node needs `signal` to give up.
 */
export async function provide(
  routing: ContentRouting,
  cid: CID,
  options: AbortOptions = {},
): Promise<void> {
  await routing.provide(await providerKey(cid), options);
}

/** Finds the providers of `cid` (this node first, when it provides it), each peer once. */
export async function* findProviders(
  routing: ContentRouting,
  cid: CID,
  options: AbortOptions = {},
): AsyncGenerator<ProviderInfo> {
  const seen = new Set<string>();
  for await (const info of routing.findProviders(await providerKey(cid), options)) {
    const peerId = info.id.toString();
    if (seen.has(peerId)) continue;
    seen.add(peerId);
    yield { peerId, multiaddrs: info.multiaddrs.map(String) };
  }
}
