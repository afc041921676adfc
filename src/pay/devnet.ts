/**
 * A local chain for development: anvil on loopback, the Meshgate contracts deployed, and the chain file written
 * for `serve --chain <rpc>`.
 *
 * `deno run -A src/pay/devnet.ts [--port 8545] [--host 127.0.0.1] [--out .meshgate/chain.json]` runs until
 * Ctrl-C (or SIGTERM), then stops anvil and removes the chain file (the chain lived in anvil's memory only).
 * The accounts of anvil's public test mnemonic are funded with 10 000 ETH each; the first deploys.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createWalletClient, http, type LocalAccount } from "viem";
import { mnemonicToAccount } from "viem/accounts";
import { type Anvil, type AnvilOptions, startAnvil } from "./anvil.ts";
import { type ChainConfig, DEFAULT_CHAIN_FILE, meshChain, writeChainConfig } from "./chain.ts";
import { deployContracts } from "./deploy.ts";

/** Anvil's default mnemonic: public, funded on every anvil, never to be used on a real chain. */
export const ANVIL_MNEMONIC = "test test test test test test test test test test test junk";

/** Account `index` of {@link ANVIL_MNEMONIC}. */
export function devAccount(index = 0): LocalAccount {
  return mnemonicToAccount(ANVIL_MNEMONIC, { addressIndex: index });
}

/** How to start a devnet. */
export interface DevnetOptions extends AnvilOptions {
  /** Where to write the chain file; default none. */
  out?: string | URL;
}

/** A running devnet. */
export interface Devnet extends AsyncDisposable {
  config: ChainConfig;
  anvil: Anvil;
  /** Stops anvil and removes the chain file it wrote. */
  stop(): Promise<void>;
}

/** Starts anvil, deploys the contracts from dev account 0, writes the chain file if `out` is given. */
export async function startDevnet(options: DevnetOptions = {}): Promise<Devnet> {
  const anvil = await startAnvil(options);
  try {
    const client = createWalletClient({
      account: devAccount(0),
      chain: meshChain(anvil),
      transport: http(anvil.rpc),
    });
    const contracts = await deployContracts(client);
    const config: ChainConfig = { chainId: anvil.chainId, rpc: anvil.rpc, contracts };
    if (options.out !== undefined) await writeChainConfig(options.out, config);
    let stopped: Promise<void> | undefined;
    const stop = () =>
      stopped ??= (async () => {
        await anvil.stop();
        if (options.out !== undefined) await Deno.remove(options.out).catch(() => {});
      })();
    return { config, anvil, stop, [Symbol.asyncDispose]: stop };
  } catch (e) {
    await anvil.stop();
    throw e;
  }
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: "string", default: "8545" },
      host: { type: "string", default: "127.0.0.1" },
      out: { type: "string", default: DEFAULT_CHAIN_FILE },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`devnet: port "${values.port}" is not a port number`);
    return 2;
  }
  let devnet: Devnet;
  try {
    devnet = await startDevnet({ port, host: values.host, out: values.out });
  } catch (e) {
    // One line, no stack: what failed and, for a chain file it may not write, which flag to change.
    const why = e instanceof Error ? e.message.split("\n")[0] : String(e);
    const hint = e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied
      ? ` (cannot write "${values.out}": choose another --out)`
      : "";
    console.error(`devnet: ${why}${hint}`);
    return 1;
  }
  console.log(JSON.stringify(devnet.config, null, 2));
  console.log(`devnet: chain file "${values.out}"; Ctrl-C to stop`);

  // Ctrl-C in a terminal reaches anvil too (same process group), so anvil ending by a signal or cleanly is
  // a normal stop; only a failure of its own is an error.
  const stopSignal = new Promise<string>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) {
      Deno.addSignalListener(sig, () => resolve(sig));
    }
  });
  const anvilExit = devnet.anvil.exited.then((s) =>
    s.success || s.signal ? `anvil stopped` : `anvil failed with code ${s.code}`
  );
  const reason = await Promise.race([stopSignal, anvilExit]);
  await devnet.stop();
  console.log(`devnet: stopped (${reason})`);
  return reason.includes("failed") ? 1 : 0;
}

if (import.meta.main) {
  Deno.exit(
    await main(Deno.args).catch((e) => {
      console.error(`devnet: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
      return 2;
    }),
  );
}
