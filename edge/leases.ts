/**
 * Storage leases over HTTP: `GET /api/leases` (what this node keeps for whom and what others keep for it,
 * with each lease's audit record) and `POST /api/leases/<id>/renew?duration=30d` (a lease of this node's
 * own, as client; someone else's is refused with `lease_not_yours`). Uploads take `?lease=30d`
 * (`leaseUpload` below, called by `POST /mesh`).
 *
 * @module
 */
import type { Hono } from "hono";
import { MeshError } from "../src/errors.ts";
import type { MeshgateNode, PutResult } from "../src/node.ts";
import { parseDuration } from "../src/market/lease.ts";
import type { LeaseOutcome, LeaseService } from "../src/market/leasing.ts";

function service(node: MeshgateNode): LeaseService {
  const s = node.services.get<LeaseService>("leases");
  if (!s) throw new MeshError("lease_off", "Leases need the mesh: this node runs without one");
  return s;
}

/** A `?lease=` or `?duration=` value in ms; `bad_request` naming the parameter when it is not one. */
export function leaseDuration(name: string, value: string): number {
  try {
    return parseDuration(value);
  } catch (e) {
    throw new MeshError("bad_request", `Query parameter "${name}": ${(e as Error).message}`);
  }
}

/** Checks, before an upload is read, that it can be leased. */
export function checkLeasing(node: MeshgateNode): void {
  service(node);
}

/** What `POST /mesh?lease=` adds to its answer: one entry per holder, and when the first lease ends. */
export async function leaseUpload(
  node: MeshgateNode,
  put: PutResult,
  durationMs: number,
): Promise<{ leases: ReturnType<typeof outcomeView>[]; leaseEnds?: string }> {
  const outcomes = await service(node).leaseUpload(put, durationMs);
  const ends = outcomes.flatMap((o) => o.lease ? [o.lease.end] : []);
  return {
    leases: outcomes.map(outcomeView),
    ...(ends.length ? { leaseEnds: new Date(Math.min(...ends)).toISOString() } : {}),
  };
}

function outcomeView(o: LeaseOutcome) {
  return o.lease
    ? {
      holder: o.holder,
      id: o.lease.id,
      chunks: o.chunks,
      end: new Date(o.lease.end).toISOString(),
      pricePerChunkMonth: o.lease.pricePerChunkMonth,
    }
    : { holder: o.holder, chunks: o.chunks, error: o.error!.code, message: o.error!.message };
}

export function addLeaseRoutes(app: Hono, node: MeshgateNode): void {
  app.get("/api/leases", (c) => {
    const s = node.services.get<LeaseService>("leases");
    return c.json(s ? s.list() : { asClient: [], asHolder: [] });
  });
  app.post("/api/leases/:id/renew", async (c) => {
    const id = c.req.param("id");
    if (!/^[0-9a-f]{32}$/.test(id)) {
      throw new MeshError("bad_request", "A lease id is 32 hex digits");
    }
    const duration = leaseDuration("duration", c.req.query("duration") ?? "30d");
    const lease = await service(node).renew(id, duration);
    return c.json({
      id: lease.id,
      renews: id,
      holder: lease.holder,
      start: new Date(lease.start).toISOString(),
      end: new Date(lease.end).toISOString(),
    }, 201);
  });
}
