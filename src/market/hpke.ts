/**
 * HPKE base mode (RFC 9180 §5.1.1) for one suite only: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
 * ChaCha20-Poly1305 (kem 0x0020, kdf 0x0001, aead 0x0003), single-shot seal and open (sequence 0).
 *
 * Why not `@hpke/core`: it runs every HMAC of the key schedule through async WebCrypto (import a key, sign),
 * a dozen awaits per message, which kept it under 2,000 seals a second here. This module keeps X25519 in
 * WebCrypto (native in Deno) and does HKDF (`@noble/hashes`) and the AEAD (`@noble/ciphers`) synchronously;
 * the tests check it against `@hpke/core` in both directions, so it is the same RFC 9180, not a look-alike.
 *
 * @module
 */
import { chacha20poly1305 } from "@noble/ciphers/chacha.js";
import { expand, extract } from "@noble/hashes/hkdf.js";
import { sha256 } from "@noble/hashes/sha2.js";

const te = new TextEncoder();
const concat = (...parts: Uint8Array[]): Uint8Array<ArrayBuffer> => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
};
const i2osp2 = (n: number) => new Uint8Array([n >> 8, n & 0xff]);

const KEM_SUITE = concat(te.encode("KEM"), i2osp2(0x0020));
const HPKE_SUITE = concat(te.encode("HPKE"), i2osp2(0x0020), i2osp2(0x0001), i2osp2(0x0003));
const V1 = te.encode("HPKE-v1");
const EMPTY = new Uint8Array(0);

function labeledExtract(suite: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array) {
  return extract(sha256, concat(V1, suite, te.encode(label), ikm), salt);
}

function labeledExpand(
  suite: Uint8Array,
  prk: Uint8Array,
  label: string,
  info: Uint8Array,
  length: number,
) {
  return expand(sha256, prk, concat(i2osp2(length), V1, suite, te.encode(label), info), length);
}

/** X25519 public keys and `enc` are 32 bytes. */
export const X25519_BYTES = 32;
/** What sealing adds to the plaintext: the Poly1305 tag. */
export const TAG_BYTES = 16;

/** A recipient's key pair: the raw public key and the private key (non-extractable unless generated so). */
export interface HpkeKeyPair {
  publicKey: Uint8Array;
  privateKey: CryptoKey;
}

/** A fresh X25519 key pair. `extractable` lets {@link exportPrivateKey} write it down. */
export async function generateHpkeKeyPair(extractable = false): Promise<HpkeKeyPair> {
  const pair = await crypto.subtle.generateKey({ name: "X25519" }, extractable, [
    "deriveBits",
  ]) as CryptoKeyPair;
  return {
    publicKey: new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey)),
    privateKey: pair.privateKey,
  };
}

/** PKCS#8 of an X25519 private key is this prefix and the 32 raw bytes. */
const PKCS8_PREFIX = Uint8Array.from([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/** The raw 32 bytes of an extractable private key. */
export async function exportPrivateKey(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("pkcs8", key)).slice(PKCS8_PREFIX.length);
}

/** A key pair from a raw 32-byte private key (as written by {@link exportPrivateKey}). */
export async function importHpkeKeyPair(raw: Uint8Array): Promise<HpkeKeyPair> {
  if (raw.length !== X25519_BYTES) throw new TypeError("An X25519 private key is 32 bytes");
  const privateKey = await crypto.subtle.importKey(
    "pkcs8",
    concat(PKCS8_PREFIX, raw),
    { name: "X25519" },
    true,
    ["deriveBits"],
  );
  // The public key, from the JWK form of the private one (WebCrypto has no other way to derive it).
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  const publicKey = Uint8Array.from(
    atob(jwk.x!.replace(/-/g, "+").replace(/_/g, "/")),
    (c) => c.charCodeAt(0),
  );
  return { publicKey, privateKey };
}

async function dh(privateKey: CryptoKey, publicKey: Uint8Array): Promise<Uint8Array> {
  if (publicKey.length !== X25519_BYTES) throw new TypeError("An X25519 public key is 32 bytes");
  const pub = await crypto.subtle.importKey(
    "raw",
    publicKey as Uint8Array<ArrayBuffer>,
    { name: "X25519" },
    false,
    [],
  );
  const shared = new Uint8Array(
    await crypto.subtle.deriveBits({ name: "X25519", public: pub }, privateKey, 256),
  );
  // A low-order public key gives all zeros (RFC 9180 §7.1.4: abort).
  if (shared.every((b) => b === 0)) throw new TypeError("X25519 gave the all-zero value");
  return shared;
}

function keySchedule(sharedSecret: Uint8Array, info: Uint8Array) {
  const pskIdHash = labeledExtract(HPKE_SUITE, EMPTY, "psk_id_hash", EMPTY);
  const infoHash = labeledExtract(HPKE_SUITE, EMPTY, "info_hash", info);
  const context = concat(new Uint8Array([0x00]), pskIdHash, infoHash); // mode_base
  const secret = labeledExtract(HPKE_SUITE, sharedSecret, "secret", EMPTY);
  return {
    key: labeledExpand(HPKE_SUITE, secret, "key", context, 32),
    nonce: labeledExpand(HPKE_SUITE, secret, "base_nonce", context, 12),
  };
}

function sharedSecretOf(dhValue: Uint8Array, enc: Uint8Array, pkR: Uint8Array): Uint8Array {
  const prk = labeledExtract(KEM_SUITE, EMPTY, "eae_prk", dhValue);
  return labeledExpand(KEM_SUITE, prk, "shared_secret", concat(enc, pkR), 32);
}

/** A sealed message: the sender's ephemeral public key and the ciphertext (plaintext + 16-byte tag). */
export interface Sealed {
  enc: Uint8Array;
  ct: Uint8Array;
}

/**
 * Seals `plaintext` to `recipient` (a raw X25519 public key), bound to `info` and `aad`. `ephemeral` is for
 * tests only: by default every message gets a fresh key pair.
 */
export async function seal(
  recipient: Uint8Array,
  plaintext: Uint8Array,
  info: Uint8Array = EMPTY,
  aad: Uint8Array = EMPTY,
  ephemeral?: HpkeKeyPair,
): Promise<Sealed> {
  const e = ephemeral ?? await generateHpkeKeyPair();
  const shared = sharedSecretOf(await dh(e.privateKey, recipient), e.publicKey, recipient);
  const { key, nonce } = keySchedule(shared, info);
  return { enc: e.publicKey, ct: chacha20poly1305(key, nonce, aad).encrypt(plaintext) };
}

/** Opens what {@link seal} sealed to `recipient`; throws when the key, `info`, `aad` or bytes differ. */
export async function open(
  recipient: HpkeKeyPair,
  sealed: Sealed,
  info: Uint8Array = EMPTY,
  aad: Uint8Array = EMPTY,
): Promise<Uint8Array> {
  const shared = sharedSecretOf(
    await dh(recipient.privateKey, sealed.enc),
    sealed.enc,
    recipient.publicKey,
  );
  const { key, nonce } = keySchedule(shared, info);
  return chacha20poly1305(key, nonce, aad).decrypt(sealed.ct);
}
