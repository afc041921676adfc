/**
 * Operators' standing as this node sees it: `GET /api/operators` (each known operator, its score and factors,
 * state, the reasons in words and the evidence of an exclusion), `GET /api/operators/<peer>`, `POST
 * /api/evidence` (a proof of fraud from anywhere: a browser, another gateway), and `mesh_operators` in
 * `/metrics` (counts by state, never a peer ID in a label).
 *
 * The evidence route needs no token and takes any origin: a proof checks itself. One that does not hold is
 * refused with its reason and counts against whoever sent it: past
 * {@link MAX_BAD_PROOFS} refused proofs in an hour from one address, that address is refused for the rest
 * of the hour (429), so the endpoint cannot be used to make the node verify signatures without end.
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { MeshError } from "../src/errors.ts";
import type { ReputationBook } from "../src/reputation/book.ts";
import { checkFraudProof, EvidenceError } from "../src/reputation/evidence.ts";
import type { PeerRecord, Score } from "../src/reputation/score.ts";
import type { OfferService } from "../src/market/offer_service.ts";
import type { Offer } from "../src/market/offers.ts";
import { httpStatus } from "./errors.ts";
import { Gauge, type Registry } from "./metrics.ts";

/** Refused proofs one address may send in an hour. */
export const MAX_BAD_PROOFS = 10;
/** Largest proof accepted, bytes (a real one is ~250). */
const MAX_PROOF_BYTES = 4096;

/** An operator as the API shows it. */
export interface OperatorView extends Score {
  firstSeen: string;
  lastSeen: string;
  deliveries: number;
  failures: number;
  bytes: number;
  ttfbMs?: number;
  /** Throughput, bytes per ms. */
  throughput?: number;
  /** The proof behind an exclusion, as received (checkable by anyone: `evidence.ts`). */
  evidence?: unknown;
  /** Its signed offer, when known and valid (`market/offers.ts`). */
  offer?: Offer;
}

function view(score: Score, r: Readonly<PeerRecord> | undefined, offer?: Offer): OperatorView {
  return {
    ...score,
    firstSeen: new Date(r?.firstSeen ?? 0).toISOString(),
    lastSeen: new Date(r?.lastSeen ?? 0).toISOString(),
    deliveries: r?.deliveries ?? 0,
    failures: r?.failures ?? 0,
    bytes: r?.bytes ?? 0,
    ...(r?.ttfbMs !== undefined ? { ttfbMs: Math.round(r.ttfbMs * 10) / 10 } : {}),
    ...(r?.throughput !== undefined ? { throughput: Math.round(r.throughput) } : {}),
    ...(r?.fraud ? { evidence: r.fraud.evidence } : {}),
    ...(offer ? { offer } : {}),
  };
}

/** The client's IP, from what `Deno.serve` passes as the env (`app.fetch(req, info)`). */
function clientAddress(c: Context): string {
  const info = c.env as { remoteAddr?: { hostname?: string } } | undefined;
  return info?.remoteAddr?.hostname ?? "unknown";
}

function fail(c: Context, err: MeshError) {
  c.header("Cache-Control", "no-store");
  return c.json({ error: err.code, message: err.message }, httpStatus(err) as 400);
}

/**
 * Adds the routes; `book()` and `offers()` are undefined on a node without a mesh (the routes answer an
 * empty list, and `GET /api/offer` 404).
 */
export function addReputationRoutes(
  app: Hono,
  book: () => ReputationBook | undefined,
  offers: () => OfferService | undefined = () => undefined,
): void {
  app.get("/api/operators", (c) => {
    const b = book();
    const o = offers();
    const operators = b?.scores().map((s) => view(s, b.record(s.peer), o?.cached(s.peer))) ?? [];
    c.header("Cache-Control", "no-store");
    return c.json({ operators, counts: b?.counts() ?? {} });
  });

  // One operator: its offer is asked for (of the peer, else the DHT) when not known yet.
  app.get("/api/operators/:peer", async (c) => {
    const b = book();
    const peer = c.req.param("peer");
    const r = b?.record(peer);
    if (b === undefined || r === undefined) {
      return fail(c, new MeshError("not_found", `No operator ${peer.slice(0, 80)} is known here`));
    }
    const offer = await offers()?.of(peer, c.req.raw.signal);
    c.header("Cache-Control", "no-store");
    return c.json(view(b.score(peer), r, offer));
  });

  // This node's own signed offer: what it charges and can take.
  app.get("/api/offer", (c) => {
    const o = offers();
    if (o === undefined) {
      return fail(c, new MeshError("not_found", "This node makes no offer: it has no mesh"));
    }
    c.header("Cache-Control", "no-store");
    return c.json(o.mine());
  });

  // Refused proofs per address, in the current hour.
  let hour = 0;
  let refused = new Map<string, number>();
  // Any origin may send a proof (it checks itself): CORS lets another site's page read the answer.
  app.options("/api/evidence", (c) => {
    c.header("Access-Control-Allow-Origin", "*");
    c.header("Access-Control-Allow-Methods", "POST");
    c.header("Access-Control-Allow-Headers", "Content-Type");
    c.header("Access-Control-Max-Age", "86400");
    return c.body(null, 204);
  });
  app.post("/api/evidence", async (c) => {
    c.header("Access-Control-Allow-Origin", "*");
    const now = Math.floor(Date.now() / 3_600_000);
    if (now !== hour) {
      hour = now;
      refused = new Map();
    }
    const from = clientAddress(c);
    if ((refused.get(from) ?? 0) >= MAX_BAD_PROOFS) {
      return fail(
        c,
        new MeshError(
          "rate_limited",
          `Over ${MAX_BAD_PROOFS} refused proofs this hour from ${from}`,
        ),
      );
    }
    const b = book();
    if (b === undefined) {
      return fail(c, new MeshError("not_found", "This node keeps no reputation (no mesh)"));
    }
    let proof;
    try {
      const text = await c.req.text();
      if (text.length > MAX_PROOF_BYTES) {
        throw new EvidenceError(
          "evidence_malformed",
          `A proof is at most ${MAX_PROOF_BYTES} bytes`,
        );
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new EvidenceError("evidence_malformed", "A proof is JSON");
      }
      proof = await checkFraudProof(json);
    } catch (e) {
      if (!(e instanceof EvidenceError)) throw e;
      refused.set(from, (refused.get(from) ?? 0) + 1);
      return fail(c, e);
    }
    const fresh = b.excluded(proof.peer, { kind: "bad_bytes", at: Date.now(), evidence: proof });
    return c.json({ peer: proof.peer, excluded: true, new: fresh });
  });
}

export function addReputationMetrics(
  metrics: Registry,
  book: () => ReputationBook | undefined,
): void {
  metrics.add(
    new Gauge("mesh_operators", "Operators this node knows, by state", () => {
      const c = book()?.counts() ?? { new: 0, vetted: 0, suspended: 0, excluded: 0 };
      return Object.entries(c).map(([state, n]) => [{ state }, n]);
    }),
  );
}
