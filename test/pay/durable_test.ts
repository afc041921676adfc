/**
 * Durable vouchers, on anvil with real `serve` processes:
 *
 * - an operator SIGKILLed after accepting vouchers (too small yet to redeem at its factor) redeems the latest
 *   on restart, from `<data>/pay.sqlite`;
 * - the client's replay of that voucher to the restarted operator is refused: no credit twice;
 * - a second `serve` on the same data directory (the same pay key) is refused at start with a one-line error,
 *   and so is one on another data directory with the same `--pay-key-file`, and two desks in one process on
 *   one directory.
 */
import assert from "node:assert/strict";
import { type Address, createWalletClient, type Hex, http } from "viem";
import { type NodeProcess, spawnNode } from "../../src/cluster.ts";
import { createMeshNode, type MeshNode } from "../../src/mesh/node.ts";
import { meshChain } from "../../src/pay/chain.ts";
import { getChannel, openChannel } from "../../src/pay/channel.ts";
import { type Devnet, startDevnet } from "../../src/pay/devnet.ts";
import { DeskLockedError } from "../../src/pay/ledger.ts";
import {
  payAccount,
  PaymentDesk,
  requestQuote,
  submitVoucher,
  VoucherRefusedError,
} from "../../src/pay/mod.ts";
import { EMPTY_RECEIPTS_ROOT } from "../../src/pay/receipts.ts";
import { channelHubDomain, signVoucher, type Voucher } from "../../src/pay/voucher.ts";
import type { PayClient } from "../../src/pay/_tx.ts";

const PRICE = 1_000_000_000n;
const TCP = "/ip4/127.0.0.1/tcp/0";
/** Vouchers worth more than one redeem (~6e4 gas at >= 1 gwei) but less than the desk's 10, so that the
 * operator holds them unredeemed when killed. */
const FIRST = 100_000_000_000_000n;
const LATEST = 300_000_000_000_000n;

function wallet(devnet: Devnet, index: number): PayClient {
  return createWalletClient({
    account: payAccount(`dev:${index}`),
    chain: meshChain(devnet.config),
    transport: http(devnet.config.rpc),
  }) as PayClient;
}

Deno.test({
  name:
    "durable vouchers: a killed desk redeems after restart, refuses the replay; one desk per directory",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-durable-" });
    const devnet = await startDevnet({ out: `${dir}/chain.json` });
    const hub = devnet.config.contracts.channelHub;
    const args = [
      "--data",
      `${dir}/op`,
      "--chain",
      devnet.config.rpc,
      "--chain-file",
      `${dir}/chain.json`,
      "--price-served",
      String(PRICE << 30n),
      "--pay-key",
      "dev:1",
    ];
    const payerWallet = wallet(devnet, 5);
    let op: NodeProcess | undefined;
    let client: MeshNode | undefined;
    try {
      op = await spawnNode(args, { stderr: "piped" });
      client = await createMeshNode({ listen: [TCP] });
      await client.connect(op.multiaddrs[0]!);
      const quote = await requestQuote(client.libp2p, op.peerId!);
      const { channel } = await openChannel(payerWallet, {
        address: hub,
        payee: quote.payee as Address,
        deposit: 10n ** 17n,
        challengePeriod: 3600n,
      });
      const domain = channelHubDomain(devnet.config.chainId, hub);
      const send = async (cumulativeAmount: bigint) => {
        const voucher: Voucher = {
          channel,
          cumulativeAmount,
          receiptsRoot: EMPTY_RECEIPTS_ROOT,
          receiptCount: 0n,
        };
        const signature: Hex = await signVoucher(payAccount("dev:5"), domain, voucher);
        return await submitVoucher(client!.libp2p, op!.peerId!, {
          voucher,
          signature,
          receipts: [],
        });
      };
      await send(FIRST);
      await send(LATEST);
      const redeemed = async () =>
        (await getChannel(payerWallet, { address: hub, channel })).redeemed;

      await t.step("a second serve on the same data directory is refused at start", async () => {
        const err = await spawnNode(args, { stderr: "piped", timeoutMs: 60_000 }).then(
          (p) => {
            void p.stop("SIGKILL");
            return undefined;
          },
          (e: Error) => e,
        );
        assert.ok(err, "the second serve must not start");
        assert.match(err.message, /Another payment desk is running on .*pay\.sqlite/);
      });

      await t.step(
        "killed mid-session, restarted: it redeems the voucher it had accepted",
        async () => {
          assert.ok(await redeemed() < LATEST, "precondition: the latest voucher is unredeemed");
          assert.equal(await op!.stop("SIGKILL"), 137);
          op = await spawnNode(args, { stderr: "piped", timeoutMs: 60_000 });
          const deadline = Date.now() + 30_000;
          while (await redeemed() !== LATEST) {
            assert.ok(Date.now() < deadline, `redeemed ${await redeemed()}, want ${LATEST}`);
            await new Promise((r) => setTimeout(r, 200));
          }
        },
      );

      await t.step("the client's replay of its last voucher gets no credit", async () => {
        await client!.connect(op!.multiaddrs[0]!);
        await assert.rejects(
          send(LATEST),
          (e: unknown) => e instanceof VoucherRefusedError && e.code === "voucher_replay",
        );
      });

      await t.step(
        "a second serve with the same --pay-key-file, another data directory, is refused",
        async () => {
          const keyFile = `${dir}/shared.key`;
          // anvil's public test account 2
          await Deno.writeTextFile(
            keyFile,
            "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a\n",
            { mode: 0o600 },
          );
          const withKey = (data: string) => [
            ...args.slice(2, -2),
            "--data",
            `${dir}/${data}`,
            "--pay-key-file",
            keyFile,
          ];
          const first = await spawnNode(withKey("key-a"), { stderr: "piped", timeoutMs: 60_000 });
          try {
            assert.equal(first.account, payAccount("dev:2").address);
            const err = await spawnNode(withKey("key-b"), { stderr: "piped", timeoutMs: 60_000 })
              .then(
                (p) => {
                  void p.stop("SIGKILL");
                  return undefined;
                },
                (e: Error) => e,
              );
            assert.ok(err, "the second serve must not start");
            assert.match(
              err.message,
              /Another payment desk is running with the pay key .*shared\.key/,
            );
          } finally {
            await first.stop();
          }
        },
      );
    } finally {
      await client?.stop().catch(() => {});
      await op?.stop().catch(() => {});
      await devnet.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "durable vouchers: two desks in one process on one data directory, the second refused",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "meshgate-durable-lock-" });
    const chain = {
      chainId: 31337,
      contracts: { channelHub: "0x0000000000000000000000000000000000000001" as Address },
    } as const;
    const libp2p = { handle: async () => {}, unhandle: async () => {}, hangUp: async () => {} };
    const make = () =>
      new PaymentDesk({
        chain: chain as never,
        wallet: { account: payAccount("dev:1") } as PayClient,
        price: PRICE,
        dataDir: dir,
      });
    const first = make();
    try {
      await first.start(libp2p);
      await assert.rejects(make().start(libp2p), DeskLockedError);
      await first.stop();
      // The lock goes with the desk: the next one starts.
      const next = make();
      await next.start(libp2p);
      await next.stop();
    } finally {
      await first.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
