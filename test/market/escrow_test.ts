import assert from "node:assert/strict";
import { type Hex, keccak256, parseEther, toHex, zeroAddress } from "viem";
import {
  claimDeal,
  confirmDeal,
  dealIdOf,
  disputeDeal,
  escrowBalance,
  EscrowError,
  type EscrowEvent,
  fundEscrow,
  type FundEscrowParameters,
  getDeal,
  getDealEvents,
  refundDeal,
  releaseDeal,
  resolveDeal,
  settledDeals,
  settleDispute,
  watchDeals,
  withdrawEscrow,
} from "../../src/market/escrow.ts";
import { httpStatus } from "../../edge/errors.ts";
import { startTestChain, type TestChain, type Wallet } from "../pay/_chain.ts";

const DAY = 86_400n;
const ONE = parseEther("1");

/** Asserts that `promise` is refused by the contract with `errorName` (and `code`); returns the error. */
async function refused(
  promise: Promise<unknown>,
  errorName: string,
  code?: string,
): Promise<EscrowError> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof EscrowError, `expected EscrowError, got ${e}`);
    assert.equal(e.errorName, errorName, e.message);
    if (code) assert.equal(e.code, code);
    return e;
  }
  assert.fail(`expected a refusal with "${errorName}", but the call succeeded`);
}

let termsCount = 0;
const freshTerms = (): Hex => keccak256(toHex(`quote ${termsCount++}`));

interface Parties {
  buyer: Wallet;
  seller: Wallet;
  arbiter: Wallet;
  stranger: Wallet;
}

async function parties(env: TestChain): Promise<Parties> {
  const [buyer, seller, arbiter, stranger] = await Promise.all([
    env.wallet(),
    env.wallet(),
    env.wallet(),
    env.wallet(),
  ]);
  return { buyer: buyer!, seller: seller!, arbiter: arbiter!, stranger: stranger! };
}

