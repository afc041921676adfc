/**
 * Who may connect, how often, and which addresses this node keeps and dials: libp2p's connection gater.
 *
 * Two modes. **Local** (`deno task cluster`, tests, a LAN): loopback and private addresses are normal, and
 * loopback peers (other nodes on this host) are exempt from the per-IP limit. **Public** (the CLI's default):
 * nothing is exempt, and private, loopback and link-local addresses are neither kept for peers nor dialled, so a
 * peer cannot steer this node's dials into its own networks (10/8, 127/8, 169.254/16…). Behind a local proxy
 * every peer shares the proxy's address: the per-IP limit then counts them all together.
 *
 * @module
 */
import type { Connection, ConnectionGater, MultiaddrConnection, PeerId } from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";

/** Options of {@link meshGater}. */
export interface MeshGaterInit {
  /** Local mode (see the module). Default: false (public). */
  local?: boolean;
  /** Most connections from one remote IP at once; more are refused. Default: {@link MAX_CONNECTIONS_PER_IP}. */
  maxConnectionsPerIp?: number;
  /** Most connections of one peer ID at once; more are refused. Default: {@link MAX_CONNECTIONS_PER_PEER}. */
  maxConnectionsPerPeer?: number;
  /** The node's open connections (of `peer`, or all): bound after libp2p is built. */
  connections: (peer?: PeerId) => Connection[];
}

/** Default of {@link MeshGaterInit.maxConnectionsPerIp}: a few nodes behind one NAT, not a Sybil farm. */
export const MAX_CONNECTIONS_PER_IP = 16;
/** Default of {@link MeshGaterInit.maxConnectionsPerPeer}: one each way, and one being replaced. */
export const MAX_CONNECTIONS_PER_PEER = 3;

/** The gater of a mesh node: per-IP and per-peer connection caps, and address filtering in public mode. */
export function meshGater(init: MeshGaterInit): ConnectionGater {
  const local = init.local ?? false;
  const perIp = init.maxConnectionsPerIp ?? MAX_CONNECTIONS_PER_IP;
  const perPeer = init.maxConnectionsPerPeer ?? MAX_CONNECTIONS_PER_PEER;
  // Inbound connections by remote IP, from acceptance (before the upgrade, so that a burst is counted) to close.
  const byIp = new Map<string, Set<MultiaddrConnection>>();
  return {
    denyDialMultiaddr: (ma: Multiaddr) => !local && isPrivateAddress(ma),
    filterMultiaddrForPeer: (_peer: PeerId, ma: Multiaddr) => local || !isPrivateAddress(ma),
    denyInboundConnection: (maConn: MultiaddrConnection) => {
      const ip = ipOf(maConn.remoteAddr);
      if (ip === undefined || (local && isPrivateIp(ip))) return false;
      let open = byIp.get(ip);
      if (open === undefined) byIp.set(ip, open = new Set());
      if (open.size >= perIp) return true;
      open.add(maConn);
      maConn.addEventListener("close", () => {
        open.delete(maConn);
        if (open.size === 0 && byIp.get(ip) === open) byIp.delete(ip);
      }, { once: true });
      return false;
    },
    denyInboundUpgradedConnection: (peer: PeerId) => init.connections(peer).length >= perPeer,
  };
}

/** The IP address of a multiaddr's first component, when it is `/ip4` or `/ip6`. */
export function ipOf(ma: Multiaddr): string | undefined {
  const first = ma.getComponents()[0];
  return first?.name === "ip4" || first?.name === "ip6" ? first.value : undefined;
}

/** True for a multiaddr that names a private, loopback, link-local or unspecified host (or `localhost`). */
export function isPrivateAddress(ma: Multiaddr): boolean {
  const first = ma.getComponents()[0];
  if (first === undefined) return false;
  if (first.name === "ip4" || first.name === "ip6") return isPrivateIp(first.value ?? "");
  if (first.name.startsWith("dns")) {
    const host = (first.value ?? "").toLowerCase();
    return host === "localhost" || host.endsWith(".localhost");
  }
  return false;
}

const PRIVATE_V4: readonly [number, number][] = [
  [0x00000000, 8], // 0/8: "this network"
  [0x0a000000, 8], // 10/8
  [0x64400000, 10], // 100.64/10: carrier-grade NAT
  [0x7f000000, 8], // 127/8: loopback
  [0xa9fe0000, 16], // 169.254/16: link-local (cloud metadata services)
  [0xac100000, 12], // 172.16/12
  [0xc0000000, 24], // 192.0.0/24
  [0xc0a80000, 16], // 192.168/16
  [0xc6120000, 15], // 198.18/15: benchmarking
  [0xe0000000, 4], // 224/4: multicast
  [0xf0000000, 4], // 240/4: reserved, broadcast
];

/** True for an IPv4 or IPv6 address that is not globally routable (private, loopback, link-local, ULA…). */
export function isPrivateIp(ip: string): boolean {
  const v4 = parseV4(ip);
  if (v4 !== undefined) {
    return PRIVATE_V4.some(([net, bits]) => (v4 >>> (32 - bits)) === (net >>> (32 - bits)));
  }
  const a = ip.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return isPrivateIp(mapped[1]!);
  return a === "::" || a === "::1" || /^f[cd]/.test(a) || /^fe[89ab]/.test(a) || /^ff/.test(a) ||
    a.startsWith("64:ff9b:") || a.startsWith("2001:db8:");
}

function parseV4(ip: string): number | undefined {
  const parts = ip.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}
