/// <reference lib="dom" />
/** The peers view, from `GET /api/peers`: this node's own ID and addresses, and every connected peer with
 * its addresses, how it connected, since when, and the chunk bytes exchanged with it. */
import { $, esc, loadPanel, short, since, size } from "./lib.ts";

interface PeersAnswer {
  mesh: boolean;
  peerId?: string;
  multiaddrs?: string[];
  routingTable?: number;
  peers: {
    peer: string;
    connections: { address: string; direction: "inbound" | "outbound"; since: string }[];
    sentBytes: number;
    receivedBytes: number;
  }[];
}

/** An address without its trailing `/p2p/<id>` (the row names the peer already). */
const bare = (addr: string) => addr.replace(/\/p2p\/[^/]+$/, "");

export async function refreshPeers(): Promise<void> {
  const got = await loadPanel<PeersAnswer>("peers", "/api/peers");
  if (!got) return;
  if (!got.mesh) {
    $("peers-self").innerHTML = '<p class="dim">This node runs without a mesh (--no-mesh).</p>';
    $("peers-body").innerHTML = '<tr><td colspan="4" class="empty">No mesh, no peers.</td></tr>';
    return;
  }
  $("peers-self").innerHTML =
    `<div class="stat"><b title="${esc(got.peerId)}"><code>${
      esc(short(got.peerId ?? ""))
    }</code></b><span>this node's peer ID</span></div>` +
    `<div class="stat"><b>${got.peers.length}</b><span>connected peers</span></div>` +
    `<div class="stat"><b>${got.routingTable ?? 0}</b><span>in the DHT routing table</span></div>` +
    `<details class="addrs"><summary>Listening on ${
      got.multiaddrs?.length ?? 0
    } addresses</summary><ul>${
      (got.multiaddrs ?? []).map((a) => `<li><code>${esc(bare(a))}</code></li>`).join("")
    }</ul></details>`;
  $("peers-body").innerHTML = got.peers.length === 0
    ? '<tr><td colspan="4" class="empty">No peers connected: start another node with --bootstrap.</td></tr>'
    : got.peers.map((p) =>
      `<tr>
        <td class="peer" title="${esc(p.peer)}"><code>${esc(short(p.peer))}</code></td>
        <td class="addr">${
        p.connections.map((c) =>
          `<div><code>${esc(bare(c.address))}</code> <span class="dim">${
            c.direction === "inbound" ? "in" : "out"
          } · ${esc(since(c.since))}</span></div>`
        ).join("")
      }</td>
        <td class="num">${esc(size(p.sentBytes))}</td>
        <td class="num">${esc(size(p.receivedBytes))}</td>
      </tr>`
    ).join("");
}
