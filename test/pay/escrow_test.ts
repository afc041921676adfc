import assert from "node:assert/strict";
import { keccak256, parseEther, parseEventLogs, toHex, zeroAddress } from "viem";
import { escrowAbi } from "../../src/pay/abi.ts";
import { fundEscrow, getDeal, refundEscrow, releaseEscrow } from "../../src/pay/escrow.ts";
import { assertRevert, startTestChain } from "./_chain.ts";

const terms = keccak256(toHex("quote: 3 GiB-month of storage"));
const DAY = 86_400n;

Deno.test("Escrow on anvil", async (t) => {
  const env = await startTestChain();
  const address = env.contracts.escrow;
  const parties = async () => ({ buyer: await env.wallet(), seller: await env.wallet() });
  try {
    await t.step("fund then release pays the seller, with an event at each step", async () => {
      const { buyer, seller } = await parties();
      const deadline = (await env.now()) + DAY;
      const funded = await fundEscrow(buyer, {
        address,
        seller: seller.account.address,
        amount: parseEther("2"),
        terms,
        deadline,
      });
      const deal = await getDeal(env.test, { address, deal: funded.deal });
      assert.deepEqual(deal, {
        buyer: buyer.account.address,
        seller: seller.account.address,
        amount: parseEther("2"),
        terms,
        deadline,
        status: "funded",
      });
      const before = await env.test.getBalance({ address: seller.account.address });
      const released = await releaseEscrow(buyer, { address, deal: funded.deal });
      assert.equal(released.amount, parseEther("2"));
      assert.equal(
        (await env.test.getBalance({ address: seller.account.address })) - before,
        parseEther("2"),
      );
      assert.equal((await getDeal(env.test, { address, deal: funded.deal })).status, "released");
      const receipt = await env.test.getTransactionReceipt({ hash: released.hash });
      const [log] = parseEventLogs({ abi: escrowAbi, logs: receipt.logs });
      assert.equal(log?.eventName, "DealReleased");
      // Released once: nothing left to release or refund.
      await assertRevert(releaseEscrow(buyer, { address, deal: funded.deal }), "DealNotFunded");
      await assertRevert(refundEscrow(seller, { address, deal: funded.deal }), "DealNotFunded");
    });

    await t.step("release by a stranger or the seller is refused (NotBuyer)", async () => {
      const { buyer, seller } = await parties();
      const stranger = await env.wallet();
      const { deal } = await fundEscrow(buyer, {
        address,
        seller: seller.account.address,
        amount: parseEther("1"),
        terms,
        deadline: (await env.now()) + DAY,
      });
      const [caller] = await assertRevert(releaseEscrow(stranger, { address, deal }), "NotBuyer");
      assert.equal(caller, stranger.account.address);
      await assertRevert(releaseEscrow(seller, { address, deal }), "NotBuyer");
      assert.equal((await getDeal(env.test, { address, deal })).status, "funded");
    });

    await t.step(
      "refund before the deadline is refused, after it returns the deposit",
      async () => {
        const { buyer, seller } = await parties();
        const deadline = (await env.now()) + DAY;
        const { deal } = await fundEscrow(buyer, {
          address,
          seller: seller.account.address,
          amount: parseEther("1"),
          terms,
          deadline,
        });
        const [until] = await assertRevert(
          refundEscrow(buyer, { address, deal }),
          "DeadlineNotReached",
        );
        assert.equal(until, deadline);
        await env.travel(Number(DAY));
        const stranger = await env.wallet();
        const before = await env.test.getBalance({ address: buyer.account.address });
        const refunded = await refundEscrow(stranger, { address, deal });
        assert.equal(refunded.amount, parseEther("1"));
        assert.equal(
          (await env.test.getBalance({ address: buyer.account.address })) - before,
          parseEther("1"),
        );
        assert.equal((await getDeal(env.test, { address, deal })).status, "refunded");
        await assertRevert(releaseEscrow(buyer, { address, deal }), "DealNotFunded");
      },
    );

    await t.step("the seller may refund before the deadline", async () => {
      const { buyer, seller } = await parties();
      const { deal } = await fundEscrow(buyer, {
        address,
        seller: seller.account.address,
        amount: parseEther("1"),
        terms,
        deadline: (await env.now()) + DAY,
      });
      const { amount } = await refundEscrow(seller, { address, deal });
      assert.equal(amount, parseEther("1"));
    });

    await t.step("fund refuses a bad seller, a past deadline or no value", async () => {
      const { buyer, seller } = await parties();
      const now = await env.now();
      const fund = (s: `0x${string}`, amount: bigint, deadline: bigint) =>
        fundEscrow(buyer, { address, seller: s, amount, terms, deadline });
      await assertRevert(fund(zeroAddress, 1n, now + DAY), "InvalidSeller");
      await assertRevert(fund(buyer.account.address, 1n, now + DAY), "InvalidSeller");
      await assertRevert(fund(seller.account.address, 1n, now), "InvalidDeadline");
      await assertRevert(fund(seller.account.address, 0n, now + DAY), "ZeroAmount");
      await assertRevert(
        releaseEscrow(buyer, { address, deal: toHex(5n, { size: 32 }) }),
        "DealNotFound",
      );
    });
  } finally {
    await env.stop();
  }
});
