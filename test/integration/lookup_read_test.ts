/**
 * `GET /mesh/<cid>?lookup=paid&via=<operator>` on a light client (it knows only the operator): every block
 * it lacks is found through the operator's paid lookups (`serve --lookup --price-lookups`), read from the
 * holder the record names, and paid per delivered lookup on the client's channel to the operator; the node
 * wiring (MeshgateNode with a chain, the gateway's query) end to end on anvil and real loopback sockets.
 */
import assert from "node:assert/strict";
import { createGateway } from "../../edge/app.ts";
import { MeshgateNode } from "../../src/node.ts";
import { payAccount } from "../../src/pay/mod.ts";
import { startDevnet } from "../../src/pay/devnet.ts";

const TCP = "/ip4/127.0.0.1/tcp/0";
const PER_1000 = 2_000_000_000_000n;

Deno.test({
  name: "a light client reads a file through paid lookups (?lookup=paid&via=) and pays each one",
  sanitizeOps: false, // the pay layer's AbortSignal.timeout timers and viem's keep-alive sockets
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-lookup-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    const nodes: MeshgateNode[] = [];
    try {
      // The holder uploads alone (it keeps every block), then joins the operator and announces them.
      const holder = await MeshgateNode.create({
        dataDir: `${dir}/holder`,
        mesh: { listen: [TCP] },
        parityWorkers: 0,
      });
      nodes.push(holder);
      const bytes = new Uint8Array(600_000);
      for (let i = 0; i < bytes.length; i += 65536) {
        crypto.getRandomValues(bytes.subarray(i, i + 65536));
      }
      const { cid, manifest } = await holder.put(ReadableStream.from([bytes]), { name: "f.bin" });
      const blocks = 1 + new Set(manifest.stripes.flat().map(String)).size;

      const operator = await MeshgateNode.create({
        dataDir: `${dir}/operator`,
        chain: devnet.config,
        pay: { account: payAccount("dev:1"), log: false },
        offer: { per1000Lookups: PER_1000 },
        serveLookups: true,
        mesh: { listen: [TCP], bootstrap: [holder.mesh!.multiaddrs()[0]!] },
        parityWorkers: 0,
      });
      nodes.push(operator);
      assert.ok(operator.delivery?.desk, "a desk takes the lookup payments, deliveries being free");
      const deadline = Date.now() + 30_000;
      while ((holder.announcements!.stats().provided) < blocks) {
        assert.ok(Date.now() < deadline, "the holder announces its blocks");
        await new Promise((r) => setTimeout(r, 100));
      }

      const client = await MeshgateNode.create({
        dataDir: `${dir}/client`,
        chain: devnet.config,
        pay: { account: payAccount("dev:2"), log: false },
        mesh: { listen: [TCP], bootstrap: [operator.mesh!.multiaddrs()[0]!] },
        parityWorkers: 0,
      });
      nodes.push(client);
      assert.deepEqual(client.mesh!.connectedPeers(), [operator.mesh!.peerId]);
      const gateway = createGateway(client);
      const bad = await gateway.app.fetch(new Request(`http://x/mesh/${cid}?lookup=maybe`));
      assert.equal(bad.status, 400);
      const res = await gateway.app.fetch(
        new Request(`http://x/mesh/${cid}?lookup=paid&via=${operator.mesh!.peerId}`),
      );
      assert.equal(res.status, 200, await res.clone().text());
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
      await client.lookups!.settle();
      const asked = client.lookups!.stats();
      const answered = operator.lookups!.stats();
      const dataChunks = Math.ceil(bytes.length / manifest.chunkSize);
      assert.ok(asked.delivered >= 1 + dataChunks, `lookups delivered: ${asked.delivered}`);
      assert.equal(asked.failed, 0);
      assert.equal(answered.paid, asked.delivered, "every delivered lookup paid, once");
      const price = (PER_1000 + 999n) / 1000n;
      assert.equal(answered.earnedWei, price * BigInt(asked.delivered));
      const inbound = operator.delivery!.summary().channels.find((c) =>
        c.direction === "in" && c.peer === client.mesh!.peerId
      );
      assert.equal(
        inbound?.direction === "in" && inbound.earnedWei,
        price * BigInt(asked.delivered),
      );
      assert.equal(client.reputation!.book.score(operator.mesh!.peerId).factors.lookup, 1);
    } finally {
      for (const n of nodes.reverse()) await n.stop().catch(() => {});
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
