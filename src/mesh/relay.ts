/**
 * Relaying (libp2p circuit relay v2) for nodes that cannot be dialled, and the metering of what a relay carries.
 *
 * A relay (`serve --relay`) keeps at most `maxReservations` reservations, each for `reservationTtlMs` (renewed by
 * its holder), and each circuit through it carries at most `dataBytes` (both directions) for at most
 * `durationMs`: libp2p's relay enforces these. A node that cannot listen (`serve --no-listen --relay-via R`)
 * reserves a slot on R and announces `<R>/p2p-circuit/p2p/<self>`; readers dial that, and DCUtR tries to turn
 * the relayed connection into a direct one first where the node has a dialable address.
 *
 * Metering: every circuit is one stop stream from the relay to the reserving node, so both ends count the same
 * bytes on it (a stream middleware on the stop protocol). The relay charges the reserving node (the relayed
 * party pays: it is the one made reachable, it holds a standing relationship with the relay, and it can fold the
 * cost into its own delivery price; readers need no channel with the relay). On the relay, a {@link CircuitGate}
 * (the pay desk) authorizes bytes ahead in blocks; a circuit whose next block is not authorized (the holder's
 * credit is spent and no voucher came in the desk's wait) is paused and then cut, so a holder that stops paying
 * loses its circuits within its credit. On the reserving node, {@link RelayedBytes} reports the bytes each
 * relay carried, for its payer.
 *
 * @module
 */
import { circuitRelayServer, circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import type {
  Connection,
  Libp2p,
  Stream,
  StreamHandler,
  StreamHandlerOptions,
  StreamMiddleware,
} from "@libp2p/interface";
import { cidOf } from "../content/cid.ts";
import type { CID } from "../content/cid.ts";
import { MeshError } from "../errors.ts";

/** libp2p's circuit relay v2 protocols. */
export const RELAY_HOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/hop";
export const RELAY_STOP_PROTOCOL = "/libp2p/circuit/relay/0.2.0/stop";

let relayed: CID | undefined;
/** The CID that stands for relayed bytes in a gate's accounts and a payer's receipts (not content); made
 * on first use, so importing the library reads no kernel. */
export function relayedCid(): CID {
  return relayed ??= cidOf(new TextEncoder().encode("meshgate relayed bytes"));
}

/** A relay's limits, announced in its offer. */
export interface RelayLimits {
  /** Most reservations held at once; one more is refused (`RESERVATION_REFUSED`). */
  maxReservations: number;
  /** How long a reservation lasts before its holder must renew it, in ms. */
  reservationTtlMs: number;
  /** Most bytes one circuit carries (both directions together); past it the circuit is closed. */
  dataBytes: number;
  /** Longest life of one circuit, in ms. */
  durationMs: number;
}

/** Defaults of {@link RelayLimits}: 64 reservations of an hour, circuits of 1 GiB and 10 minutes. */
export const DEFAULT_RELAY_LIMITS: Readonly<RelayLimits> = {
  maxReservations: 64,
  reservationTtlMs: 3_600_000,
  dataBytes: 1024 * 1024 * 1024,
  durationMs: 600_000,
};

/** Checks and completes `limits`; a RangeError names the bad field. */
export function relayLimits(limits: Partial<RelayLimits> = {}): RelayLimits {
  const out = { ...DEFAULT_RELAY_LIMITS, ...limits };
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isSafeInteger(v) || v <= 0) {
      throw new RangeError(`Relay limit "${k}" must be a positive integer, got "${v}"`);
    }
  }
  return out;
}

/** `limits` as a relay's offer states them (seconds rounded up). */
export function relayTerms(limits: RelayLimits): {
  maxReservations: number;
  reservationSeconds: number;
  circuitBytes: number;
  circuitSeconds: number;
} {
  return {
    maxReservations: limits.maxReservations,
    reservationSeconds: Math.ceil(limits.reservationTtlMs / 1000),
    circuitBytes: limits.dataBytes,
    circuitSeconds: Math.ceil(limits.durationMs / 1000),
  };
}

/** The libp2p relay service for `limits` (its `maxOutboundStopStreams` follows `maxReservations`). */
export function relayServer(limits: RelayLimits): ReturnType<typeof circuitRelayServer> {
  return circuitRelayServer({
    reservations: {
      maxReservations: limits.maxReservations,
      reservationTtl: limits.reservationTtlMs,
      defaultDataLimit: BigInt(limits.dataBytes),
      defaultDurationLimit: limits.durationMs,
      applyDefaultLimit: true,
    },
  });
}

/** The transport that dials `/p2p-circuit` addresses and reserves slots on relays. */
export function relayTransport(): ReturnType<typeof circuitRelayTransport> {
  return circuitRelayTransport({ reservationCompletionTimeout: 10_000 });
}

