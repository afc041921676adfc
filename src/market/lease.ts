/**
 * Storage leases: a holder promises a client to keep some chunks from `start` to `end` at a price per
 * chunk-month, and to answer audits every `auditEveryMs`. Both sign the same bytes (the canonical JSON of
 * the lease without its signatures and id, behind a domain tag) with their libp2p identities, so neither can
 * later claim other terms. The id is derived from those bytes: a lease cannot be filed under another's id.
 *
 * Each chunk is named with its length, which the client takes from its own manifest: an auditor never asks
 * the holder how long a chunk is (a holder that lied about it could answer for a shorter input).
 * `commit` is BLAKE3 of the client's audit secret, fixed before any challenge: the blocks the client
 * challenges follow from that secret and a fresh nonce, so the holder cannot choose them and the client
 * cannot later pick a different secret (see audit.ts).
 *
 * @module
 */
import type { PrivateKey } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { signTagged, verifyTagged } from "../mesh/signature.ts";
import { parseCid } from "../content/cid.ts";
import { blake3 } from "../kernels/mod.ts";
import { MAX_CHUNK_BYTES } from "../mesh/exchange.ts";

/** A month of storage, as prices count it: 30 days. */
export const MONTH_MS = 30 * 24 * 3_600_000;
/** Longest lease: a bit over a year (renewal extends it). */
export const MAX_LEASE_MS = 400 * 24 * 3_600_000;
/** Chunks one lease may name (a 64 MiB file is ~400 chunks with parity, spread over several holders). */
export const MAX_LEASE_CHUNKS = 4096;
/** Largest encoded lease accepted. */
export const MAX_LEASE_BYTES = 512 * 1024;
const DOMAIN = new TextEncoder().encode("meshgate/lease/1\n");

/** What client and holder agree on (the signed part). */
export interface LeaseTerms {
  holder: string;
  client: string;
  /** The file (manifest CID) the chunks belong to. */
  root: string;
  /** Each chunk's CID and length in bytes, as the client's manifest says. */
  chunks: [string, number][];
  /** Term, ms since epoch. */
  start: number;
  end: number;
  /** Wei per chunk-month as a decimal string, from the holder's offer; "0" for a volunteer. */
  pricePerChunkMonth: string;
  /** How often the client audits, ms. */
  auditEveryMs: number;
  /** BLAKE3 (hex) of the client's audit secret. */
  commit: string;
  /** 16 random bytes (hex): two leases of the same terms are two leases. */
  nonce: string;
}

export interface Lease extends LeaseTerms {
  v: 1;
  /** Hex, the first 16 bytes of BLAKE3 of the signed bytes. */
  id: string;
  clientSig: string;
  holderSig: string;
}

export type LeaseErrorCode =
  | "lease_malformed"
  | "lease_signature"
  | "lease_expired"
  | "lease_capacity"
  | "lease_not_yours"
  | "lease_not_found"
  | "lease_price"
  | "lease_missing"
  | "lease_protocol";

/** A lease that does not hold or cannot be taken, with why. */
export class LeaseError extends MeshError {
  override name = "LeaseError";
  constructor(code: LeaseErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    return `{${
      Object.keys(o).sort().map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(",")
    }}`;
  }
  return JSON.stringify(value);
}

const TERM_KEYS = [
  "holder",
  "client",
  "root",
  "chunks",
  "start",
  "end",
  "pricePerChunkMonth",
  "auditEveryMs",
  "commit",
  "nonce",
] as const;

/** The bytes both parties sign (behind {@link DOMAIN}): `v` and the terms, canonical JSON. */
export function leaseBytes(terms: LeaseTerms): Uint8Array {
  const o: Record<string, unknown> = { v: 1 };
  for (const k of TERM_KEYS) o[k] = terms[k];
  return new TextEncoder().encode(canonical(o));
}

function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The id of a lease of `terms`. */
export function leaseId(terms: LeaseTerms): string {
  return toHex(blake3(leaseBytes(terms)).subarray(0, 16));
}

