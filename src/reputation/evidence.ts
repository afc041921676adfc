/**
 * Proofs of fraud: a signed delivery (`mesh/signed_delivery.ts`) whose signed hash is not its CID's digest
 * proves, on its own, that the signer served wrong bytes under that CID. Built by a reader that caught it,
 * checked by any node (`POST /api/evidence`, the reputation protocol) without trusting the reporter.
 *
 * @module
 */
import { type CID, parseCid } from "../content/cid.ts";
import { EvidenceError, signedHashMatches, verifyDelivery } from "../mesh/signed_delivery.ts";

export {
  type DeliverySignature,
  EvidenceError,
  signDelivery,
  signedHashMatches,
  verifyDelivery,
} from "../mesh/signed_delivery.ts";

// The format lives in mesh/delivery_format.ts (no libp2p there, so a browser bundle can hold and check it).
export { type FraudProof, fraudProof } from "../mesh/delivery_format.ts";
import type { FraudProof } from "../mesh/delivery_format.ts";

/**
 * Checks a proof from anywhere (a browser, another gateway): well formed, signed by the accused, and a hash
 * that is not the CID's. Returns the proof as checked; throws {@link EvidenceError} saying which part fails.
 */
export async function checkFraudProof(input: unknown): Promise<FraudProof> {
  const p = input as Partial<FraudProof> | null;
  if (typeof p !== "object" || p === null || p.v !== 1 || p.kind !== "bad_bytes") {
    throw new EvidenceError(
      "evidence_malformed",
      'A proof of fraud is {v: 1, kind: "bad_bytes", peer, cid, hash, at, sig}',
    );
  }
  if (typeof p.peer !== "string" || typeof p.cid !== "string") {
    throw new EvidenceError("evidence_malformed", "A proof of fraud names a peer and a CID");
  }
  let cid: CID;
  try {
    cid = parseCid(p.cid);
  } catch (e) {
    throw new EvidenceError("evidence_malformed", (e as Error).message, { cause: e });
  }
  const s = await verifyDelivery(p.peer, cid, p);
  if (signedHashMatches(cid, s)) {
    throw new EvidenceError(
      "evidence_not_fraud",
      `The signed hash is ${cid}'s own: that delivery was honest`,
    );
  }
  return { v: 1, kind: "bad_bytes", peer: p.peer, cid: cid.toString(), ...s };
}
