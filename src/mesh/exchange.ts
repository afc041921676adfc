/**
 * The chunk exchange protocol, `/meshgate/chunk/1.0.0`: peers ask each other for chunks (`get`), whether they
 * hold them (`has`), and to keep them (`put`).
 *
 * One request per stream. Every message is a frame (see `_framing.ts`): a JSON header, then raw bytes for
 * chunk data. The client opens a stream and writes
 *
 * - `{ op: "get", cids }`: the server answers, in order, one `{ cid, found }` frame per CID, with the chunk as
 *   body when found;
 * - `{ op: "has", cids }`: one `{ have: boolean[] }` frame;
 * - `{ op: "put", count }` then `count` frames `{ cid }` + bytes: one `{ cid, accepted, reason? }` frame per
 *   chunk, as each is stored or refused;
 * - `{ op: "prove", nonce, cids }` (nonce: 16 to 64 random bytes, hex): one `{ cid, proof }` frame per CID, in
 *   order, `proof` the hex {@link chunkProof} of the chunk as held (BLAKE3 over the nonce, the length and
 *   slices at places the nonce picks), or `null` when not held. An uploader checks it against its own copy
 *   before it drops that copy: an `accepted: true` alone proves nothing.
 *
 * A server that cannot serve a request sends `{ error, message }` and closes. A frame over the limit resets
 * the stream. Every chunk received is checked against its CID before use; a peer that sends bad bytes is
 * reported through `onMisbehaviour`, recorded, and not asked again within that request.
 *
 * Paid delivery plugs in through two structural hooks, so that the mesh knows nothing of money: a
 * {@link DeliveryGate} on the serving side meters every chunk before it is sent (it may wait for a payment, or
 * refuse with `{ error, message, refused: true }` in place of the chunk's answer, which ends the
 * request), and a {@link DeliveryPayer} on the asking side hears of every verified chunk and of every refusal,
 * after which it may pay and have the rest of the request asked again.
 *
 * Every chunk answer carries the server's signature over (CID, BLAKE3 of the bytes as sent, time)
 * (`signed_delivery.ts`): a reader that gets bytes failing their CID then holds a portable proof of fraud,
 * reported with the misbehaviour. The reader checks the signature only then: on honest bytes it proves nothing
 * the CID does not.
 *
 * @module
 */
import type {
  AbortOptions,
  ComponentLogger,
  Connection,
  Logger,
  PeerId,
  PeerStore,
  PrivateKey,
  Startable,
  Stream,
  StreamHandler,
} from "@libp2p/interface";
import type { Multiaddr } from "@multiformats/multiaddr";
import { ChunkMismatchError, type CID, matchesCid, parseCid } from "../content/cid.ts";
import { MeshError } from "../errors.ts";
import { blake3 } from "../kernels/mod.ts";
import { decodeFrame, encodeFrame, type Frame, FrameReader, writeFrame } from "./_framing.ts";
import { KeyedLimiter } from "./_limiter.ts";
import { type DeliverySignature, signDelivery, verifyDelivery } from "./signed_delivery.ts";
import { fromHex, toHex } from "../units.ts";
import {
  openConnectionTo,
  type PeerTarget,
  peerTargetLabel,
  resolvePeerTarget,
} from "./_target.ts";
import {
  ExchangeProtocolError,
  MessageTooLargeError,
  PeerTimeoutError,
  PeerUnreachableError,
} from "./errors.ts";

export type { PeerTarget };

/** Protocol ID of the chunk exchange. */
export const CHUNK_PROTOCOL = "/meshgate/chunk/1.0.0";
/** Largest chunk, in bytes (DESIGN.md: a chunk is at most 1 MiB). */
export const MAX_CHUNK_BYTES = 1024 * 1024;
/** Largest frame header, in bytes. */
export const MAX_HEADER_BYTES = 64 * 1024;
/** Largest frame: one chunk and its header. A longer length prefix resets the stream. */
export const MAX_FRAME_BYTES = MAX_CHUNK_BYTES + MAX_HEADER_BYTES;
/** Most CIDs in one request: 512 base32 CIDs (~60 chars each) stay well inside {@link MAX_HEADER_BYTES}. */
export const MAX_CIDS_PER_REQUEST = 512;

/**
 * The local chunk store as the exchange sees it. Typed structurally so that the mesh layer does not import
 * `src/store` (a sibling layer); the node wires the real store in.
 */
export interface ChunkSource {
  /** Bytes of `cid`, or `null` when absent. */
  get(cid: CID): Promise<Uint8Array | null>;
  /** True when `get` returns only bytes it checked against their CID (a verifying store): answers are then
   * signed over the CID's own digest, without hashing the chunk again. */
  readonly verified?: boolean;
  /** True when the chunk is held. */
  has(cid: CID): Promise<boolean>;
  /** Keeps a chunk (verifying it) that peer `from` sent; throws a `MeshError` with code `"store_full"` when
   * full, `"quota_exceeded"` when `from` has used its volunteer quota (both become refusals, not errors). */
  put(cid: CID, bytes: Uint8Array, from?: string): Promise<void>;
}

/** What a peer did wrong, as reported to `onMisbehaviour` and kept in {@link ChunkExchange.misbehaviour}. */
export type MisbehaviourReport =
  /** It sent bytes that do not hash to the CID they were sent under (answering `get`, or in a `put`); `signed`:
   * its signature over the hash of what it sent, when valid: with it, anyone can check the fraud. */
  | { kind: "bad_bytes"; cid: CID; at: number; signed?: DeliverySignature }
  /** It sent a frame over the size limit. */
  | { kind: "oversize"; length: number; at: number };

/** Called once per misbehaviour seen; the reputation layer consumes these. */
export type MisbehaviourListener = (peerId: string, report: MisbehaviourReport) => void;

