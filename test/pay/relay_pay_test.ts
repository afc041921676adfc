/**
 * Paid relaying's desk on a real anvil, beside the same operator's delivery desk, with real libp2p peers: each
 * desk takes vouchers on its own protocol and refuses the channels the other holds, with the reason; a voucher
 * on another channel than the one a peer's relaying is bound to is refused; the relay quotes its price per
 * GiB as whole wei per byte.
 */
import assert from "node:assert/strict";
import { type Hex, parseEther } from "viem";
import { openChannel } from "../../src/pay/channel.ts";
import {
  paidRelaying,
  PAY_PROTOCOL,
  PaymentDesk,
  RELAY_PAY_PROTOCOL,
  relayPricePerByte,
  requestQuote,
  submitVoucher,
  VoucherRefusedError,
} from "../../src/pay/mod.ts";
import { Serial } from "../../src/pay/_serial.ts";
import { channelHubDomain, signVoucher } from "../../src/pay/voucher.ts";
import { startNode, stopNodes } from "../mesh/_helpers.ts";
import { startTestChain } from "./_chain.ts";
import { voucherOf } from "./_fixtures.ts";

const PRICE = 1_000_000_000n;

Deno.test({
  name:
    "relay pay: its own protocol and channels; a delivery channel or another channel is refused",
  sanitizeOps: false,
  async fn() {
    const env = await startTestChain();
    const operatorWallet = await env.wallet();
    const transactions = new Serial();
    const chain = { chainId: env.chain.id, contracts: env.contracts };
    // The two desks refer to each other: the relay's is made second.
    const later: { relaying?: ReturnType<typeof paidRelaying> } = {};
    const delivery = new PaymentDesk({
      chain,
      wallet: operatorWallet,
      price: PRICE,
      transactions,
      refuseChannel: (id) => later.relaying?.desk?.holds(id) ? "pays for relaying here" : undefined,
    });
    const relaying = later.relaying = paidRelaying({
      chain,
      wallet: operatorWallet,
      transactions,
      pricePerGiB: PRICE << 30n,
      log: false,
      refuseChannel: (id) =>
        delivery.holds(id)
          ? "pays for delivery at this operator; relaying takes a channel of its own"
          : undefined,
    });
    const operator = await startNode();
    const client = await startNode();
    const other = await startNode();
    try {
      await delivery.start(operator.libp2p);
      await relaying.start(operator.libp2p);
      await client.connect(operator.multiaddrs()[0]!);
      const payer = await env.wallet();
      const domain = channelHubDomain(env.chain.id, env.contracts.channelHub);
      const open = async () =>
        (await openChannel(payer, {
          address: env.contracts.channelHub,
          payee: operatorWallet.account.address,
          deposit: parseEther("1"),
          challengePeriod: 3600n,
        })).channel;
      const send = async (protocol: string, channel: Hex, amount: bigint, from = client) => {
        const voucher = voucherOf(channel, amount);
        return await submitVoucher(from.libp2p, operator.peerId, {
          voucher,
          signature: await signVoucher(payer.account, domain, voucher),
          receipts: [],
        }, { protocol });
      };
      const refused = (code: string, message: RegExp) => (e: unknown) => {
        assert.ok(e instanceof VoucherRefusedError, String(e));
        assert.equal(e.code, code);
        assert.match(e.message, message);
        return true;
      };

      const quote = await requestQuote(client.libp2p, operator.peerId, {
        protocol: RELAY_PAY_PROTOCOL,
      });
      assert.equal(quote.price, PRICE);
      assert.equal(quote.payee, operatorWallet.account.address);

      // Delivery binds channel A; the relay desk will not take A.
      const a = await open();
      assert.equal((await send(PAY_PROTOCOL, a, 10n)).cumulativeAmount, 10n);
      await assert.rejects(
        send(RELAY_PAY_PROTOCOL, a, 20n),
        refused(
          "voucher_channel_unusable",
          /pays for delivery at this operator; relaying takes a channel of its own/,
        ),
      );
      // Relaying on a channel of its own is taken, and delivery will not take it.
      const b = await open();
      assert.equal((await send(RELAY_PAY_PROTOCOL, b, 5n)).cumulativeAmount, 5n);
      assert.equal(relaying.summary().acceptedWei, 5n);
      // ... nor will delivery take B, from another peer with no channel bound there yet.
      await other.connect(operator.multiaddrs()[0]!);
      await assert.rejects(
        send(PAY_PROTOCOL, b, 30n, other),
        refused("voucher_channel_unusable", /pays for relaying here/),
      );
      // A voucher for relaying on another channel than the one bound: refused, saying which was expected.
      const c = await open();
      await assert.rejects(
        send(RELAY_PAY_PROTOCOL, c, 6n),
        refused("voucher_channel", new RegExp(`is for channel "${c}", not "${b}"`)),
      );
      assert.equal(relaying.summary().acceptedWei, 5n);
    } finally {
      await relaying.stop();
      await delivery.stop();
      await stopNodes(client, other, operator);
      await env.stop();
    }
  },
});

Deno.test("relay pay: a price under 1 wei a byte is refused, with the least price", () => {
  assert.equal(relayPricePerByte(3n << 30n), 3n);
  assert.throws(
    () => relayPricePerByte((1n << 30n) - 1n),
    /at least 1 wei a byte \(1073741824 wei/,
  );
});
