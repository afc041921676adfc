/**
 * Stripe capture (issue 10, finding 1) with real libp2p peers on loopback: Sybil peers that answer every
 * `put` with `accepted: true` and store nothing are caught by the proof challenge, so the upload never
 * claims a durability they break; the challenge itself fails a truncated or missing copy; and diversity
 * groups cap how much of a stripe one address prefix or the new identities get.
 */
import assert from "node:assert/strict";
import { type CID, cidOf } from "../../src/content/cid.ts";
import { decodeManifest, stripeDataCount } from "../../src/content/manifest.ts";
import { chunkProof } from "../../src/mesh/exchange.ts";
import { addressPrefix, peerGroups } from "../../src/mesh/place.ts";
import { PeerTable, type StripeHolders, survivableLosses } from "../../src/mesh/placement.ts";
import { MeshgateNode } from "../../src/node.ts";
import { collect, pattern } from "../_util.ts";
import {
  margin,
  MemorySource,
  randomBytes,
  SANITIZE,
  startNode,
  stopNodes,
  subsets,
  TCP,
  waitFor,
} from "./_helpers.ts";

const KiB = 1024;

/** The attacker's store: says it keeps everything and holds nothing. */
const liar = {
  get: () => Promise.resolve(null),
  has: () => Promise.resolve(true),
  put: () => Promise.resolve(),
};

Deno.test({
  name:
    "prove: an honest holder's proof matches the uploader's copy; a truncated or missing one fails",
  ...SANITIZE,
  async fn() {
    const a = randomBytes(20 * KiB);
    const b = randomBytes(20 * KiB);
    const [ca, cb] = [cidOf(a), cidOf(b)];
    const honest = new MemorySource();
    await honest.put(ca, a);
    await honest.put(cb, b);
    // A holder that kept only part of the chunk (or a wrong copy): its store serves what it kept.
    const truncated = {
      get: (cid: CID) => Promise.resolve(cid.equals(ca) ? a.subarray(0, a.length - 1) : null),
      has: () => Promise.resolve(true),
      put: () => Promise.resolve(),
    };
    const [client, good, bad, empty] = await Promise.all([
      startNode(),
      startNode({ store: honest }),
      startNode({ store: truncated }),
      startNode({ store: liar }),
    ]);
    try {
      const nonce = crypto.getRandomValues(new Uint8Array(32));
      const [pa, pb] = await client.proveChunks(good.multiaddrs()[0]!, nonce, [ca, cb]);
      assert.deepEqual(pa, chunkProof(nonce, a));
      assert.deepEqual(pb, chunkProof(nonce, b));
      // Another nonce, another proof: an answer cannot be kept from an earlier challenge.
      const other = crypto.getRandomValues(new Uint8Array(32));
      assert.notDeepEqual(chunkProof(other, a), pa);

      const [ta, tb] = await client.proveChunks(bad.multiaddrs()[0]!, nonce, [ca, cb]);
      assert.ok(ta !== null && ta.length === 32);
      assert.notDeepEqual(ta, chunkProof(nonce, a), "a truncated copy fails");
      assert.equal(tb, null);
      assert.deepEqual(await client.proveChunks(empty.multiaddrs()[0]!, nonce, [ca]), [null]);

      await assert.rejects(
        client.proveChunks(good.peerId, new Uint8Array(8), [ca]),
        RangeError,
      );

      // Diversity groups of real connections: loopback has no prefix; a fresh connection is "new".
      assert.deepEqual(peerGroups(client)(good.peerId), ["new"]);
      assert.deepEqual(peerGroups(client, 0)(good.peerId), []);
      assert.deepEqual(
        peerGroups(client)(client.peerId),
        ["new"],
        "the uploader counts with the new",
      );
      assert.deepEqual(peerGroups(client, 0)("12D3KooWNotConnected"), ["new"]);
    } finally {
      await stopNodes(client, good, bad, empty);
    }
  },
});

Deno.test("addressPrefix: /24 and /48, none for loopback", () => {
  const c = (name: string, value: string) => [{ name, value }, { name: "tcp", value: "4001" }];
  assert.equal(addressPrefix(c("ip4", "203.0.113.7")), "ip4:203.0.113");
  assert.equal(addressPrefix(c("ip4", "127.0.0.1")), undefined);
  assert.equal(addressPrefix(c("ip6", "2001:db8:abcd:12::1")), "ip6:2001:db8:abcd");
  assert.equal(addressPrefix(c("ip6", "2001:db8::1")), "ip6:2001:db8:0");
  assert.equal(addressPrefix(c("ip6", "::1")), undefined);
  assert.equal(addressPrefix(c("ip6", "::ffff:198.51.100.9")), "ip4:198.51.100");
  assert.equal(addressPrefix([{ name: "dns4", value: "example.com" }]), undefined);
});

Deno.test("placeStripe with groups: one prefix, or the new identities, get at most m of a stripe", () => {
  const chunks = Array.from({ length: 24 }, (_, i) => cidOf(pattern(i * 64, 64, 7)));
  const old = Array.from({ length: 8 }, (_, i) => `old-${i}`);
  const fresh = Array.from({ length: 4 }, (_, i) => `new-${i}`);
  const table = new PeerTable([...old, ...fresh]);
  const count = (plan: string[][], who: (p: string) => boolean) =>
    plan.filter((hs) => hs.length === 1 && who(hs[0]!)).length;
  const isNew = (p: string) => p.startsWith("new");

  const plain = table.placeStripe(chunks, { m: 4 });
  assert.equal(count(plain, isNew), 8, "without groups, an even spread: 2 each");
  const aged = table.placeStripe(chunks, { m: 4, groups: (p) => isNew(p) ? ["new"] : [] });
  assert.ok(count(aged, isNew) <= 4, "the new identities together: at most m");
  assert.ok(aged.every((hs) => hs.length === 1), "the 8 old peers take the rest without copies");

  // Six peers in one /24, six elsewhere: the /24 may be sole holder of at most m.
  const net = (p: string) => ["old-0", "old-1", "old-2", "old-3", "old-4", "old-5"].includes(p);
  const spread = table.placeStripe(chunks, { m: 4, groups: (p) => net(p) ? ["ip4:10.0.0"] : [] });
  assert.ok(count(spread, net) <= 4);

  // Everyone new (a fresh mesh): the cap is the whole stripe, the plan as without groups.
  assert.deepEqual(table.placeStripe(chunks, { m: 4, groups: () => ["new"] }), plain);
});

