import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import fc from "fast-check";
import { generateHpkeKeyPair } from "../../src/market/hpke.ts";
import {
  checkGossip,
  decodeIntent,
  decodeIntentRecord,
  encodeGossip,
  encodeIntent,
  encodeIntentRecord,
  gossipTopic,
  type Intent,
  IntentError,
  intentId,
  intentRecordKey,
  intentRecordSelector,
  intentRecordValidator,
  type IntentTerms,
  MAX_INTENT_BYTES,
  signIntent,
  signIntentRecord,
  signWithdrawal,
  verifyIntent,
  verifyWithdrawal,
} from "../../src/market/intent.ts";

const key = await generateKeyPair("Ed25519");
const buyer = peerIdFromPrivateKey(key).toString();
const other = await generateKeyPair("Ed25519");
const otherPeer = peerIdFromPrivateKey(other).toString();
const { publicKey: sealKey } = await generateHpkeKeyPair();
const terms = (expiry = Date.now() + 3_600_000): IntentTerms => ({
  topic: "storage",
  item: "1 TiB-month",
  specs: { region: "eu", redundancy: "3" },
  quantity: 2,
  maxPrice: "5000000",
  currency: "wei",
  expiry,
});
const reach = { key: sealKey, addrs: ["/ip4/127.0.0.1/tcp/4001"] };
const code = (c: string) => (e: unknown) => e instanceof IntentError && e.code === c;

Deno.test("a signed intent verifies, through its encoding too; its ID is stable", async () => {
  const i = await signIntent(key, buyer, terms(), reach);
  assert.deepEqual(await decodeIntent(encodeIntent(i)), i);
  assert.match(intentId(i), /^[0-9a-f]{64}$/);
  assert.equal(intentId(structuredClone(i)), intentId(i));
});

Deno.test("a forged, altered or expired intent is refused with the reason", async () => {
  const i = await signIntent(key, buyer, terms(), reach);
  // Signed by someone else in the buyer's name.
  const forged = await signIntent(other, buyer, terms(), reach);
  await assert.rejects(verifyIntent(forged), code("intent_signature"));
  await assert.rejects(verifyIntent({ ...i, maxPrice: "9000000" }), code("intent_signature"));
  await assert.rejects(verifyIntent({ ...i, buyer: otherPeer }), code("intent_signature"));
  const short = await signIntent(key, buyer, terms(Date.now() + 50), reach);
  await assert.rejects(verifyIntent(short, Date.now() + 1000), code("intent_expired"));
  await assert.rejects(
    signIntent(key, buyer, terms(Date.now() + 8 * 86_400_000), reach),
    code("intent_malformed"),
  );
});

Deno.test("malformed intents get intent_malformed, never another error (fuzzed)", async () => {
  const i = await signIntent(key, buyer, terms(), reach);
  for (
    const bad of [
      null,
      [],
      "x",
      { ...i, v: 2 },
      { ...i, extra: 1 },
      { ...i, quantity: 0 },
      { ...i, quantity: 1.5 },
      { ...i, maxPrice: "-1" },
      { ...i, maxPrice: "01" },
      { ...i, specs: { "a b": "x" } },
      { ...i, specs: { a: 1 } },
      { ...i, addrs: ["not a multiaddr"] },
      { ...i, key: "AAAA" },
      { ...i, topic: "" },
      { ...i, item: "x\u0000" },
      { ...i, expiry: i.at },
    ]
  ) {
    await assert.rejects(verifyIntent(bad), code("intent_malformed"), JSON.stringify(bad));
  }
  await assert.rejects(decodeIntent(new Uint8Array([0xff, 0xfe])), code("intent_malformed"));
  await assert.rejects(
    decodeIntent(new Uint8Array(MAX_INTENT_BYTES + 1)),
    code("intent_malformed"),
  );
  const keys = Object.keys(i);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.anything(),
        fc.record(Object.fromEntries(keys.map((k) => [k, fc.anything()]))),
        // The real intent with one field replaced by anything.
        fc.tuple(fc.constantFrom(...keys), fc.anything()).map(([k, v]) => ({ ...i, [k]: v })),
      ),
      async (input) => {
        try {
          await verifyIntent(input);
        } catch (e) {
          assert.ok(e instanceof IntentError, String(e));
        }
      },
    ),
    { numRuns: 400 },
  );
  await fc.assert(
    fc.asyncProperty(fc.uint8Array({ maxLength: 600 }), async (bytes) => {
      await assert.rejects(decodeIntent(bytes), (e) => e instanceof IntentError);
    }),
    { numRuns: 200 },
  );
});

