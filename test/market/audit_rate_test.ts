/**
 * The detection rate of audits, measured: a holder that lost a fraction f of a lease's chunks (deleted from its
 * real store) is audited over and over by the real client over loopback, c challenges a round; a round catches
 * it when any challenge fails. Over T rounds the share caught must be at least what the formula predicts,
 * P(detect) = 1 − (1 − f)^c, less a one-sided binomial tolerance (3.29 standard deviations: a false alarm in
 * 2 000 runs). Observed and predicted rates are printed.
 *
 * In the suite: f = 0.2 with c = 4 over 200 rounds (a few seconds). `AUDIT_RATE_FULL=1` adds f = 0.2 with
 * c = 8 and f = 0.1 with c = 4, 16 and 32 (the lease market test's setting); `AUDIT_RATE_ROUNDS` sets T.
 */
import assert from "node:assert/strict";
import { CID, cidOf } from "../../src/content/cid.ts";
import { LeaseService } from "../../src/market/leasing.ts";
import { loadOrCreatePrivateKey } from "../../src/mesh/identity.ts";
import { ChunkStore } from "../../src/store/store.ts";
import { randomBytes, startNode, stopNodes } from "../mesh/_helpers.ts";

const CHUNKS = 50;
const ROUNDS = Number(Deno.env.get("AUDIT_RATE_ROUNDS") ?? 200);
const FULL = Deno.env.get("AUDIT_RATE_FULL") === "1";
/** Lost fraction -> challenges per round (one client each). */
const CASES: [number, number[]][] = FULL ? [[0.1, [4, 16, 32]], [0.2, [4, 8]]] : [[0.2, [4]]];

Deno.test({
  name: "audits catch a holder that lost a fraction f at least as often as 1 - (1 - f)^c predicts",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-audit-rate-" });
    const clock = { now: Date.now() };
    const make = async (name: string, challenges: number) => {
      const dataDir = `${dir}/${name}`;
      await Deno.mkdir(dataDir, { recursive: true });
      const mesh = await startNode({ dataDir });
      const store = await ChunkStore.open(dataDir);
      const service = new LeaseService({
        dataDir,
        store,
        libp2p: mesh.libp2p,
        privateKey: await loadOrCreatePrivateKey(dataDir),
        peerId: mesh.peerId,
        minTermMs: 1000,
        challenges,
        now: () => clock.now,
        log: () => {},
      });
      await service.start();
      return { mesh, store, service };
    };
    const holder = await make("holder", 4);
    // One client per challenge count (c is the client's setting).
    const counts = [...new Set(CASES.flatMap(([, cs]) => cs))];
    const clients = await Promise.all(counts.map((c) => make(`c${c}`, c)));
    try {
      const chunks: [string, number][] = [];
      for (let i = 0; i < CHUNKS; i++) {
        const bytes = randomBytes(4096);
        const cid = cidOf(bytes);
        await holder.store.put(cid, bytes);
        chunks.push([cid.toString(), bytes.length]);
      }
      const leases: string[] = [];
      for (const c of clients) {
        await c.mesh.connect(holder.mesh.multiaddrs()[0]! as never);
        const [out] = await c.service.leaseFile(
          CID.parse(chunks[0]![0]),
          new Map(chunks.map(([cid]) => [cid, new Set([holder.mesh.peerId])])),
          () => 4096,
          30 * 86_400_000,
        );
        assert.ok(out!.lease, JSON.stringify(out!.error));
        leases.push(out!.lease.id);
      }
      // Honest: every round passes.
      for (const [i, c] of clients.entries()) {
        const r = await c.service.audit(leases[i]!);
        assert.equal(r.failed, 0, r.reasons.join("; "));
      }
      // The holder loses 10%, then 20%, of the chunks from disk.
      const report: Record<string, unknown>[] = [];
      let lost = 0;
      for (const [f, cs] of CASES) {
        for (; lost < f * CHUNKS; lost++) {
          assert.ok(await holder.store.delete(CID.parse(chunks[lost]![0])));
        }
        for (const [i, c] of clients.entries()) {
          const challenges = counts[i]!;
          if (!cs.includes(challenges)) continue;
          let caught = 0;
          for (let t = 0; t < ROUNDS; t++) {
            clock.now += 3_600_000; // a new audit interval: the holder's challenge budget renews
            const r = await c.service.audit(leases[i]!);
            assert.equal(r.passed + r.failed, challenges, r.reasons.join("; "));
            assert.ok(r.reasons.every((why) => /no copy/.test(why)), r.reasons.join("; "));
            if (r.failed > 0) caught++;
          }
          const predicted = 1 - (1 - f) ** challenges;
          const observed = caught / ROUNDS;
          const tolerance = 3.29 * Math.sqrt(predicted * (1 - predicted) / ROUNDS);
          report.push({
            f,
            c: challenges,
            rounds: ROUNDS,
            observed: Number(observed.toFixed(3)),
            predicted: Number(predicted.toFixed(3)),
            tolerance: Number(tolerance.toFixed(3)),
          });
          assert.ok(
            observed >= predicted - tolerance,
            `f = ${f}, c = ${challenges}: caught ${caught} of ${ROUNDS} rounds (${observed}), ` +
              `the formula predicts ${predicted.toFixed(3)} (tolerance ${tolerance.toFixed(3)})`,
          );
        }
      }
      console.log(JSON.stringify({ audit_detection: report }));
    } finally {
      for (const s of [holder, ...clients]) {
        await s.service.stop();
        await s.store.close();
      }
      await stopNodes(holder.mesh, ...clients.map((c) => c.mesh));
      await Deno.remove(dir, { recursive: true });
    }
  },
});
