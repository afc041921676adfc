/**
 * Paid lookups against a light client's cold DHT walk in the in-process mesh (src/mesh/sim_lookup.ts). The
 * suite runs a small mesh and checks that the operator's records name the providers and that the paid median
 * is at most half the walk's (measured near 0.2 at 16 and 40 nodes: an operator that waited out a grace or
 * asked again for statements, as it once did, is over); the target of 1/3 is asserted with MESHGATE_SIM=1
 * (100 nodes), the scale. Times are on the dilated clock, so a loaded machine slows both alike.
 */
import assert from "node:assert/strict";
import { formatLookupReport, simulateLookups } from "../../src/mesh/sim_lookup.ts";
import "./_helpers.ts"; // libp2p's process-wide channel, opened outside the test

const full = Deno.env.get("MESHGATE_SIM") === "1";

Deno.test({
  name: `paid lookups answer a light client ${
    full ? "in <= 1/3 of its cold walk (100 nodes)" : "(16 nodes)"
  }`,
  sanitizeOps: false, // kad-dht's and the sim links' timers run out after the nodes stop
  sanitizeResources: false,
  async fn() {
    const report = await simulateLookups(
      // 8 clients, not 3: one record that never spread (the walk misses it too) is then 1 in 8, not 1 in 3.
      full ? { nodes: 100, clients: 20 } : { nodes: 16, clients: 8, warmWalks: 2 },
    );
    console.log(formatLookupReport(report));
    assert.ok(
      report.paid.success >= 0.75,
      `paid lookups found ${report.paid.ok} of ${report.paid.count}`,
    );
    assert.ok(
      report.ratio <= (full ? 1 / 3 : 1 / 2),
      `paid/walk median ${report.ratio.toFixed(2)}`,
    );
  },
});
