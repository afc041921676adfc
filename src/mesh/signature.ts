/**
 * Signatures by a node's libp2p identity over tagged bytes: offers, attestations, signed deliveries. The
 * tag (domain) keeps a signature for one purpose from ever being taken for another; the signature travels
 * as base64; a verifier needs only the signer's peer ID (Ed25519 peer IDs carry their key).
 *
 * @module
 */
import type { PeerId, PrivateKey } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";

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
  return btoa(String.fromCharCode(...await key.sign(tagged(domain, body))));
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
    const id = typeof peer === "string" ? peerIdFromString(peer) : peer;
    if (id.publicKey === undefined) return false;
    const bytes = Uint8Array.from(atob(sig), (c) => c.charCodeAt(0));
    return await id.publicKey.verify(tagged(domain, body), bytes);
  } catch {
    return false;
  }
}
