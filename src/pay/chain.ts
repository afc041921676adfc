/**
 * The chain file: which chain and contracts a node pays through. `deno task devnet` writes it; `serve --chain
 * <rpc>` reads it with {@link loadChain}. Without a chain the node runs in volunteer mode.
 *
 * @module
 */
import { type Address, type Chain, createPublicClient, defineChain, http, isAddress } from "viem";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { getChainId, getCode } from "viem/actions";
import { ChainConfigError } from "./errors.ts";
import type { ChainContracts } from "./deploy.ts";

/** Where the devnet writes, and nodes look for, the chain file. */
export const DEFAULT_CHAIN_FILE = ".meshgate/chain.json";

/** Contents of the chain file. */
export interface ChainConfig {
  chainId: number;
  /** JSON-RPC URL the contracts were deployed through. */
  rpc: string;
  contracts: ChainContracts;
}

/** Writes `config` as JSON to `path`, creating its folder. */
export async function writeChainConfig(path: string | URL, config: ChainConfig): Promise<void> {
  const file = path instanceof URL ? fileURLToPath(path) : path;
  await Deno.mkdir(dirname(file), { recursive: true });
  await Deno.writeTextFile(file, JSON.stringify(config, null, 2) + "\n");
}

/** Reads and validates the chain file. */
export async function readChainConfig(
  path: string | URL = DEFAULT_CHAIN_FILE,
): Promise<ChainConfig> {
  let raw: unknown;
  try {
    raw = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    const hint = e instanceof Deno.errors.NotFound
      ? ': run "deno task devnet" or deploy first'
      : "";
    throw new ChainConfigError(`Chain file "${path}" could not be read${hint}`, { cause: e });
  }
  const c = raw as Partial<ChainConfig> | null;
  const contracts = c?.contracts as Partial<ChainContracts> | undefined;
  const names = ["channelHub", "escrow", "operatorRegistry"] as const;
  if (
    typeof c?.chainId !== "number" || !Number.isSafeInteger(c.chainId) || c.chainId <= 0 ||
    typeof c.rpc !== "string" ||
    !names.every((n) => typeof contracts?.[n] === "string" && isAddress(contracts[n]!))
  ) {
    throw new ChainConfigError(
      `Chain file "${path}" must hold {chainId, rpc, contracts: {channelHub, escrow, operatorRegistry}}`,
    );
  }
  return c as ChainConfig;
}

/** A viem chain for `config` (local chains have no entry in `viem/chains`). */
export function meshChain(config: Pick<ChainConfig, "chainId" | "rpc">): Chain {
  return defineChain({
    id: config.chainId,
    name: `meshgate-${config.chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [config.rpc] } },
  });
}

/**
 * Reads the chain file and checks it against the RPC: same chain id, code at every contract address.
 * `rpc` (the `--chain` flag) overrides the file's URL.
 */
export async function loadChain(
  options: { rpc?: string; file?: string | URL } = {},
): Promise<ChainConfig> {
  const file = await readChainConfig(options.file ?? DEFAULT_CHAIN_FILE);
  const config: ChainConfig = { ...file, rpc: options.rpc ?? file.rpc };
  const client = createPublicClient({ transport: http(config.rpc, { retryCount: 0 }) });
  let chainId: number;
  try {
    chainId = await getChainId(client);
  } catch (e) {
    throw new ChainConfigError(`RPC "${config.rpc}" is unreachable`, { cause: e });
  }
  if (chainId !== config.chainId) {
    throw new ChainConfigError(
      `RPC "${config.rpc}" serves chain "${chainId}", the chain file names "${config.chainId}"`,
    );
  }
  for (const [name, address] of Object.entries(config.contracts) as [string, Address][]) {
    const code = await getCode(client, { address });
    if (!code || code === "0x") {
      throw new ChainConfigError(`No contract "${name}" at "${address}" on chain "${chainId}"`);
    }
  }
  return config;
}
