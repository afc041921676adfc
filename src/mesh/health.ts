/**
 * Peer standing as this node sees it, for choosing whom to ask for chunks: a peer caught sending bad bytes is
 * avoided, and a peer that could not be reached is asked last until it connects again (a restart), instead of
 * being skipped for a fixed time.
 *
 * {@link PeerStanding} is the hook; {@link PeerHealth} its small in-memory implementation. State is lost on
 * restart: the reputation layer (issue 11) replaces it behind the same interface and persists it.
 *
 * @module
 */
import type { Libp2p } from "@libp2p/interface";
import type { MisbehaviourReport } from "./exchange.ts";

/** What fetching asks of peer standing, and tells it. */
export interface PeerStanding {
  /** True for a peer not to be asked at all (it sent bad bytes). */
  avoided(peer: string): boolean;
  /** True for a peer to ask only after every other (it failed to answer recently). */
  skipped(peer: string): boolean;
  /** `peer` answered a request (with or without the chunk). */
  answered(peer: string): void;
  /** `peer` delivered a verified chunk of `bytes` in `ms` (the reputation layer scores it). Optional. */
  delivered?(peer: string, bytes: number, ms: number): void;
  /** A request to `peer` failed with `error` (a `MeshError` code tells unreachable from timed out). */
  failed(peer: string, error: unknown): void;
  /** `peer` misbehaved, as the exchange reports it (`onMisbehaviour`). */
  misbehaved(peer: string, report: MisbehaviourReport): void;
}

/** Options of {@link PeerHealth}. */
export interface PeerHealthInit {
  /** How long a peer that failed stays skipped when it does not reconnect (it is still asked last, and
   * dialled by the next request after that). Default: 30 000 ms. */
  retryMs?: number;
  /** Peers remembered as bad (the oldest is forgotten past it). Default: 10 000. */
  maxBad?: number;
}

/** Error codes after which a peer is skipped until it reconnects: it did not answer at all, or denied
 * holding a chunk its own provider record names (an eclipse by "not found" costs its peers their turn). */
const SKIP_CODES = new Set(["peer_unreachable", "peer_timeout", "peer_denied"]);

/**
 * In-memory {@link PeerStanding}. Bad peers are avoided for as long as this process runs; failed peers are
 * skipped until libp2p reports them connected (or identified) again, or for `retryMs`.
 */
export class PeerHealth implements PeerStanding {
  readonly #retryMs: number;
  readonly #maxBad: number;
  /** Bad peers and what they did last. */
  readonly #bad = new Map<string, MisbehaviourReport>();
  /** Failed peers and until when they are skipped (ms since epoch). */
  readonly #failed = new Map<string, number>();
  #detach?: () => void;

  constructor(init: PeerHealthInit = {}) {
    this.#retryMs = init.retryMs ?? 30_000;
    this.#maxBad = init.maxBad ?? 10_000;
  }

  /** Listens to `libp2p`: a peer that connects or is identified is no longer skipped. */
  attach(libp2p: Pick<Libp2p, "addEventListener" | "removeEventListener">): this {
    this.detach();
    // `peer:connect` carries the PeerId, `peer:identify` an IdentifyResult with `peerId`.
    const back = (e: Event) => {
      const d = (e as CustomEvent).detail as { peerId?: unknown } | undefined;
      if (d) this.#failed.delete(String(d.peerId ?? d));
    };
    libp2p.addEventListener("peer:connect", back);
    libp2p.addEventListener("peer:identify", back);
    this.#detach = () => {
      libp2p.removeEventListener("peer:connect", back);
      libp2p.removeEventListener("peer:identify", back);
    };
    return this;
  }

  detach(): void {
    this.#detach?.();
    this.#detach = undefined;
  }

  avoided(peer: string): boolean {
    return this.#bad.has(peer);
  }

  skipped(peer: string): boolean {
    const until = this.#failed.get(peer);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.#failed.delete(peer);
    return false;
  }

  answered(peer: string): void {
    this.#failed.delete(peer);
  }

  failed(peer: string, error: unknown): void {
    const code = (error as { code?: unknown } | null)?.code;
    if (typeof code === "string" && SKIP_CODES.has(code)) {
      this.#failed.set(peer, Date.now() + this.#retryMs);
    }
  }

  misbehaved(peer: string, report: MisbehaviourReport): void {
    this.#bad.delete(peer);
    this.#bad.set(peer, report);
    if (this.#bad.size > this.#maxBad) this.#bad.delete(this.#bad.keys().next().value!);
  }

  /** Peers avoided now, with their last misbehaviour (for metrics and operators). */
  bad(): ReadonlyMap<string, MisbehaviourReport> {
    return this.#bad;
  }
}

/** The standing used when a caller passes none: one {@link PeerHealth} per libp2p node, attached to it. */
const defaults = new WeakMap<object, PeerHealth>();
export function defaultStanding(libp2p: Pick<Libp2p, "addEventListener" | "removeEventListener">) {
  let health = defaults.get(libp2p);
  if (!health) defaults.set(libp2p, health = new PeerHealth().attach(libp2p));
  return health;
}
