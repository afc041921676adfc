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
  MessageType,
  passthroughMapper,
  removePrivateAddressesMapper,
  type Selectors,
  type Validators,
} from "@libp2p/kad-dht";
import type { AbortOptions, ContentRouting } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { type Datastore, Key } from "interface-datastore";
import { base32 } from "multiformats/bases/base32";
import { sha256 } from "multiformats/hashes/sha2";
import { CID, RAW_CODE } from "../content/cid.ts";

/** Protocol ID of Meshgate's DHT. */
export const KAD_PROTOCOL = "/meshgate/kad/1.0.0";

const HOUR = 3_600_000;
/** How long a provider record stays valid on the peers that keep it: kad-dht's 48 h. Peers drop records
 * older than this at their next sweep (every {@link REPUBLISH_INTERVAL_MS}). */
export const PROVIDER_VALIDITY_MS = 48 * HOUR;
/** A holder republishes its records once they are within this of expiring, so every ~24 h. */
export const REPUBLISH_THRESHOLD_MS = 24 * HOUR;
/** How often a node looks for records to republish (its own) and to drop (others', expired). */
export const REPUBLISH_INTERVAL_MS = HOUR;
/** Default deadline of a provider lookup, in ms (`GET /api/providers`; meant as the one default of every
 * lookup with a deadline). */
export const DEFAULT_FIND_TIMEOUT_MS = 3000;

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
  /** Lifetime of provider records, in ms. Default: {@link PROVIDER_VALIDITY_MS}. */
  providerValidityMs?: number;
  /** Republish own records this long before they expire, in ms. Default: {@link REPUBLISH_THRESHOLD_MS}. */
  republishThresholdMs?: number;
  /** Period of the republish-and-expire sweep, in ms. Default: {@link REPUBLISH_INTERVAL_MS}. */
  republishIntervalMs?: number;
  /** Only ask the DHT, never answer it: the node stays out of every routing table (a node that cannot be
   * dialled, e.g. behind NAT; tests use it for holders that must not be a reader's neighbours). It still
   * publishes provider records with its addresses. Default: false (server mode). */
  clientMode?: boolean;
}

/**
 * Builds the DHT service: server mode from the start (kad-dht would wait to see a public address). Its
 * records (provider records it keeps for others, its own provide list, the routing table's peers through the
 * peer store) live in libp2p's datastore: see `./datastore.ts`.
 */
export function meshDht(init: MeshDhtInit = {}): (components: KadDHTComponents) => KadDHT {
  return kadDHT({
    protocol: KAD_PROTOCOL,
    clientMode: init.clientMode ?? false,
    peerInfoMapper: (init.allowLoopback ?? true) ? passthroughMapper : removePrivateAddressesMapper,
    validators: init.validators,
    selectors: init.selectors,
    kBucketSize: init.kBucketSize,
    querySelfInterval: init.querySelfInterval,
    initialQuerySelfInterval: init.initialQuerySelfInterval,
    reprovide: {
      validity: init.providerValidityMs ?? PROVIDER_VALIDITY_MS,
      threshold: init.republishThresholdMs ?? REPUBLISH_THRESHOLD_MS,
      interval: init.republishIntervalMs ?? REPUBLISH_INTERVAL_MS,
    },
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
 * closest peers to that key. Resolves to how many peers were sent the record.
 * Waits until the routing table has a peer: a lone node needs `signal` to give up.
 *
 * kad-dht's own `provide` (and libp2p's content routing over it) succeeds when the walk reached no peer or
 * every ADD_PROVIDER failed: the record then lives only here, and no one finds it until the next republish
 * (within 24 h). Such an announcement fails here instead ("provide_unreached"), with the reasons.
 */
export async function provide(
  dht: KadDHT,
  cid: CID,
  options: AbortOptions = {},
): Promise<number> {
  let sent = 0;
  const errors = new Map<string, number>();
  for await (const ev of dht.provide(await providerKey(cid), options)) {
    if (ev.name === "PEER_RESPONSE" && ev.messageType === MessageType.ADD_PROVIDER) sent++;
    if (ev.name === "QUERY_ERROR") {
      const why = (ev.error as Error | undefined)?.name ?? "Error";
      errors.set(why, (errors.get(why) ?? 0) + 1);
    }
  }
  if (sent === 0) {
    const why = [...errors].map(([k, v]) => `${v} ${k}`).join(", ") || "no peer found";
    throw new MeshError(
      "provide_unreached",
      `No peer was sent the provider record of ${cid} (${why})`,
    );
  }
  return sent;
}

/**
 * Stops republishing `cid` and drops this node's own provider entry (so it no longer names itself when
 * asked). Records already on other peers lapse within {@link PROVIDER_VALIDITY_MS}: kad-dht has no
 * withdrawal message, and a reader that still asks gets "not held" and moves on.
 */
export async function cancelProvide(
  dht: KadDHT,
  cid: CID,
  options: AbortOptions = {},
): Promise<void> {
  await dht.cancelReprovide(await providerKey(cid), options);
}

/** Where kad-dht keeps provider entries in the datastore (its default `datastorePrefix` + "/provider"). */
const PROVIDER_ENTRIES = "/dht/provider/";

/** The name of `cid`'s provider entries in the datastore: base32 of {@link providerKey}'s multihash. */
export async function providerEntryName(cid: CID): Promise<string> {
  return base32.baseEncode((await providerKey(cid)).multihash.bytes);
}

/** This node's own provider entries (its provide list, which kad-dht republishes), by entry name. */
export async function* ownProviderEntries(
  datastore: Datastore,
  self: string,
): AsyncGenerator<{ name: string; remove: () => Promise<void> }> {
  const keys: Key[] = [];
  for await (const key of datastore.queryKeys({ prefix: PROVIDER_ENTRIES })) {
    if (key.toString().endsWith(`/${self}`)) keys.push(key);
  }
  for (const key of keys) {
    const name = key.toString().slice(PROVIDER_ENTRIES.length).split("/")[0]!;
    yield { name, remove: async () => void await datastore.delete(key) };
  }
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
