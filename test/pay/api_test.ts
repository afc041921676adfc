/** `GET /api/pay` and the `mesh_pay_*` series of a volunteer node (paid ones: test/integration/paid_test.ts). */
import assert from "node:assert/strict";
import { createGateway } from "../../edge/app.ts";
import { MeshgateNode } from "../../src/node.ts";

Deno.test("a volunteer node answers /api/pay with its mode, and exports every mesh_pay_* series as 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-payapi-" });
  const node = await MeshgateNode.create({ dataDir: dir, parityWorkers: 0 });
  try {
    const { app } = createGateway(node);
    const res = await app.request("/api/pay");
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { mode: "volunteer" });
    const channels = await app.request("/api/channels");
    assert.equal(channels.status, 200);
    assert.deepEqual(await channels.json(), { mode: "volunteer", channels: [] });

    const text = await (await app.request("/metrics")).text();
    const series = [
      "mesh_pay_vouchers_received_total",
      "mesh_pay_vouchers_sent_total",
      "mesh_pay_earned_wei_total",
      "mesh_pay_redeemed_wei_total",
      "mesh_pay_spent_wei_total",
      "mesh_pay_redeems_total",
      "mesh_pay_redeem_gas_total",
      "mesh_pay_redeem_gas_wei_total",
    ];
    for (const name of series) {
      assert.match(text, new RegExp(`^# TYPE ${name} counter$`, "m"));
      assert.match(text, new RegExp(`^${name} 0$`, "m"));
    }
    assert.match(text, /^# TYPE mesh_pay_channels gauge$/m);
    assert.match(text, /^mesh_pay_channels\{direction="in"\} 0$/m);
  } finally {
    await node.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
