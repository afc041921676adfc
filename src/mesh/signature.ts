/**
 * Signatures by a node's libp2p identity over tagged bytes: offers, attestations, signed deliveries. The
 * tag (domain) keeps a signature for one purpose from ever being taken for another; the signature travels
 * as base64; a verifier needs only the signer's peer ID (Ed25519 peer IDs carry their key).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import type { PeerId, PrivateKey, PublicKey } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";

// Ed25519 through node:crypto KeyObjects made once per key: libp2p's keys build one from JWK on every
// sign and verify, which was most of a signature's cost (the same deterministic Ed25519 bytes either way).
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");
const signers = new WeakMap<PrivateKey, KeyObject>();
/** Verifying keys of the latest peers seen (a buyer checks many quotes, a node many offers). */
const verifiers = new Map<string, KeyObject>();

function signerOf(key: PrivateKey): KeyObject | undefined {
  if (key.type !== "Ed25519") return undefined;
  let k = signers.get(key);
  if (!k) {
    const seed = key.raw.subarray(0, 32);
    k = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519, seed]),
      format: "der",
      type: "pkcs8",
    });
    signers.set(key, k);
  }
  return k;
}

/** The verifying key of `peer` (its ID carries it), kept by the ID's string form. */
function verifierOf(peer: string | PeerId): { key?: PublicKey; verifier?: KeyObject } {
  const name = peer.toString();
  const kept = verifiers.get(name);
  if (kept) return { verifier: kept };
  const key = (typeof peer === "string" ? peerIdFromString(peer) : peer).publicKey;
  if (key?.type !== "Ed25519") return { key };
  const verifier = createPublicKey({
    key: Buffer.concat([SPKI_ED25519, key.raw]),
    format: "der",
    type: "spki",
  });
  if (verifiers.size >= 1024) verifiers.delete(verifiers.keys().next().value!);
  verifiers.set(name, verifier);
  return { verifier };
}

function tagged(domain: Uint8Array, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(domain.length + body.length);
  out.set(domain);
  out.set(body, domain.length);
  return out;
}

/** Signs `domain ‖ body` with `key`; the signature in base64. */
export async function signTagged(
  key: PrivateKey,
  domain: Uint8Array,
  body: Uint8Array,
): Promise<string> {
  const signer = signerOf(key);
  const data = tagged(domain, body);
  const sig = signer ? sign(null, data, signer) : await key.sign(data);
  return btoa(String.fromCharCode(...sig));
}

/** True when `sig` (base64) is `peer`'s signature of `domain ‖ body`; false for anything else, a peer ID
 * without a key or a malformed signature included. */
export async function verifyTagged(
  peer: string | PeerId,
  domain: Uint8Array,
  body: Uint8Array,
  sig: string,
): Promise<boolean> {
  try {
    const { key, verifier } = verifierOf(peer);
    const bytes = Uint8Array.from(atob(sig), (c) => c.charCodeAt(0));
    if (verifier) return verify(null, tagged(domain, body), verifier, bytes);
    if (key === undefined) return false;
    return await key.verify(tagged(domain, body), bytes);
  } catch {
    return false;
  }
}
