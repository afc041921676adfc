/**
 * Audits of leased chunks that cost ~1.8 KiB, not the chunk: the auditor names a chunk and one 1 KiB block
 * of it; the holder answers with the block and its BLAKE3 tree path (`blake3Proof`), which the auditor
 * checks against the chunk's CID (`blake3VerifyProof`) with the chunk's length from its own lease, never
 * from the holder.
 *
 * Which block, for a volunteer (free) lease: `BLAKE3(secret ‖ nonce ‖ cid)` mod the chunk's block count,
 * where `secret` is the client's audit secret, committed in the lease (`commit` = BLAKE3(secret)) before any
 * challenge, and `nonce` is 16 fresh random bytes per challenge. The holder knows neither the secret nor the
 * next nonce, so it cannot tell which blocks it may drop; the client cannot swap the secret after signing.
 *
 * For a paid lease, when both sides have the chain (beacon.ts): the challenge names a recent block, and the
 * index is `BLAKE3(tag ‖ block hash ‖ lease id ‖ nonce ‖ cid)` mod the block count ({@link beaconIndex}).
 * No one can predict the hash of a block not mined yet; the holder checks on its own chain connection that
 * the block is real and recent, and that the index is the one it gives, and refuses (`audit_beacon`) a
 * challenge that is not.
 *
 * The nonce is echoed in the answer and each challenge is answered once: an answer to an old challenge (a
 * replay) is refused.
 *
 * Detection: a holder that lost a fraction f of a lease's blocks passes one challenge with probability
 * 1 − f, so c challenges catch it with P(detect) = 1 − (1 − f)^c (see README, "Storage leases").
 *
 * @module
 */
import { MeshError } from "../errors.ts";
import { parseCid } from "../content/cid.ts";
import { blake3, blake3BlockCount, blake3Proof, blake3VerifyProof } from "../kernels/mod.ts";

export const AUDIT_PROTOCOL = "/meshgate/audit/1.0.0";
/** Largest audit message: a 1 KiB block and a proof of a few hundred bytes, in base64 and JSON. */
export const MAX_AUDIT_BYTES = 4096;

export type AuditErrorCode =
  | "audit_malformed"
  | "audit_failed"
  | "audit_replay"
  | "audit_protocol"
  | "audit_beacon";

