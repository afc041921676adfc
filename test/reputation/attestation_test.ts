import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import fc from "fast-check";
import {
  ATTESTATION_TTL_MS,
  AttestationError,
  edgesOf,
  signAttestation,
  verifyAttestation,
} from "../../src/reputation/attestation.ts";

const key = await generateKeyPair("Ed25519");
const from = peerIdFromPrivateKey(key).toString();
const code = (c: string) => (e: unknown) => e instanceof AttestationError && e.code === c;
const about = [{ peer: "a", good: 40, bad: 2 }, { peer: "b", good: 0, bad: 9 }];

Deno.test("an attestation verifies through JSON and adds good − bad edges", async () => {
  const a = await signAttestation(key, from, about);
  const back = await verifyAttestation(JSON.parse(JSON.stringify(a)));
  assert.deepEqual(edgesOf(back), [
    { from, about: "a", satisfaction: 38 },
    { from, about: "b", satisfaction: -9 },
  ]);
});

Deno.test("a forged attestation (counts raised, another attester named) and a stale one are refused", async () => {
  const a = await signAttestation(key, from, about);
  await assert.rejects(
    verifyAttestation({ ...a, about: [{ peer: "a", good: 4000, bad: 0 }, about[1]] }),
    code("attestation_signature"),
  );
  const other = peerIdFromPrivateKey(await generateKeyPair("Ed25519")).toString();
  await assert.rejects(verifyAttestation({ ...a, from: other }), code("attestation_signature"));
  await assert.rejects(
    verifyAttestation(a, a.at + ATTESTATION_TTL_MS + 1),
    code("attestation_stale"),
  );
});

Deno.test("malformed attestations: attestation_malformed or a signature failure, nothing else (fuzzed)", async () => {
  await assert.rejects(
    verifyAttestation({ v: 1, from, at: 1, about: "x", sig: "AA==" }),
    code("attestation_malformed"),
  );
  await fc.assert(
    fc.asyncProperty(fc.anything(), async (input) => {
      try {
        await verifyAttestation(input);
      } catch (e) {
        assert.ok(e instanceof AttestationError, String(e));
      }
    }),
    { numRuns: 300 },
  );
});
