import assert from "node:assert/strict";
import { generateKeyPair } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey } from "@libp2p/peer-id";
import { type Address, type Hex, keccak256, parseEther, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { httpStatus } from "../../edge/errors.ts";
import {
  confirmDeal,
  disputeDeal,
  fundEscrow,
  refundDeal,
  releaseDeal,
  settleDispute,
} from "../../src/market/escrow.ts";
import {
  checkRating,
  decodeRating,
  encodeRating,
  type Rating,
  RatingDesk,
  RatingError,
  ratingWeight,
  signPayoutLink,
  signRating,
} from "../../src/market/rating.ts";
import { ReputationBook } from "../../src/reputation/book.ts";
import { startTestChain, type TestChain, type Wallet } from "../pay/_chain.ts";

const DAY = 86_400n;
const ONE = parseEther("1");

async function refused(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<void> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof RatingError, `expected RatingError, got ${e}`);
    assert.equal(e.code, code, e.message);
    if (pattern) assert.match(e.message, pattern);
    return;
  }
  assert.fail(`expected a refusal "${code}", but the rating was accepted`);
}

Deno.test("ratingWeight: small deals and new buyers weigh little, splitting never pays", () => {
  const eth = (x: string) => parseEther(x);
  assert.equal(ratingWeight(eth("0.01"), 1_000_000), 0.5 * (1_000_001 / 1_000_005));
  assert.ok(Math.abs(ratingWeight(eth("0.001"), 0) - 0.2 * 0.01 / 1.1) < 1e-12);
  assert.equal(ratingWeight(eth("1000"), 0), 10 * 0.2); // capped
  assert.equal(ratingWeight(eth("1"), 4), 10 * 5 / 9);
  assert.equal(ratingWeight(0n, 10), 0);
  // Ten deals of 0.005 ETH weigh less than one of 0.05 ETH.
  assert.ok(10 * ratingWeight(eth("0.005"), 9) < ratingWeight(eth("0.05"), 9));
  // More history, more weight, never past the deal's own.
  const ws = [0, 1, 4, 20, 1000].map((n) => ratingWeight(eth("0.05"), n));
  for (let i = 1; i < ws.length; i++) assert.ok(ws[i]! > ws[i - 1]!);
  assert.ok(ws.at(-1)! < 25 / 6); // u = 5: u² / (u + 1)
});

