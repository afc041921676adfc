/**
 * What the paid-delivery tests share: chunks to serve, bare vouchers, and a {@link PayWorld} of operators
 * (a desk on a real libp2p node) and clients (a paying client on another) on one anvil, stopped together.
 */
import { type Address, createWalletClient, type Hex, http, parseEther } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { type CID, cidOf } from "../../src/content/cid.ts";
import type { MeshNode } from "../../src/mesh/node.ts";
import {
  type DeskEvent,
  PayingClient,
  type PayingClientInit,
  PaymentDesk,
  type PaymentDeskInit,
} from "../../src/pay/mod.ts";
import { EMPTY_RECEIPTS_ROOT } from "../../src/pay/receipts.ts";
import type { Voucher } from "../../src/pay/voucher.ts";
import { MemorySource, randomBytes, startNode, stopNodes } from "../mesh/_helpers.ts";
import { startTestChain, type TestChain, type Wallet } from "./_chain.ts";

export interface Chunk {
  cid: CID;
  bytes: Uint8Array;
}

/** `n` random chunks of `size` bytes, with their CIDs. */
export function chunks(n: number, size: number): Chunk[] {
  return Array.from({ length: n }, () => {
    const bytes = randomBytes(size);
    return { cid: cidOf(bytes), bytes };
  });
}

/** A voucher for `amount` on `channel`, with no receipts. */
export function voucherOf(channel: Hex, amount: bigint): Voucher {
  return {
    channel,
    cumulativeAmount: amount,
    receiptsRoot: EMPTY_RECEIPTS_ROOT,
    receiptCount: 0n,
  };
}

/** A fresh account with 100 ETH whose RPC calls are counted by method. */
export async function countingWallet(
  env: TestChain,
): Promise<{ wallet: Wallet; calls: Map<string, number> }> {
  const calls = new Map<string, number>();
  const account = privateKeyToAccount(generatePrivateKey());
  await env.test.setBalance({ address: account.address, value: parseEther("100") });
  const wallet = createWalletClient({
    account,
    chain: env.chain,
    transport: http(env.anvil.rpc, {
      onFetchRequest(_req, init) {
        for (const m of String(init.body).matchAll(/"method":"(\w+)"/g)) {
          calls.set(m[1]!, (calls.get(m[1]!) ?? 0) + 1);
        }
      },
    }),
  }) as Wallet;
  return { wallet, calls };
}

export interface Operator {
  node: MeshNode;
  desk: PaymentDesk;
  wallet: Wallet;
  /** The account it is paid into. */
  payee: Address;
  events: DeskEvent[];
}

export interface Client {
  node: MeshNode;
  payer?: PayingClient;
  wallet: Wallet;
}

/** What every operator and client of a world starts from, unless told otherwise. */
export interface PayWorldDefaults {
  price: bigint;
  batchBytes: number;
  /** The desks' wait for a voucher before refusing. */
  paymentWaitMs: number;
}

/** Operators and clients on one test chain. Its functions stand alone (destructure them); `stop` stops every
 * node, desk and payer made through it (not the chain). */
export interface PayWorld {
  env: TestChain;
  chain: PaymentDeskInit["chain"];
  /** A desk on a node holding `held`, paid into a fresh account (or `init.wallet`). */
  operator(held: Chunk[], init?: Partial<PaymentDeskInit>): Promise<Operator>;
  /** A node with a paying client on a fresh funded account (or `init.wallet`); `false`: one that never pays. */
  client(init?: Partial<PayingClientInit> | false): Promise<Client>;
  /** A paying client, not started. */
  payer(init: Partial<PayingClientInit> & { wallet: Wallet }): PayingClient;
  /** A bare node (no desk, no payer). */
  node(): Promise<MeshNode>;
  /** Stops `node` with the world. */
  track(node: MeshNode): MeshNode;
  /** Stops every desk: each redeems on its way out. */
  stopDesks(): Promise<void>;
  stop(): Promise<void>;
}

export function payWorld(env: TestChain, defaults: PayWorldDefaults): PayWorld {
  const nodes: MeshNode[] = [];
  const desks: PaymentDesk[] = [];
  const payers: PayingClient[] = [];
  const chain = { chainId: env.chain.id, contracts: env.contracts };
  const track = (node: MeshNode) => {
    nodes.push(node);
    return node;
  };
  const payer = (init: Partial<PayingClientInit> & { wallet: Wallet }) => {
    const p = new PayingClient({ chain, batchBytes: defaults.batchBytes, ...init });
    payers.push(p);
    return p;
  };
  const stopDesks = async () => {
    await Promise.all(desks.map((d) => d.stop()));
  };
  return {
    env,
    chain,
    track,
    payer,
    stopDesks,
    async operator(held, init = {}) {
      const wallet = (init.wallet as Wallet | undefined) ?? await env.wallet();
      const events: DeskEvent[] = [];
      const desk = new PaymentDesk({
        chain,
        wallet,
        price: defaults.price,
        batchBytes: defaults.batchBytes,
        paymentWaitMs: defaults.paymentWaitMs,
        onEvent: (e) => events.push(e),
        ...init,
      });
      desks.push(desk);
      const store = new MemorySource();
      for (const c of held) await store.put(c.cid, c.bytes);
      const node = track(await startNode({ store, exchange: { gate: desk } }));
      await desk.start(node.libp2p);
      return { node, desk, wallet, payee: wallet.account.address, events };
    },
    async client(init = {}) {
      const given = init === false ? undefined : init.wallet as Wallet | undefined;
      const wallet = given ?? await env.wallet();
      const p = init === false ? undefined : payer({ ...init, wallet });
      const node = track(await startNode(p ? { exchange: { payer: p } } : {}));
      await p?.start(node.libp2p);
      return { node, payer: p, wallet };
    },
    async node() {
      return track(await startNode());
    },
    async stop() {
      await Promise.all(payers.map((p) => p.stop()));
      await stopDesks();
      await stopNodes(...nodes);
    },
  };
}

/** A test with its own anvil and world, both stopped afterwards whatever happens. The ops sanitizer is off:
 * a stopped payer's last vouchers leave their `AbortSignal.timeout` timers running out after the test. */
export function withPayWorld(
  name: string,
  defaults: PayWorldDefaults,
  fn: (world: PayWorld) => Promise<void>,
): void {
  Deno.test({
    name,
    sanitizeOps: false,
    async fn() {
      const env = await startTestChain();
      const world = payWorld(env, defaults);
      try {
        await fn(world);
      } finally {
        await world.stop();
        await env.stop();
      }
    },
  });
}