/** Options of the chunk exchange. Every field documents its default. */
export interface ChunkExchangeInit {
  /** The local store that serves `get`/`has` and keeps `put` chunks. Without one, `get` finds nothing and `put`
   * is refused with reason `"no_store"`. Default: none. */
  store?: ChunkSource;
  /** Most requests this node runs at once towards one peer; more wait for a slot. Default: 8. */
  maxInFlightPerPeer?: number;
  /** Longest wait, in ms, for the next frame of an answer (or for the peer to take ours) before the request
   * fails with {@link PeerTimeoutError}. An idle timeout: a long transfer that keeps moving never hits it. Pass
   * `signal` to bound a whole call. Default: 30 000. */
  timeoutMs?: number;
  /** Longest wait, in ms, for a free in-flight slot towards a peer (see `maxInFlightPerPeer`) before the
   * request fails with {@link PeerTimeoutError}: a peer that holds every slot without answering stalls only
   * its own requests. Default: `timeoutMs`. */
  slotWaitMs?: number;
  /** The serving side's idle timeout, in ms, after which an inbound request is reset. Default: 60 000. */
  serverTimeoutMs?: number;
  /** Inbound streams of this protocol allowed at once from one peer, over all its connections (more are reset).
   * Keep it above peers' `maxInFlightPerPeer`. With at most ~3 MiB buffered per stream (`_framing.ts`; 2 MiB more of a `put` being stored), this
   * bounds what one peer's requests can hold here. Default: 32. */
  maxInboundStreams?: number;
  /** Once an exchange is done, how long, in ms, the remote may take to close its end before the stream is reset.
   * Bytes past the request reset it at once: a stream carries one request. Default: 5000. */
  halfOpenTimeoutMs?: number;
  /** Called for every misbehaviour seen, besides the in-memory record. Default: none. */
  onMisbehaviour?: MisbehaviourListener;
  /** Meters what this node serves (paid delivery, operator side). Default: none, every chunk is free. */
  gate?: DeliveryGate;
  /** Hears what this node receives and pays for it (paid delivery, client side). Default: none. */
  payer?: DeliveryPayer;
  /** Sign every chunk answer with the node's identity key (see the module). Costs a BLAKE3 of the chunk and
   * an Ed25519 signature on the serving side. Default: true when libp2p gives the exchange its key. */
  signDeliveries?: boolean;
}

/**
 * The serving side's hook: decides, chunk by chunk, whether a peer is served. Typed structurally so that the
 * mesh does not import the money layer; `src/pay` implements it. Refusals are `MeshError`s: their `code`,
 * `message` reach the peer as a {@link DeliveryRefusedError}.
 */
export interface DeliveryGate {
  /** Called first for every inbound request of any op; throws to refuse the peer outright (e.g. banned). */
  admit?(peer: string): void;
  /**
   * Called before `bytes` of chunk `cid` are sent to `peer`, and counts them as served from then on. May wait
   * (for a payment), at most until `signal` aborts (the server's idle timeout); throws to refuse the chunk,
   * which ends the request.
   */
  authorize(peer: string, cid: CID, bytes: number, options: { signal: AbortSignal }): Promise<void>;
  /** Called after each authorized chunk: `delivered` false when it could not be sent (it is not owed). */
  served?(peer: string, cid: CID, bytes: number, delivered: boolean): void;
}

/** Wei spent on one file, shared by the fetches of its chunks (see `src/pay/limits.ts`). */
export interface SpendBudget {
  spentWei: bigint;
}

/** The asking side's hook: pays for what it receives. Typed structurally, like {@link DeliveryGate}. */
export interface DeliveryPayer {
  /** Called for every chunk received from `peer` and verified against its CID, before the caller gets it.
   * Awaited (payment keeps pace with the download); a rejection is logged, not thrown: the bytes are good,
   * and an operator left unpaid refuses later anyway. */
  received(peer: string, cid: CID, bytes: number, budget?: SpendBudget): Promise<void>;
  /** Called before `peer` is asked for chunks; throws a `MeshError` to not ask it (e.g. its price is above
   * this node's ceiling, or a spending cap is reached). The error is what the caller gets. Default: all asked. */
  screen?(peer: string, budget?: SpendBudget): Promise<void>;
  /** Called when `peer` refused to serve. Resolve true once something was paid, to have the rest of the
   * request asked again; false to give up (the caller gets the refusal). A rejection is what the caller gets. */
  refused(peer: string, error: DeliveryRefusedError): Promise<boolean>;
}

/**
 * A peer refused to serve a chunk: its {@link DeliveryGate} said no. `code` is the peer's reason (e.g.
 * `"payment_required"`: pay and ask again; `"peer_banned"`), `message` its explanation.
 */
export class DeliveryRefusedError extends MeshError {
  override name = "DeliveryRefusedError";
  constructor(readonly peer: string, code: string, message: string) {
    super(code, message);
  }
}

/** The libp2p components the exchange uses (injected by libp2p when it runs as a service). */
export interface ChunkExchangeComponents {
  registrar: {
    handle(
      protocol: string,
      handler: StreamHandler,
      options?: Record<string, unknown>,
    ): Promise<void>;
    unhandle(protocol: string): Promise<void>;
  };
  connectionManager: {
    /** The connections to a peer (libp2p's): a relayed one is reused (see `openConnectionTo`). */
    getConnections?(peer: PeerId): Connection[];
    openConnection(
      peer: PeerId | Multiaddr | Multiaddr[],
      options?: AbortOptions & { force?: boolean },
    ): Promise<Connection>;
  };
  peerStore: PeerStore;
  logger: ComponentLogger;
  /** The node's identity key: signs deliveries. */
  privateKey?: PrivateKey;
}

/** One answer of {@link ChunkExchange.fetchChunks}: the verified bytes, or `null` when the peer lacks it. */
export interface FetchedChunk {
  cid: CID;
  bytes: Uint8Array | null;
}

/** Why a peer refused to keep a chunk. */
export type StoreRefusal = "store_full" | "quota_exceeded" | "bad_bytes" | "no_store" | "error";

/** Chunk bytes exchanged with one peer (see {@link ChunkExchange.traffic}). */
export interface PeerTraffic {
  sentBytes: number;
  receivedBytes: number;
}

/** Peers whose traffic is kept; the one seen longest ago is forgotten past it. */
export const MAX_TRAFFIC_PEERS = 1024;

/** One answer of {@link ChunkExchange.storeChunks}. */
export interface StoreResult {
  cid: CID;
  accepted: boolean;
  /** Set when refused. */
  reason?: StoreRefusal;
  /** The peer's explanation, when refused. */
  message?: string;
}

