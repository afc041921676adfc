/**
 * The simulation at a small size (the real one, `deno task simulate:reputation`, runs 1,000 operators): the same claims,
 * and one that shows the newcomers' share is the mechanism (widened, the unvetted malicious get the reads).
 */
import assert from "node:assert/strict";
import { simulate, summarize } from "../../src/reputation/sim.ts";

Deno.test("simulation, 300 operators, 70% malicious, Sybils praising them: reads go right, no one honest is out", () => {
  const options = { operators: 300, clients: 10, fetches: 300, rounds: 8, newcomers: 4 };
  const plain = summarize(simulate(options), 3);
  assert.ok(plain.badShare <= 0.1, `bad first asks ${plain.badShare}`);
  assert.equal(plain.wronglyOut, 0);
  assert.ok(
    plain.newcomerVetRounds !== undefined && plain.newcomerVetRounds <= 6,
    String(plain.newcomerVetRounds),
  );
  const sybil = summarize(simulate({ ...options, sybils: 10 }), 3);
  assert.ok(sybil.badShare <= 0.1, `with Sybils: ${sybil.badShare}`);
  assert.equal(sybil.vettedMalicious, 0, "no Sybil-praised operator is vetted");
  assert.equal(sybil.maxRankLoss, 0);
  assert.equal(sybil.wronglyOut, 0);
  // The newcomers' share is what keeps the unvetted malicious at bay: widen it and they get the reads.
  const open = summarize(simulate({ ...options, newShare: 0.5 }), 3);
  assert.ok(open.badShare > 0.2, `with half the reads to newcomers: ${open.badShare}`);
});
