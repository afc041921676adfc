/**
 * Signed deliveries: a serving peer signs, with its libp2p identity key, what it sends: the chunk's CID, the
 * BLAKE3 of the bytes as sent, and the time. Meshgate CIDs are BLAKE3 of their bytes, so a signed delivery
 * whose hash is not the CID's digest is, on its own, a proof that the peer served wrong bytes under that CID:
 * anyone can check it with the peer ID alone (Ed25519 peer IDs carry their public key), without the bytes and
 * without trusting whoever reports it (`reputation/evidence.ts` makes the proof). About 200 bytes of JSON.
 *
 * The receiver checks the signature's hash against the bytes it got: a peer that signs the right hash and
 * sends other bytes is caught locally (the bytes fail their CID) but leaves no proof for others.
 *
 * @module
 */
import type { PeerId, PrivateKey } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { blake3 } from "../kernels/mod.ts";
import type { CID } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import { fromHex, toHex } from "../units.ts";
import { signTagged, verifyTagged } from "./signature.ts";
import {
  DELIVERY_DOMAIN as DOMAIN,
  deliveryMessage as message,
  type DeliverySignature,
  isDeliveryShape,
} from "./delivery_format.ts";

export type { DeliverySignature };

/** A delivery signature or proof that does not hold, with why. */
export class EvidenceError extends MeshError {
  override name = "EvidenceError";
  constructor(
    code: "evidence_malformed" | "evidence_signature" | "evidence_not_fraud",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** Signs the delivery of `bytes` under `cid`. `hash` may be given when already computed. */
export async function signDelivery(
  key: PrivateKey,
  cid: CID,
  bytes: Uint8Array,
  at = Date.now(),
  hash: Uint8Array = blake3(bytes),
): Promise<DeliverySignature> {
  return { hash: toHex(hash), at, sig: await signTagged(key, DOMAIN, message(cid, hash, at)) };
}

function shape(s: unknown): DeliverySignature {
  if (!isDeliveryShape(s)) {
    throw new EvidenceError(
      "evidence_malformed",
      "A delivery signature is {hash: 64 hex digits, at: ms, sig: base64}",
    );
  }
  return { hash: s.hash, at: s.at, sig: s.sig };
}

function peerOf(peer: string): PeerId {
  try {
    const id = peerIdFromString(peer);
    if (id.publicKey === undefined) throw new Error("no public key in the peer ID");
    return id;
  } catch (e) {
    throw new EvidenceError(
      "evidence_malformed",
      `"${String(peer).slice(0, 80)}" is not a peer ID that carries its key`,
      { cause: e },
    );
  }
}

/** Checks that `peer` signed `d` for `cid`; throws {@link EvidenceError} if not. */
export async function verifyDelivery(
  peer: string,
  cid: CID,
  d: unknown,
): Promise<DeliverySignature> {
  const s = shape(d);
  const id = peerOf(peer);
  if (!await verifyTagged(id, DOMAIN, message(cid, fromHex(s.hash), s.at), s.sig)) {
    throw new EvidenceError("evidence_signature", `The delivery signature is not ${peer}'s`);
  }
  return s;
}

/** True when the signed hash is the CID's own digest (an honest delivery). */
export function signedHashMatches(cid: CID, d: DeliverySignature): boolean {
  return d.hash === toHex(cid.multihash.digest);
}