/** Options of every client call. */
export interface ExchangeCallOptions {
  /** Aborts the whole call; the stream is reset and the signal's reason thrown. */
  signal?: AbortSignal;
  /** What the file these chunks belong to has cost so far; the payer adds to it and caps it. */
  budget?: SpendBudget;
}

const MAX_REPORTS_PER_PEER = 100;
/** The server's answer to one chunk of a `put`. */
type StoreAnswer = { accepted: boolean; reason?: StoreRefusal; message?: string };
/** Chunks of one `put` request being stored at once, and the most bytes they may hold here (one chunk
 * always): with the frame reader's buffer, a put stream holds at most about 5 MiB. */
const PUT_KEEPING = 4;
const PUT_KEEPING_BYTES = 2 * 1024 * 1024;
const NONCE_HEX = /^(?:[0-9a-f]{2}){16,64}$/;

/** Slices a proof samples, and their length: 2 KiB of a chunk, so proving costs far less than sending. */
export const PROOF_SLICES = 32;
export const PROOF_SLICE_BYTES = 64;

/**
 * What a holder of `bytes` answers to a `prove` challenge with `nonce`: BLAKE3(nonce || length (u32 LE) ||
 * {@link PROOF_SLICES} slices of {@link PROOF_SLICE_BYTES} at offsets drawn from BLAKE3(nonce || length ||
 * j)), or over the whole chunk when it is no longer than the slices. The nonce is fresh, so neither the
 * offsets nor the answer can be known before the challenge: a holder with no copy cannot answer, one with
 * a truncated copy gives another length, and one missing a fraction f of the bytes passes with
 * (1 − f)^32 (10% missing: 3%).
 */
export function chunkProof(nonce: Uint8Array, bytes: Uint8Array): Uint8Array {
  const n = bytes.length;
  const head = new Uint8Array(nonce.length + 5);
  head.set(nonce);
  new DataView(head.buffer).setUint32(nonce.length, n, true);
  const sample = PROOF_SLICES * PROOF_SLICE_BYTES;
  if (n <= sample) {
    const whole = new Uint8Array(head.length - 1 + n);
    whole.set(head.subarray(0, -1));
    whole.set(bytes, head.length - 1);
    return blake3(whole);
  }
  const out = new Uint8Array(head.length - 1 + sample);
  out.set(head.subarray(0, -1));
  const span = n - PROOF_SLICE_BYTES + 1;
  for (let j = 0; j < PROOF_SLICES; j += 8) {
    head[head.length - 1] = j;
    const seed = new DataView(blake3(head).buffer);
    for (let i = 0; i < 8; i++) {
      const at = seed.getUint32(4 * i, true) % span;
      out.set(
        bytes.subarray(at, at + PROOF_SLICE_BYTES),
        head.length - 1 + (j + i) * PROOF_SLICE_BYTES,
      );
    }
  }
  return blake3(out);
}

/**
 * `peer`'s signature over the bytes it sent, when it holds: valid, and over the hash of exactly `bytes`. A
 * peer that signed some other hash is caught here all the same, but leaves no proof for others.
 */
async function signedFraud(
  peer: string,
  cid: CID,
  bytes: Uint8Array,
  delivery: unknown,
): Promise<DeliverySignature | undefined> {
  if (delivery === undefined) return undefined;
  try {
    const d = await verifyDelivery(peer, cid, delivery);
    return d.hash === toHex(blake3(bytes)) ? d : undefined;
  } catch {
    return undefined;
  }
}
const STORE_REFUSALS: ReadonlySet<string> = new Set([
  "store_full",
  "quota_exceeded",
  "bad_bytes",
  "no_store",
  "error",
]);

/** Builds the exchange as a libp2p service: `services: { exchange: chunkExchange({ store }) }`. */
export function chunkExchange(
  init: ChunkExchangeInit = {},
): (components: ChunkExchangeComponents) => ChunkExchange {
  return (components) => new ChunkExchange(components, init);
}

/** Serves the chunk exchange protocol and is its client. Starts and stops with the libp2p node. */
export class ChunkExchange implements Startable {
  readonly #components: ChunkExchangeComponents;
  readonly #store: ChunkSource | undefined;
  readonly #timeoutMs: number;
  readonly #slotWaitMs: number;
  readonly #serverTimeoutMs: number;
  readonly #maxInbound: number;
  readonly #limiter: KeyedLimiter;
  readonly #onMisbehaviour: MisbehaviourListener | undefined;
  readonly #misbehaviour = new Map<string, MisbehaviourReport[]>();
  readonly #inbound = new Map<Stream, Session>();
  /** Open inbound streams by peer ID. */
  readonly #inboundByPeer = new Map<string, number>();
  readonly #halfOpenMs: number;
  readonly #gate: DeliveryGate | undefined;
  readonly #payer: DeliveryPayer | undefined;
  readonly #signer: PrivateKey | undefined;
  #requested = 0;
  /** Chunk bytes sent to and received from each peer (verified ones only), since start; bounded. */
  readonly #traffic = new Map<string, PeerTraffic>();
  /** The same over every peer, forgotten ones included. */
  readonly #trafficTotal: PeerTraffic = { sentBytes: 0, receivedBytes: 0 };
  readonly #log: Logger;

  constructor(components: ChunkExchangeComponents, init: ChunkExchangeInit = {}) {
    this.#components = components;
    this.#store = init.store;
    this.#timeoutMs = positive(init.timeoutMs ?? 30_000, "timeoutMs");
    this.#slotWaitMs = positive(init.slotWaitMs ?? this.#timeoutMs, "slotWaitMs");
    this.#serverTimeoutMs = positive(init.serverTimeoutMs ?? 60_000, "serverTimeoutMs");
    this.#maxInbound = positive(init.maxInboundStreams ?? 32, "maxInboundStreams");
    this.#halfOpenMs = positive(init.halfOpenTimeoutMs ?? 5000, "halfOpenTimeoutMs");
    this.#limiter = new KeyedLimiter(init.maxInFlightPerPeer ?? 8);
    this.#onMisbehaviour = init.onMisbehaviour;
    this.#gate = init.gate;
    this.#payer = init.payer;
    this.#signer = init.signDeliveries === false ? undefined : components.privateKey;
    this.#log = components.logger.forComponent("meshgate:exchange");
  }