/** A relay's reservation refused, or no relay reachable: `relay_refused`. */
export class RelayRefusedError extends MeshError {
  override name = "RelayRefusedError";
  constructor(relay: string, reason: string, options?: ErrorOptions) {
    super("relay_refused", `Relay "${relay}" gave no reservation: ${reason}`, options);
  }
}

/** A circuit ended by the relay because its holder's next bytes were not paid for: `relay_unpaid`. */
export class RelayUnpaidError extends MeshError {
  override name = "RelayUnpaidError";
  constructor(peer: string, cause: unknown) {
    super(
      "relay_unpaid",
      `Circuit to "${peer}" closed: relaying past its credit is not paid (${
        (cause as Error)?.message ?? cause
      })`,
      { cause },
    );
  }
}

/** Explains libp2p's reservation statuses. */
export function reservationRefusal(error: unknown): string {
  const text = String((error as Error)?.message ?? error);
  const reasons: Record<string, string> = {
    RESERVATION_REFUSED: "it holds its most reservations (RESERVATION_REFUSED)",
    RESOURCE_LIMIT_EXCEEDED: "its resources are exhausted (RESOURCE_LIMIT_EXCEEDED)",
    PERMISSION_DENIED: "it does not relay for this node (PERMISSION_DENIED)",
    NO_RESERVATION: "it has no reservation for the target (NO_RESERVATION)",
  };
  for (const [status, reason] of Object.entries(reasons)) if (text.includes(status)) return reason;
  if (/ECONNREFUSED/.test(text)) return "it cannot be reached (connection refused)";
  if (/abort|timed? ?out/i.test(text)) return "it did not answer in time";
  // libp2p's listen failure names each address, then its error: keep the error.
  const i = text.lastIndexOf("Error: ");
  return (i >= 0 ? text.slice(i + 7) : text).slice(0, 300);
}

/** What a relay's meter asks of a pay desk (a {@link DeliveryGate} fits; `cid` is {@link relayedCid}). */
export interface CircuitGate {
  admit?(peer: string): void;
  authorize(peer: string, cid: CID, bytes: number, options: { signal: AbortSignal }): Promise<void>;
  served?(peer: string, cid: CID, bytes: number, delivered: boolean): void;
}

/** Totals of a relay's circuits. */
export interface RelayStats {
  /** Reservations held now. */
  reservations: number;
  /** Circuits opened so far, and open now. */
  circuits: number;
  openCircuits: number;
  /** Bytes carried, both directions. */
  relayedBytes: number;
  /** Circuits cut because their bytes were not paid for. */
  unpaidCuts: number;
}

/** Bytes authorized ahead of use on one circuit: the most a circuit carries past a refused payment. */
export const RELAY_BLOCK_BYTES = 256 * 1024;

/** Counts the bytes of a stop stream (received and sent): both ends see the same ones. */
function tap(stream: Stream, onBytes: (n: number) => void): void {
  stream.addEventListener("message", (e) => onBytes(e.data.byteLength));
  const send = stream.send.bind(stream);
  stream.send = (data) => {
    onBytes(data.byteLength);
    return send(data);
  };
}

/**
 * The relay's side: meters every circuit it opens (its outbound stop streams) and, with a gate, charges the
 * reserving peer, pausing a circuit whose next block waits for authorization and cutting it on refusal.
 */
export class RelayMeter {
  readonly #gate: CircuitGate | undefined;
  readonly #libp2p: Libp2p;
  #circuits = 0;
  #open = 0;
  #bytes = 0;
  #cuts = 0;
  /** Bytes carried per reserving peer. */
  readonly #perPeer = new Map<string, number>();

  constructor(libp2p: Libp2p, gate?: CircuitGate) {
    this.#libp2p = libp2p;
    this.#gate = gate;
  }

  start(): void {
    // libp2p 3.3 keeps this very array and appends the handler of every inbound stream to it (see
    // RelayedBytes): trimmed back on each stream, so that a stop stream a peer opens towards this relay cannot
    // make later circuits run stale handlers. Outbound streams (the circuits) have no handler appended.
    const chain: StreamMiddleware[] = [(stream, connection, next) => {
      if (stream.direction === "outbound") {
        chain.splice(1);
        this.#circuit(stream, connection);
      } else chain.splice(1, chain.length - 2); // keeps this stream's own handler, the last
      next(stream, connection);
    }];
    this.#libp2p.use(RELAY_STOP_PROTOCOL, chain);
  }

  stop(): void {
    this.#libp2p.unuse(RELAY_STOP_PROTOCOL);
  }