Deno.test("Ratings checked against the chain on anvil", async (t) => {
  const env: TestChain = await startTestChain();
  const escrow = env.contracts.escrow;
  const chainId = env.chain.id;
  const sellerKey = await generateKeyPair("Ed25519");
  const sellerPeer = peerIdFromPrivateKey(sellerKey).toString();
  const book = new ReputationBook();
  await book.start();
  const dataDir = await Deno.makeTempDir({ prefix: "ratings-" });
  const desk = new RatingDesk({ client: env.test, escrow, book, dataDir });
  await desk.start();
  let n = 0;

  /** A buyer and seller, and a deal between them taken through `steps`. */
  const deal = async (
    steps: (d: { buyer: Wallet; seller: Wallet; deal: Hex }) => Promise<void>,
    buyer?: Wallet,
    amount = ONE,
  ) => {
    buyer ??= await env.wallet();
    const seller = await env.wallet();
    const { deal } = await fundEscrow(buyer, {
      address: escrow,
      seller: seller.account.address,
      amount,
      terms: keccak256(toHex(`rated quote ${n++}`)),
      confirmBy: (await env.now()) + DAY,
      deliveryWindow: DAY,
      disputeWindow: DAY,
    });
    await steps({ buyer, seller, deal });
    return { buyer, seller, deal };
  };
  const released = (d: { buyer: Wallet; seller: Wallet; deal: Hex }) =>
    confirmDeal(d.seller, { address: escrow, deal: d.deal })
      .then(() => releaseDeal(d.buyer, { address: escrow, deal: d.deal }))
      .then(() => {});
  const rate = async (
    signer: Wallet,
    d: { seller: Wallet; deal: Hex },
    value = 0,
    extra: Partial<Rating> = {},
  ): Promise<Rating> => {
    const seller = extra.seller ?? d.seller.account.address;
    const link = await signPayoutLink(sellerKey, { chainId, address: d.seller.account.address });
    return await signRating(signer.account, {
      chainId,
      escrow,
      deal: d.deal,
      seller,
      sellerPeer,
      link,
      value,
      ...extra,
    });
  };
  const trade = () => book.score(sellerPeer).factors.trade;

  try {
    await t.step("a rating of a released deal by its buyer enters the book, weighed", async () => {
      const d = await deal(released);
      assert.equal(trade(), 1);
      const rating = await rate(d.buyer, d, 0, { comment: keccak256(toHex("never arrived")) });
      const wire = decodeRating(encodeRating(rating));
      const checked = await desk.accept(wire);
      assert.equal(checked.history, 0);
      assert.equal(checked.weight, ratingWeight(ONE, 0));
      assert.equal(checked.weight, 2); // 1 ETH: capped at 10, a first deal counts a fifth
      assert.ok(trade() < 1, `trade factor ${trade()}`);
      assert.deepEqual(desk.accepted(d.deal), rating);
      assert.deepEqual(desk.ratingsOf(sellerPeer), [rating]);
      assert.equal(book.record(sellerPeer)?.ratings, 1);
    });

    await t.step("a rating of a deal that never settled is refused", async () => {
      const funded = await deal(async () => {});
      await refused(desk.accept(await rate(funded.buyer, funded)), "rating_unsettled", /is funded/);
      const confirmed = await deal((d) =>
        confirmDeal(d.seller, { address: escrow, deal: d.deal }).then(() => {})
      );
      await refused(desk.accept(await rate(confirmed.buyer, confirmed)), "rating_unsettled");
      const disputed = await deal(async (d) => {
        await confirmDeal(d.seller, { address: escrow, deal: d.deal });
        await disputeDeal(d.buyer, { address: escrow, deal: d.deal });
      });
      await refused(
        desk.accept(await rate(disputed.buyer, disputed)),
        "rating_unsettled",
        /disputed/,
      );
      // Declined by the seller before it confirmed: no trade.
      const declined = await deal((d) =>
        refundDeal(d.seller, { address: escrow, deal: d.deal }).then(() => {})
      );
      await refused(
        desk.accept(await rate(declined.buyer, declined)),
        "rating_unsettled",
        /before the seller confirmed/,
      );
      const ghost = { ...funded, deal: keccak256(toHex("no such deal")) };
      await refused(desk.accept(await rate(funded.buyer, ghost)), "rating_unsettled", /never/);
      assert.equal(book.record(sellerPeer)?.ratings, 1);
      // Once it settles, the same rating counts (it was never marked as seen).
      await releaseDeal(funded.buyer, { address: escrow, deal: funded.deal });
      await desk.accept(await rate(funded.buyer, funded, 1));
    });

    await t.step("a second rating for one deal is refused, also after a restart", async () => {
      const d = await deal(released);
      const first = await rate(d.buyer, d, 1);
      const again = await rate(d.buyer, d, 0);
      // Two copies at once: exactly one is accepted.
      const results = await Promise.allSettled([desk.accept(first), desk.accept(again)]);
      assert.deepEqual(results.map((r) => r.status).sort(), ["fulfilled", "rejected"]);
      const ratings = book.record(sellerPeer)?.ratings;
      await refused(desk.accept(first), "rating_duplicate", /one rating per deal/);
      await desk.stop();
      const restarted = new RatingDesk({ client: env.test, escrow, book, dataDir });
      await restarted.start();
      try {
        await refused(restarted.accept(again), "rating_duplicate");
      } finally {
        await restarted.stop();
      }
      await desk.start();
      assert.equal(book.record(sellerPeer)?.ratings, ratings);
    });

    await t.step("a rating signed by anyone but the deal's buyer is refused", async () => {
      const d = await deal(released);
      const stranger = await env.wallet();
      await refused(
        desk.accept(await rate(stranger, d)),
        "rating_signature",
        /not the deal's buyer/,
      );
      await refused(desk.accept(await rate(d.seller, d, 1)), "rating_signature");
      // A buyer's signature over other values does not carry to these.
      const genuine = await rate(d.buyer, d, 1);
      await refused(desk.accept({ ...genuine, value: 0 }), "rating_signature");
      await refused(desk.accept({ ...genuine, sellerPeer: "12D3KooWnotit" }), "rating_signature");
      const e = await desk.accept(genuine).then(() => undefined, (e) => e);
      assert.equal(e, undefined);
    });

    await t.step("a rating naming another escrow, chain, seller or peer is refused", async () => {
      const d = await deal(released);
      const fake = "0x000000000000000000000000000000000000dEaD" as Address;
      await refused(desk.accept(await rate(d.buyer, d, 0, { escrow: fake })), "rating_deal");
      await refused(desk.accept(await rate(d.buyer, d, 0, { chainId: 1 })), "rating_deal");
      const other = privateKeyToAccount(keccak256(toHex("someone"))).address;
      await refused(
        desk.accept(await rate(d.buyer, d, 0, { seller: other })),
        "rating_deal",
        /the deal's is/,
      );
      // The seller peer never linked itself to this deal's seller account.
      const otherKey = await generateKeyPair("Ed25519");
      const wrongLink = await signPayoutLink(otherKey, {
        chainId,
        address: d.seller.account.address,
      });
      await refused(desk.accept(await rate(d.buyer, d, 0, { link: wrongLink })), "rating_link");
      const linkElsewhere = await signPayoutLink(sellerKey, { chainId, address: other });
      await refused(
        desk.accept(await rate(d.buyer, d, 0, { link: linkElsewhere })),
        "rating_link",
        /did not sign/,
      );
    });

    await t.step("malformed ratings are refused before any chain call", async () => {
      const d = await deal(async () => {});
      const good = await rate(d.buyer, d);
      for (
        const bad of [
          null,
          "x",
          { ...good, v: 2 },
          { ...good, value: 1.5 },
          { ...good, value: Number.NaN },
          { ...good, deal: "0x12" },
          { ...good, sig: "0x00" },
          { ...good, extra: 1 },
        ]
      ) await refused(desk.accept(bad), "rating_malformed");
      await assert.rejects(
        signRating(d.buyer.account, { ...good, value: -1 }),
        (e) => e instanceof RatingError && e.code === "rating_malformed",
      );
      assert.throws(() => decodeRating(new Uint8Array(2000)), RatingError);
      const err = new RatingError("rating_duplicate", "x");
      assert.equal(httpStatus(err), 409);
      assert.equal(httpStatus(new RatingError("rating_signature", "x")), 422);
    });

    await t.step(
      "refunded after confirmation and resolved deals count; history adds weight",
      async () => {
        const buyer = await env.wallet();
        const refunded = await deal(async (d) => {
          await confirmDeal(d.seller, { address: escrow, deal: d.deal });
          await refundDeal(d.seller, { address: escrow, deal: d.deal });
        }, buyer);
        const a = await checkRating(await rate(buyer, refunded), { client: env.test, escrow });
        assert.equal(a.history, 0);
        const resolved = await deal(async (d) => {
          await confirmDeal(d.seller, { address: escrow, deal: d.deal });
          await disputeDeal(d.buyer, { address: escrow, deal: d.deal });
          await env.travel(Number(DAY));
          await settleDispute(d.buyer, { address: escrow, deal: d.deal });
        }, buyer);
        const b = await checkRating(await rate(buyer, resolved), { client: env.test, escrow });
        assert.equal(b.history, 1);
        assert.ok(b.weight > a.weight);
        // Small deal: little weight.
        const small = await deal(released, buyer, parseEther("0.001"));
        const c = await checkRating(await rate(buyer, small), { client: env.test, escrow });
        assert.ok(c.weight < 0.01, `weight ${c.weight}`);
      },
    );
  } finally {
    await desk.stop();
    await book.stop();
    await env.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
});
