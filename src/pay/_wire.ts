/**
 * The wire of `/meshgate/pay/1.0.0`: one request per stream, each side writes one JSON message and closes its
 * end. Messages are a few hundred bytes (a voucher and its batch's receipts), so there is no framing: a reader
 * takes everything up to the end of the stream, and resets it past {@link MAX_MESSAGE_BYTES}.
 *
 * @module
 */
import type { Stream } from "@libp2p/interface";
import { Uint8ArrayList } from "uint8arraylist";
import { MeshError } from "../errors.ts";

/** Largest pay message: a voucher with the receipts of a batch of up to ~1000 chunks. */
export const MAX_MESSAGE_BYTES = 256 * 1024;

/** The pay protocol's peer sent something unreadable, too long, or nothing in time. */
export class PayProtocolError extends MeshError {
  override name = "PayProtocolError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("pay_protocol", message, { cause: options.cause });
  }
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

/** Reads the peer's whole message (up to the end of its side of the stream) as a JSON object. */
export async function readMessage(
  stream: Stream,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  const buf = new Uint8ArrayList();
  const onAbort = () => stream.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const piece of stream) {
      buf.append(piece);
      if (buf.byteLength > MAX_MESSAGE_BYTES) {
        const err = new PayProtocolError(`A pay message exceeds ${MAX_MESSAGE_BYTES} bytes`);
        stream.abort(err);
        throw err;
      }
    }
  } catch (e) {
    if (signal.aborted) throw signal.reason;
    if (e instanceof PayProtocolError) throw e;
    throw new PayProtocolError(`The pay stream failed: ${(e as Error).message}`, { cause: e });
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (signal.aborted) throw signal.reason;
  let message: unknown;
  try {
    message = JSON.parse(decoder.decode(buf.subarray()));
  } catch (e) {
    throw new PayProtocolError("A pay message is not valid JSON", { cause: e });
  }
  if (message === null || typeof message !== "object" || Array.isArray(message)) {
    throw new PayProtocolError("A pay message is not a JSON object");
  }
  return message as Record<string, unknown>;
}

/** A non-negative integer sent as a decimal string (or a safe integer). */
export function parseAmount(raw: unknown, what: string): bigint {
  if (typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0) return BigInt(raw);
  if (typeof raw === "string" && /^(0|[1-9][0-9]{0,77})$/.test(raw)) return BigInt(raw);
  throw new PayProtocolError(
    `"${what}" must be a non-negative integer, got ${JSON.stringify(raw)}`,
  );
}
