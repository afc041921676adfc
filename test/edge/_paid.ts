/**
 * A paid gateway for the x402 tests: anvil with the contracts (`startDevnet`), a real node that charges for
 * what it serves (its desk), and its gateway with the x402 paywall behind real `Deno.serve` on 127.0.0.1.
 */
import { type Address, createPublicClient, type Hex, http } from "viem";
import { createGateway, onServeError } from "../../edge/app.ts";
import { MeshgateNode } from "../../src/node.ts";
import { fundDevAccount } from "../../src/pay/account.ts";
import { meshChain } from "../../src/pay/chain.ts";
import { getChannel } from "../../src/pay/channel.ts";
import { payAccount } from "../../src/pay/delivery.ts";
import type { PaymentDesk } from "../../src/pay/desk.ts";
import { type Devnet, startDevnet } from "../../src/pay/devnet.ts";
import { HttpPaywall } from "../../src/pay/x402.ts";

/** 1 gwei per byte (~0.001 ETH per MiB): a few MiB are worth more than 10 redeems at anvil's fees. */
export const PRICE = 1_000_000_000n;

export interface PaidGateway {
  url: string;
  devnet: Devnet;
  node: MeshgateNode;
  desk: PaymentDesk;
  payee: Address;
  hub: Address;
  /** The devnet's test helper: gives `address` 10 000 ETH. */
  fund(address: string): Promise<void>;
  /** The channel's wei redeemed on chain. */
  redeemed(channel: string): Promise<bigint>;
  /** Uploads `bytes` (not charged: a POST); its CID. */
  put(bytes: Uint8Array, query?: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startPaidGateway(
  options: { creditBytes?: number } = {},
): Promise<PaidGateway> {
  const dir = await Deno.makeTempDir({ prefix: "meshgate-x402-" });
  const devnet = await startDevnet();
  const node = await MeshgateNode.create({
    dataDir: dir,
    parityWorkers: 0,
    chain: devnet.config,
    mesh: { listen: ["/ip4/127.0.0.1/tcp/0"] },
    pay: {
      account: payAccount("dev:1"),
      price: PRICE,
      log: false,
      ...(options.creditBytes ? { creditBytes: options.creditBytes } : {}),
    },
  });
  const desk = node.delivery!.desk!;
  const gw = createGateway(node, {
    x402: new HttpPaywall({ desk, chainId: devnet.config.chainId }),
  });
  const { promise, resolve } = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: resolve, onError: onServeError },
    gw.app.fetch,
  );
  const addr = await promise;
  const url = `http://127.0.0.1:${addr.port}`;
  const reader = createPublicClient({
    chain: meshChain(devnet.config),
    transport: http(devnet.config.rpc),
  });
  const hub = devnet.config.contracts.channelHub;
  return {
    url,
    devnet,
    node,
    desk,
    payee: payAccount("dev:1").address,
    hub,
    fund: (address) => fundDevAccount(devnet.config.rpc, address as Hex),
    async redeemed(channel) {
      return (await getChannel(reader, { address: hub, channel: channel as Hex })).redeemed;
    },
    async put(bytes, query = "k=1&m=0&chunkSize=262144") {
      const res = await fetch(`${url}/mesh?${query}`, {
        method: "POST",
        body: bytes as Uint8Array<ArrayBuffer>,
      });
      if (res.status !== 201) throw new Error(`upload: ${res.status} ${await res.text()}`);
      return (await res.json()).cid as string;
    },
    async stop() {
      await server.shutdown();
      await node.stop();
      await devnet.stop();
      await Deno.remove(dir, { recursive: true });
    },
  };
}
