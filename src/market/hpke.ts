/**
 * HPKE base mode (RFC 9180 §5.1.1) for one suite only: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
 * ChaCha20-Poly1305 (kem 0x0020, kdf 0x0001, aead 0x0003), single-shot seal and open (sequence 0).
 *
 * Why not `@hpke/core`: it runs X25519 and every HMAC of the key schedule through async WebCrypto, a dozen
 * awaits per message, which kept it under 2,000 seals a second here. This module does X25519 with
 * `node:crypto`'s synchronous KeyObjects (native in Deno; WebCrypto's deriveBits costs less CPU but runs on
 * a worker thread, and under load the wait for it cost more wall time than it saved), HKDF as its native
 * `hkdfSync` (one call per extract-and-expand: fewer, cheaper calls than HMAC by HMAC) and its
 * ChaCha20-Poly1305, all synchronous and native; the recipient's public key is imported once and kept;
 * the tests check it against `@hpke/core` in both directions, so it is the same RFC 9180, not a look-alike.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
} from "node:crypto";

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
/** HKDF's default salt: HashLen zeros. */
const ZEROS = new Uint8Array(32);

const hmac = (key: Uint8Array, ...data: Uint8Array[]): Uint8Array =>
  new Uint8Array(createHmac("sha256", key).update(concat(...data)).digest());

/** HKDF-Extract (RFC 5869) with the HPKE label. */
function labeledExtract(suite: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array) {
  return hmac(salt.length ? salt : ZEROS, V1, suite, te.encode(label), ikm);
}

/** LabeledExpand(LabeledExtract(salt, extractLabel, ikm), expandLabel, info, length) in one native call
 * (HKDF is Extract then Expand). */
function labeledHkdf(
  suite: Uint8Array,
  salt: Uint8Array,
  extractLabel: string,
  ikm: Uint8Array,
  expandLabel: string,
  info: Uint8Array,
  length: number,
): Uint8Array {
  return new Uint8Array(hkdfSync(
    "sha256",
    concat(V1, suite, te.encode(extractLabel), ikm),
    salt,
    concat(i2osp2(length), V1, suite, te.encode(expandLabel), info),
    length,
  ));
}

/** X25519 public keys and `enc` are 32 bytes. */
export const X25519_BYTES = 32;
/** What sealing adds to the plaintext: the Poly1305 tag. */
export const TAG_BYTES = 16;

/** A recipient's key pair: the raw public key and the private key. */
export interface HpkeKeyPair {
  publicKey: Uint8Array;
  privateKey: KeyObject;
}

/** DER prefixes of X25519 keys: SPKI (public) and PKCS#8 (private), each followed by the 32 raw bytes. */
const SPKI_PREFIX = Uint8Array.from([
  0x30,
  0x2a,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x03,
  0x21,
  0x00,
]);
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

const rawPublic = (key: KeyObject) =>
  new Uint8Array(key.export({ format: "der", type: "spki" })).slice(SPKI_PREFIX.length);

/** A fresh X25519 key pair. */
export function generateHpkeKeyPair(): Promise<HpkeKeyPair> {
  const pair = generateKeyPairSync("x25519");
  return Promise.resolve({ publicKey: rawPublic(pair.publicKey), privateKey: pair.privateKey });
}

/** The raw 32 bytes of a private key. */
export function exportPrivateKey(key: KeyObject): Promise<Uint8Array> {
  return Promise.resolve(
    new Uint8Array(key.export({ format: "der", type: "pkcs8" })).slice(PKCS8_PREFIX.length),
  );
}

/** A key pair from a raw 32-byte private key (as written by {@link exportPrivateKey}). */
export function importHpkeKeyPair(raw: Uint8Array): Promise<HpkeKeyPair> {
  if (raw.length !== X25519_BYTES) throw new TypeError("An X25519 private key is 32 bytes");
  const privateKey = createPrivateKey({
    key: Buffer.from(concat(PKCS8_PREFIX, raw)),
    format: "der",
    type: "pkcs8",
  });
  return Promise.resolve({ publicKey: rawPublic(createPublicKey(privateKey)), privateKey });
}

/** Recipients' public keys as KeyObjects, the latest few (a seller seals to one intent's key at a time). */
const publicKeys = new Map<string, KeyObject>();