  #circuit(stream: Stream, connection: Connection): void {
    const peer = connection.remotePeer.toString();
    const gate = this.#gate;
    this.#circuits++;
    this.#open++;
    const done = new AbortController();
    let granted = 0;
    let pending: Promise<void> | undefined;
    let paused = false;
    let ended = false;
    const cut = (e: unknown) => {
      if (ended) return;
      this.#cuts++;
      stream.abort(new RelayUnpaidError(peer, e));
    };
    const more = () => {
      if (gate === undefined || pending !== undefined || ended) return;
      pending = gate.authorize(peer, relayedCid(), RELAY_BLOCK_BYTES, { signal: done.signal }).then(
        () => {
          pending = undefined;
          granted += RELAY_BLOCK_BYTES;
          if (paused && granted > 0) {
            paused = false;
            stream.resume();
          }
          if (granted < RELAY_BLOCK_BYTES / 2) more();
        },
        (e) => {
          pending = undefined;
          cut(e);
        },
      );
    };
    try {
      gate?.admit?.(peer);
    } catch (e) {
      cut(e);
      return;
    }
    more();
    tap(stream, (n) => {
      this.#bytes += n;
      this.#perPeer.set(peer, (this.#perPeer.get(peer) ?? 0) + n);
      if (gate === undefined) return;
      granted -= n;
      if (granted < RELAY_BLOCK_BYTES / 2) more();
      if (granted <= 0 && !paused && !ended) {
        paused = true;
        stream.pause();
      }
    });
    stream.addEventListener("close", () => {
      ended = true;
      this.#open--;
      done.abort(new Error("The circuit closed"));
      // What was authorized and not carried is not owed.
      const refund = () => {
        if (granted > 0) gate?.served?.(peer, relayedCid(), granted, false);
        granted = 0;
      };
      if (pending) void pending.finally(refund);
      else refund();
    }, { once: true });
  }

  /** Bytes carried for `peer` (the reserving node) so far. */
  relayedFor(peer: string): number {
    return this.#perPeer.get(peer) ?? 0;
  }

  stats(reservations: number): RelayStats {
    return {
      reservations,
      circuits: this.#circuits,
      openCircuits: this.#open,
      relayedBytes: this.#bytes,
      unpaidCuts: this.#cuts,
    };
  }
}

/** What {@link RelayedBytes} needs of libp2p's registrar. */
interface StopRegistrar {
  getHandler(protocol: string): { handler: StreamHandler; options: StreamHandlerOptions };
  handle(protocol: string, handler: StreamHandler, options?: StreamHandlerOptions): Promise<void>;
}

/**
 * The reserving node's side, a libp2p service: reports the bytes each relay carried for it (its inbound stop
 * streams) as they pass. It wraps the relay transport's stop handler rather than adding a stream middleware:
 * libp2p 3.3 appends each inbound stream's handler to the middleware list it keeps, so with one registered
 * every later circuit ran the handlers of the earlier ones and broke (seen: the second circuit failed).
 */
export class RelayedBytes {
  readonly #registrar: StopRegistrar;
  readonly #onBytes: (relay: string, bytes: number) => void;
  readonly #total = new Map<string, number>();

  constructor(
    components: { registrar: StopRegistrar },
    onBytes: (relay: string, bytes: number) => void,
  ) {
    this.#registrar = components.registrar;
    this.#onBytes = onBytes;
  }

  readonly [Symbol.toStringTag] = "@meshgate/relayed-bytes";

  // Startable (libp2p calls afterStart only on objects with both).
  start(): void {}
  stop(): void {}

  /** After every service started: the relay transport has registered its stop handler by then. */
  async afterStart(): Promise<void> {
    const { handler, options } = this.#registrar.getHandler(RELAY_STOP_PROTOCOL);
    await this.#registrar.handle(RELAY_STOP_PROTOCOL, (stream, connection) => {
      this.#circuit(stream, connection);
      return handler(stream, connection);
    }, { ...options, force: true });
  }

  /** Bytes relays carried for this node, by relay. */
  totals(): ReadonlyMap<string, number> {
    return this.#total;
  }

  #circuit(stream: Stream, connection: Connection): void {
    const relay = connection.remotePeer.toString();
    tap(stream, (n) => {
      this.#total.set(relay, (this.#total.get(relay) ?? 0) + n);
      try {
        this.#onBytes(relay, n);
      } catch {
        // The listener's failure is not the circuit's.
      }
    });
  }
}

/** The {@link RelayedBytes} service, for `createLibp2p`'s services. */
export function relayedBytes(
  onBytes: (relay: string, bytes: number) => void,
): (components: { registrar: StopRegistrar }) => RelayedBytes {
  return (components) => new RelayedBytes(components, onBytes);
}
