/**
 * The wire of `/meshgate/pay/1.0.0`: `../mesh/message.ts` (one JSON request per stream, one answer), with pay's
 * size limit and error. Messages are a few hundred bytes (a voucher and its batch's receipts).
 *
 * @module
 */
import type { Libp2p, PeerId } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { callPeer, encodeMessage, type Wire } from "../mesh/message.ts";

/** Largest pay message: a voucher with the receipts of a batch of up to ~1000 chunks. */
export const MAX_MESSAGE_BYTES = 256 * 1024;

/** The pay protocol's peer sent something unreadable, too long, or nothing in time. */
export class PayProtocolError extends MeshError {
  override name = "PayProtocolError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("pay_protocol", message, { cause: options.cause });
  }
}

/** The pay protocol's wire (`mesh/message.ts`). */
export const PAY_WIRE: Wire = {
  maxBytes: MAX_MESSAGE_BYTES,
  what: "pay",
  error: (message: string, cause?: unknown) => new PayProtocolError(message, { cause }),
};

export { encodeMessage };

/** Sends a pay request to `peer` and reads its answer. */
export function callPay(
  libp2p: Pick<Libp2p, "dialProtocol">,
  peer: string | PeerId,
  protocol: string,
  request: unknown,
  signal: AbortSignal,
): Promise<Record<string, unknown>> {
  return callPeer(libp2p, peer, protocol, request, signal, PAY_WIRE);
}

/** A non-negative integer sent as a decimal string (or a safe integer). */
export function parseAmount(raw: unknown, what: string): bigint {
  if (typeof raw === "number" && Number.isSafeInteger(raw) && raw >= 0) return BigInt(raw);
  if (typeof raw === "string" && /^(0|[1-9][0-9]{0,77})$/.test(raw)) return BigInt(raw);
  throw new PayProtocolError(
    `"${what}" must be a non-negative integer, got ${JSON.stringify(raw)}`,
  );
}
