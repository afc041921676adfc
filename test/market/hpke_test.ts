import assert from "node:assert/strict";
import { CipherSuite, DhkemX25519HkdfSha256, HkdfSha256 } from "@hpke/core";
import { Chacha20Poly1305 } from "@hpke/chacha20poly1305";
import {
  exportPrivateKey,
  generateHpkeKeyPair,
  importHpkeKeyPair,
  open,
  seal,
} from "../../src/market/hpke.ts";

// An independent RFC 9180 implementation, as the oracle.
const suite = new CipherSuite({
  kem: new DhkemX25519HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Chacha20Poly1305(),
});
const te = new TextEncoder();

Deno.test("HPKE: what this module seals @hpke/core opens, and the other way round", async () => {
  const info = te.encode("meshgate/quote/1 abc");
  const aad = te.encode("aad");
  const msg = te.encode("a quote for 4711 wei, in confidence");
  // Ours to theirs.
  const theirs = await suite.kem.generateKeyPair();
  const theirPub = new Uint8Array(await suite.kem.serializePublicKey(theirs.publicKey));
  const sealed = await seal(theirPub, msg, info, aad);
  const opened = await suite.open(
    { recipientKey: theirs.privateKey, enc: sealed.enc.slice().buffer as ArrayBuffer, info },
    sealed.ct.slice().buffer as ArrayBuffer,
    aad,
  );
  assert.deepEqual(new Uint8Array(opened), msg);
  // Theirs to ours.
  const ours = await generateHpkeKeyPair();
  const s = await suite.seal(
    {
      recipientPublicKey: await suite.kem.deserializePublicKey(ours.publicKey.slice().buffer),
      info,
    },
    msg,
    aad,
  );
  assert.deepEqual(
    await open(ours, { enc: new Uint8Array(s.enc), ct: new Uint8Array(s.ct) }, info, aad),
    msg,
  );
});

Deno.test("HPKE: another key, info, aad or a flipped bit do not open", async () => {
  const r = await generateHpkeKeyPair();
  const other = await generateHpkeKeyPair();
  const sealed = await seal(r.publicKey, te.encode("x"), te.encode("i"), te.encode("a"));
  await assert.rejects(open(other, sealed, te.encode("i"), te.encode("a")));
  await assert.rejects(open(r, sealed, te.encode("j"), te.encode("a")));
  await assert.rejects(open(r, sealed, te.encode("i"), te.encode("b")));
  const ct = sealed.ct.slice();
  ct[0]! ^= 1;
  await assert.rejects(open(r, { ...sealed, ct }, te.encode("i"), te.encode("a")));
  // A low-order point as the sender's key (all-zero shared secret) is refused.
  await assert.rejects(open(r, { enc: new Uint8Array(32), ct: sealed.ct }));
});

Deno.test("HPKE: a private key written down and read back opens the same messages", async () => {
  const r = await generateHpkeKeyPair();
  const again = await importHpkeKeyPair(await exportPrivateKey(r.privateKey));
  assert.deepEqual(again.publicKey, r.publicKey);
  const sealed = await seal(r.publicKey, te.encode("kept"));
  assert.deepEqual(await open(again, sealed), te.encode("kept"));
});
