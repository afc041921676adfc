import assert from "node:assert/strict";
import { cidOf, DAG_JSON_CODE } from "../../src/content/cid.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import { type ProviderInfo, providerKey } from "../../src/mesh/dht.ts";
import {
  MemorySource,
  randomBytes,
  SANITIZE,
  startNode,
  stopNodes,
  waitFor,
  WS,
} from "./_helpers.ts";

Deno.test({
  ...SANITIZE,
  name: "DHT: a newcomer finds a provider through peers it knows, then fetches from it",
  fn: async () => {
    const bytes = randomBytes(4096);
    const cid = cidOf(bytes);
    const store = new MemorySource();
    await store.put(cid, bytes);
    const nodes: MeshNode[] = [];
    try {
      // A chain, each node bootstrapping from the one before (mixing TCP and WebSockets): no node starts out
      // knowing more than its neighbours; the DHT's self-lookups fill the routing tables from there.
      for (let i = 0; i < 5; i++) {
        const prev = nodes[i - 1];
        nodes.push(
          await startNode({
            ...(i % 2 === 1 ? { listen: [WS] } : {}),
            ...(prev ? { bootstrap: prev.multiaddrs() } : {}),
            ...(i === 1 ? { store } : {}),
          }),
        );
      }
      const provider = nodes[1]!;
      await waitFor(() => nodes.every((n) => n.routingTableSize() >= 2), "routing tables to fill");
      await provider.provide(cid, { signal: AbortSignal.timeout(10_000) });

      // The finder joins after the provide, through the far end of the chain only.
      const finder = await startNode({ bootstrap: nodes[4]!.multiaddrs() });
      nodes.push(finder);
      await waitFor(() => finder.routingTableSize() >= 1, "the finder's routing table");
      if (finder.connectedPeers().includes(provider.peerId)) {
        await finder.libp2p.hangUp(provider.libp2p.peerId);
      }
      assert.ok(!finder.connectedPeers().includes(provider.peerId));

      let found: ProviderInfo | undefined;
      for await (const p of finder.findProviders(cid, { signal: AbortSignal.timeout(10_000) })) {
        found = p;
        break;
      }
      assert.equal(found?.peerId, provider.peerId);
      assert.ok(found.multiaddrs.length > 0);
      assert.ok(found.multiaddrs.every((a) => a.startsWith("/ip4/127.0.0.1/")));
      // The record's addresses are enough to reach the provider and fetch the chunk.
      assert.deepEqual(await finder.fetchChunk(found, cid), bytes);
      assert.ok(finder.connectedPeers().includes(provider.peerId));

      // Content nobody provides: the lookup ends empty once every peer has answered.
      const t0 = performance.now();
      const none = [];
      for await (
        const p of finder.findProviders(cidOf(randomBytes(10)), {
          signal: AbortSignal.timeout(10_000),
        })
      ) {
        none.push(p);
      }
      assert.deepEqual(none, []);
      assert.ok(performance.now() - t0 < 5000);
    } finally {
      await stopNodes(...nodes);
    }
  },
});

Deno.test({
  name: "providerKey() is a sha2-256 key shared by every CID of the same content",
  fn: async () => {
    const bytes = randomBytes(100);
    const raw = cidOf(bytes);
    const json = cidOf(bytes, DAG_JSON_CODE);
    const key = await providerKey(raw);
    assert.equal(key.multihash.code, 0x12);
    assert.equal(key.multihash.size, 32);
    assert.ok(key.equals(await providerKey(json)));
    assert.ok(!key.equals(await providerKey(cidOf(randomBytes(100)))));
    assert.ok(!key.multihash.digest.every((b, i) => b === raw.multihash.digest[i]));
  },
});

Deno.test({
  ...SANITIZE,
  name:
    "provide() fails (provide_unreached) when no peer was sent the record, instead of succeeding",
  fn: async () => {
    const nodes: MeshNode[] = [];
    try {
      const peer = await startNode();
      nodes.push(peer);
      const node = await startNode({ bootstrap: peer.multiaddrs() });
      nodes.push(node);
      await waitFor(() => node.routingTableSize() >= 1, "the routing table");
      // The only peer it knows goes away: the walk reaches no one, and no ADD_PROVIDER is sent.
      await peer.stop();
      const cid = cidOf(randomBytes(64));
      await assert.rejects(
        node.provide(cid, { signal: AbortSignal.timeout(20_000) }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "provide_unreached", e.message);
          assert.match(e.message, /No peer was sent the provider record/);
          return true;
        },
      );
    } finally {
      await stopNodes(...nodes);
    }
  },
});
