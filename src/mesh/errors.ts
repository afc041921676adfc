/**
 * Errors of the mesh layer. Bytes that fail their CID raise `ChunkMismatchError` from `src/content/cid.ts`.
 *
 * @module
 */
import { MeshError } from "../errors.ts";

/** A frame's length prefix exceeds the limit: the stream is reset without reading the frame. */
export class MessageTooLargeError extends MeshError {
  override name = "MessageTooLargeError";
  constructor(readonly length: number, readonly limit: number) {
    super("message_too_large", `A message of ${length} bytes exceeds the limit of ${limit} bytes`);
  }
}

/** A peer broke the chunk exchange protocol: malformed or unexpected frame, an error answer, a reset stream. */
export class ExchangeProtocolError extends MeshError {
  override name = "ExchangeProtocolError";
  constructor(message: string, cause?: unknown) {
    super("peer_protocol", capitalize(message), { cause });
  }
}

/** A peer could not be dialled, or does not speak the protocol. */
export class PeerUnreachableError extends MeshError {
  override name = "PeerUnreachableError";
  constructor(readonly peer: string, cause?: unknown) {
    const why = cause instanceof Error ? `: ${cause.message}` : "";
    super("peer_unreachable", `Peer "${peer}" is unreachable${why}`, { cause });
  }
}

/** A peer sent nothing for longer than the exchange's idle timeout. */
export class PeerTimeoutError extends MeshError {
  override name = "PeerTimeoutError";
  constructor(readonly peer: string, readonly timeoutMs: number) {
    super("peer_timeout", `Peer "${peer}" did not answer within ${timeoutMs} ms`);
  }
}

/** A peer said it lacks a chunk that its own provider record says it holds. */
export class PeerDeniedError extends MeshError {
  override name = "PeerDeniedError";
  constructor(readonly peer: string, cid: string) {
    super(
      "peer_denied",
      `Peer "${peer}" said it lacks ${cid}, which its provider record says it holds`,
    );
  }
}

/** The node's key file is unreadable, malformed or readable by others. */
export class KeyFileError extends MeshError {
  override name = "KeyFileError";
  constructor(readonly path: string, reason: string, cause?: unknown) {
    super("invalid_key_file", `Key file "${path}" ${reason}`, { cause });
  }
}

function capitalize(s: string): string {
  return s.length === 0 ? s : s[0]!.toUpperCase() + s.slice(1);
}
