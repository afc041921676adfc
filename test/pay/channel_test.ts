import assert from "node:assert/strict";
import { type Address, type Hex, parseEther, toHex, zeroAddress } from "viem";
import { channelHubAbi } from "../../src/pay/abi.ts";
import {
  finalizeChannel,
  getChannel,
  openChannel,
  redeemVoucher,
  startClose,
  topUp,
  verifyReceipt,
} from "../../src/pay/channel.ts";
import { deployMeshContract } from "../../src/pay/deploy.ts";
import {
  EMPTY_RECEIPTS_ROOT,
  hashReceipt,
  type Receipt,
  receiptArg,
  ReceiptBatch,
} from "../../src/pay/receipts.ts";
import { channelHubDomain, hashVoucher, signVoucher, type Voucher } from "../../src/pay/voucher.ts";
import { assertRevert, startTestChain, type TestChain, type Wallet } from "./_chain.ts";

const HOUR = 3600n;

interface Fixture {
  payer: Wallet;
  payee: Wallet;
  channel: Hex;
  voucher(amount: bigint, root?: Hex, count?: bigint): Voucher;
  sign(
    voucher: Voucher,
    signer?: Wallet,
    domain?: ReturnType<typeof channelHubDomain>,
  ): Promise<Hex>;
}

async function openFixture(env: TestChain, deposit = parseEther("10")): Promise<Fixture> {
  const payer = await env.wallet();
  const payee = await env.wallet();
  const address = env.contracts.channelHub;
  const { channel } = await openChannel(payer, {
    address,
    payee: payee.account.address,
    deposit,
    challengePeriod: HOUR,
  });
  const domain = channelHubDomain(env.chain.id, address);
  return {
    payer,
    payee,
    channel,
    voucher: (amount, root = EMPTY_RECEIPTS_ROOT, count = 0n) => ({
      channel,
      cumulativeAmount: amount,
      receiptsRoot: root,
      receiptCount: count,
    }),
    sign: (voucher, signer = payer, d = domain) => signVoucher(signer.account, d, voucher),
  };
}

function receiptFor(operator: Address, client: Address, i: number): Receipt {
  // A CIDv1 raw BLAKE3 header followed by a digest-like pattern, distinct per receipt.
  const cid = new Uint8Array([
    0x01,
    0x55,
    0x1e,
    0x20,
    ...Array.from({ length: 32 }, (_, j) => (i * 31 + j) & 0xff),
  ]);
  return { operator, client, cid, size: BigInt(65536 + i), time: 1_700_000_000n + BigInt(i) };
}

