import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { createMeshNode, type MeshNode } from "../../src/mesh/node.ts";
import { SANITIZE, startNode, stopNodes, TCP, WS } from "./_helpers.ts";

for (const [name, listen] of [["TCP", TCP], ["WebSockets", WS]] as const) {
  Deno.test({
    ...SANITIZE,
    name: `createMeshNode() connects two nodes over ${name} on loopback`,
    fn: async () => {
      const a = await startNode({ listen: [listen] });
      const b = await startNode({ listen: [listen], bootstrap: a.multiaddrs() });
      try {
        assert.ok(a.multiaddrs().every((m) => m.startsWith("/ip4/127.0.0.1/tcp/")));
        assert.equal(a.multiaddrs().length, 1);
        assert.equal(a.multiaddrs()[0]!.includes("/ws/"), name === "WebSockets");
        // createMeshNode waits for the bootstrap dial.
        assert.deepEqual(b.connectedPeers(), [a.peerId]);
        const [conn] = b.libp2p.getConnections();
        assert.equal(conn!.remoteAddr.toString().includes("/ws"), name === "WebSockets");
        assert.ok((await b.libp2p.services.ping.ping(a.libp2p.peerId)) >= 0);
      } finally {
        await stopNodes(a, b);
      }
    },
  });
}

Deno.test({
  ...SANITIZE,
  name: "createMeshNode() rejects a bootstrap address without a peer ID before starting anything",
  fn: async () => {
    await assert.rejects(
      createMeshNode({ listen: [TCP], bootstrap: ["/ip4/127.0.0.1/tcp/4001"] }),
      (e) => e instanceof TypeError && /must end in "\/p2p\/<peer id>"/.test(e.message),
    );
    await assert.rejects(
      createMeshNode({ listen: [TCP], bootstrap: ["nonsense"] }),
      /is not a multiaddr/,
    );
    await assert.rejects(
      createMeshNode({ listen: [TCP], bootstrap: ["/ip4/127.0.0.1/tcp/4001/p2p/xyz"] }),
      /names no valid peer ID \("xyz"\)/,
    );
  },
});

Deno.test({
  name: "a node whose bootstrap peer ID is wrong starts isolated and says so on stderr, once",
  sanitizeOps: false, // libp2p's dial queue keeps a timer past the failed handshake
  sanitizeResources: false,
  fn: async () => {
    const a = await startNode();
    const stranger = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
    const wrong = `${a.multiaddrs()[0]!.split("/p2p/")[0]}/p2p/${stranger}`;
    const lines: string[] = [];
    const error = console.error;
    console.error = (line: string) => lines.push(String(line));
    let b: MeshNode | undefined;
    try {
      b = await startNode({ bootstrap: [wrong], bootstrapIntervalMs: 100 });
      await new Promise((r) => setTimeout(r, 500)); // a few retries
    } finally {
      console.error = error;
      await stopNodes(...[a, b].filter((n) => n !== undefined));
    }
    const warned = lines.filter((l) => l.includes("no bootstrap peer answered"));
    assert.equal(warned.length, 1, lines.join("\n"));
    assert.ok(warned[0]!.includes(wrong), warned[0]);
  },
});
