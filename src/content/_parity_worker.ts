/**
 * One worker of a {@link ParityPool}: loads the erasure kernel itself and computes stripe parity off the
 * main thread. Speaks the messages typed in `parity_pool.ts`.
 *
 * The kernel loads with a top-level await, and Deno drops messages that arrive before a module worker has
 * set its handler, so the worker says "ready" once it can take jobs and the pool holds jobs until then.
 *
 * @module
 */
/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />
import { rsEncode } from "../kernels/mod.ts";
import type { ParityReply, ParityRequest } from "./parity_pool.ts";

function padded(bytes: Uint8Array, size: number): Uint8Array {
  if (bytes.length === size) return bytes;
  const out = new Uint8Array(size);
  out.set(bytes);
  return out;
}

/**
 * `encodeParity` of stripes.ts step for step, for arguments the pool could not pack: it fails with the
 * same error. Parity is only allocated for a valid m; the kernel rejects any other before looking at it.
 */
function encodeArgs(data: Uint8Array[], m: number): Uint8Array[] {
  if (m === 0 || data.length === 0) return [];
  const size = data[0]!.length;
  const shards = data.map((d) => padded(d, size));
  if (Number.isInteger(m) && m > 0 && data.length + m <= 256) {
    for (let i = 0; i < m; i++) shards.push(new Uint8Array(size));
  }
  rsEncode(shards, data.length, m);
  return shards.slice(data.length);
}

function handle(req: ParityRequest): { reply: ParityReply; transfer: ArrayBuffer[] } {
  if (req.kind !== "stripe") {
    // Shared chunks are read in place, never written; arguments come as a copy and fail as encodeParity's.
    const parity = encodeArgs(req.data as Uint8Array[], req.m as number);
    const buffers = parity.map((p) => p.buffer as ArrayBuffer); // fresh arrays, each its own buffer
    return { reply: { id: req.id, parity: buffers }, transfer: buffers };
  }
  const { id, buffer, count, size, m } = req;
  const shards: Uint8Array[] = [];
  for (let i = 0; i < count; i++) shards.push(new Uint8Array(buffer, i * size, size));
  for (let i = 0; i < m; i++) shards.push(new Uint8Array(size));
  rsEncode(shards, count, m);
  const parity = shards.slice(count).map((p) => p.buffer as ArrayBuffer);
  // The packed stripe goes back too, so the pool can fill it again instead of allocating.
  return { reply: { id, parity, buffer }, transfer: [...parity, buffer] };
}

self.onmessage = (event: MessageEvent<ParityRequest>) => {
  const req = event.data;
  let out: { reply: ParityReply; transfer: ArrayBuffer[] };
  try {
    out = handle(req);
  } catch (e) {
    const error = e instanceof Error
      ? { name: e.name, message: e.message }
      : { name: "Error", message: String(e) };
    const buffer = req.kind === "stripe" ? req.buffer : undefined;
    out = { reply: { id: req.id, error, buffer }, transfer: buffer ? [buffer] : [] };
  }
  self.postMessage(out.reply, out.transfer);
};

self.postMessage({ ready: true } satisfies ParityReply);
