/**
 * Varint length-prefixed frames over a libp2p stream, with read back-pressure.
 *
 * A frame is `uvarint(length) payload`; a payload is `uvarint(headerLength) headerJson body`. We frame by hand
 * instead of using `it-length-prefixed` or `@libp2p/utils`' `lpStream` because neither pauses the stream when
 * the reader falls behind: they buffer without bound (or reset the stream at 4 MiB). Here the reader pauses the
 * stream (yamux then stops granting window) once a full frame is waiting, and resumes when it is taken.
 *
 * @module
 */
import { Uint8ArrayList } from "uint8arraylist";
import type { AbortOptions, Stream, StreamCloseEvent, StreamMessageEvent } from "@libp2p/interface";
import { ExchangeProtocolError, MessageTooLargeError } from "./errors.ts";

/** Longest varint we accept for a length: 4 bytes encode up to 256 MiB, far above any frame we allow. */
const MAX_VARINT_BYTES = 4;
/**
 * The most receive window a mesh node's yamux grants one stream (`src/mesh/node.ts` configures it; yamux's own
 * default is 16 MiB). After a pause the remote can still send what it was granted, which lands in libp2p's read
 * buffer: so a reader holds at most a frame, one yamux message (at most a window) and a window, about 3 MiB,
 * and libp2p's default 4 MiB read-buffer cap is never hit by a well-behaved peer. One MiB per stream still
 * fills a 100 ms path at 10 MiB/s, and requests run several streams at once.
 */
export const STREAM_WINDOW_BYTES = 1024 * 1024;
/** libp2p's read-buffer cap (its default), above which a stream is reset: see {@link STREAM_WINDOW_BYTES}. */
export const MAX_READ_BUFFER_BYTES = 4 * 1024 * 1024;

/** Encodes `n` (a non-negative safe integer below 2^28) as an unsigned LEB128 varint. */
export function encodeUvarint(n: number): Uint8Array {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Uint8Array.from(out);
}

/**
 * Decodes a varint at `offset` of `list`. Returns `[value, bytesUsed]`, or `null` when more bytes are needed.
 * Throws when the varint is longer than {@link MAX_VARINT_BYTES}.
 */
function decodeUvarint(list: Uint8ArrayList, offset = 0): [number, number] | null {
  let value = 0;
  for (let i = 0; i < MAX_VARINT_BYTES; i++) {
    if (offset + i >= list.byteLength) return null;
    const byte = list.get(offset + i);
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return [value, i + 1];
  }
  throw new ExchangeProtocolError("a frame length prefix is longer than 4 bytes");
}

/** A decoded frame: a JSON header and the bytes after it. */
export interface Frame {
  header: unknown;
  body: Uint8Array;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** The wire form of one frame (length prefix included), without copying `body`. */
export function encodeFrame(header: unknown, body?: Uint8Array): Uint8ArrayList {
  const json = encoder.encode(JSON.stringify(header));
  const hlen = encodeUvarint(json.length);
  const payloadLength = hlen.length + json.length + (body?.length ?? 0);
  const list = new Uint8ArrayList(encodeUvarint(payloadLength), hlen, json);
  if (body !== undefined && body.length > 0) list.append(body);
  return list;
}

/** Splits a frame payload into its header and body. Throws {@link ExchangeProtocolError} when malformed. */
export function decodeFrame(payload: Uint8ArrayList, maxHeaderLength: number): Frame {
  const h = decodeUvarint(payload);
  if (h === null) throw new ExchangeProtocolError("a frame ends inside its header length");
  const [hlen, used] = h;
  if (hlen > maxHeaderLength) {
    throw new ExchangeProtocolError(`a frame header of ${hlen} bytes exceeds ${maxHeaderLength}`);
  }
  if (used + hlen > payload.byteLength) {
    throw new ExchangeProtocolError("a frame ends inside its header");
  }
  let header: unknown;
  try {
    header = JSON.parse(decoder.decode(bytesOf(payload, used, used + hlen)));
  } catch (e) {
    throw new ExchangeProtocolError("a frame header is not valid JSON", e);
  }
  return { header, body: bytesOf(payload, used + hlen, payload.byteLength) };
}

/**
 * Bytes [start, end) of `list` as a plain Uint8Array: a view when they lie in one of its buffers, else one
 * copy. Not `Uint8ArrayList.subarray`: that concatenates through Node's `Buffer.concat` (slow in Deno's
 * polyfill) and hands out Node Buffers, which callers should not see.
 */
function bytesOf(list: Uint8ArrayList, start: number, end: number): Uint8Array {
  let out: Uint8Array | undefined;
  let at = 0;
  let pos = 0;
  for (const buf of list) {
    const from = Math.max(start - pos, 0);
    const to = Math.min(end - pos, buf.byteLength);
    pos += buf.byteLength;
    if (to <= from) {
      if (pos >= end) break;
      continue;
    }
    if (out === undefined) {
      if (to - from === end - start) {
        return new Uint8Array(buf.buffer, buf.byteOffset + from, to - from);
      }
      out = new Uint8Array(end - start);
    }
    out.set(buf.subarray(from, to), at);
    at += to - from;
    if (pos >= end) break;
  }
  return out ?? new Uint8Array(0);
}

/**
 * Writes one frame and waits until the stream has handed all of it to the muxer, so that a writer never runs
 * more than one frame ahead of the remote's flow-control window.
 *
 * `send()` returning false and `onDrain()` are not enough: a libp2p stream queues whatever it is given without
 * bound, and yamux emits `drain` on every window update, however small, so a writer awaiting `onDrain()` after
 * each frame still queues the whole response when the reader stops (24 MiB in our test, against a 4 MiB window).
 */
export async function writeFrame(
  stream: Stream,
  header: unknown,
  body?: Uint8Array,
  options: AbortOptions = {},
): Promise<void> {
  stream.send(encodeFrame(header, body));
  while (stream.writeBufferLength > 0) {
    if (stream.status !== "open") throw new ExchangeProtocolError(`the stream is ${stream.status}`);
    await nextWriteProgress(stream, options.signal);
  }
}

/** Resolves at the stream's next `drain` or `idle`, rejects when it closes or `signal` aborts. */
function nextWriteProgress(stream: Stream, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: unknown) => {
      stream.removeEventListener("drain", onProgress);
      stream.removeEventListener("idle", onProgress);
      stream.removeEventListener("close", onClose);
      signal?.removeEventListener("abort", onAbort);
      if (err === undefined) resolve();
      else reject(err);
    };
    const onProgress = () => done();
    const onClose = (evt: StreamCloseEvent) => {
      done(
        new ExchangeProtocolError(
          `the stream closed: ${evt.error?.message ?? "while writing"}`,
          evt.error,
        ),
      );
    };
    const onAbort = () => done(signal!.reason);
    if (signal?.aborted) return done(signal.reason);
    stream.addEventListener("drain", onProgress);
    stream.addEventListener("idle", onProgress);
    stream.addEventListener("close", onClose);
    signal?.addEventListener("abort", onAbort);
  });
}

