/**
 * Attestations: a node's signed summary of what it saw of other operators (verified deliveries, failures),
 * shared with its peers so that each can weigh it by its own trust in the attester (`trust.ts`). Signed with
 * the attester's libp2p identity; proofs of fraud do not travel here (they travel as they are, and are
 * checked, not weighed: `evidence.ts`).
 *
 * @module
 */
import type { PrivateKey } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { signTagged, verifyTagged } from "../mesh/signature.ts";
import type { Attested } from "./trust.ts";

const DOMAIN = new TextEncoder().encode("meshgate/attestation/1\n");
/** Entries in one attestation at most: a node's word about its 1,000 best-known operators. */
export const MAX_ATTESTED = 1000;
/** An attestation older than this is ignored: words go stale as behaviour changes. One day. */
export const ATTESTATION_TTL_MS = 86_400_000;

/** What the attester saw of one operator: decayed counts, as its book holds them. */
export interface AttestedPeer {
  peer: string;
  good: number;
  bad: number;
}

export interface Attestation {
  v: 1;
  from: string;
  /** Issue time, ms. */
  at: number;
  about: AttestedPeer[];
  sig: string;
}

export class AttestationError extends MeshError {
  override name = "AttestationError";
  constructor(
    code: "attestation_malformed" | "attestation_signature" | "attestation_stale",
    message: string,
  ) {
    super(code, message);
  }
}

/** The signed bytes (behind {@link DOMAIN}), in a fixed field order: the same wherever rebuilt. */
function body(a: Omit<Attestation, "sig">): Uint8Array {
  const text = JSON.stringify([a.v, a.from, a.at, a.about.map((p) => [p.peer, p.good, p.bad])]);
  return new TextEncoder().encode(text);
}

export async function signAttestation(
  key: PrivateKey,
  from: string,
  about: AttestedPeer[],
  now = Date.now(),
): Promise<Attestation> {
  const a = { v: 1 as const, from, at: now, about: about.slice(0, MAX_ATTESTED) };
  return { ...a, sig: await signTagged(key, DOMAIN, body(a)) };
}

function malformed(why: string): never {
  throw new AttestationError("attestation_malformed", `Malformed attestation: ${why}`);
}

/** Checks an attestation from a peer: shape, the attester's signature, freshness. */
export async function verifyAttestation(input: unknown, now = Date.now()): Promise<Attestation> {
  const a = input as Partial<Attestation> | null;
  if (typeof a !== "object" || a === null || a.v !== 1) malformed("v must be 1");
  if (typeof a.from !== "string" || a.from.length > 100) malformed("from must be a peer ID");
  if (!Number.isSafeInteger(a.at)) malformed("at must be a time in ms");
  if (!Array.isArray(a.about) || a.about.length > MAX_ATTESTED) {
    malformed(`about must list at most ${MAX_ATTESTED} peers`);
  }
  for (const p of a.about!) {
    if (
      typeof p !== "object" || p === null || typeof p.peer !== "string" || p.peer.length > 100 ||
      !Number.isFinite(p.good) || p.good < 0 || !Number.isFinite(p.bad) || p.bad < 0
    ) malformed("each entry is {peer, good >= 0, bad >= 0}");
  }
  if (typeof a.sig !== "string" || a.sig.length > 200) malformed("sig must be base64");
  if (!await verifyTagged(a.from!, DOMAIN, body(a as Omit<Attestation, "sig">), a.sig!)) {
    throw new AttestationError("attestation_signature", `Not signed by ${a.from}`);
  }
  if (now - a.at! > ATTESTATION_TTL_MS || a.at! > now + 60_000) {
    throw new AttestationError(
      "attestation_stale",
      "The attestation is over a day old or from the future",
    );
  }
  return a as Attestation;
}

/** The edges an attestation adds to the trust graph (satisfaction = good − bad, as EigenTrust's s_ij). */
export function edgesOf(a: Attestation): Attested[] {
  return a.about.map((p) => ({ from: a.from, about: p.peer, satisfaction: p.good - p.bad }));
}
