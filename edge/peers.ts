/**
 * `GET /api/peers`, for the page's Peers view and operators: this node's peer ID and addresses, and each
 * connected peer with its connections (address, direction, since when) and the chunk bytes exchanged with
 * it since start (`ChunkExchange.traffic`). Read-only; `{ mesh: false }` on a node without a mesh.
 *
 * @module
 */
import type { Hono } from "hono";
import type { MeshgateNode } from "../src/node.ts";

export interface PeerRow {
  peer: string;
  connections: { address: string; direction: "inbound" | "outbound"; since: string }[];
  sentBytes: number;
  receivedBytes: number;
}

/** The peers of `node`'s mesh now, most traffic first. */
export function peersOf(node: MeshgateNode): PeerRow[] {
  const mesh = node.mesh;
  if (!mesh) return [];
  const traffic = mesh.libp2p.services.exchange.traffic();
  const rows = new Map<string, PeerRow>();
  for (const c of mesh.libp2p.getConnections()) {
    if (c.status !== "open") continue;
    const peer = c.remotePeer.toString();
    let row = rows.get(peer);
    if (!row) {
      const t = traffic.get(peer);
      row = {
        peer,
        connections: [],
        sentBytes: t?.sentBytes ?? 0,
        receivedBytes: t?.receivedBytes ?? 0,
      };
      rows.set(peer, row);
    }
    row.connections.push({
      address: c.remoteAddr.toString(),
      direction: c.direction,
      since: new Date(c.timeline.open).toISOString(),
    });
  }
  return [...rows.values()].sort((a, b) =>
    b.sentBytes + b.receivedBytes - (a.sentBytes + a.receivedBytes) || (a.peer < b.peer ? -1 : 1)
  );
}

export function addPeerRoutes(app: Hono, node: MeshgateNode): void {
  app.get("/api/peers", (c) => {
    const mesh = node.mesh;
    if (!mesh) return c.json({ mesh: false, peers: [] });
    return c.json({
      mesh: true,
      peerId: mesh.peerId,
      multiaddrs: mesh.multiaddrs(),
      routingTable: mesh.routingTableSize(),
      peers: peersOf(node),
    });
  });
}
