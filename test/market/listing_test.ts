import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { generateHpkeKeyPair } from "../../src/market/hpke.ts";
import { signIntent } from "../../src/market/intent.ts";
import { ListingError, Listings, matchIntent, priceFor } from "../../src/market/listing.ts";

const key = await generateKeyPair("Ed25519");
const buyer = peerIdFromPrivateKey(key).toString();
const { publicKey } = await generateHpkeKeyPair();
const intent = await signIntent(key, buyer, {
  topic: "storage",
  item: "GiB-month",
  specs: { region: "eu" },
  quantity: 100,
  maxPrice: "1000",
  currency: "wei",
  expiry: Date.now() + 60_000,
}, { key: publicKey, addrs: [] });

Deno.test("price rule: unit price, volume tiers from a quantity on", () => {
  const rule = { unit: "10", tiers: [{ from: 50, unit: "8" }, { from: 100, unit: "7" }] };
  assert.equal(priceFor(rule, 10), 100n);
  assert.equal(priceFor(rule, 50), 400n);
  assert.equal(priceFor(rule, 100), 700n);
});

Deno.test("a listing matches an intent it can fill, and no other", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const listings = new Listings(dir);
    const base = {
      topic: "storage",
      item: "GiB-month",
      specs: { region: "eu", disk: "ssd" },
      stock: 500,
      currency: "wei",
      price: { unit: "9" },
    };
    const ok = listings.add(base);
    const terms = matchIntent(ok, intent)!;
    assert.equal(terms.price, "900");
    assert.ok(terms.validUntil <= intent.expiry);
    for (
      const other of [
        { ...base, price: { unit: "11" } }, // above the maximum
        { ...base, stock: 99 }, // not enough
        { ...base, specs: { region: "us" } }, // another property
        { ...base, currency: "usd" },
        { ...base, item: "GiB-day" },
      ]
    ) assert.equal(matchIntent(listings.add(other), intent), null, JSON.stringify(other));
    assert.deepEqual(listings.matches(intent).map((m) => m.listing.id), [ok.id]);
    // Kept on the seller's disk, and read back.
    assert.equal(new Listings(dir).all().length, 6);
    assert.throws(() => listings.add({ ...base, price: { unit: "-1" } }), ListingError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
