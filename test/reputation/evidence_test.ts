import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import fc from "fast-check";
import { cidOf } from "../../src/content/cid.ts";
import {
  checkFraudProof,
  EvidenceError,
  fraudProof,
  signDelivery,
  signedHashMatches,
  verifyDelivery,
} from "../../src/reputation/evidence.ts";

const key = await generateKeyPair("Ed25519");
const peer = peerIdFromPrivateKey(key).toString();
const other = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
const bytes = crypto.getRandomValues(new Uint8Array(4096));
const cid = cidOf(bytes);
const wrong = bytes.slice();
wrong[0]! ^= 1;

const code = (c: string) => (e: unknown) => e instanceof EvidenceError && e.code === c;

Deno.test("a signed honest delivery verifies and is no proof of fraud", async () => {
  const d = await signDelivery(key, cid, bytes);
  await verifyDelivery(peer, cid, d);
  assert.ok(signedHashMatches(cid, d));
  await assert.rejects(checkFraudProof(fraudProof(peer, cid, d)), code("evidence_not_fraud"));
});

Deno.test("a signed delivery of wrong bytes is a proof anyone can check with the peer ID alone", async () => {
  const d = await signDelivery(key, cid, wrong);
  assert.ok(!signedHashMatches(cid, d));
  const proof = JSON.parse(JSON.stringify(fraudProof(peer, cid, d)));
  const checked = await checkFraudProof(proof);
  assert.equal(checked.peer, peer);
  assert.equal(checked.cid, cid.toString());
  assert.ok(JSON.stringify(proof).length < 400, `${JSON.stringify(proof).length} bytes`);
});

Deno.test("forged proofs are refused: another peer named, hash, time or CID changed, signature cut", async () => {
  const d = await signDelivery(key, cid, wrong);
  const good = fraudProof(peer, cid, d);
  const flip = (h: string) => (h[0] === "0" ? "1" : "0") + h.slice(1);
  for (
    const forged of [
      { ...good, peer: other },
      { ...good, hash: flip(good.hash) },
      { ...good, at: good.at + 1 },
      { ...good, cid: cidOf(wrong).toString() },
      { ...good, sig: good.sig.slice(0, -8) + "AAAAAAA=" },
    ]
  ) {
    await assert.rejects(
      checkFraudProof(forged),
      code("evidence_signature"),
      JSON.stringify(forged),
    );
  }
});

Deno.test("malformed proofs get a clear evidence_malformed (fuzzed: nothing else is ever thrown)", async () => {
  for (const bad of [null, 1, "x", {}, { v: 1, kind: "bad_bytes" }, { v: 2 }]) {
    await assert.rejects(checkFraudProof(bad), code("evidence_malformed"));
  }
  const d = await signDelivery(key, cid, wrong);
  const good = fraudProof(peer, cid, d);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.anything(),
        fc.record({
          v: fc.constantFrom(1, 2),
          kind: fc.constantFrom("bad_bytes", "x"),
          peer: fc.oneof(fc.constant(peer), fc.string()),
          cid: fc.oneof(fc.constant(good.cid), fc.string()),
          hash: fc.oneof(fc.constant(good.hash), fc.string()),
          at: fc.oneof(fc.constant(good.at), fc.integer(), fc.double()),
          sig: fc.oneof(fc.constant(good.sig), fc.string(), fc.base64String()),
        }),
      ),
      async (input) => {
        try {
          await checkFraudProof(input);
        } catch (e) {
          assert.ok(e instanceof EvidenceError, String(e));
        }
      },
    ),
    { numRuns: 300 },
  );
});
