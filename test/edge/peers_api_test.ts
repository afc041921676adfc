/**
 * `GET /api/peers` and `DELETE /api/files/:cid` over real HTTP on two real nodes joined over loopback: each
 * lists the other with its address, direction and the chunk bytes exchanged (an upload places chunks on the
 * peer, a read from the other side fetches them); unpinning drops a file from `/api/files`, needs the token,
 * and an unknown or unpinned CID is a clear 404.
 */
import assert from "node:assert/strict";
import { createGateway, onServeError } from "../../edge/app.ts";
import { MeshgateNode } from "../../src/node.ts";

const TOKEN = "a-token-of-sixteen-chars";

async function serve(dir: string, bootstrap: string[] = []) {
  const node = await MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    mesh: { listen: ["/ip4/127.0.0.1/tcp/0"], bootstrap },
  });
  const gw = createGateway(node, { apiToken: TOKEN });
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: resolve, onError: onServeError },
    gw.app.fetch,
  );
  const addr = await promise;
  return {
    node,
    url: `http://127.0.0.1:${addr.port}`,
    async stop() {
      await server.shutdown();
      await node.stop();
    },
  };
}

interface PeersAnswer {
  mesh: boolean;
  peerId: string;
  multiaddrs: string[];
  peers: {
    peer: string;
    connections: { address: string; direction: string; since: string }[];
    sentBytes: number;
    receivedBytes: number;
  }[];
}

Deno.test({
  name: "/api/peers lists connected peers with addresses and traffic; DELETE /api/files unpins",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dirA = await Deno.makeTempDir({ prefix: "meshgate-peers-" });
    const dirB = await Deno.makeTempDir({ prefix: "meshgate-peers-" });
    const a = await serve(dirA);
    const b = await serve(dirB, [a.node.mesh!.multiaddrs()[0]!]);
    try {
      const size = 3 * 1024 * 1024;
      const put = await fetch(`${a.url}/mesh?name=x.bin&k=4&m=2&chunkSize=262144`, {
        method: "POST",
        headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/octet-stream" },
        body: new Uint8Array(size).map((_, i) => (i * 7) & 255),
      });
      assert.equal(put.status, 201, await put.clone().text());
      const { cid } = await put.json();
      // B reads what A placed, fetching what it lacks from A.
      assert.equal((await (await fetch(`${b.url}/mesh/${cid}`)).arrayBuffer()).byteLength, size);

      const peersOf = async (url: string) =>
        (await (await fetch(`${url}/api/peers`)).json()) as PeersAnswer;
      const pa = await peersOf(a.url);
      const pb = await peersOf(b.url);
      assert.equal(pa.mesh, true);
      assert.equal(pa.peerId, a.node.mesh!.peerId);
      assert.ok(pa.multiaddrs.length > 0);
      const aSeesB = pa.peers.find((p) => p.peer === b.node.mesh!.peerId);
      const bSeesA = pb.peers.find((p) => p.peer === a.node.mesh!.peerId);
      assert.ok(aSeesB && bSeesA, JSON.stringify({ pa, pb }));
      assert.match(aSeesB.connections[0]!.address, /^\/ip4\/127\.0\.0\.1\/tcp\/\d+/);
      assert.equal(aSeesB.connections[0]!.direction, "inbound");
      assert.equal(bSeesA.connections[0]!.direction, "outbound");
      assert.ok(!Number.isNaN(Date.parse(aSeesB.connections[0]!.since)));
      // What A sent B (placed chunks, answers) is what B got from A, and it is real: several chunks.
      assert.ok(aSeesB.sentBytes >= 2 * 262144, JSON.stringify(aSeesB));
      assert.equal(bSeesA.receivedBytes, aSeesB.sentBytes);
      assert.equal(bSeesA.sentBytes, aSeesB.receivedBytes);

      // Unpinning is a write: refused without the token.
      const anon = await fetch(`${a.url}/api/files/${cid}`, { method: "DELETE" });
      assert.equal(anon.status, 401);
      await anon.body?.cancel();
      const del = (c: string) =>
        fetch(`${a.url}/api/files/${c}`, {
          method: "DELETE",
          headers: { Authorization: `Bearer ${TOKEN}` },
        });
      const ok = await del(cid);
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { cid, pinned: false });
      const { files } = await (await fetch(`${a.url}/api/files`)).json();
      assert.equal(files.length, 0);
      const again = await del(cid);
      assert.equal(again.status, 404);
      assert.match((await again.json()).message, /is not pinned on this node/);
      const bad = await del("not-a-cid");
      assert.equal(bad.status, 400);
      await bad.body?.cancel();
    } finally {
      await b.stop();
      await a.stop();
      await Deno.remove(dirA, { recursive: true });
      await Deno.remove(dirB, { recursive: true });
    }
  },
});