  readonly [Symbol.toStringTag] = "@meshgate/chunk-exchange";

  async start(): Promise<void> {
    await this.#components.registrar.handle(CHUNK_PROTOCOL, this.#handle, {
      maxInboundStreams: this.#maxInbound,
      maxOutboundStreams: Math.max(64, this.#maxInbound),
      // Chunks flow over relayed connections too: the relay's own limits and meter bound them.
      runOnLimitedConnection: true,
    });
  }

  async stop(): Promise<void> {
    await this.#components.registrar.unhandle(CHUNK_PROTOCOL);
    for (const stream of this.#inbound.keys()) stream.abort(new Error("The node is stopping"));
    this.#inbound.clear();
    this.#inboundByPeer.clear();
  }

  /** Inbound chunk streams open now (lingering ones included), and the bytes they hold unread: what the
   * framing reader buffered plus libp2p's read buffer. Each stays within about a frame and two stream windows
   * (~3 MiB, see `_framing.ts`), and a peer has at most `maxInboundStreams` of them. */
  /** Chunks peers have asked this node for (each CID of each `get`), since start: what a drill is asked. */
  get chunksRequested(): number {
    return this.#requested;
  }

  /** Chunk bytes this node sent each peer (answers to its `get`s, chunks it took to keep) and got from it (verified
   * answers, chunks this node kept for it), since start:
   * the peers seen last, at most {@link MAX_TRAFFIC_PEERS}. */
  traffic(): ReadonlyMap<string, Readonly<PeerTraffic>> {
    return this.#traffic;
  }

  /** {@link traffic} summed over every peer since start (a counter: it never falls). */
  trafficTotal(): Readonly<PeerTraffic> {
    return this.#trafficTotal;
  }

  #count(peer: string, key: "sentBytes" | "receivedBytes", bytes: number): void {
    this.#trafficTotal[key] += bytes;
    let t = this.#traffic.get(peer);
    if (t === undefined) {
      if (this.#traffic.size >= MAX_TRAFFIC_PEERS) {
        this.#traffic.delete(this.#traffic.keys().next().value!);
      }
      t = { sentBytes: 0, receivedBytes: 0 };
    } else this.#traffic.delete(peer); // re-inserted last: the map stays in order of last use
    this.#traffic.set(peer, t);
    t[key] += bytes;
  }

  inboundStats(): { streams: number; bufferedBytes: number } {
    let bufferedBytes = 0;
    for (const [stream, session] of this.#inbound) {
      bufferedBytes += session.reader.buffered + stream.readBufferLength;
    }
    return { streams: this.#inbound.size, bufferedBytes };
  }

  /** Misbehaviour seen so far, by peer ID, oldest first (the last 100 per peer). Kept in memory only: the
   * reputation layer keeps the durable record through `onMisbehaviour`. */
  misbehaviour(): ReadonlyMap<string, readonly MisbehaviourReport[]> {
    return this.#misbehaviour;
  }

  // ---------------------------------------------------------------------------------------------------------
  // Client

  /** Fetches one chunk from `peer`: its verified bytes, or `null` when the peer does not hold it. */
  async fetchChunk(
    peer: PeerTarget,
    cid: CID,
    options: ExchangeCallOptions = {},
  ): Promise<Uint8Array | null> {
    for await (const got of this.fetchChunks(peer, [cid], options)) return got.bytes;
    throw new ExchangeProtocolError("the peer sent no answer");
  }

  /**
   * Fetches chunks from `peer`, yielding one {@link FetchedChunk} per CID, in order, as they arrive. Bytes are
   * verified against their CID first: on a mismatch the peer is reported and the iteration throws
   * {@link ChunkMismatchError} without asking that peer for the rest. Breaking out early resets the stream.
   *
   * A peer that refuses to serve (its gate said no) ends the iteration with {@link DeliveryRefusedError},
   * unless this node's {@link DeliveryPayer} pays and the rest is asked again; two refusals in a row with
   * nothing served in between end it anyway.
   */
  async *fetchChunks(
    peer: PeerTarget,
    cids: readonly CID[],
    options: ExchangeCallOptions = {},
  ): AsyncGenerator<FetchedChunk> {
    for (let start = 0; start < cids.length; start += MAX_CIDS_PER_REQUEST) {
      let rest = cids.slice(start, start + MAX_CIDS_PER_REQUEST);
      let stalls = 0;
      while (rest.length > 0) {
        const session = await this.#open(peer, options.signal);
        let got = 0;
        try {
          await this.#payer?.screen?.(session.peer, options.budget);
        } catch (e) {
          session.fail(e);
          session.end();
          throw e;
        }
        try {
          await session.send({ op: "get", cids: rest.map(String) });
          await session.closeWrite();
          for (const [i, cid] of rest.entries()) {
            const frame = await session.expect();
            const header = frame.header as { cid?: unknown; found?: unknown; delivery?: unknown };
            if (header.cid !== cid.toString() || typeof header.found !== "boolean") {
              throw new ExchangeProtocolError(
                `peer "${session.peer}" answered out of order for ${cid}`,
              );
            }
            if (header.found && !matchesCid(cid, frame.body)) {
              const signed = await signedFraud(session.peer, cid, frame.body, header.delivery);
              this.#report(session.peer, { kind: "bad_bytes", cid, at: Date.now(), signed });
              throw new ChunkMismatchError(cid, `peer "${session.peer}"`);
            }
            if (header.found) {
              this.#count(session.peer, "receivedBytes", frame.body.length);
              await this.#received(session.peer, cid, frame.body.length, options.budget);
            }
            // Complete before the last yield: a consumer that stops there has not abandoned anything.
            if (i === rest.length - 1) session.done();
            got = i + 1;
            yield { cid, bytes: header.found ? frame.body : null };
          }
          rest = [];
        } catch (e) {
          if (!(e instanceof DeliveryRefusedError) || this.#payer === undefined) {
            throw session.fail(e);
          }
          session.fail(e);
          stalls = got > 0 ? 0 : stalls + 1;
          if (stalls >= 2 || !(await this.#payer.refused(session.peer, e))) throw e;
          rest = rest.slice(got);
        } finally {
          session.end();
        }
      }
    }
  }

  /** Tells the payer about a verified chunk; its failures are logged (see {@link DeliveryPayer.received}). */
  async #received(peer: string, cid: CID, bytes: number, budget?: SpendBudget): Promise<void> {
    if (this.#payer === undefined) return;
    try {
      await this.#payer.received(peer, cid, bytes, budget);
    } catch (e) {
      this.#log.error("paying %s for %s failed - %e", peer, cid, e);
    }
  }

  /** Asks `peer` which of `cids` it holds: one boolean per CID, in order. */
  async hasChunks(
    peer: PeerTarget,
    cids: readonly CID[],
    options: ExchangeCallOptions = {},
  ): Promise<boolean[]> {
    const out: boolean[] = [];
    for (let start = 0; start < cids.length; start += MAX_CIDS_PER_REQUEST) {
      const batch = cids.slice(start, start + MAX_CIDS_PER_REQUEST);
      const session = await this.#open(peer, options.signal);
      try {
        await session.send({ op: "has", cids: batch.map(String) });
        await session.closeWrite();
        const { have } = (await session.expect()).header as { have?: unknown };
        if (
          !Array.isArray(have) || have.length !== batch.length ||
          !have.every((h) => typeof h === "boolean")
        ) {
          throw new ExchangeProtocolError(`peer "${session.peer}" sent a malformed "has" answer`);
        }
        out.push(...have);
        session.done();
      } catch (e) {
        throw session.fail(e);
      } finally {
        session.end();
      }
    }
    return out;
  }

  /**
   * Challenges `peer` to prove it holds `cids`: one answer per CID, in order, the peer's
   * {@link chunkProof} under `nonce` (16 to 64 bytes, fresh and secret until now), or `null` when it says
   * it does not hold the chunk. The caller compares each with the proof of its own copy.
   */
  async proveChunks(
    peer: PeerTarget,
    nonce: Uint8Array,
    cids: readonly CID[],
    options: ExchangeCallOptions = {},
  ): Promise<(Uint8Array | null)[]> {
    const hex = toHex(nonce);
    if (!NONCE_HEX.test(hex)) throw new RangeError("A proof nonce must have 16 to 64 bytes");
    const out: (Uint8Array | null)[] = [];
    for (let start = 0; start < cids.length; start += MAX_CIDS_PER_REQUEST) {
      const batch = cids.slice(start, start + MAX_CIDS_PER_REQUEST);
      const session = await this.#open(peer, options.signal);
      try {
        await session.send({ op: "prove", nonce: hex, cids: batch.map(String) });
        await session.closeWrite();
        for (const cid of batch) {
          const h = (await session.expect()).header as { cid?: unknown; proof?: unknown };
          const ok = h.cid === cid.toString() &&
            (h.proof === null || (typeof h.proof === "string" && /^[0-9a-f]{64}$/.test(h.proof)));
          if (!ok) {
            throw new ExchangeProtocolError(
              `peer "${session.peer}" sent a malformed proof for ${cid}`,
            );
          }
          out.push(h.proof === null ? null : fromHex(h.proof as string));
        }
        session.done();
      } catch (e) {
        throw session.fail(e);
      } finally {
        session.end();
      }
    }
    return out;
  }

  /**
   * Asks `peer` to keep `chunks`. Resolves with one {@link StoreResult} per chunk, in order: refusals (a full
   * store: `"store_full"`; this node's volunteer quota there spent: `"quota_exceeded"`) are answers, not
   * errors. Throws `RangeError` for a chunk over
   * {@link MAX_CHUNK_BYTES} before sending anything.
   */
  async storeChunks(
    peer: PeerTarget,
    chunks: readonly { cid: CID; bytes: Uint8Array }[],
    options: ExchangeCallOptions = {},
  ): Promise<StoreResult[]> {
    for (const { cid, bytes } of chunks) {
      if (bytes.length > MAX_CHUNK_BYTES) {
        throw new RangeError(
          `Chunk "${cid}" has ${bytes.length} bytes, more than the limit of ${MAX_CHUNK_BYTES}`,
        );
      }
    }
    const out: StoreResult[] = [];
    for (let start = 0; start < chunks.length; start += MAX_CIDS_PER_REQUEST) {
      const batch = chunks.slice(start, start + MAX_CIDS_PER_REQUEST);
      const session = await this.#open(peer, options.signal);
      try {
        // Write and read at once: the server answers each chunk as it stores it.
        const writing = (async () => {
          await session.send({ op: "put", count: batch.length });
          for (const { cid, bytes } of batch) await session.send({ cid: cid.toString() }, bytes);
          await session.closeWrite();
        })();
        const reading = (async () => {
          const results: StoreResult[] = [];
          const sizes = new Map(batch.map((c) => [c.cid.toString(), c.bytes.length]));
          for (const { cid } of batch) {
            const h = (await session.expect()).header as Record<string, unknown>;
            if (h.cid !== cid.toString() || typeof h.accepted !== "boolean") {
              throw new ExchangeProtocolError(
                `peer "${session.peer}" answered out of order for ${cid}`,
              );
            }
            if (h.accepted) {
              this.#count(session.peer, "sentBytes", sizes.get(cid.toString()) ?? 0);
              results.push({ cid, accepted: true });
            } else {
              const reason = typeof h.reason === "string" && STORE_REFUSALS.has(h.reason)
                ? h.reason as StoreRefusal
                : "error";
              const message = typeof h.message === "string" ? h.message.slice(0, 500) : undefined;
              results.push({ cid, accepted: false, reason, ...(message ? { message } : {}) });
            }
          }
          return results;
        })();
        const [, results] = await Promise.all([writing, reading]);
        out.push(...results);
        session.done();
      } catch (e) {
        throw session.fail(e);
      } finally {
        session.end();
      }
    }
    return out;
  }

  /** Dials `target`, waits for an in-flight slot for that peer, and opens a stream: one request's session. */
  async #open(target: PeerTarget, signal?: AbortSignal): Promise<Session> {
    const label = peerTargetLabel(target);
    let connection: Connection;
    let dial: Awaited<ReturnType<typeof resolvePeerTarget>>;
    try {
      dial = await resolvePeerTarget(this.#components.peerStore, target);
      const manager = this.#components.connectionManager;
      connection = (manager.getConnections &&
        openConnectionTo((p) => manager.getConnections!(p), dial)) ??
        await manager.openConnection(dial, { signal });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new PeerUnreachableError(label, e);
    }
    const peer = connection.remotePeer.toString();
    const release = await this.#limiter.acquire(
      peer,
      signal,
      this.#slotWaitMs,
      () => new PeerTimeoutError(peer, this.#slotWaitMs),
    );
    let stream: Stream;
    try {
      stream = await connection.newStream(CHUNK_PROTOCOL, { signal, runOnLimitedConnection: true });
    } catch (first) {
      // A peer that restarted leaves a connection that looks open until the first stream on it fails:
      // drop it and dial once more, so churn costs one round trip, not a failed request.
      try {
        if (signal?.aborted || (first as Error).name === "UnsupportedProtocolError") throw first;
        await connection.close().catch(() => {});
        const fresh = await this.#components.connectionManager.openConnection(dial, {
          signal,
          force: true,
        });
        stream = await fresh.newStream(CHUNK_PROTOCOL, { signal, runOnLimitedConnection: true });
      } catch (e) {
        release();
        if (signal?.aborted) throw signal.reason;
        throw new PeerUnreachableError(peer, e === first ? e : first);
      }
    }
    return new Session(
      peer,
      stream,
      release,
      this.#timeoutMs,
      this.#halfOpenMs,
      signal,
      (r) => this.#report(peer, r),
    );
  }

  #report(peer: string, report: MisbehaviourReport): void {
    let list = this.#misbehaviour.get(peer);
    if (list === undefined) this.#misbehaviour.set(peer, list = []);
    list.push(report);
    if (list.length > MAX_REPORTS_PER_PEER) list.shift();
    this.#log("misbehaviour by %s: %s", peer, report.kind);
    try {
      this.#onMisbehaviour?.(peer, report);
    } catch (e) {
      this.#log.error("onMisbehaviour threw - %e", e);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // Server

  #handle: StreamHandler = async (stream, connection) => {
    const peer = connection.remotePeer.toString();
    // Counted until the stream is closed, including while it lingers for the peer's end (Session.end).
    const open = this.#inboundByPeer.get(peer) ?? 0;
    if (open >= this.#maxInbound) {
      this.#log("refusing a chunk stream from %s: %d already open", peer, open);
      stream.abort(
        new ExchangeProtocolError(`more than ${this.#maxInbound} chunk streams from one peer`),
      );
      return;
    }
    if (stream.status !== "open") return; // closed during negotiation: no "close" event will come
    this.#inboundByPeer.set(peer, open + 1);
    stream.addEventListener("close", () => {
      this.#inbound.delete(stream);
      const left = (this.#inboundByPeer.get(peer) ?? 1) - 1;
      if (left > 0) this.#inboundByPeer.set(peer, left);
      else this.#inboundByPeer.delete(peer);
    }, { once: true });
    const session = new Session(
      peer,
      stream,
      () => {},
      this.#serverTimeoutMs,
      this.#halfOpenMs,
      undefined,
      (r) => this.#report(peer, r),
    );
    this.#inbound.set(stream, session);
    try {
      try {
        await this.#serve(session);
      } catch (e) {
        if (!(e instanceof GateRefusal)) throw e;
      }
      await session.closeWrite();
      session.done();
    } catch (e) {
      const err = session.fail(e);
      this.#log("request from %s failed - %e", peer, err);
    } finally {
      session.end();
    }
  };

  async #serve(session: Session): Promise<void> {
    const first = await session.next();
    if (first === null) return;
    const req = first.header as Record<string, unknown>;
    try {
      this.#gate?.admit?.(session.peer);
    } catch (e) {
      return await session.send(this.#refusal(e));
    }
    if (req.op === "get" || req.op === "has") {
      // The request is one frame: what the peer sends while it is answered can only hold memory here.
      session.expectNoMoreInput();
      const cids = this.#requestCids(req.cids);
      if (cids === null) {
        return await session.refuse("bad_request", '"cids" must list 1 to 512 CIDs');
      }
      if (req.op === "get") this.#requested += cids.length;
      if (req.op === "has") {
        let have: boolean[];
        try {
          have = this.#store
            ? await Promise.all(cids.map((c) => this.#store!.has(c)))
            : cids.map(() => false);
        } catch (e) {
          this.#log.error("store.has failed - %e", e);
          return await session.refuse("store_error", "The store failed to look chunks up");
        }
        return await session.send({ have });
      }
      // The next chunk is read from the store while this one is sent, so the disk does not stall the
      // stream; one ahead at most, so a request holds at most two chunks here.
      const read = (i: number) => {
        const p = this.#store && i < cids.length
          ? this.#store.get(cids[i]!)
          : Promise.resolve(null);
        p.catch(() => {}); // surfaced when its turn comes
        return p;
      };
      let ahead = read(0);
      for (const [i, cid] of cids.entries()) {
        let bytes: Uint8Array | null = null;
        const reading = ahead;
        ahead = read(i + 1);
        try {
          bytes = await reading;
        } catch (e) {
          this.#log.error("store.get(%s) failed - %e", cid, e);
          return await session.refuse("store_error", "The store failed to read a chunk");
        }
        const found = bytes !== null && bytes.length <= MAX_CHUNK_BYTES;
        if (!found || this.#gate === undefined) {
          await session.send(
            found ? await this.#answer(cid, bytes!) : { cid: cid.toString(), found },
            found ? bytes! : undefined,
          );
          if (found) this.#count(session.peer, "sentBytes", bytes!.length);
          continue;
        }
        await this.#serveGated(session, cid, bytes!);
      }
      return;
    }
    if (req.op === "prove") {
      const cids = this.#requestCids(req.cids);
      if (cids === null || typeof req.nonce !== "string" || !NONCE_HEX.test(req.nonce)) {
        return await session.refuse(
          "bad_request",
          '"cids" must list 1 to 512 CIDs and "nonce" be 16 to 64 bytes in hex',
        );
      }
      const nonce = fromHex(req.nonce);
      for (const cid of cids) {
        let bytes: Uint8Array | null = null;
        try {
          bytes = this.#store ? await this.#store.get(cid) : null;
        } catch (e) {
          this.#log.error("store.get(%s) failed - %e", cid, e);
        }
        const proof = bytes === null ? null : toHex(chunkProof(nonce, bytes));
        await session.send({ cid: cid.toString(), proof });
      }
      return;
    }
    if (req.op === "put") {
      const count = req.count;
      if (
        typeof count !== "number" || !Number.isInteger(count) || count < 0 ||
        count > MAX_CIDS_PER_REQUEST
      ) {
        return await session.refuse("bad_request", '"count" must be an integer from 0 to 512');
      }
      // Chunks are kept a few at once (a store write waits on the disk: one at a time, the uploader's
      // stream would wait on every fsync), answered in order, with at most PUT_KEEPING_BYTES held here.
      type Keeping = { raw: unknown; cid: CID; body: Uint8Array; kept: Promise<StoreAnswer> };
      const keeping: Keeping[] = [];
      let held = 0;
      const answer = async () => {
        const { raw, cid, body, kept } = keeping[0]!;
        let result = await kept;
        // Full while others were being stored beside it: once they are done, it is stored alone, as it
        // would have been one at a time (a full store evicts for one write at a time).
        if (result.reason === "store_full" && keeping.length > 1) {
          await Promise.all(keeping.map((k) => k.kept));
          result = await this.#keep(session.peer, cid, body);
        }
        keeping.shift();
        held -= body.length;
        await session.send({ cid: raw, ...result });
      };
      for (let i = 0; i < count; i++) {
        const frame = await session.expect();
        const raw = (frame.header as { cid?: unknown }).cid;
        let cid: CID;
        try {
          cid = parseCid(typeof raw === "string" ? raw : "");
        } catch (e) {
          while (keeping.length) await answer();
          return await session.refuse("invalid_cid", (e as Error).message);
        }
        const bytes = frame.body.length;
        while (
          keeping.length >= PUT_KEEPING || (keeping.length > 0 && held + bytes > PUT_KEEPING_BYTES)
        ) await answer();
        keeping.push({
          raw,
          cid,
          body: frame.body,
          kept: this.#keep(session.peer, cid, frame.body),
        });
        held += bytes;
      }
      while (keeping.length) await answer();
      return;
    }
    return await session.refuse("bad_request", `Unknown op "${String(req.op).slice(0, 20)}"`);
  }

  /** Sends one chunk through the gate: authorized first (which may wait), then reported as served. Throws
   * {@link GateRefusal} after answering with the refusal, to end the request. */
  async #serveGated(session: Session, cid: CID, bytes: Uint8Array): Promise<void> {
    const gate = this.#gate!;
    try {
      await session.timed((signal) => gate.authorize(session.peer, cid, bytes.length, { signal }));
    } catch (e) {
      await session.send(this.#refusal(e));
      throw new GateRefusal();
    }
    let delivered = false;
    try {
      await session.send(await this.#answer(cid, bytes), bytes);
      delivered = true;
      this.#count(session.peer, "sentBytes", bytes.length);
    } finally {
      try {
        gate.served?.(session.peer, cid, bytes.length, delivered);
      } catch (e) {
        this.#log.error("gate.served threw - %e", e);
      }
    }
  }

  /** The header of a found chunk's answer: signed when this node signs deliveries. */
  async #answer(cid: CID, bytes: Uint8Array): Promise<Record<string, unknown>> {
    if (this.#signer === undefined) return { cid: cid.toString(), found: true };
    const hash = this.#store?.verified ? cid.multihash.digest : blake3(bytes);
    return {
      cid: cid.toString(),
      found: true,
      delivery: await signDelivery(this.#signer, cid, bytes, Date.now(), hash),
    };
  }

  /** The answer that carries a gate's refusal: its code, message and status when it is a `MeshError`. */
  #refusal(e: unknown): Record<string, unknown> {
    if (e instanceof MeshError) {
      return { error: e.code, message: e.message, refused: true };
    }
    this.#log.error("the delivery gate failed - %e", e);
    return {
      error: "delivery_refused",
      message: "The node could not serve",
      refused: true,
    };
  }

  async #keep(peer: string, cid: CID, bytes: Uint8Array): Promise<StoreAnswer> {
    if (this.#store === undefined) return { accepted: false, reason: "no_store" };
    if (bytes.length > MAX_CHUNK_BYTES || !matchesCid(cid, bytes)) {
      this.#report(peer, { kind: "bad_bytes", cid, at: Date.now() });
      return { accepted: false, reason: "bad_bytes" };
    }
    try {
      await this.#store.put(cid, bytes, peer);
      this.#count(peer, "receivedBytes", bytes.length);
      return { accepted: true };
    } catch (e) {
      // A full store and a spent quota are answers the uploader acts on (it keeps the chunk itself).
      if (e instanceof MeshError && (e.code === "store_full" || e.code === "quota_exceeded")) {
        return { accepted: false, reason: e.code, message: e.message };
      }
      this.#log.error("store.put(%s) failed - %e", cid, e);
      return { accepted: false, reason: "error", message: "The store failed to keep the chunk" };
    }
  }

  #requestCids(raw: unknown): CID[] | null {
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_CIDS_PER_REQUEST) return null;
    try {
      return raw.map((c) => parseCid(typeof c === "string" ? c : ""));
    } catch {
      return null;
    }
  }
}

/**
 * One request's stream, either side: framed reads and writes under an idle timeout and the caller's signal,
 * and the single place that decides how a failed stream ends (reset) and what the caller sees.
 */
class Session {
  readonly reader: FrameReader;
  #finished = false;
  #stopWatching: (() => void) | undefined;

  constructor(
    readonly peer: string,
    readonly stream: Stream,
    readonly releaseSlot: () => void,
    readonly timeoutMs: number,
    readonly halfOpenMs: number,
    readonly signal: AbortSignal | undefined,
    readonly report: (r: MisbehaviourReport) => void,
  ) {
    this.reader = new FrameReader(stream, { maxFrameLength: MAX_FRAME_BYTES });
  }

  /** The next frame, or `null` at a clean end of stream. */
  next(): Promise<Frame | null> {
    return this.timed(async (signal) => {
      const payload = await this.reader.read({ signal });
      return payload === null ? null : decodeFrame(payload, MAX_HEADER_BYTES);
    });
  }

  /** The next frame; an end of stream or an error answer throws {@link ExchangeProtocolError}. */
  async expect(): Promise<Frame> {
    const frame = await this.next();
    if (frame === null) {
      throw new ExchangeProtocolError(`peer "${this.peer}" closed the stream early`);
    }
    const h = frame.header as { error?: unknown; message?: unknown } | null;
    if (h === null || typeof h !== "object") {
      throw new ExchangeProtocolError(`peer "${this.peer}" sent a header that is not an object`);
    }
    if (typeof h.error === "string" && (h as { refused?: unknown }).refused === true) {
      throw new DeliveryRefusedError(
        this.peer,
        h.error.slice(0, 40),
        typeof h.message === "string" ? h.message.slice(0, 300) : `Peer "${this.peer}" refused`,
      );
    }
    if (typeof h.error === "string") {
      const why = typeof h.message === "string" ? `: ${h.message.slice(0, 200)}` : "";
      throw new ExchangeProtocolError(
        `peer "${this.peer}" refused the request (${h.error.slice(0, 40)})${why}`,
      );
    }
    return frame;
  }

  /** Closes our writable end once everything queued has been sent. */
  closeWrite(): Promise<void> {
    return this.timed((signal) => this.stream.close({ signal }));
  }

  send(header: unknown, body?: Uint8Array): Promise<void> {
    return this.timed((signal) => writeFrame(this.stream, header, body, { signal }));
  }

  /** The request has been read in full: a byte more resets the stream at once (it carries one request). */
  expectNoMoreInput(): void {
    if (this.reader.buffered > 0 || this.stream.readBufferLength > 0) {
      throw new ExchangeProtocolError(`peer "${this.peer}" sent data after its request`);
    }
    const onExtra = () => {
      this.stream.abort(
        new ExchangeProtocolError(`peer "${this.peer}" sent data after its request`),
      );
    };
    this.stream.addEventListener("message", onExtra);
    this.#stopWatching = () => this.stream.removeEventListener("message", onExtra);
  }

  /** Answers with an error frame; the request ends. */
  refuse(code: string, message: string): Promise<void> {
    return this.send({ error: code, message });
  }

  /** Marks the request as complete: {@link end} then leaves the stream to close normally. */
  done(): void {
    this.#finished = true;
  }

  /** Always called last: resets the stream if the request was abandoned midway (a consumer that stopped
   * iterating), else waits (without blocking the caller) for the remote to end it too; detaches the reader and
   * frees the in-flight slot. */
  end(): void {
    const buffered = this.reader.buffered;
    this.reader.release();
    this.#stopWatching?.();
    if (!this.#finished) {
      this.#finished = true;
      this.stream.abort(new Error("The request was abandoned"));
    } else {
      closeWhenRemoteEnds(this.stream, buffered, this.halfOpenMs);
    }
    this.releaseSlot();
  }

  /**
   * Ends the request after `error`: resets the stream, reports an oversize frame, and returns the error the
   * caller should see (the caller's abort reason, or a typed mesh error).
   */
  fail(error: unknown): unknown {
    if (this.#finished) return error;
    this.#finished = true;
    if (error instanceof MessageTooLargeError) {
      this.report({ kind: "oversize", length: error.length, at: Date.now() });
      // Tell the peer why before resetting; it is about to be cut off anyway, so do not wait long.
      try {
        this.stream.send(encodeFrame({ error: "message_too_large", message: error.message }));
      } catch { /* the stream is already closed */ }
    }
    const err = error instanceof Error ? error : new Error(String(error));
    this.stream.abort(err);
    return error;
  }

  /** Runs `fn` under the caller's signal and an idle timeout; a timeout becomes {@link PeerTimeoutError}. */
  async timed<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timer = new AbortController();
    const id = setTimeout(
      () => timer.abort(new PeerTimeoutError(this.peer, this.timeoutMs)),
      this.timeoutMs,
    );
    const signal = this.signal ? AbortSignal.any([this.signal, timer.signal]) : timer.signal;
    try {
      return await fn(signal);
    } catch (e) {
      if (signal.aborted) throw signal.reason;
      throw e;
    } finally {
      clearTimeout(id);
    }
  }
}

/**
 * After a complete exchange, the remote must end the stream too. A stream carries one request, so bytes past it
 * reset the stream at once, and so does a remote that neither ends nor sends within `ms` (a half-open stream):
 * without this, a peer could hold a stream open and fill its read buffer (what yamux granted) indefinitely.
 */
function closeWhenRemoteEnds(stream: Stream, buffered: number, ms: number): void {
  if (stream.status !== "open") return;
  if (buffered > 0 || stream.readBufferLength > 0) {
    stream.abort(new ExchangeProtocolError("the peer sent data after its request"));
    return;
  }
  if (stream.readableEnded) return;
  const cleanup = () => {
    clearTimeout(timer);
    stream.removeEventListener("message", onMessage);
    stream.removeEventListener("end", cleanup);
    stream.removeEventListener("close", cleanup);
  };
  const onMessage = () => {
    cleanup();
    stream.abort(new ExchangeProtocolError("the peer sent data after its request"));
  };
  const timer = setTimeout(() => {
    cleanup();
    stream.abort(new ExchangeProtocolError(`the peer left the stream half-open for ${ms} ms`));
  }, ms);
  stream.addEventListener("message", onMessage);
  stream.addEventListener("end", cleanup);
  stream.addEventListener("close", cleanup);
  // A paused stream delivers nothing: resume so that data past the request is seen (and reset) at once.
  if (stream.readStatus === "paused") stream.resume();
}

/** Thrown inside the server once a gate's refusal was sent: the request ends there, as a normal end. */
class GateRefusal extends Error {}

function positive(n: number, name: string): number {
  if (!Number.isFinite(n) || n <= 0) {
    throw new RangeError(`"${name}" must be a positive number, got "${n}"`);
  }
  return n;
}
