/** Test fixtures over a real anvil: fresh funded accounts, time travel, revert assertions. */
import assert from "node:assert/strict";
import {
  type Chain,
  createTestClient,
  createWalletClient,
  type Hash,
  http,
  parseEther,
  publicActions,
} from "viem";
import { generatePrivateKey, type PrivateKeyAccount, privateKeyToAccount } from "viem/accounts";
import { type Anvil, startAnvil } from "../../src/pay/anvil.ts";
import { meshChain } from "../../src/pay/chain.ts";
import { type ChainContracts, deployContracts } from "../../src/pay/deploy.ts";
import { ContractRevertError } from "../../src/pay/errors.ts";
import type { PayClient } from "../../src/pay/_tx.ts";
import { MeshgateNode } from "../../src/node.ts";

/** A wallet client with its own fresh key (and 100 ETH once funded). */
export type Wallet = PayClient & { account: PrivateKeyAccount };

/** One anvil with the contracts deployed. */
export interface TestChain {
  anvil: Anvil;
  chain: Chain;
  /** Test + public actions: setBalance, increaseTime, mine, getBalance, readContract... */
  test: ReturnType<typeof makeTestClient>;
  contracts: ChainContracts;
  /** A new account funded with 100 ETH. */
  wallet(): Promise<Wallet>;
  /** Gas paid by transaction `hash`, in wei. */
  gasCost(hash: Hash): Promise<bigint>;
  /** Moves the chain's clock forward and mines a block. */
  travel(seconds: number): Promise<void>;
  /** Timestamp of the latest block. */
  now(): Promise<bigint>;
  stop(): Promise<void>;
}

function makeTestClient(chain: Chain, rpc: string) {
  return createTestClient({ chain, mode: "anvil", transport: http(rpc) }).extend(publicActions);
}

/** Starts anvil on a free loopback port and deploys the contracts. Stop it in a `finally`. */
export async function startTestChain(): Promise<TestChain> {
  const anvil = await startAnvil();
  try {
    const chain = meshChain(anvil);
    const test = makeTestClient(chain, anvil.rpc);
    const wallet = async (): Promise<Wallet> => {
      const account = privateKeyToAccount(generatePrivateKey());
      await test.setBalance({ address: account.address, value: parseEther("100") });
      return createWalletClient({ account, chain, transport: http(anvil.rpc) }) as Wallet;
    };
    const contracts = await deployContracts(await wallet());
    return {
      anvil,
      chain,
      test,
      contracts,
      wallet,
      async gasCost(hash) {
        const r = await test.getTransactionReceipt({ hash });
        return r.gasUsed * r.effectiveGasPrice;
      },
      async travel(seconds) {
        await test.increaseTime({ seconds });
        await test.mine({ blocks: 1 });
      },
      async now() {
        return (await test.getBlock()).timestamp;
      },
      stop: () => anvil.stop(),
    };
  } catch (e) {
    await anvil.stop();
    throw e;
  }
}

/** Asserts that `promise` rejects with the contract's custom error `errorName`; returns its arguments. */
export async function assertRevert(
  promise: Promise<unknown>,
  errorName: string,
): Promise<readonly unknown[]> {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof ContractRevertError, `expected ContractRevertError, got ${e}`);
    assert.equal(e.errorName, errorName);
    return e.args;
  }
  assert.fail(`expected a revert with "${errorName}", but the call succeeded`);
}

/** A node with the market on, paying and paid with `account` on `env`'s chain, on loopback TCP. Stop it. */
export function marketNode(
  env: TestChain,
  dataDir: string,
  account: PrivateKeyAccount,
): Promise<MeshgateNode> {
  return MeshgateNode.create({
    dataDir,
    parityWorkers: 0,
    mesh: { listen: ["/ip4/127.0.0.1/tcp/0"] },
    market: true,
    chain: { chainId: env.chain.id, rpc: env.anvil.rpc, contracts: env.contracts },
    pay: { account, log: false },
  });
}