Deno.test("ChannelHub on anvil", async (t) => {
  const env = await startTestChain();
  const hub = env.contracts.channelHub;
  try {
    await t.step("openChannel() stores payer, payee, deposit and challenge period", async () => {
      const f = await openFixture(env, parseEther("3"));
      const c = await getChannel(env.test, { address: hub, channel: f.channel });
      assert.equal(c.payer, f.payer.account.address);
      assert.equal(c.payee, f.payee.account.address);
      assert.equal(c.deposit, parseEther("3"));
      assert.equal(c.challengePeriod, HOUR);
      assert.equal(c.status, "open");
      assert.equal(c.redeemed, 0n);
      const again = await openChannel(f.payer, {
        address: hub,
        payee: f.payee.account.address,
        deposit: 0n,
        challengePeriod: HOUR,
      });
      assert.notEqual(
        again.channel,
        f.channel,
        "a second channel between the same pair gets a new id",
      );
      const none = await getChannel(env.test, { address: hub, channel: toHex(1n, { size: 32 }) });
      assert.equal(none.status, "none");
    });

    await t.step("openChannel() refuses a bad payee or challenge period", async () => {
      const payer = await env.wallet();
      const open = (payee: Address, challengePeriod: bigint) =>
        openChannel(payer, { address: hub, payee, deposit: 1n, challengePeriod });
      await assertRevert(open(zeroAddress, HOUR), "InvalidPayee");
      await assertRevert(open(payer.account.address, HOUR), "InvalidPayee");
      const other = (await env.wallet()).account.address;
      await assertRevert(open(other, 0n), "InvalidChallengePeriod");
      await assertRevert(open(other, 30n * 24n * HOUR + 1n), "InvalidChallengePeriod");
    });

    await t.step("topUp() adds to the deposit, from anyone", async () => {
      const f = await openFixture(env, parseEther("1"));
      const stranger = await env.wallet();
      const { deposit } = await topUp(stranger, {
        address: hub,
        channel: f.channel,
        amount: parseEther("2"),
      });
      assert.equal(deposit, parseEther("3"));
      await assertRevert(
        topUp(f.payer, { address: hub, channel: f.channel, amount: 0n }),
        "ZeroAmount",
      );
      await assertRevert(
        topUp(f.payer, { address: hub, channel: toHex(7n, { size: 32 }), amount: 1n }),
        "ChannelNotFound",
      );
    });

    await t.step("hashVoucher() and the domain agree with the contract", async () => {
      const f = await openFixture(env);
      const v = f.voucher(123n, toHex(42n, { size: 32 }), 9n);
      const onChain = await env.test.readContract({
        address: hub,
        abi: channelHubAbi,
        functionName: "hashVoucher",
        args: [v],
      });
      assert.equal(onChain, hashVoucher(channelHubDomain(env.chain.id, hub), v));
      const [, name, version, chainId, verifyingContract] = await env.test.readContract({
        address: hub,
        abi: channelHubAbi,
        functionName: "eip712Domain",
      });
      assert.deepEqual(
        { name, version, chainId: Number(chainId), verifyingContract },
        channelHubDomain(env.chain.id, hub),
      );
    });

    await t.step("redeemVoucher() pays the difference since the last redeem", async () => {
      const f = await openFixture(env, parseEther("10"));
      const before = await env.test.getBalance({ address: f.payee.account.address });
      const v1 = f.voucher(parseEther("1"), toHex(1n, { size: 32 }), 4n);
      const r1 = await redeemVoucher(f.payee, {
        address: hub,
        voucher: v1,
        signature: await f.sign(v1),
      });
      assert.equal(r1.paid, parseEther("1"));
      const v3 = f.voucher(parseEther("3"), toHex(2n, { size: 32 }), 8n);
      const r3 = await redeemVoucher(f.payee, {
        address: hub,
        voucher: v3,
        signature: await f.sign(v3),
      });
      assert.equal(r3.paid, parseEther("2"));
      const after = await env.test.getBalance({ address: f.payee.account.address });
      const gas = (await env.gasCost(r1.hash)) + (await env.gasCost(r3.hash));
      assert.equal(after - before + gas, parseEther("3"));
      const c = await getChannel(env.test, { address: hub, channel: f.channel });
      assert.equal(c.redeemed, parseEther("3"));
      assert.equal(c.receiptsRoot, toHex(2n, { size: 32 }));
      assert.equal(c.receiptCount, 8n);
    });

    await t.step(
      "redeem refuses a voucher rewritten for another channel (InvalidSigner)",
      async () => {
        const f = await openFixture(env);
        const second = await openChannel(f.payer, {
          address: hub,
          payee: f.payee.account.address,
          deposit: parseEther("10"),
          challengePeriod: HOUR,
        });
        const v = f.voucher(parseEther("1"));
        const signature = await f.sign(v);
        await assertRevert(
          redeemVoucher(f.payee, {
            address: hub,
            voucher: { ...v, channel: second.channel },
            signature,
          }),
          "InvalidSigner",
        );
        const c = await getChannel(env.test, { address: hub, channel: second.channel });
        assert.equal(c.redeemed, 0n);
      },
    );

    await t.step(
      "redeem refuses another channel's voucher from a non-payee (NotPayee)",
      async () => {
        const f = await openFixture(env);
        const stranger = await env.wallet();
        const v = f.voucher(parseEther("1"));
        await assertRevert(
          redeemVoucher(stranger, { address: hub, voucher: v, signature: await f.sign(v) }),
          "NotPayee",
        );
      },
    );

    await t.step("redeem refuses a voucher signed for another chain (InvalidSigner)", async () => {
      const f = await openFixture(env);
      const v = f.voucher(parseEther("1"));
      const signature = await f.sign(v, f.payer, channelHubDomain(1, hub));
      const [signer, payer] = await assertRevert(
        redeemVoucher(f.payee, { address: hub, voucher: v, signature }),
        "InvalidSigner",
      );
      assert.notEqual(signer, payer);
      assert.equal(payer, f.payer.account.address);
    });

    await t.step("redeem refuses a voucher signed for another hub (InvalidSigner)", async () => {
      const f = await openFixture(env);
      const otherHub = await deployMeshContract(f.payer, "ChannelHub");
      const v = f.voucher(parseEther("1"));
      const signature = await f.sign(v, f.payer, channelHubDomain(env.chain.id, otherHub));
      await assertRevert(
        redeemVoucher(f.payee, { address: hub, voucher: v, signature }),
        "InvalidSigner",
      );
    });

    await t.step("redeem refuses a lower cumulative amount (CumulativeAmountTooLow)", async () => {
      const f = await openFixture(env);
      const v2 = f.voucher(parseEther("2"));
      const v1 = f.voucher(parseEther("1"));
      const s1 = await f.sign(v1);
      await redeemVoucher(f.payee, { address: hub, voucher: v2, signature: await f.sign(v2) });
      const args = await assertRevert(
        redeemVoucher(f.payee, { address: hub, voucher: v1, signature: s1 }),
        "CumulativeAmountTooLow",
      );
      assert.deepEqual(args, [parseEther("1"), parseEther("2")]);
    });

    await t.step("redeem refuses a replayed voucher (VoucherReplayed)", async () => {
      const f = await openFixture(env);
      const v = f.voucher(parseEther("1"));
      const signature = await f.sign(v);
      await redeemVoucher(f.payee, { address: hub, voucher: v, signature });
      await assertRevert(
        redeemVoucher(f.payee, { address: hub, voucher: v, signature }),
        "VoucherReplayed",
      );
      const c = await getChannel(env.test, { address: hub, channel: f.channel });
      assert.equal(c.redeemed, parseEther("1"));
    });

    await t.step("redeem refuses a voucher signed by someone else (InvalidSigner)", async () => {
      const f = await openFixture(env);
      const v = f.voucher(parseEther("5"));
      const [signer] = await assertRevert(
        redeemVoucher(f.payee, { address: hub, voucher: v, signature: await f.sign(v, f.payee) }),
        "InvalidSigner",
      );
      assert.equal(signer, f.payee.account.address);
    });

    await t.step("redeem refuses more than the deposit (InsufficientDeposit)", async () => {
      const f = await openFixture(env, parseEther("1"));
      const v = f.voucher(parseEther("1") + 1n);
      await assertRevert(
        redeemVoucher(f.payee, { address: hub, voucher: v, signature: await f.sign(v) }),
        "InsufficientDeposit",
      );
    });

    await t.step(
      "redeem refuses malformed and malleable signatures (InvalidSignature)",
      async () => {
        const f = await openFixture(env);
        const v = f.voucher(parseEther("1"));
        const signature = await f.sign(v);
        const short = signature.slice(0, 130) as Hex;
        await assertRevert(
          redeemVoucher(f.payee, { address: hub, voucher: v, signature: short }),
          "InvalidSignature",
        );
        // The malleable twin (n - s, flipped v) recovers the same signer; EIP-2 rules it out.
        const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
        const s = BigInt("0x" + signature.slice(66, 130));
        const v2 = parseInt(signature.slice(130), 16) === 27 ? "1c" : "1b";
        const twin = (signature.slice(0, 66) + (n - s).toString(16).padStart(64, "0") + v2) as Hex;
        await assertRevert(
          redeemVoucher(f.payee, { address: hub, voucher: v, signature: twin }),
          "InvalidSignature",
        );
      },
    );

    await t.step(
      "closing: challenge period, redeem during it, finalize refunds the rest",
      async () => {
        const f = await openFixture(env, parseEther("10"));
        const at = { address: hub, channel: f.channel };
        await assertRevert(startClose(f.payee, at), "NotPayer");
        await assertRevert(finalizeChannel(f.payer, at), "ChannelNotClosing");

        const { closesAt } = await startClose(f.payer, at);
        assert.equal(closesAt, (await env.now()) + HOUR);
        assert.equal((await getChannel(env.test, at)).status, "closing");
        await assertRevert(topUp(f.payer, { ...at, amount: 1n }), "ChannelNotOpen");
        await assertRevert(startClose(f.payer, at), "ChannelNotOpen");

        // Finalize before the challenge period is over.
        const [until] = await assertRevert(finalizeChannel(f.payer, at), "ChallengePeriodActive");
        assert.equal(until, closesAt);

        // The payee can still redeem during the period.
        const v4 = f.voucher(parseEther("4"));
        await redeemVoucher(f.payee, { address: hub, voucher: v4, signature: await f.sign(v4) });

        await env.travel(Number(HOUR));
        const v5 = f.voucher(parseEther("5"));
        const s5 = await f.sign(v5);
        await assertRevert(
          redeemVoucher(f.payee, { address: hub, voucher: v5, signature: s5 }),
          "ChallengePeriodOver",
        );

        const before = await env.test.getBalance({ address: f.payer.account.address });
        const fin = await finalizeChannel(f.payer, at);
        assert.equal(fin.refunded, parseEther("6"));
        const after = await env.test.getBalance({ address: f.payer.account.address });
        assert.equal(after - before + (await env.gasCost(fin.hash)), parseEther("6"));
        assert.equal((await getChannel(env.test, at)).status, "closed");

        // Redeem after finalize.
        await assertRevert(
          redeemVoucher(f.payee, { address: hub, voucher: v5, signature: s5 }),
          "ChannelClosed",
        );
        await assertRevert(finalizeChannel(f.payer, at), "ChannelClosed");
      },
    );

    await t.step("verifyReceipt() proves each receipt of the redeemed batch", async () => {
      const f = await openFixture(env);
      const operator = f.payee.account.address;
      const client = f.payer.account.address;
      const batch = new ReceiptBatch();
      for (let i = 0; i < 7; i++) batch.add(receiptFor(operator, client, i));

      const at = { address: hub, channel: f.channel };
      // Nothing redeemed yet: no root to prove against.
      assert.equal(
        await verifyReceipt(env.test, {
          ...at,
          receipt: batch.receipts[0]!,
          proof: batch.proof(0),
        }),
        false,
      );

      const v = f.voucher(parseEther("1"), batch.root(), batch.count);
      await redeemVoucher(f.payee, { address: hub, voucher: v, signature: await f.sign(v) });

      for (let i = 0; i < 7; i++) {
        const receipt = batch.receipts[i]!;
        const leaf = await env.test.readContract({
          address: hub,
          abi: channelHubAbi,
          functionName: "hashReceipt",
          args: [receiptArg(receipt)],
        });
        assert.equal(leaf, toHex(hashReceipt(receipt)), `leaf ${i} hashes alike on both sides`);
        assert.equal(
          await verifyReceipt(env.test, { ...at, receipt, proof: batch.proof(i) }),
          true,
        );
      }
    });

    await t.step("verifyReceipt() refuses a flipped bit in the receipt or the proof", async () => {
      const f = await openFixture(env);
      const batch = new ReceiptBatch();
      for (let i = 0; i < 5; i++) {
        batch.add(receiptFor(f.payee.account.address, f.payer.account.address, i));
      }
      const v = f.voucher(parseEther("1"), batch.root(), batch.count);
      await redeemVoucher(f.payee, { address: hub, voucher: v, signature: await f.sign(v) });
      const at = { address: hub, channel: f.channel };
      const receipt = batch.receipts[2]!;
      const proof = batch.proof(2);
      assert.equal(await verifyReceipt(env.test, { ...at, receipt, proof }), true);

      const cid = receipt.cid.slice();
      cid[17]! ^= 0x04;
      assert.equal(
        await verifyReceipt(env.test, { ...at, receipt: { ...receipt, cid }, proof }),
        false,
      );
      const size = receipt.size ^ 1n;
      assert.equal(
        await verifyReceipt(env.test, { ...at, receipt: { ...receipt, size }, proof }),
        false,
      );
      const badProof = proof.slice();
      const word = BigInt(badProof[1]!) ^ (1n << 200n);
      badProof[1] = toHex(word, { size: 32 });
      assert.equal(await verifyReceipt(env.test, { ...at, receipt, proof: badProof }), false);
      assert.equal(
        await verifyReceipt(env.test, { ...at, receipt, proof: batch.proof(3) }),
        false,
        "another leaf's proof",
      );
    });

    await t.step("verifyReceipt() follows the last redeemed root", async () => {
      const f = await openFixture(env);
      const first = new ReceiptBatch();
      const second = new ReceiptBatch();
      for (let i = 0; i < 3; i++) {
        first.add(receiptFor(f.payee.account.address, f.payer.account.address, i));
        second.add(receiptFor(f.payee.account.address, f.payer.account.address, 100 + i));
      }
      const at = { address: hub, channel: f.channel };
      const v1 = f.voucher(parseEther("1"), first.root(), first.count);
      await redeemVoucher(f.payee, { address: hub, voucher: v1, signature: await f.sign(v1) });
      const v2 = f.voucher(parseEther("2"), second.root(), second.count);
      await redeemVoucher(f.payee, { address: hub, voucher: v2, signature: await f.sign(v2) });
      const old = { ...at, receipt: first.receipts[0]!, proof: first.proof(0) };
      assert.equal(await verifyReceipt(env.test, old), false);
      const current = { ...at, receipt: second.receipts[0]!, proof: second.proof(0) };
      assert.equal(await verifyReceipt(env.test, current), true);
    });
  } finally {
    await env.stop();
  }
});
