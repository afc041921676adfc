/**
 * One JSON request per stream, one JSON answer: the wire of Meshgate's small protocols (pay, lookups, offers,
 * reputation, market, leases and audits).
 * Each side writes one message and closes its end; there is no framing, a reader takes everything up to the
 * end of the stream and aborts it past its size limit.
 *
 * @module
 */
import type { Libp2p, PeerId, Stream } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { Uint8ArrayList } from "uint8arraylist";
import { MeshError } from "../errors.ts";
import { openConnectionTo } from "./_target.ts";

/** How a protocol names what went wrong on its wire. */
export type WireError = (message: string, cause?: unknown) => MeshError;

/** A protocol's wire: its largest message, its name in errors, and its error. */
export interface Wire {
  maxBytes: number;
  what: string;
  error: WireError;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** JSON with bigints written as decimal strings. */
export function encodeMessage(message: unknown): Uint8Array {
  return encoder.encode(
    JSON.stringify(message, (_, v) => typeof v === "bigint" ? v.toString() : v),
  );
}

/** Writes `message` and closes our end of the stream once it is sent. */
export async function writeMessage(
  stream: Stream,
  message: unknown,
  signal: AbortSignal,
): Promise<void> {
  stream.send(encodeMessage(message));
  await stream.close({ signal });
}

/** Reads the peer's whole message (up to the end of its side of the stream) as a JSON object; `onFirstByte`
 * hears when its first byte arrives (a handler starts its request deadline then: a spare stream, `warm.ts`,
 * idles before its request). */
export async function readMessage(
  stream: Stream,
  signal: AbortSignal,
  options: Wire & { onFirstByte?: () => void },
): Promise<Record<string, unknown>> {
  const { maxBytes, what, error, onFirstByte } = options;
  const buf = new Uint8ArrayList();
  const onAbort = () => stream.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  let tooLong: MeshError | undefined;
  try {
    for await (const piece of stream) {
      if (buf.byteLength === 0) onFirstByte?.();
      buf.append(piece);
      if (buf.byteLength > maxBytes) {
        tooLong = error(`A ${what} message exceeds ${maxBytes} bytes`);
        stream.abort(tooLong);
        throw tooLong;
      }
    }
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    if (e === tooLong) throw e;
    throw error(`The ${what} stream failed: ${(e as Error).message}`, e);
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (signal.aborted) throw signal.reason;
  let message: unknown;
  try {
    message = JSON.parse(decoder.decode(buf.subarray()));
  } catch (e) {
    throw error(`A ${what} message is not valid JSON`, e);
  }
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    throw error(`A ${what} message is not a JSON object`);
  }
  return message as Record<string, unknown>;
}

/** Sends `request` to `peer` on `protocol` and reads its answer, all within `signal`. */
export async function callPeer(
  libp2p: Pick<Libp2p, "dialProtocol">,
  peer: string | PeerId,
  protocol: string,
  request: unknown,
  signal: AbortSignal,
  options: Wire,
): Promise<Record<string, unknown>> {
  const id = typeof peer === "string" ? peerIdFromString(peer) : peer;
  // Request and answer protocols (pay, offers, reputation) also run over relayed connections.
  const dialOptions = { signal, runOnLimitedConnection: true };
  const open = "getConnections" in libp2p
    ? openConnectionTo((p) => (libp2p as Pick<Libp2p, "getConnections">).getConnections(p), id)
    : undefined;
  const stream = open
    ? await open.newStream(protocol, dialOptions)
    : await libp2p.dialProtocol(id, protocol, dialOptions);
  try {
    await writeMessage(stream, request, signal);
    return await readMessage(stream, signal, options);
  } catch (e) {
    stream.abort(e instanceof Error ? e : new Error(String(e)));
    throw e;
  }
}

/** The answer to a request that failed: a {@link MeshError}'s code and message, anything else a generic
 * refusal (an internal error says nothing to the peer). */
export function errorReply(e: unknown): Record<string, unknown> {
  return e instanceof MeshError
    ? { error: e.code, message: e.message }
    : { error: "error", message: "The request could not be handled" };
}

/**
 * The handler side of {@link callPeer}: reads the peer's one request, writes what `answer` makes of it (or
 * what `reply` makes of the error it or the read threw: {@link errorReply} by default) and closes, all within
 * `signal`; an answer that cannot be sent aborts the stream. Resolves with the error answered, if any.
 */
export async function answerMessage(
  stream: Stream,
  signal: AbortSignal,
  wire: Wire & { onFirstByte?: () => void },
  answer: (request: Record<string, unknown>) => Promise<Record<string, unknown>>,
  reply: (e: unknown) => Record<string, unknown> = errorReply,
): Promise<unknown> {
  let out: Record<string, unknown>;
  let failed: unknown;
  try {
    out = await answer(await readMessage(stream, signal, wire));
  } catch (e) {
    failed = e;
    out = reply(e);
  }
  try {
    await writeMessage(stream, out, signal);
  } catch {
    stream.abort(new Error(`The ${wire.what} answer could not be sent`));
  }
  return failed;
}
