/** Turns the ways callers name a peer into something libp2p can dial. */
import { type Connection, isPeerId, type PeerId, type PeerStore } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { isMultiaddr, type Multiaddr, multiaddr } from "@multiformats/multiaddr";

/** A peer to talk to: a peer ID (string or object) known to the peer store, a multiaddr (string or object)
 * ending in `/p2p/<id>`, or a provider as `findProviders` yields it. */
export type PeerTarget = string | PeerId | Multiaddr | { peerId: string; multiaddrs: string[] };

/**
 * A dial target for `target`. A provider's addresses are merged into the peer store first, so that libp2p dials
 * them by peer ID (provider addresses usually lack the `/p2p/<id>` suffix a bare multiaddr dial needs).
 */
export async function resolvePeerTarget(
  peerStore: PeerStore,
  target: PeerTarget,
): Promise<PeerId | Multiaddr> {
  if (typeof target === "string") {
    return target.startsWith("/") ? multiaddr(target) : peerIdFromString(target);
  }
  if (isPeerId(target) || isMultiaddr(target)) return target;
  const id = peerIdFromString(target.peerId);
  if (target.multiaddrs.length > 0) {
    await peerStore.merge(id, { multiaddrs: target.multiaddrs.map((a) => multiaddr(a)) });
  }
  return id;
}

/**
 * An open connection to `dial`'s peer to reuse, a direct one before a relayed (limited) one, or undefined when
 * there is none. libp2p's `openConnection` never reuses a limited connection, so each request to a node
 * reachable only through a relay would open (and pay for) a new circuit; and for a direct one it reads and
 * decodes the peer's record from the peer store first, which a mesh read paid on every chunk request.
 */
export function openConnectionTo(
  connections: (peer: PeerId) => Connection[],
  dial: PeerId | Multiaddr,
): Connection | undefined {
  let id: PeerId;
  if (isPeerId(dial)) id = dial;
  else {
    const s = dial.getComponents().findLast((c) => c.name === "p2p")?.value;
    if (s === undefined) return undefined;
    id = peerIdFromString(s);
  }
  const open = connections(id).filter((c) => c.status === "open");
  return open.find((c) => c.limits === undefined) ?? open.find((c) => c.limits !== undefined);
}

/** A short name of `target` for error messages. */
export function peerTargetLabel(target: PeerTarget): string {
  if (typeof target === "string") return target;
  if (isPeerId(target) || isMultiaddr(target)) return target.toString();
  return target.peerId;
}
