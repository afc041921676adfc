import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import fc from "fast-check";
import { generateHpkeKeyPair } from "../../src/market/hpke.ts";
import { intentId, type IntentTerms, signIntent } from "../../src/market/intent.ts";
import {
  checkSealed,
  openQuote,
  QUOTE_CIPHERTEXT_BYTES,
  QuoteError,
  type QuoteTerms,
  rankQuotes,
  sealQuote,
  signQuote,
} from "../../src/market/quote.ts";

const buyerKey = await generateKeyPair("Ed25519");
const buyer = peerIdFromPrivateKey(buyerKey).toString();
const sellerKey = await generateKeyPair("Ed25519");
const seller = peerIdFromPrivateKey(sellerKey).toString();
const keys = await generateHpkeKeyPair();
const wanted: IntentTerms = {
  topic: "books",
  item: "The Odyssey",
  specs: {},
  quantity: 3,
  maxPrice: "9000",
  currency: "wei",
  expiry: Date.now() + 3_600_000,
};
const intent = await signIntent(buyerKey, buyer, wanted, { key: keys.publicKey, addrs: [] });
const offer = (price = "7000", extra: Partial<QuoteTerms> = {}): QuoteTerms => ({
  item: "The Odyssey",
  quantity: 3,
  price,
  currency: "wei",
  terms: "ships in a box",
  deliveryTime: 86_400_000,
  validUntil: Date.now() + 600_000,
  ...extra,
});
const code = (c: string) => (e: unknown) => e instanceof QuoteError && e.code === c;
const b64 = (s: string) => atob(s);

Deno.test("a sealed quote opens with the intent's key and says nothing in the clear", async () => {
  const q = await signQuote(sellerKey, seller, intentId(intent), offer());
  const sealed = await sealQuote(q, intent);
  assert.deepEqual(await openQuote(sealed, intent, keys), q);
  // On the wire: the intent's ID (public), the ephemeral key and the ciphertext, nothing else. (Searching
  // the JSON itself for "7000" failed about once in a thousand runs: the intent's hex ID, or base64, can
  // hold those four characters by chance; the decoded bytes cannot, but for one chance in ~10^6.)
  assert.deepEqual(Object.keys(sealed).sort(), ["ct", "enc", "intent", "v"]);
  assert.equal(sealed.intent, intentId(intent));
  for (const secret of ["7000", "ships in a box", seller]) {
    assert.ok(!b64(sealed.ct).includes(secret) && !b64(sealed.enc).includes(secret), secret);
  }
  // Every sealed quote is the same size, whatever its terms.
  const long = await sealQuote(
    await signQuote(sellerKey, seller, intentId(intent), offer("1", { terms: "x".repeat(500) })),
    intent,
  );
  assert.equal(atob(long.ct).length, QUOTE_CIPHERTEXT_BYTES);
  assert.equal(atob(sealed.ct).length, QUOTE_CIPHERTEXT_BYTES);
});

Deno.test("refusals: sealed to another key, bad signature, lapsed, or not fitting the intent", async () => {
  const id = intentId(intent);
  // Sealed to another key (another intent of the same buyer, say): the buyer cannot open it.
  const otherKeys = await generateHpkeKeyPair();
  const otherIntent = await signIntent(buyerKey, buyer, wanted, {
    key: otherKeys.publicKey,
    addrs: [],
  });
  const q = await signQuote(sellerKey, seller, id, offer());
  const wrongKey = await sealQuote(
    await signQuote(sellerKey, seller, intentId(otherIntent), offer()),
    otherIntent,
  );
  await assert.rejects(openQuote({ ...wrongKey, intent: id }, intent, keys), code("quote_sealed"));
  await assert.rejects(
    openQuote(await sealQuote(q, intent), intent, otherKeys),
    code("quote_sealed"),
  );
  // Signed by someone else in the seller's name, or altered before sealing.
  const forger = await generateKeyPair("Ed25519");
  const forged = await signQuote(forger, seller, id, offer());
  await assert.rejects(
    openQuote(await sealQuote(forged, intent), intent, keys),
    code("quote_signature"),
  );
  await assert.rejects(
    openQuote(await sealQuote({ ...q, price: "6000" }, intent), intent, keys),
    code("quote_signature"),
  );
  // A flipped ciphertext byte.
  const s = await sealQuote(q, intent);
  const ct = Uint8Array.from(atob(s.ct), (c) => c.charCodeAt(0));
  ct[100]! ^= 1;
  await assert.rejects(
    openQuote({ ...s, ct: btoa(String.fromCharCode(...ct)) }, intent, keys),
    code("quote_sealed"),
  );
  // Lapsed.
  const lapsed = await signQuote(
    sellerKey,
    seller,
    id,
    offer("7000", { validUntil: Date.now() + 10 }),
  );
  await assert.rejects(
    openQuote(await sealQuote(lapsed, intent), intent, keys, Date.now() + 1000),
    code("quote_expired"),
  );
  // Above the maximum price, more than wanted, another currency.
  for (
    const t of [offer("9001"), offer("7000", { quantity: 4 }), offer("7000", { currency: "usd" })]
  ) {
    const m = await signQuote(sellerKey, seller, id, t);
    await assert.rejects(
      openQuote(await sealQuote(m, intent), intent, keys),
      code("quote_mismatch"),
    );
  }
});

Deno.test("malformed sealed quotes get quote_malformed (fuzzed)", async () => {
  const s = await sealQuote(await signQuote(sellerKey, seller, intentId(intent), offer()), intent);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.anything(),
        fc.tuple(fc.constantFrom("v", "intent", "enc", "ct", "x"), fc.anything()).map(([k, v]) => ({
          ...s,
          [k]: v,
        })),
      ),
      async (input) => {
        try {
          checkSealed(input);
          await openQuote(input, intent, keys);
        } catch (e) {
          assert.ok(e instanceof QuoteError, String(e));
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("ranking: price × (1 − weight × trust); weight 0 is price alone", async () => {
  const other = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
  const cheap = await signQuote(sellerKey, seller, intentId(intent), offer("7000"));
  const trusted = { ...cheap, seller: other, price: "8000" };
  const trust = (p: string) => (p === other ? 0.9 : 0.1);
  const ranked = rankQuotes([cheap, trusted], trust);
  // 8000 × (1 − 0.45) = 4400 beats 7000 × (1 − 0.05) = 6650.
  assert.deepEqual(ranked.map((r) => r.effective), [4400n, 6650n]);
  assert.equal(ranked[0]!.quote.seller, other);
  assert.equal(rankQuotes([cheap, trusted], trust, 0)[0]!.quote.seller, seller);
});
