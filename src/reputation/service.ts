/**
 * The reputation service of a node: its {@link ReputationBook}, and `/meshgate/reputation/1.0.0`, on which
 * nodes share what they know.
 *
 * - `{op: "attestation"}` answers this node's signed attestation (its word about up to 1,000 operators).
 *   Every `trustIntervalMs` the node pulls its connected peers' attestations, weighs them by personalized
 *   EigenTrust from its own experience (`trust.ts`), and lets the trusted ones vouch for newcomers.
 * - `{op: "proof", proof}` hands over a proof of fraud. It is checked, never weighed: a valid one excludes the
 *   accused here and is passed on once to every connected peer; an invalid one is refused and counts against
 *   the peer that sent it ({@link MAX_FORGED_PROOFS} of them exclude it, here only: that is not portable).
 *
 * @module
 */
import type { Connection, Libp2p, PrivateKey, Stream } from "@libp2p/interface";
import { MeshError } from "../errors.ts";
import { answerMessage, callPeer } from "../mesh/message.ts";
import {
  type Attestation,
  edgesOf,
  MAX_ATTESTED,
  signAttestation,
  verifyAttestation,
} from "./attestation.ts";
import { ReputationBook, type ReputationInit } from "./book.ts";
import { checkFraudProof, EvidenceError, type FraudProof, signDelivery } from "./evidence.ts";
import type { SignedDelivery } from "../mesh/delivery_format.ts";
import type { CID } from "../content/cid.ts";
import { type Attested, vouched } from "./trust.ts";

export const REPUTATION_PROTOCOL = "/meshgate/reputation/1.0.0";
/** Largest message: an attestation of 1,000 operators is ~90 KiB. */
const MAX_MESSAGE_BYTES = 256 * 1024;
/** Invalid proofs from one peer before it is excluded here. */
export const MAX_FORGED_PROOFS = 3;
/** Attesters remembered at most (the latest word of each). */
const MAX_ATTESTERS = 1000;
/** Peers asked for their attestation per round. */
const PULL_FANOUT = 16;

export class ReputationProtocolError extends MeshError {
  override name = "ReputationProtocolError";
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("reputation_protocol", message, options);
  }
}

const WIRE = {
  maxBytes: MAX_MESSAGE_BYTES,
  what: "reputation",
  error: (m: string, cause?: unknown) => new ReputationProtocolError(m, { cause }),
};

type Net = Pick<Libp2p, "handle" | "unhandle" | "dialProtocol" | "getPeers">;

export interface ReputationServiceInit extends ReputationInit {
  /** This node's identity: it signs attestations with it. */
  privateKey: PrivateKey;
  peerId: string;
  /** How often attestations are pulled and trust recomputed, ms. Default 60 000. */
  trustIntervalMs?: number;
  /** Deadline of one exchange with a peer, ms. Default 5 000. */
  timeoutMs?: number;
}

export class ReputationService {
  readonly book: ReputationBook;
  readonly #key: PrivateKey;
  readonly #self: string;
  readonly #intervalMs: number;
  readonly #timeoutMs: number;
  readonly #attestations = new Map<string, Attestation>();
  readonly #forged = new Map<string, number>();
  /** Proofs already handled (accused + CID), so a flood of copies costs one check each at most. */
  readonly #seen = new Set<string>();
  #mine?: { at: number; attestation: Attestation };
  #net?: Net;
  #timer?: ReturnType<typeof setInterval>;
  #round?: Promise<void>;

  constructor(init: ReputationServiceInit) {
    this.book = new ReputationBook(init);
    this.#key = init.privateKey;
    this.#self = init.peerId;
    this.#intervalMs = init.trustIntervalMs ?? 60_000;
    this.#timeoutMs = init.timeoutMs ?? 5_000;
  }