export class AuditError extends MeshError {
  override name = "AuditError";
  constructor(code: AuditErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** What the auditor sends. */
export interface Challenge {
  op: "challenge";
  lease: string;
  cid: string;
  index: number;
  nonce: string;
  /** Paid leases: the block whose hash seeds `index` (beacon.ts), its number and hash (0x-hex). */
  block?: number;
  blockHash?: string;
}

/** What the holder answers: the block and its proof (base64), or that it does not have the chunk. */
export type Answer =
  | { nonce: string; block: string; proof: string }
  | { nonce: string; missing: true };

const HEX16 = /^[0-9a-f]{32}$/;
const BLOCK_HASH = /^0x[0-9a-f]{64}$/;
const BEACON_TAG = new TextEncoder().encode("meshgate/audit-beacon/1");
const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

const B64_VALUE = new Int16Array(128).fill(-1);
for (let i = 0; i < 64; i++) {
  B64_VALUE["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".charCodeAt(i)] = i;
}

/** Base64 (checked by {@link B64} and length % 4 first) to bytes: a table walk, ~10x `atob` + `from`. */
function fromBase64(text: string): Uint8Array {
  const pad = text.endsWith("==") ? 2 : text.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((text.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < text.length; i += 4) {
    const n = (B64_VALUE[text.charCodeAt(i)]! << 18) | (B64_VALUE[text.charCodeAt(i + 1)]! << 12) |
      ((B64_VALUE[text.charCodeAt(i + 2)]! & 63) << 6) | (B64_VALUE[text.charCodeAt(i + 3)]! & 63);
    out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  return out;
}

/** A fresh audit secret (hex) and its commitment, for a new lease. */
export function auditSecret(): { secret: string; commit: string } {
  const secret = crypto.getRandomValues(new Uint8Array(32));
  return { secret: toHex(secret), commit: toHex(blake3(secret)) };
}

/** The block a challenge with `nonce` names in `cid` (of `length` bytes), under `secret`. */
export function challengeIndex(
  secret: Uint8Array,
  nonce: Uint8Array,
  cid: string,
  length: number,
): number {
  const cidBytes = parseCid(cid).bytes;
  const input = new Uint8Array(secret.length + nonce.length + cidBytes.length);
  input.set(secret);
  input.set(nonce, secret.length);
  input.set(cidBytes, secret.length + nonce.length);
  const h = blake3(input);
  const word = (h[0]! | h[1]! << 8 | h[2]! << 16 | h[3]! << 24) >>> 0;
  return word % blake3BlockCount(length);
}

/**
 * The block a challenge of a paid lease names in `cid` (of `length` bytes): from the hash of chain block
 * `blockHash` (0x-hex), the lease id and the challenge's nonce (hex), which anyone can recompute.
 */
export function beaconIndex(
  blockHash: string,
  lease: string,
  nonce: string,
  cid: string,
  length: number,
): number {
  const parts = [BEACON_TAG, fromHex(blockHash.slice(2)), fromHex(lease), fromHex(nonce)];
  const cidBytes = parseCid(cid).bytes;
  const input = new Uint8Array(parts.reduce((n, p) => n + p.length, 0) + cidBytes.length);
  let o = 0;
  for (const p of [...parts, cidBytes]) {
    input.set(p, o);
    o += p.length;
  }
  const h = blake3(input);
  const word = (h[0]! | h[1]! << 8 | h[2]! << 16 | h[3]! << 24) >>> 0;
  return word % blake3BlockCount(length);
}

/** The holder's answer to `challenge` from its copy `chunk` (null: it has none). */
export function answer(challenge: Challenge, chunk: Uint8Array | null): Answer {
  if (chunk === null) return { nonce: challenge.nonce, missing: true };
  if (challenge.index >= blake3BlockCount(chunk.length)) {
    // Its copy is shorter than the lease says: it cannot answer, which is what it is.
    return { nonce: challenge.nonce, missing: true };
  }
  const { block, proof } = blake3Proof(chunk, challenge.index);
  return { nonce: challenge.nonce, block: toBase64(block), proof: toBase64(proof) };
}

/** Checks a challenge as the holder receives it (the lease and the chunk it names are the holder's to check). */
export function decodeChallenge(input: Record<string, unknown>): Challenge {
  const bad = (why: string): never => {
    throw new AuditError("audit_malformed", `Malformed challenge: ${why}`);
  };
  const extra = Object.keys(input).find((k) =>
    !["op", "lease", "cid", "index", "nonce", "block", "blockHash"].includes(k)
  );
  if (extra !== undefined) bad(`unknown field ${JSON.stringify(extra.slice(0, 40))}`);
  if (input.op !== "challenge") bad("op must be challenge");
  if (typeof input.lease !== "string" || !HEX16.test(input.lease)) bad("lease must be a lease id");
  if (typeof input.cid !== "string") bad("cid must be a CID");
  try {
    parseCid(input.cid as string);
  } catch {
    bad("cid must be a CID");
  }
  if (!Number.isSafeInteger(input.index) || (input.index as number) < 0) {
    bad("index must be a block index");
  }
  if (typeof input.nonce !== "string" || !HEX16.test(input.nonce)) {
    bad("nonce must be 16 bytes of hex");
  }
  if ((input.block === undefined) !== (input.blockHash === undefined)) {
    bad("block and blockHash come together");
  }
  if (input.block !== undefined) {
    if (!Number.isSafeInteger(input.block) || (input.block as number) < 0) {
      bad("block must be a block number");
    }
    if (typeof input.blockHash !== "string" || !BLOCK_HASH.test(input.blockHash)) {
      bad("blockHash must be 0x and 32 bytes of lower-case hex");
    }
  }
  return input as unknown as Challenge;
}

/**
 * The auditor's side: makes challenges and checks each answer once. Challenges wait here until answered
 * (or dropped); an answer whose nonce names no waiting challenge is a replay.
 */
export class Auditor {
  readonly #pending = new Map<
    string,
    { challenge: Challenge; length: number; root: Uint8Array }
  >();

  /**
   * A challenge of chunk `cid` (`length` bytes, from the client's lease) under `secret` (hex), or, for a
   * paid lease, seeded by chain block `block` (beacon.ts).
   */
  challenge(
    lease: string,
    cid: string,
    length: number,
    secret: string,
    block?: { number: number; hash: string },
  ): Challenge {
    const nonce = crypto.getRandomValues(new Uint8Array(16));
    const challenge: Challenge = block
      ? {
        op: "challenge",
        lease,
        cid,
        index: beaconIndex(block.hash, lease, toHex(nonce), cid, length),
        nonce: toHex(nonce),
        block: block.number,
        blockHash: block.hash,
      }
      : {
        op: "challenge",
        lease,
        cid,
        index: challengeIndex(fromHex(secret), nonce, cid, length),
        nonce: toHex(nonce),
      };
    const root = parseCid(cid).multihash.digest; // parsed once here, not per answer
    this.#pending.set(challenge.nonce, { challenge, length, root });
    return challenge;
  }

  /** Forgets a challenge that will not be answered (the holder unreachable). */
  drop(challenge: Challenge): void {
    this.#pending.delete(challenge.nonce);
  }

  /** Challenges waiting for an answer. */
  get pending(): number {
    return this.#pending.size;
  }

  /**
   * Checks `input` as the answer to `challenge`. Returns normally when it proves the block; throws
   * {@link AuditError}: `audit_replay` (not an answer to this waiting challenge: an old nonce, or the same
   * answer twice), `audit_malformed` (not an answer at all), `audit_failed` (the holder says it has no copy,
   * or the block and proof do not check against the CID: another block, another chunk, changed bytes).
   */
  check(challenge: Challenge, input: Record<string, unknown>): void {
    const waiting = this.#pending.get(challenge.nonce);
    if (!waiting || waiting.challenge !== challenge) {
      throw new AuditError("audit_replay", `Challenge ${challenge.nonce} was already answered`);
    }
    if (input.nonce !== challenge.nonce) {
      // Not consumed: the real answer may still come.
      throw new AuditError(
        "audit_replay",
        `An answer for nonce ${
          String(input.nonce).slice(0, 40)
        } is not the answer to challenge ${challenge.nonce}`,
      );
    }
    this.#pending.delete(challenge.nonce);
    const what = `block ${challenge.index} of ${challenge.cid}`;
    if (input.missing === true && Object.keys(input).length === 2) {
      throw new AuditError("audit_failed", `The holder has no copy of ${challenge.cid}`);
    }
    const extra = Object.keys(input).find((k) => !["nonce", "block", "proof"].includes(k));
    if (
      extra !== undefined || typeof input.block !== "string" || typeof input.proof !== "string" ||
      !B64.test(input.block) || !B64.test(input.proof) || input.block.length % 4 !== 0 ||
      input.proof.length % 4 !== 0
    ) {
      throw new AuditError("audit_malformed", `The answer for ${what} is not a block and a proof`);
    }
    const ok = blake3VerifyProof(
      waiting.root,
      waiting.length,
      challenge.index,
      fromBase64(input.block),
      fromBase64(input.proof),
    );
    if (!ok) throw new AuditError("audit_failed", `The answer does not prove ${what}`);
  }
}
