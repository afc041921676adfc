/**
 * Streams negotiated ahead of need, one spare per peer, for a request-and-answer protocol (`message.ts`: one
 * request per stream). libp2p 3's multistream-select waits a round trip for the peer to confirm the protocol
 * before a request's first byte may go; a spare opened while the connection idles has spent that round trip
 * before anyone waits on it. A lookup client keeps its operator warm, an operator the peers it probes: a paid
 * lookup then costs two round trips where it cost four. The peer's handler waits for a spare's request without
 * its request deadline until the first byte arrives (`message.ts`'s `onFirstByte`), up to its idle limit.
 *
 * @module
 */
import type { Libp2p, PeerId, Stream } from "@libp2p/interface";
import { peerIdFromString } from "@libp2p/peer-id";
import { openConnectionTo } from "./_target.ts";

/** Peers kept warm at most: past this, requests open their streams as they go. */
const MAX_KEPT = 256;
/** A spare that closed sooner than this after opening is not opened again (the peer refuses or hangs up). */
const SHORT_LIVED_MS = 1000;

type Net = Pick<Libp2p, "getConnections" | "dialProtocol">;
type DialOptions = { signal?: AbortSignal; runOnLimitedConnection?: boolean };

/**
 * A dialer (`dialProtocol`, as `callPeer` takes) that hands out a kept peer's spare stream for its protocol
 * when one is ready, and opens the next spare behind it; anything else it dials as libp2p would.
 */
export class WarmStreams {
  readonly #net: Net;
  readonly #protocol: string;
  readonly #kept = new Set<string>();
  readonly #spare = new Map<string, Stream>();
  readonly #opening = new Set<string>();
  #stopped = false;

  constructor(net: Net, protocol: string) {
    this.#net = net;
    this.#protocol = protocol;
  }

  /** Peers with a spare ready now. */
  get ready(): number {
    return this.#spare.size;
  }

  /** Keeps a spare stream open to `peer` while it is connected (from now on, and after each use); called
   * again once a connection to it is up, opens the spare then. */
  keep(peer: string): void {
    if (this.#stopped) return;
    if (!this.#kept.has(peer)) {
      if (this.#kept.size >= MAX_KEPT) return;
      this.#kept.add(peer);
    }
    this.#warm(peer);
  }

  /** Stops keeping `peer` warm and closes its spare (it went away). */
  forget(peer: string): void {
    this.#kept.delete(peer);
    this.#drop(peer);
  }

  /** Whether `peer` is kept warm. */
  keeps(peer: string): boolean {
    return this.#kept.has(peer);
  }

  dialProtocol(
    peer: PeerId,
    protocols: string | string[],
    options: DialOptions = {},
  ): Promise<Stream> {
    const key = peer.toString();
    const want = Array.isArray(protocols) ? protocols : [protocols];
    if (want.includes(this.#protocol)) {
      const s = this.#spare.get(key);
      this.#spare.delete(key);
      if (this.#kept.has(key)) this.#warm(key);
      if (s !== undefined && usable(s)) return Promise.resolve(s);
      s?.abort(new Error("A spare stream went stale"));
    }
    const open = openConnectionTo((p) => this.#net.getConnections(p), peer);
    return open ? open.newStream(want, options) : this.#net.dialProtocol(peer, want, options);
  }

  /** Closes every spare; nothing is kept warm after. */
  stop(): void {
    this.#stopped = true;
    this.#kept.clear();
    for (const peer of [...this.#spare.keys()]) this.#drop(peer);
  }

  #drop(peer: string): void {
    const s = this.#spare.get(peer);
    this.#spare.delete(peer);
    s?.abort(new Error("The spare stream is no longer kept"));
  }

  /** Opens `peer`'s spare if it has none, over a connection already open (never dials for it). */
  #warm(peer: string): void {
    if (this.#stopped || this.#spare.has(peer) || this.#opening.has(peer)) return;
    let id: PeerId;
    try {
      id = peerIdFromString(peer);
    } catch {
      return;
    }
    const open = openConnectionTo((p) => this.#net.getConnections(p), id);
    if (open === undefined) return;
    this.#opening.add(peer);
    const at = performance.now();
    const deadline = new AbortController();
    const timer = setTimeout(
      () => deadline.abort(new Error("Negotiating a spare timed out")),
      10_000,
    );
    open.newStream(this.#protocol, {
      signal: deadline.signal,
      runOnLimitedConnection: true,
    }).then((s) => {
      if (this.#stopped || !this.#kept.has(peer)) {
        s.abort(new Error("The spare stream is no longer kept"));
        return;
      }
      this.#spare.set(peer, s);
      // The peer ended it (its idle limit, or it stopped): open another unless it never lasted.
      const ended = () => {
        if (this.#spare.get(peer) !== s) return;
        this.#spare.delete(peer);
        if (s.status === "open") s.abort(new Error("The peer ended the spare stream"));
        if (performance.now() - at >= SHORT_LIVED_MS && this.#kept.has(peer)) this.#warm(peer);
        else this.#kept.delete(peer);
      };
      s.addEventListener("close", ended, { once: true });
      s.addEventListener("remoteCloseWrite", ended, { once: true });
    }, () => {
      // No stream now (the peer lacks the protocol or is busy): requests open their own.
      this.#kept.delete(peer);
    }).finally(() => {
      clearTimeout(timer);
      this.#opening.delete(peer);
    });
  }
}

/** Open both ways, with nothing sent on it yet by either side. */
function usable(s: Stream): boolean {
  return s.status === "open" && s.writeStatus === "writable" &&
    s.remoteWriteStatus === "writable";
}