Deno.test("Escrow deals on anvil", async (t) => {
  const env = await startTestChain();
  const address = env.contracts.escrow;
  const fund = async (
    p: Parties,
    extra: Partial<FundEscrowParameters> = {},
  ): Promise<{ deal: Hex; terms: Hex }> => {
    const terms = extra.terms ?? freshTerms();
    const { deal } = await fundEscrow(p.buyer, {
      address,
      seller: p.seller.account.address,
      amount: ONE,
      terms,
      confirmBy: (await env.now()) + DAY,
      deliveryWindow: 7n * DAY,
      disputeWindow: 3n * DAY,
      ...extra,
    });
    return { deal, terms };
  };
  const status = async (deal: Hex) => (await getDeal(env.test, { address, deal })).status;
  const balance = (w: Wallet) => escrowBalance(env.test, { address, account: w.account.address });
  try {
    await t.step("fund, confirm, release, withdraw: the seller is paid exactly", async () => {
      const p = await parties(env);
      const watched: EscrowEvent[] = [];
      const stop = watchDeals(env.test, {
        address,
        pollingInterval: 50,
        onEvents: (e) => watched.push(...e),
      });
      const terms = freshTerms();
      const confirmBy = (await env.now()) + DAY;
      const { deal } = await fund(p, { terms, confirmBy });
      assert.equal(deal, dealIdOf(p.buyer.account.address, terms));
      const state = await getDeal(env.test, { address, deal });
      assert.deepEqual(state, {
        buyer: p.buyer.account.address,
        seller: p.seller.account.address,
        arbiter: zeroAddress,
        amount: ONE,
        terms,
        status: "funded",
        confirmBy,
        deliveryWindow: 7n * DAY,
        disputeWindow: 3n * DAY,
        releaseAt: 0n,
        resolveBy: 0n,
      });
      const { releaseAt } = await confirmDeal(p.seller, { address, deal });
      assert.equal(releaseAt, (await env.now()) + 7n * DAY);
      assert.equal(await status(deal), "confirmed");
      const released = await releaseDeal(p.buyer, { address, deal });
      assert.equal(released.amount, ONE);
      assert.equal(await status(deal), "released");
      // Credited, not sent: the seller pulls it.
      assert.equal(await balance(p.seller), ONE);
      assert.equal(await balance(p.buyer), 0n);
      const before = await env.test.getBalance({ address: p.seller.account.address });
      const w = await withdrawEscrow(p.seller, { address });
      assert.equal(w.amount, ONE);
      assert.equal(
        await env.test.getBalance({ address: p.seller.account.address }),
        before + ONE - await env.gasCost(w.hash),
      );
      assert.equal(await balance(p.seller), 0n);
      await refused(withdrawEscrow(p.seller, { address }), "NothingToWithdraw", "escrow_nothing");
      // Settled once: nothing more moves it.
      await refused(releaseDeal(p.buyer, { address, deal }), "WrongStatus", "deal_state");
      await refused(refundDeal(p.seller, { address, deal }), "WrongStatus");
      assert.equal(await settledDeals(env.test, { address, account: p.buyer.account.address }), 1n);

      const history = (await getDealEvents(env.test, { address, deal })).map((e) => e.eventName);
      assert.deepEqual(history, ["DealFunded", "DealConfirmed", "DealReleased"]);
      const deadline = Date.now() + 10_000;
      while (watched.filter((e) => e.eventName === "Withdrawn").length < 1) {
        assert.ok(Date.now() < deadline, "the watcher never saw the withdrawal");
        await new Promise((r) => setTimeout(r, 50));
      }
      stop();
      assert.deepEqual(watched.map((e) => e.eventName), [
        "DealFunded",
        "DealConfirmed",
        "DealReleased",
        "Withdrawn",
      ]);
    });

    await t.step("funding the same terms twice is refused (DealExists)", async () => {
      const p = await parties(env);
      const { deal, terms } = await fund(p);
      const e = await refused(fund(p, { terms }), "DealExists", "deal_exists");
      assert.deepEqual(e.args, [deal]);
      assert.equal(httpStatus(e), 409);
      assert.equal((await getDeal(env.test, { address, deal })).amount, ONE);
      // Other terms, or another buyer with the same terms, are other deals.
      await fund(p);
      await fund({ ...p, buyer: p.stranger }, { terms });
    });

    await t.step("a stranger can do nothing to a deal, at any stage", async () => {
      const p = await parties(env);
      const { deal } = await fund(p, { arbiter: p.arbiter.account.address });
      const s = p.stranger;
      await refused(confirmDeal(s, { address, deal }), "NotSeller", "deal_forbidden");
      await refused(releaseDeal(s, { address, deal }), "NotBuyer", "deal_forbidden");
      await refused(refundDeal(s, { address, deal }), "NotParty", "deal_forbidden");
      await confirmDeal(p.seller, { address, deal });
      await refused(disputeDeal(s, { address, deal }), "NotBuyer");
      // A late release: past the delivery window only the seller may claim it, never a stranger.
      await env.travel(Number(8n * DAY));
      await refused(claimDeal(s, { address, deal }), "NotSeller");
      await refused(refundDeal(s, { address, deal }), "NotParty");
      await refused(releaseDeal(s, { address, deal }), "NotBuyer");
      await refused(resolveDeal(s, { address, deal, toBuyer: 0n }), "NotArbiter");
      await refused(settleDispute(s, { address, deal }), "NotParty");
      await refused(withdrawEscrow(s, { address }), "NothingToWithdraw");
      assert.equal(await status(deal), "confirmed");
    });

    await t.step("release by the seller or the arbiter is refused (NotBuyer)", async () => {
      const p = await parties(env);
      const { deal } = await fund(p, { arbiter: p.arbiter.account.address });
      await refused(releaseDeal(p.seller, { address, deal }), "NotBuyer");
      await refused(releaseDeal(p.arbiter, { address, deal }), "NotBuyer");
    });

    await t.step(
      "an unconfirmed deal: the buyer refunds from confirmBy on, not before",
      async () => {
        const p = await parties(env);
        const confirmBy = (await env.now()) + DAY;
        const { deal } = await fund(p, { confirmBy });
        const early = await refused(
          refundDeal(p.buyer, { address, deal }),
          "TooEarly",
          "deal_too_early",
        );
        assert.deepEqual(early.args, [confirmBy]);
        await env.travel(Number(DAY));
        // The seller missed its chance.
        await refused(confirmDeal(p.seller, { address, deal }), "TooLate", "deal_too_late");
        const r = await refundDeal(p.buyer, { address, deal });
        assert.equal(r.amount, ONE);
        assert.equal(await status(deal), "refunded");
        assert.equal(await balance(p.buyer), ONE);
        // A deal the seller never took is no history of either side.
        assert.equal(
          await settledDeals(env.test, { address, account: p.seller.account.address }),
          0n,
        );
      },
    );

    await t.step(
      "a confirmed deal: the buyer can no longer refund (it releases or disputes)",
      async () => {
        const p = await parties(env);
        const { deal } = await fund(p);
        await confirmDeal(p.seller, { address, deal });
        await env.travel(Number(2n * DAY)); // past confirmBy
        const e = await refused(refundDeal(p.buyer, { address, deal }), "WrongStatus");
        assert.match(e.message, /the deal is confirmed/);
      },
    );

    await t.step("the seller may decline (refund) at any time before settlement", async () => {
      const p = await parties(env);
      const { deal } = await fund(p);
      const r = await refundDeal(p.seller, { address, deal });
      assert.equal(r.amount, ONE);
      assert.equal(await balance(p.buyer), ONE);
    });

    await t.step("the seller claims after the delivery window, not before", async () => {
      const p = await parties(env);
      const { deal } = await fund(p);
      const { releaseAt } = await confirmDeal(p.seller, { address, deal });
      const e = await refused(claimDeal(p.seller, { address, deal }), "TooEarly");
      assert.deepEqual(e.args, [releaseAt]);
      await env.travel(Number(7n * DAY) - 60);
      await refused(claimDeal(p.seller, { address, deal }), "TooEarly");
      await env.travel(60);
      // From releaseAt on the buyer can no longer dispute: the claim cannot be blocked.
      await refused(disputeDeal(p.buyer, { address, deal }), "TooLate");
      const c = await claimDeal(p.seller, { address, deal });
      assert.equal(c.amount, ONE);
      assert.equal(await status(deal), "released");
      assert.equal(await balance(p.seller), ONE);
      const [released] = (await getDealEvents(env.test, { address, deal })).filter((e) =>
        e.eventName === "DealReleased"
      );
      assert.equal((released!.args as { by: string }).by, p.seller.account.address);
    });

    await t.step("a dispute stops the claim; the arbiter splits before resolveBy", async () => {
      const p = await parties(env);
      const { deal } = await fund(p, { arbiter: p.arbiter.account.address });
      await refused(disputeDeal(p.buyer, { address, deal }), "WrongStatus"); // not confirmed yet
      await confirmDeal(p.seller, { address, deal });
      const { resolveBy } = await disputeDeal(p.buyer, { address, deal });
      assert.equal(resolveBy, (await env.now()) + 3n * DAY);
      assert.equal(await status(deal), "disputed");
      // Past the delivery window, a disputed deal still cannot be claimed.
      await env.travel(Number(8n * DAY));
      await refused(claimDeal(p.seller, { address, deal }), "WrongStatus");
      await refused(resolveDeal(p.arbiter, { address, deal, toBuyer: 0n }), "TooLate");
    });

    await t.step("the arbiter rules any split; more than the amount is refused", async () => {
      const p = await parties(env);
      const { deal } = await fund(p, { arbiter: p.arbiter.account.address });
      await confirmDeal(p.seller, { address, deal });
      await disputeDeal(p.buyer, { address, deal });
      await refused(settleDispute(p.buyer, { address, deal }), "TooEarly");
      await refused(settleDispute(p.seller, { address, deal }), "TooEarly");
      await refused(
        resolveDeal(p.arbiter, { address, deal, toBuyer: ONE + 1n }),
        "InvalidSplit",
        "escrow_invalid",
      );
      await refused(resolveDeal(p.buyer, { address, deal, toBuyer: ONE }), "NotArbiter");
      const r = await resolveDeal(p.arbiter, { address, deal, toBuyer: parseEther("0.3") });
      assert.deepEqual([r.toBuyer, r.toSeller], [parseEther("0.3"), parseEther("0.7")]);
      assert.equal(await status(deal), "resolved");
      assert.equal(await balance(p.buyer), parseEther("0.3"));
      assert.equal(await balance(p.seller), parseEther("0.7"));
      assert.equal(await balance(p.arbiter), 0n);
      await refused(resolveDeal(p.arbiter, { address, deal, toBuyer: 0n }), "WrongStatus");
      // Both pull exactly what they were credited.
      for (
        const [w, amount] of [[p.buyer, parseEther("0.3")], [p.seller, parseEther("0.7")]] as const
      ) {
        const before = await env.test.getBalance({ address: w.account.address });
        const { hash } = await withdrawEscrow(w, { address });
        assert.equal(
          await env.test.getBalance({ address: w.account.address }),
          before + amount - await env.gasCost(hash),
        );
      }
    });

    await t.step("an arbiter silent past resolveBy: either side takes the even split", async () => {
      const p = await parties(env);
      const amount = ONE + 1n; // odd: the odd wei goes to the seller
      const { deal } = await fund(p, { arbiter: p.arbiter.account.address, amount });
      await confirmDeal(p.seller, { address, deal });
      const { resolveBy } = await disputeDeal(p.buyer, { address, deal });
      await env.travel(Number(3n * DAY) - 60);
      await refused(settleDispute(p.seller, { address, deal }), "TooEarly");
      await env.travel(60);
      const e = await refused(resolveDeal(p.arbiter, { address, deal, toBuyer: 0n }), "TooLate");
      assert.deepEqual(e.args, [resolveBy]);
      const r = await settleDispute(p.seller, { address, deal });
      assert.deepEqual([r.toBuyer, r.toSeller], [ONE / 2n, ONE / 2n + 1n]);
      assert.equal(await balance(p.buyer), ONE / 2n);
      assert.equal(await balance(p.seller), ONE / 2n + 1n);
    });

    await t.step("no arbiter: a dispute ends in the even split, or a concession", async () => {
      const p = await parties(env);
      const { deal } = await fund(p);
      await confirmDeal(p.seller, { address, deal });
      await disputeDeal(p.buyer, { address, deal });
      await refused(resolveDeal(p.arbiter, { address, deal, toBuyer: 0n }), "NotArbiter");
      await env.travel(Number(3n * DAY));
      const r = await settleDispute(p.buyer, { address, deal });
      assert.deepEqual([r.toBuyer, r.toSeller], [ONE / 2n, ONE / 2n]);

      // The buyer may concede a dispute (release), or the seller (refund), before any ruling.
      const q = await parties(env);
      const a = await fund(q);
      await confirmDeal(q.seller, { address, deal: a.deal });
      await disputeDeal(q.buyer, { address, deal: a.deal });
      await releaseDeal(q.buyer, { address, deal: a.deal });
      const b = await fund(q);
      await confirmDeal(q.seller, { address, deal: b.deal });
      await disputeDeal(q.buyer, { address, deal: b.deal });
      await refundDeal(q.seller, { address, deal: b.deal });
      assert.equal(await balance(q.seller), ONE);
      assert.equal(await balance(q.buyer), ONE);
      assert.equal(await settledDeals(env.test, { address, account: q.buyer.account.address }), 2n);
    });

    await t.step("fund refuses bad parameters", async () => {
      const p = await parties(env);
      const now = await env.now();
      const bad = (extra: Partial<FundEscrowParameters>) => fund(p, extra);
      await refused(bad({ seller: zeroAddress }), "InvalidSeller", "escrow_invalid");
      await refused(bad({ seller: p.buyer.account.address }), "InvalidSeller");
      await refused(bad({ arbiter: p.buyer.account.address }), "InvalidArbiter");
      await refused(bad({ arbiter: p.seller.account.address }), "InvalidArbiter");
      await refused(bad({ confirmBy: now }), "InvalidDeadline");
      await refused(bad({ confirmBy: now + 400n * DAY }), "InvalidDeadline");
      await refused(bad({ deliveryWindow: 0n }), "InvalidWindow");
      await refused(bad({ disputeWindow: 400n * DAY }), "InvalidWindow");
      await refused(bad({ amount: 0n }), "ZeroAmount");
      const e = await refused(
        releaseDeal(p.buyer, { address, deal: toHex(5n, { size: 32 }) }),
        "DealNotFound",
        "deal_not_found",
      );
      assert.equal(httpStatus(e), 404);
    });
  } finally {
    await env.stop();
  }
});