function publicKeyOf(raw: Uint8Array, keep: boolean): KeyObject {
  if (raw.length !== X25519_BYTES) throw new TypeError("An X25519 public key is 32 bytes");
  const id = keep ? String.fromCharCode(...raw) : "";
  let key = keep ? publicKeys.get(id) : undefined;
  if (!key) {
    key = createPublicKey({
      key: Buffer.from(concat(SPKI_PREFIX, raw)),
      format: "der",
      type: "spki",
    });
    if (keep) {
      if (publicKeys.size >= 64) publicKeys.delete(publicKeys.keys().next().value!);
      publicKeys.set(id, key);
    }
  }
  return key;
}

function dh(privateKey: KeyObject, publicKey: KeyObject): Uint8Array {
  const shared = new Uint8Array(diffieHellman({ privateKey, publicKey }));
  // A low-order public key gives all zeros (RFC 9180 §7.1.4: abort).
  if (shared.every((b) => b === 0)) throw new TypeError("X25519 gave the all-zero value");
  return shared;
}

/** Base mode has no PSK: its hash is a constant. */
const PSK_ID_HASH = labeledExtract(HPKE_SUITE, EMPTY, "psk_id_hash", EMPTY);
/** Key schedule contexts of recent `info`s (a buyer opens many quotes to one intent). */
const contexts = new Map<string, Uint8Array>();

function contextOf(info: Uint8Array): Uint8Array {
  const k = info.length <= 256 ? String.fromCharCode(...info) : undefined;
  let c = k === undefined ? undefined : contexts.get(k);
  if (!c) {
    const infoHash = labeledExtract(HPKE_SUITE, EMPTY, "info_hash", info);
    c = concat(new Uint8Array([0x00]), PSK_ID_HASH, infoHash); // mode_base
    if (contexts.size >= 256) contexts.delete(contexts.keys().next().value!);
    if (k !== undefined) contexts.set(k, c);
  }
  return c;
}

function keySchedule(sharedSecret: Uint8Array, info: Uint8Array) {
  const context = contextOf(info);
  return {
    key: labeledHkdf(HPKE_SUITE, sharedSecret, "secret", EMPTY, "key", context, 32),
    nonce: labeledHkdf(HPKE_SUITE, sharedSecret, "secret", EMPTY, "base_nonce", context, 12),
  };
}

function sharedSecretOf(dhValue: Uint8Array, enc: Uint8Array, pkR: Uint8Array): Uint8Array {
  return labeledHkdf(KEM_SUITE, EMPTY, "eae_prk", dhValue, "shared_secret", concat(enc, pkR), 32);
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
  const shared = sharedSecretOf(
    dh(e.privateKey, publicKeyOf(recipient, true)),
    e.publicKey,
    recipient,
  );
  const { key, nonce } = keySchedule(shared, info);
  const c = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  const body = c.update(plaintext);
  c.final();
  return { enc: e.publicKey, ct: concat(body, c.getAuthTag()) };
}

/** Opens what {@link seal} sealed to `recipient`; throws when the key, `info`, `aad` or bytes differ. */
export function open(
  recipient: HpkeKeyPair,
  sealed: Sealed,
  info: Uint8Array = EMPTY,
  aad: Uint8Array = EMPTY,
): Promise<Uint8Array> {
  // A promise that rejects, never a synchronous throw, as callers await it.
  return new Promise((resolve) => resolve(openNow(recipient, sealed, info, aad)));
}

function openNow(
  recipient: HpkeKeyPair,
  sealed: Sealed,
  info: Uint8Array,
  aad: Uint8Array,
): Uint8Array {
  const shared = sharedSecretOf(
    dh(recipient.privateKey, publicKeyOf(sealed.enc, false)),
    sealed.enc,
    recipient.publicKey,
  );
  const { key, nonce } = keySchedule(shared, info);
  if (sealed.ct.length < TAG_BYTES) throw new TypeError("The ciphertext is shorter than its tag");
  const d = createDecipheriv("chacha20-poly1305", key, nonce, { authTagLength: TAG_BYTES });
  d.setAAD(aad, { plaintextLength: sealed.ct.length - TAG_BYTES });
  d.setAuthTag(sealed.ct.subarray(sealed.ct.length - TAG_BYTES));
  const body = d.update(sealed.ct.subarray(0, sealed.ct.length - TAG_BYTES));
  d.final(); // throws when the tag does not match
  return new Uint8Array(body);
}