/** The client's half: terms checked, id set, signed by the client; `holderSig` still empty. */
export async function signAsClient(key: PrivateKey, terms: LeaseTerms): Promise<Lease> {
  const lease: Lease = { v: 1, ...pickTerms(terms), id: "", clientSig: "", holderSig: "" };
  checkTerms(lease as unknown as Record<string, unknown>);
  lease.id = leaseId(lease);
  lease.clientSig = await signTagged(key, DOMAIN, leaseBytes(lease));
  return lease;
}

/** The holder's countersignature of a lease whose client half {@link verifyClientHalf} accepted. */
export async function signAsHolder(key: PrivateKey, lease: Lease): Promise<Lease> {
  return { ...lease, holderSig: await signTagged(key, DOMAIN, leaseBytes(lease)) };
}

function pickTerms(t: LeaseTerms): LeaseTerms {
  const o = {} as Record<string, unknown>;
  for (const k of TERM_KEYS) o[k] = t[k];
  return o as unknown as LeaseTerms;
}

const WEI = /^(0|[1-9][0-9]{0,77})$/;
const HEX32 = /^[0-9a-f]{64}$/;
const HEX16 = /^[0-9a-f]{32}$/;
const PEER = /^[1-9A-HJ-NP-Za-km-z]{40,100}$/;
/** An Ed25519 signature (64 bytes) in base64. */
const SIG = /^[A-Za-z0-9+/]{86}==$/;

function bad(why: string): never {
  throw new LeaseError("lease_malformed", `Malformed lease: ${why}`);
}

function checkTerms(o: Record<string, unknown>): void {
  if (typeof o.holder !== "string" || !PEER.test(o.holder)) bad("holder must be a peer ID");
  if (typeof o.client !== "string" || !PEER.test(o.client)) bad("client must be a peer ID");
  if (o.holder === o.client) bad("holder and client must differ");
  if (typeof o.root !== "string") bad("root must be a CID");
  try {
    parseCid(o.root as string);
  } catch {
    bad("root must be a CID");
  }
  const chunks = o.chunks;
  if (!Array.isArray(chunks) || chunks.length === 0 || chunks.length > MAX_LEASE_CHUNKS) {
    bad(`chunks must list 1 to ${MAX_LEASE_CHUNKS} chunks`);
  }
  const seen = new Set<string>();
  for (const c of chunks as unknown[]) {
    if (!Array.isArray(c) || c.length !== 2 || typeof c[0] !== "string") {
      bad("each chunk must be [CID, length]");
    }
    const [cid, len] = c as [string, unknown];
    try {
      if (parseCid(cid).toString() !== cid) bad(`chunk ${cid.slice(0, 80)} is not canonical`);
    } catch (e) {
      if (e instanceof LeaseError) throw e;
      bad(`chunk ${cid.slice(0, 80)} is not a CID`);
    }
    if (!Number.isSafeInteger(len) || (len as number) < 0 || (len as number) > MAX_CHUNK_BYTES) {
      bad(`chunk length must be 0 to ${MAX_CHUNK_BYTES} bytes`);
    }
    if (seen.has(cid)) bad(`chunk ${cid} is listed twice`);
    seen.add(cid);
  }
  if (!Number.isSafeInteger(o.start) || (o.start as number) < 0) bad("start must be a time in ms");
  if (!Number.isSafeInteger(o.end) || (o.end as number) <= (o.start as number)) {
    bad("end must be a time in ms after start");
  }
  if ((o.end as number) - (o.start as number) > MAX_LEASE_MS) bad("a lease lasts 400 days at most");
  if (typeof o.pricePerChunkMonth !== "string" || !WEI.test(o.pricePerChunkMonth)) {
    bad("pricePerChunkMonth must be wei as a decimal string");
  }
  if (!Number.isSafeInteger(o.auditEveryMs) || (o.auditEveryMs as number) < 1) {
    bad("auditEveryMs must be a positive number of ms");
  }
  if (typeof o.commit !== "string" || !HEX32.test(o.commit)) bad("commit must be 32 bytes of hex");
  if (typeof o.nonce !== "string" || !HEX16.test(o.nonce)) bad("nonce must be 16 bytes of hex");
}