  async start(net: Net): Promise<void> {
    await this.book.start();
    this.#net = net;
    await net.handle(REPUTATION_PROTOCOL, this.#handle, { maxInboundStreams: 8 });
    this.#timer = setInterval(() => void this.refreshTrust(), this.#intervalMs);
    Deno.unrefTimer(this.#timer);
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#round?.catch(() => {});
    await this.#net?.unhandle(REPUTATION_PROTOCOL).catch(() => {});
    this.#net = undefined;
    await this.book.stop();
  }

  /**
   * Signs the delivery of `bytes` under `cid` with this node's identity: what the gateway's raw block
   * answers carry, so a client that gets bad bytes holds a proof against this node.
   */
  async signDelivery(cid: CID, bytes: Uint8Array): Promise<SignedDelivery> {
    return { peer: this.#self, ...await signDelivery(this.#key, cid, bytes) };
  }

  /** This node's signed word about the operators it knows best (by verified deliveries), fresh each minute. */
  async attestation(): Promise<Attestation> {
    const now = Date.now();
    if (this.#mine && now - this.#mine.at < 60_000) return this.#mine.attestation;
    const about = this.book.scores()
      .map((s) => this.book.record(s.peer)!)
      .filter((r) => r.fraud === undefined && r.deliveries + r.failures > 0)
      .sort((a, b) => b.deliveries - a.deliveries)
      .slice(0, MAX_ATTESTED)
      .map((r) => ({ peer: r.peer, good: r.deliveries, bad: r.failures }));
    const attestation = await signAttestation(this.#key, this.#self, about, now);
    this.#mine = { at: now, attestation };
    return attestation;
  }

  /**
   * A proof of fraud, from this node's own reads or from a peer (`from`). Checked; when valid the accused is
   * excluded here and the proof passed on to every connected peer but `from`. Returns the checked proof.
   */
  async report(input: unknown, from?: string): Promise<FraudProof> {
    const proof = await checkFraudProof(input);
    const key = `${proof.peer}/${proof.cid}`;
    if (this.#seen.has(key)) return proof;
    if (this.#seen.size > 10_000) this.#seen.clear();
    this.#seen.add(key);
    if (this.book.excluded(proof.peer, { kind: "bad_bytes", at: Date.now(), evidence: proof })) {
      void this.#spread(proof, from);
    }
    return proof;
  }

  async #spread(proof: FraudProof, from?: string): Promise<void> {
    const net = this.#net;
    if (!net) return;
    await Promise.allSettled(
      net.getPeers()
        .filter((p) => p.toString() !== from && p.toString() !== proof.peer)
        .map((p) =>
          callPeer(net, p, REPUTATION_PROTOCOL, { op: "proof", proof }, this.#signal(), WIRE)
        ),
    );
  }

  #signal(): AbortSignal {
    return AbortSignal.timeout(this.#timeoutMs);
  }

  /** Pulls attestations from connected peers, recomputes trust, and sets what the trusted vouch for. */
  refreshTrust(): Promise<void> {
    this.#round ??= this.#refresh().finally(() => this.#round = undefined);
    return this.#round;
  }

  async #refresh(): Promise<void> {
    const net = this.#net;
    if (!net) return;
    const peers = net.getPeers().map(String).filter((p) => !this.book.isExcluded(p));
    // The best-known first, then at random: a node learns most from those it already trusts.
    peers.sort((a, b) => this.book.score(b).score - this.book.score(a).score);
    await Promise.allSettled(
      peers.slice(0, PULL_FANOUT).map(async (p) => {
        const m = await callPeer(
          net,
          p,
          REPUTATION_PROTOCOL,
          { op: "attestation" },
          this.#signal(),
          WIRE,
        );
        const a = await verifyAttestation(m.attestation);
        if (a.from !== p) throw new ReputationProtocolError(`${p} sent ${a.from}'s attestation`);
        if (!this.#attestations.has(p) && this.#attestations.size >= MAX_ATTESTERS) {
          this.#attestations.delete(this.#attestations.keys().next().value!);
        }
        this.#attestations.set(p, a);
      }),
    );
    this.computeTrust();
  }

  /** Trust from this node's side over its own word and the attestations it holds; sets the vouched-for. */
  computeTrust(): Map<string, number> {
    const edges: Attested[] = edgesOf({
      v: 1,
      from: this.#self,
      at: 0,
      sig: "",
      about: this.book.scores().map((s) => {
        const r = this.book.record(s.peer)!;
        return { peer: s.peer, good: r.deliveries, bad: r.failures };
      }),
    });
    for (const a of this.#attestations.values()) {
      if (!this.book.isExcluded(a.from)) edges.push(...edgesOf(a));
    }
    const vouchedFor = vouched(this.#self, edges);
    this.book.setVouched(vouchedFor);
    return vouchedFor;
  }

  #handle = async (stream: Stream, connection: Connection): Promise<void> => {
    const peer = connection.remotePeer.toString();
    const signal = this.#signal();
    await answerMessage(stream, signal, WIRE, async (m) => {
      if (m.op === "attestation") return { attestation: await this.attestation() };
      if (m.op === "proof") {
        try {
          await this.report(m.proof, peer);
          return { ok: true };
        } catch (e) {
          if (!(e instanceof EvidenceError)) throw e;
          const n = (this.#forged.get(peer) ?? 0) + 1;
          this.#forged.set(peer, n);
          if (n >= MAX_FORGED_PROOFS) {
            this.book.excluded(peer, {
              kind: "forged_evidence",
              at: Date.now(),
              evidence: { refused: n, last: e.message },
            });
          }
          return { error: e.code, message: e.message };
        }
      }
      return { error: "bad_request", message: 'op must be "attestation" or "proof"' };
    });
  };
}

/** Hands `proof` to `peer` (a node's own catch, or a test's). Resolves with the peer's answer. */
export function sendProof(
  net: Pick<Libp2p, "dialProtocol">,
  peer: string,
  proof: unknown,
  signal = AbortSignal.timeout(5_000),
): Promise<Record<string, unknown>> {
  return callPeer(net, peer, REPUTATION_PROTOCOL, { op: "proof", proof }, signal, WIRE);
}
