/**
 * The peers this node can place chunks on and ask for them: connected now, or known with addresses.
 */
import type { MeshNode } from "./node.ts";
import { PeerTable } from "./placement.ts";
import { CHUNK_PROTOCOL } from "./exchange.ts";

const known = new WeakMap<MeshNode, { at: number; peers: Promise<string[]> }>();
/**
 * Peers that speak the chunk protocol: connected now, or known with addresses (met through the DHT).
 * Placement and lookup rank the same set by XOR, so a reader asks first where a writer put. The peer
 * store is scanned at most every 2 s, and again after a peer is identified or disconnects (so a peer that
 * just left is still a candidate, one that may be back in a moment); connections are read fresh each time,
 * so a peer that just joined counts at once.
 */
export async function meshPeers(mesh: MeshNode): Promise<string[]> {
  let hit = known.get(mesh);
  if (!hit || Date.now() - hit.at >= 2000) {
    if (!hit) {
      const rescan = () => known.get(mesh) && (known.get(mesh)!.at = 0);
      mesh.libp2p.addEventListener("peer:identify", rescan);
      mesh.libp2p.addEventListener("peer:disconnect", rescan);
    }
    const scan = (async () => {
      const found: string[] = [];
      for (const peer of await mesh.libp2p.peerStore.all()) {
        if (peer.protocols.includes(CHUNK_PROTOCOL) && peer.addresses.length) {
          found.push(peer.id.toString());
        }
      }
      return found;
    })();
    known.set(mesh, hit = { at: Date.now(), peers: scan });
  }
  const found = new Set([...mesh.connectedPeers(), ...await hit.peers]);
  found.delete(mesh.peerId);
  return [...found].sort();
}

/** {@link meshPeers} packed for XOR ranking, rebuilt only when the set of peers changes. */
const tables = new WeakMap<MeshNode, { key: string; table: PeerTable }>();
export async function meshTable(mesh: MeshNode): Promise<PeerTable> {
  const peers = await meshPeers(mesh);
  const key = peers.join(",");
  let entry = tables.get(mesh);
  if (entry?.key !== key) tables.set(mesh, entry = { key, table: new PeerTable(peers) });
  return entry.table;
}