/** Options of {@link FrameReader}. */
export interface FrameReaderInit {
  /** Largest payload accepted; a longer length prefix throws {@link MessageTooLargeError} at once. */
  maxFrameLength: number;
}

/**
 * Reads whole frames from a stream. Holds at most about one frame beyond the one being read, then pauses the
 * stream; yamux stops granting window, so the remote's writer waits instead of our memory growing.
 */
export class FrameReader {
  readonly #stream: Stream;
  readonly #max: number;
  readonly #highWater: number;
  readonly #buf = new Uint8ArrayList();
  #ended = false;
  #error: Error | undefined;
  #wake: PromiseWithResolvers<void> | undefined;

  constructor(stream: Stream, init: FrameReaderInit) {
    this.#stream = stream;
    this.#max = init.maxFrameLength;
    this.#highWater = init.maxFrameLength + MAX_VARINT_BYTES;
    // What arrives after pause() (the window already granted) lands in the stream's own buffer: at most
    // STREAM_WINDOW_BYTES, well inside this cap. A peer that sends past its window is reset by yamux.
    stream.maxReadBufferLength = MAX_READ_BUFFER_BYTES;
    stream.addEventListener("message", this.#onMessage);
    stream.addEventListener("end", this.#onEnd);
    stream.addEventListener("close", this.#onClose);
    if (stream.readableEnded) this.#ended = true;
  }

  #onMessage = (evt: StreamMessageEvent): void => {
    this.#buf.append(evt.data);
    if (this.#buf.byteLength > this.#highWater && this.#stream.readStatus === "readable") {
      this.#stream.pause();
    }
    this.#wake?.resolve();
  };

  #onEnd = (): void => {
    this.#ended = true;
    this.#wake?.resolve();
  };

  #onClose = (evt: StreamCloseEvent): void => {
    this.#ended = true;
    this.#error ??= evt.error;
    this.#wake?.resolve();
  };

  /**
   * The next frame's payload, or `null` when the remote closed its end cleanly between frames. Throws
   * {@link MessageTooLargeError} for an oversize length prefix, {@link ExchangeProtocolError} when the stream ends
   * inside a frame or is reset, and the signal's reason when `options.signal` aborts.
   */
  async read(options: AbortOptions = {}): Promise<Uint8ArrayList | null> {
    while (true) {
      options.signal?.throwIfAborted();
      const prefix = decodeUvarint(this.#buf);
      if (prefix !== null) {
        const [length, used] = prefix;
        if (length > this.#max) throw new MessageTooLargeError(length, this.#max);
        if (this.#buf.byteLength >= used + length) {
          const payload = this.#buf.sublist(used, used + length);
          this.#buf.consume(used + length);
          this.#maybeResume();
          return payload;
        }
      }
      if (this.#ended) {
        if (this.#buf.byteLength === 0 && this.#error === undefined) return null;
        if (this.#error !== undefined) {
          throw new ExchangeProtocolError(`the stream closed: ${this.#error.message}`, this.#error);
        }
        throw new ExchangeProtocolError("the stream ended inside a frame");
      }
      // Need more bytes than we hold: never stay paused while waiting for them.
      this.#maybeResume();
      this.#wake = Promise.withResolvers<void>();
      await raceAbort(this.#wake.promise, options.signal);
    }
  }

  #maybeResume(): void {
    if (this.#buf.byteLength <= this.#highWater && this.#stream.readStatus === "paused") {
      this.#stream.resume();
    }
  }

  /** Bytes received and not yet returned as a frame (more may wait in the stream's buffer while paused). */
  get buffered(): number {
    return this.#buf.byteLength;
  }

  /** Detaches from the stream (its events stop reaching this reader) and drops what it buffered. */
  release(): void {
    this.#buf.consume(this.#buf.byteLength);
    this.#stream.removeEventListener("message", this.#onMessage);
    this.#stream.removeEventListener("end", this.#onEnd);
    this.#stream.removeEventListener("close", this.#onClose);
  }
}

/** Resolves like `promise`, or rejects with the signal's reason as soon as it aborts. */
export function raceAbort<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (signal === undefined) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
