import assert from "node:assert/strict";
import { createMeshNode } from "../../src/mesh/node.ts";
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
  },
});
