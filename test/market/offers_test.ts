import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import fc from "fast-check";
import {
  decodeOffer,
  encodeOffer,
  OFFER_NAMESPACE,
  OfferError,
  offerKey,
  offerSelector,
  type OfferTerms,
  offerValidator,
  signOffer,
  verifyOffer,
} from "../../src/market/offers.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { startNode, stopNodes, waitFor } from "../mesh/_helpers.ts";

const key = await generateKeyPair("Ed25519");
const peer = peerIdFromPrivateKey(key).toString();
const terms = (validUntil = Date.now() + 3_600_000): OfferTerms => ({
  prices: {
    servedPerGiB: "1073741824000000000",
    storedPerGiBMonth: "5000000000000000",
    per1000Lookups: "1000000000000",
    relayedPerGiB: "0",
  },
  capacityBytes: 10 * 2 ** 30,
  payout: { chainId: 31337, address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8" },
  validUntil,
});
const code = (c: string) => (e: unknown) => e instanceof OfferError && e.code === c;

Deno.test("a signed offer verifies, through its encoding too; a volunteer's has no payout", async () => {
  const o = await signOffer(key, peer, terms());
  assert.deepEqual(await verifyOffer(decodeOffer(encodeOffer(o))), o);
  const free = await signOffer(key, peer, { ...terms(), payout: null });
  await verifyOffer(free);
});

Deno.test("a changed price, another peer's name, an expired or too long offer are refused with the reason", async () => {
  const o = await signOffer(key, peer, terms());
  await assert.rejects(
    verifyOffer({ ...o, prices: { ...o.prices, servedPerGiB: "1" } }),
    code("offer_signature"),
  );
  const other = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
  await assert.rejects(verifyOffer({ ...o, peer: other }), code("offer_signature"));
  const old = await signOffer(key, peer, terms(Date.now() + 10), Date.now());
  await assert.rejects(verifyOffer(old, Date.now() + 1000), code("offer_expired"));
  const long = await signOffer(key, peer, terms(Date.now() + 30 * 86_400_000));
  await assert.rejects(verifyOffer(long), code("offer_malformed"));
});

Deno.test("malformed offers get offer_malformed, never another error (fuzzed)", async () => {
  const o = await signOffer(key, peer, terms());
  for (
    const bad of [null, [], "x", { ...o, v: 2 }, { ...o, extra: 1 }, {
      ...o,
      prices: { ...o.prices, relayedPerGiB: "-1" },
    }]
  ) {
    await assert.rejects(verifyOffer(bad), code("offer_malformed"), JSON.stringify(bad));
  }
  assert.throws(() => decodeOffer(new Uint8Array([0xff, 0xfe])), code("offer_malformed"));
  assert.throws(() => decodeOffer(new Uint8Array(4096)), code("offer_malformed"));
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.anything(),
        fc.record({ ...Object.fromEntries(Object.keys(o).map((k) => [k, fc.anything()])) }),
      ),
      async (input) => {
        try {
          await verifyOffer(input);
        } catch (e) {
          assert.ok(e instanceof OfferError, String(e));
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("the DHT validator takes an offer only under its own peer's key; the selector takes the newest", async () => {
  const o = await signOffer(key, peer, terms(), Date.now() - 1000);
  await offerValidator(offerKey(peer), encodeOffer(o));
  const other = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
  await assert.rejects(offerValidator(offerKey(other), encodeOffer(o)), code("offer_signature"));
  const newer = await signOffer(key, peer, terms(), Date.now());
  assert.equal(
    offerSelector(offerKey(peer), [encodeOffer(o), new Uint8Array([1]), encodeOffer(newer)]),
    2,
  );
});

Deno.test({
  name:
    "an offer put in the mesh DHT is found by another node; a forged one is refused by the peers",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dht = {
      validators: { [OFFER_NAMESPACE]: offerValidator },
      selectors: { [OFFER_NAMESPACE]: offerSelector },
    };
    const dir = await Deno.makeTempDir({ prefix: "meshgate-offer-" });
    const nodes = [
      await startNode({ dht }),
      await startNode({ dht, dataDir: dir }),
      await startNode({ dht }),
    ];
    try {
      for (const n of nodes.slice(1)) await n.connect(nodes[0]!.multiaddrs()[0]!);
      await nodes[2]!.connect(nodes[1]!.multiaddrs()[0]!);
      await waitFor(
        () => nodes.every((n) => n.libp2p.getPeers().length >= 2),
        "each node to know the others",
      );
      const operator = nodes[1]!;
      const own = await loadOrCreatePrivateKey(dir); // the node's identity key
      const offer = await signOffer(own, operator.peerId, terms());
      for await (
        const _ of operator.libp2p.services.dht.put(offerKey(operator.peerId), encodeOffer(offer))
      ) {
        // drain the query
      }
      let found: unknown;
      for await (const e of nodes[2]!.libp2p.services.dht.get(offerKey(operator.peerId))) {
        if (e.name === "VALUE") found = decodeOffer(e.value);
      }
      assert.deepEqual(await verifyOffer(found), offer);
      // A forged offer (someone else's key under the operator's name) is refused by every peer it is sent to.
      const forged = await signOffer(key, operator.peerId, { ...terms(), payout: null });
      for await (
        const _ of nodes[2]!.libp2p.services.dht.put(offerKey(operator.peerId), encodeOffer(forged))
      ) {
        // each peer's validator refuses it
      }
      for await (const e of nodes[0]!.libp2p.services.dht.get(offerKey(operator.peerId))) {
        if (e.name === "VALUE") {
          assert.deepEqual(decodeOffer(e.value), offer, "the real offer stands");
        }
      }
    } finally {
      await stopNodes(...nodes);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("a relay's offer states its limits, signed; limits that are not positive whole numbers are refused", async () => {
  const relay = {
    maxReservations: 64,
    reservationSeconds: 3600,
    circuitBytes: 2 ** 30,
    circuitSeconds: 600,
  };
  const o = await signOffer(key, peer, { ...terms(), relay });
  assert.deepEqual((await verifyOffer(decodeOffer(encodeOffer(o)))).relay, relay);
  await assert.rejects(
    verifyOffer({ ...o, relay: { ...relay, maxReservations: 65 } }),
    code("offer_signature"),
  );
  for (
    const bad of [{ ...relay, circuitBytes: 0 }, { ...relay, extra: 1 }, { maxReservations: 1 }]
  ) {
    await assert.rejects(
      signOffer(key, peer, { ...terms(), relay: bad as typeof relay }),
      (e: unknown) => code("offer_malformed")(e) && /relay must be/.test((e as Error).message),
    );
  }
});
