import assert from "node:assert/strict";
import { keccak256, toHex, zeroAddress } from "viem";
import { announceOperator, getOperator, withdrawOperator } from "../../src/pay/registry.ts";
import { assertRevert, startTestChain } from "./_chain.ts";

Deno.test("OperatorRegistry on anvil", async (t) => {
  const env = await startTestChain();
  const address = env.contracts.operatorRegistry;
  try {
    await t.step("announce, update and withdraw an operator", async () => {
      const operator = await env.wallet();
      const payout = (await env.wallet()).account.address;
      const at = { address, operator: operator.account.address };
      assert.equal(await getOperator(env.test, at), undefined);

      const offer1 = keccak256(toHex("offer v1"));
      await announceOperator(operator, { address, payout, offerHash: offer1 });
      const first = await getOperator(env.test, at);
      assert.deepEqual(first, { payout, offerHash: offer1, updatedAt: await env.now() });

      const offer2 = keccak256(toHex("offer v2"));
      await env.travel(60);
      await announceOperator(operator, { address, payout, offerHash: offer2 });
      const second = await getOperator(env.test, at);
      assert.equal(second?.offerHash, offer2);
      assert.ok(second!.updatedAt > first!.updatedAt);

      await withdrawOperator(operator, { address });
      assert.equal(await getOperator(env.test, at), undefined);
    });

    await t.step("announce refuses a zero payout, withdraw refuses a stranger", async () => {
      const operator = await env.wallet();
      await assertRevert(
        announceOperator(operator, {
          address,
          payout: zeroAddress,
          offerHash: toHex(1n, { size: 32 }),
        }),
        "ZeroPayout",
      );
      const [who] = await assertRevert(withdrawOperator(operator, { address }), "NotAnnounced");
      assert.equal(who, operator.account.address);
    });
  } finally {
    await env.stop();
  }
});