Deno.test("gossip: an intent under its own topic passes; forged, expired or off-topic ones do not", async () => {
  const i = await signIntent(key, buyer, terms(), reach);
  const topic = gossipTopic("storage");
  assert.deepEqual(await checkGossip(encodeGossip({ intent: i }), topic), { intent: i });
  await assert.rejects(checkGossip(encodeGossip({ intent: i }), gossipTopic("books")));
  const forged = await signIntent(other, buyer, terms(), reach);
  await assert.rejects(
    checkGossip(encodeGossip({ intent: forged }), topic),
    code("intent_signature"),
  );
  const short = await signIntent(key, buyer, terms(Date.now() + 50), reach);
  await assert.rejects(
    checkGossip(encodeGossip({ intent: short }), topic, Date.now() + 1000),
    code("intent_expired"),
  );
  const w = await signWithdrawal(key, buyer, intentId(i));
  assert.deepEqual(await checkGossip(encodeGossip({ withdraw: w }), topic), { withdraw: w });
  await assert.rejects(verifyWithdrawal({ ...w, buyer: otherPeer }), code("intent_signature"));
});

Deno.test("DHT record: the validator takes a buyer's record only under its key; expired intents drop; the newest wins", async () => {
  const a = await signIntent(key, buyer, terms(), reach);
  const b = await signIntent(key, buyer, { ...terms(Date.now() + 200), item: "short" }, reach);
  const r1 = await signIntentRecord(key, buyer, "storage", [a, b], Date.now() - 10);
  await intentRecordValidator(intentRecordKey("storage", buyer), encodeIntentRecord(r1));
  await assert.rejects(
    intentRecordValidator(intentRecordKey("storage", otherPeer), encodeIntentRecord(r1)),
    code("intent_signature"),
  );
  await assert.rejects(
    intentRecordValidator(intentRecordKey("books", buyer), encodeIntentRecord(r1)),
    code("intent_signature"),
  );
  // Readers skip the expired intent.
  const later = await decodeIntentRecord(encodeIntentRecord(r1), Date.now() + 1000);
  assert.deepEqual(later.intents.map(intentId), [intentId(a)]);
  // A record of only expired intents is refused.
  const dead = await signIntentRecord(key, buyer, "storage", [b], Date.now() - 10);
  await assert.rejects(
    decodeIntentRecord(encodeIntentRecord(dead), Date.now() + 1000),
    code("intent_expired"),
  );
  // Someone else's record in the buyer's name, or someone else's intent in the buyer's record.
  const forged = await signIntentRecord(other, buyer, "storage", [a]);
  await assert.rejects(decodeIntentRecord(encodeIntentRecord(forged)), code("intent_signature"));
  const theirs = await signIntent(other, otherPeer, terms(), reach);
  const mixed = await signIntentRecord(key, buyer, "storage", [a]);
  mixed.intents.push(theirs);
  await assert.rejects(decodeIntentRecord(encodeIntentRecord(mixed)));
  // The newest record (withdrawn b, say) wins over an older copy.
  const r2 = await signIntentRecord(key, buyer, "storage", [a]);
  const k = intentRecordKey("storage", buyer);
  assert.equal(
    intentRecordSelector(k, [encodeIntentRecord(r1), new Uint8Array([1]), encodeIntentRecord(r2)]),
    2,
  );
});

Deno.test("every intent field is one the buyer signed: Intent has no unsigned part", async () => {
  const i: Intent = await signIntent(key, buyer, terms(), reach);
  for (const k of Object.keys(i) as (keyof Intent)[]) {
    if (k === "sig" || k === "v") continue;
    const changed = {
      ...i,
      [k]: k === "addrs"
        ? []
        : k === "specs"
        ? {}
        : typeof i[k] === "number"
        ? (i[k] as number) + 1
        : k === "key"
        ? btoa(String.fromCharCode(...new Uint8Array(32)))
        : k === "maxPrice"
        ? "1"
        : k === "buyer"
        ? otherPeer
        : `${i[k]}x`,
    };
    await assert.rejects(
      verifyIntent(changed),
      (e) => e instanceof IntentError && e.code !== "intent_malformed",
      k,
    );
  }
});