/**
 * The strict decoder: `input` (parsed JSON from anywhere) as a {@link Lease}, or {@link LeaseError}
 * `lease_malformed` saying what is wrong. Exactly the known fields, each of its type and range; the id
 * must be the one the terms give. Signatures are not checked here ({@link verifyLease}). A `proposal`
 * (the client's half, sent to the holder) has an empty `holderSig`.
 */
export function decodeLease(input: unknown, options: { proposal?: boolean } = {}): Lease {
  if (typeof input !== "object" || input === null || Array.isArray(input)) bad("not an object");
  const o = input as Record<string, unknown>;
  const known = new Set<string>(["v", "id", "clientSig", "holderSig", ...TERM_KEYS]);
  const extra = Object.keys(o).find((k) => !known.has(k));
  if (extra !== undefined) bad(`unknown field ${JSON.stringify(extra.slice(0, 40))}`);
  if (o.v !== 1) bad("v must be 1");
  checkTerms(o);
  if (typeof o.clientSig !== "string" || !SIG.test(o.clientSig)) {
    bad("clientSig must be an Ed25519 signature in base64");
  }
  if (
    options.proposal
      ? o.holderSig !== ""
      : typeof o.holderSig !== "string" || !SIG.test(o.holderSig)
  ) {
    bad(
      options.proposal
        ? "a proposal's holderSig is empty"
        : "holderSig must be an Ed25519 signature in base64",
    );
  }
  const lease = o as unknown as Lease;
  if (o.id !== leaseId(lease)) bad("id is not the one its terms give");
  return {
    v: 1,
    ...pickTerms(lease),
    id: lease.id,
    clientSig: lease.clientSig,
    holderSig: lease.holderSig,
  };
}

/** Parses an encoded lease (size-limited UTF-8 JSON) with {@link decodeLease}. */
export function parseLease(bytes: Uint8Array): Lease {
  if (bytes.length > MAX_LEASE_BYTES) bad(`a lease is at most ${MAX_LEASE_BYTES} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    bad("not UTF-8 JSON");
  }
  return decodeLease(json);
}

/** Throws `lease_signature` unless the client signed `lease`. */
export async function verifyClientHalf(lease: Lease): Promise<void> {
  if (!await verifyTagged(lease.client, DOMAIN, leaseBytes(lease), lease.clientSig)) {
    throw new LeaseError(
      "lease_signature",
      `Lease ${lease.id} is not signed by its client ${lease.client}`,
    );
  }
}

/**
 * Decodes `input` and checks both signatures: a lease either party can show anyone. Throws
 * {@link LeaseError} (`lease_malformed`, `lease_signature`). Expiry is the caller's question.
 */
export async function verifyLease(input: unknown): Promise<Lease> {
  const lease = decodeLease(input);
  await verifyClientHalf(lease);
  if (!await verifyTagged(lease.holder, DOMAIN, leaseBytes(lease), lease.holderSig)) {
    throw new LeaseError(
      "lease_signature",
      `Lease ${lease.id} is not signed by its holder ${lease.holder}`,
    );
  }
  return lease;
}

const DURATION = /^([1-9][0-9]{0,5})(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30d", "12h", "90s", "500ms" in ms; RangeError for anything else or past {@link MAX_LEASE_MS}. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text.trim());
  if (!m) throw new RangeError(`Invalid duration "${text.slice(0, 40)}": use e.g. 30d, 12h, 90s`);
  const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
  if (ms > MAX_LEASE_MS) throw new RangeError(`A lease lasts 400 days at most, not ${text}`);
  return ms;
}

/**
 * Wei per chunk-month for a chunk of `bytes` at `perGiBMonth` (an offer's `storedPerGiBMonth`), rounded up
 * so that a holder is never paid less than its offer.
 */
export function chunkMonthPrice(perGiBMonth: string, bytes: number): bigint {
  const gib = 1n << 30n;
  return (BigInt(perGiBMonth) * BigInt(bytes) + gib - 1n) / gib;
}
