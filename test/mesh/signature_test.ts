import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { signTagged, verifyTagged } from "../../src/mesh/signature.ts";

const te = new TextEncoder();

Deno.test("signTagged gives libp2p's own Ed25519 signature; verifyTagged takes it and nothing else", async () => {
  const key = await generateKeyPair("Ed25519");
  const other = await generateKeyPair("Ed25519");
  const peer = peerIdFromPrivateKey(key).toString();
  const domain = te.encode("meshgate/test/1\n"), body = te.encode("some body");
  for (let i = 0; i < 3; i++) { // the cached keys give the same bytes every time
    const sig = await signTagged(key, domain, body);
    const libp2p = await key.sign(new Uint8Array([...domain, ...body]));
    assert.equal(sig, btoa(String.fromCharCode(...libp2p)));
    assert.ok(await verifyTagged(peer, domain, body, sig));
    assert.ok(await key.publicKey.verify(new Uint8Array([...domain, ...body]), libp2p));
  }
  const sig = await signTagged(key, domain, body);
  assert.ok(!await verifyTagged(peer, domain, te.encode("another body"), sig));
  assert.ok(!await verifyTagged(peer, te.encode("another/1\n"), body, sig));
  assert.ok(!await verifyTagged(peerIdFromPrivateKey(other).toString(), domain, body, sig));
  assert.ok(!await verifyTagged(peer, domain, body, sig.slice(4)));
  assert.ok(!await verifyTagged(peer, domain, body, "not base64!"));
});
