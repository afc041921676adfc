/**
 * The signed-delivery format, without libp2p: what a serving node signs (domain, CID, BLAKE3 of the bytes as
 * sent, time), the `Meshgate-Delivery` header a gateway's raw block answers carry, and a check of the
 * signature with WebCrypto's Ed25519 alone, so a browser can hold a proof without a libp2p bundle.
 * `signed_delivery.ts` signs and checks the same bytes with the node's libp2p key.
 *
 * Header: `Meshgate-Delivery: peer=<peer ID>; hash=<64 hex>; at=<ms>; sig=<base64>`.
 *
 * @module
 */
import { base58btc } from "multiformats/bases/base58";
import type { CID } from "../content/cid.ts";
import { fromHex, toHex } from "../units.ts";

export { fromHex, toHex };

/** Domain separation: a delivery signature can never be mistaken for any other signed message. */
export const DELIVERY_DOMAIN = new TextEncoder().encode("meshgate/delivery/1\n");

/** The header of a raw block answer that carries the serving node's signed delivery. */
export const DELIVERY_HEADER = "Meshgate-Delivery";

/** A signed delivery, as it travels in a chunk answer and inside a proof. */
export interface DeliverySignature {
  /** Hex BLAKE3-256 of the bytes as sent. */
  hash: string;
  /** Signing time, ms since epoch. */
  at: number;
  /** Base64 Ed25519 signature over the domain, CID bytes, hash and time. */
  sig: string;
}

/** A delivery signature with the peer that signed it, as the header carries it. */
export interface SignedDelivery extends DeliverySignature {
  peer: string;
}

/** Portable proof that `peer` served bytes under `cid` that are not the CID's. */
export interface FraudProof extends DeliverySignature {
  v: 1;
  kind: "bad_bytes";
  peer: string;
  cid: string;
}

/** The signed bytes (behind {@link DELIVERY_DOMAIN}): CID, hash, time. */
export function deliveryMessage(cid: CID, hash: Uint8Array, at: number): Uint8Array {
  const c = cid.bytes;
  const out = new Uint8Array(c.length + 32 + 8);
  out.set(c, 0);
  out.set(hash, c.length);
  new DataView(out.buffer).setBigUint64(c.length + 32, BigInt(at));
  return out;
}

/** True when `d` has the shape of a delivery signature (not that it verifies). */
export function isDeliveryShape(d: unknown): d is DeliverySignature {
  const s = d as Partial<DeliverySignature> | null;
  return typeof s === "object" && s !== null &&
    typeof s.hash === "string" && /^[0-9a-f]{64}$/.test(s.hash) &&
    typeof s.at === "number" && Number.isSafeInteger(s.at) && s.at >= 0 &&
    typeof s.sig === "string" && s.sig.length <= 200 && /^[A-Za-z0-9+/]+={0,2}$/.test(s.sig);
}

/** The header value for a signed delivery. */
export function formatDeliveryHeader(d: SignedDelivery): string {
  return `peer=${d.peer}; hash=${d.hash}; at=${d.at}; sig=${d.sig}`;
}

/** Parses a `Meshgate-Delivery` value; undefined when it is absent or malformed. */
export function parseDeliveryHeader(value: string | null | undefined): SignedDelivery | undefined {
  if (!value || value.length > 512) return undefined;
  const fields = new Map<string, string>();
  for (const part of value.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const peer = fields.get("peer");
  const at = Number(fields.get("at"));
  const d = { hash: fields.get("hash"), at, sig: fields.get("sig") };
  if (!peer || !/^[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(peer) || !isDeliveryShape(d)) return undefined;
  return { peer, hash: d.hash, at: d.at, sig: d.sig };
}

/**
 * The raw Ed25519 public key inside an Ed25519 peer ID (`12D3KooW…`: the identity multihash of the
 * protobuf-encoded key), or undefined for any other kind of peer ID.
 */
export function ed25519KeyOf(peer: string): Uint8Array | undefined {
  let mh: Uint8Array;
  try {
    mh = base58btc.baseDecode(peer);
  } catch {
    return undefined;
  }
  // identity multihash (0x00), 36 bytes: KeyType Ed25519 (08 01), Data of 32 bytes (12 20).
  const prefix = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];
  if (mh.length !== 38 || prefix.some((b, i) => mh[i] !== b)) return undefined;
  return mh.slice(6);
}

/**
 * True when `d` is `peer`'s signature for `cid`, checked with WebCrypto's Ed25519; false for anything that
 * does not verify; undefined when this engine has no Ed25519 (the receiving node checks it then).
 */
export async function verifyDeliveryWeb(
  peer: string,
  cid: CID,
  d: DeliverySignature,
): Promise<boolean | undefined> {
  const raw = ed25519KeyOf(peer);
  if (!raw || !isDeliveryShape(d)) return false;
  let key: CryptoKey;
  try {
    key = await crypto.subtle.importKey(
      "raw",
      raw as Uint8Array<ArrayBuffer>,
      { name: "Ed25519" },
      false,
      ["verify"],
    );
  } catch {
    return undefined;
  }
  const body = deliveryMessage(cid, fromHex(d.hash), d.at);
  const data = new Uint8Array(DELIVERY_DOMAIN.length + body.length);
  data.set(DELIVERY_DOMAIN);
  data.set(body, DELIVERY_DOMAIN.length);
  try {
    const sig = Uint8Array.from(atob(d.sig), (c) => c.charCodeAt(0));
    return await crypto.subtle.verify({ name: "Ed25519" }, key, sig, data);
  } catch {
    return false;
  }
}

/** A proof of fraud from a signed delivery whose hash is not the CID's. */
export function fraudProof(peer: string, cid: CID, d: DeliverySignature): FraudProof {
  return { v: 1, kind: "bad_bytes", peer, cid: cid.toString(), hash: d.hash, at: d.at, sig: d.sig };
}