/** The holders (by peer ID) of every block of the file, as their stores say. */
async function onDisk(nodes: MeshgateNode[], root: CID): Promise<StripeHolders[]> {
  const manifest = decodeManifest((await nodes[0]!.store.get(root))!);
  const where = async (cid: CID) => {
    const has = await Promise.all(nodes.map((n) => n.store.has(cid)));
    return nodes.filter((_, i) => has[i]).map((n) => n.mesh!.peerId);
  };
  return [
    { need: 1, holders: [await where(root)] },
    ...await Promise.all(manifest.stripes.map(async (stripe, s) => ({
      need: stripeDataCount(manifest, s),
      holders: await Promise.all(stripe.map(where)),
    }))),
  ];
}

Deno.test({
  name:
    "3 Sybils that accept and store nothing, among 8 honest peers: the upload's durability holds, the file reads after the worst losses",
  // MeshgateNode's store and libp2p timers are checked by the node's own tests.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-capture-" });
    const meshgate = (name: string) =>
      MeshgateNode.create({
        dataDir: `${dir}/${name}`,
        parityWorkers: 0,
        findTimeoutMs: 10_000,
        mesh: { listen: [TCP] },
      });
    const honest = await Promise.all(Array.from({ length: 8 }, (_, i) => meshgate(`h${i}`)));
    const sybils = await Promise.all(Array.from({ length: 3 }, () => startNode({ store: liar })));
    const up = await meshgate("up");
    const running = new Set<MeshgateNode>([up, ...honest]);
    let reader: MeshgateNode | undefined;
    try {
      const others = [...honest.map((n) => n.mesh!), ...sybils];
      await Promise.all(others.map((p) => up.mesh!.connect(p.multiaddrs()[0]!)));
      await waitFor(() => up.mesh!.connectedPeers().length === 11, "the uploader's connections");

      // 40 chunks of 16 KiB: two stripes of 20+4, spread 2 per holder over 12: 6 positions of each on
      // Sybils, more than the 4 a stripe can lose.
      const bytes = pattern(0, 40 * 16 * KiB, 5);
      const put = await up.put(new Blob([bytes]).stream(), { chunkSize: 16 * KiB, name: "s.bin" });
      const claimed = put.durability.survives;
      console.log(`durability: ${JSON.stringify(put.durability)}`);

      // What the answer claims holds for what the stores really have: the Sybils hold nothing.
      const placement = await onDisk([up, ...honest], put.cid);
      assert.ok(
        survivableLosses(placement) >= claimed,
        `claims survives ${claimed}; the stores survive ${survivableLosses(placement)}`,
      );
      if (claimed === 0) assert.match(put.durability.warning!, /could not prove/);
      else assert.match(put.durability.warning ?? "", /could not prove/);

      // Lose the worst `claimed` holders (the uploader among the candidates), then read elsewhere.
      const ids = [up, ...honest].map((n) => n.mesh!.peerId);
      let victims: string[] = [];
      let worst = Infinity;
      for (const set of subsets(ids, claimed)) {
        const left = margin(placement, new Set(set));
        if (left < worst) [worst, victims] = [left, set];
      }
      assert.ok(worst >= 0);
      const lost = [up, ...honest].filter((n) => victims.includes(n.mesh!.peerId));
      await Promise.all(lost.map((n) => (running.delete(n), n.stop())));

      reader = await meshgate("reader");
      const left = [...honest.filter((n) => running.has(n)).map((n) => n.mesh!), ...sybils];
      await Promise.all(left.map((p) => reader!.mesh!.connect(p.multiaddrs()[0]!)));
      const manifest = await reader.manifest(put.cid);
      assert.deepEqual(await collect(reader.read(manifest)), bytes);
    } finally {
      await reader?.stop();
      await Promise.all([...running].map((n) => n.stop()));
      await stopNodes(...sybils);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "only Sybils around: the upload keeps every chunk and says it survives no loss",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-capture-alone-" });
    const sybils = await Promise.all(Array.from({ length: 3 }, () => startNode({ store: liar })));
    const up = await MeshgateNode.create({
      dataDir: dir,
      parityWorkers: 0,
      mesh: { listen: [TCP] },
    });
    try {
      await Promise.all(sybils.map((p) => up.mesh!.connect(p.multiaddrs()[0]!)));
      const bytes = pattern(0, 24 * 4 * KiB, 9);
      const put = await up.put(new Blob([bytes]).stream(), { chunkSize: 4 * KiB });
      assert.equal(put.durability.survives, 0);
      assert.equal(put.durability.holders, 1);
      assert.match(put.durability.warning!, /3 peers accepted chunks but could not prove/);
      for (const cid of put.manifest.stripes.flat()) assert.ok(await up.store.has(cid), `${cid}`);
      assert.equal(up.stats().placed, 0);
    } finally {
      await up.stop();
      await stopNodes(...sybils);
      await Deno.remove(dir, { recursive: true });
    }
  },
});
