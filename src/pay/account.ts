/**
 * Which account a node pays and is paid with, and where its key comes from. Keys never need to travel in argv
 * (where `ps` and `deno task` show them): in order of precedence,
 *
 * 1. `--pay-key KEY`: `dev:N` (anvil's public test account N), or a raw `0x` key, which works but is warned
 *    about;
 * 2. `--pay-key-file FILE` (or `MESH_PAY_KEY_FILE`): a file holding the key, mode 0600;
 * 3. `MESH_PAY_KEY`: the key itself, in the environment;
 * 4. `<data>/pay.key`, mode 0600 like `peer.key`, used whenever present;
 * 5. on a local anvil chain (id 31337) only: a dev account derived from the data directory's absolute path,
 *    funded by `anvil_setBalance` at start. Every data directory gets its own account, the same on every
 *    start, so two local nodes never share one (and never refuse each other as "paid by its own account").
 *    Derived keys are public knowledge, like anvil's own: never for a real chain.
 *
 * A key file that group or others may read is refused, as ssh and `peer.key` do.
 *
 * @module
 */
import { resolve } from "node:path";
import { type Hex, keccak256, type LocalAccount, parseEther, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { payAccount } from "./delivery.ts";
import { PayKeyError } from "./errors.ts";

/** Name of the pay key file inside the data directory. */
export const PAY_KEY_FILE = "pay.key";

/** Chain id of anvil (and hardhat): the only chain on which a node picks a dev account by itself. */
export const DEV_CHAIN_ID = 31337;

/** Where the key may come from; see the module documentation for the order. */
export interface PayKeySources {
  dataDir: string;
  chainId: number;
  /** `--pay-key`: `dev:N` or a raw key. */
  key?: string;
  /** `--pay-key-file` or `MESH_PAY_KEY_FILE`. */
  keyFile?: string;
  /** `MESH_PAY_KEY`. */
  envKey?: string;
  /** Told of a raw key on the command line. Default: none. */
  onWarning?: (msg: string, fields: Record<string, unknown>) => void;
}

/** The account chosen, and from where (for the start-up line; never the key). */
export interface ResolvedPayAccount {
  account: LocalAccount;
  source: "flag" | "file" | "env" | "data" | "dev";
  /** The key file read, for `file` and `data`. */
  path?: string;
  /** True for a derived dev account: fund it with {@link fundDevAccount} before use. */
  derived: boolean;
}

/** Picks the node's pay account from `sources`; throws {@link PayKeyError} when none can be used. */
export async function resolvePayAccount(sources: PayKeySources): Promise<ResolvedPayAccount> {
  if (sources.key !== undefined && sources.keyFile !== undefined) {
    throw new PayKeyError("Give either --pay-key or --pay-key-file, not both");
  }
  if (sources.key !== undefined) {
    const account = parseKey(sources.key, "--pay-key");
    if (!/^\s*dev:/.test(sources.key)) {
      sources.onWarning?.(
        "a private key given as --pay-key is visible in the process list and echoed by deno task; " +
          `put it in ${
            resolve(sources.dataDir, PAY_KEY_FILE)
          } (chmod 600), --pay-key-file FILE or MESH_PAY_KEY`,
        { address: account.address },
      );
    }
    return { account, source: "flag", derived: false };
  }
  if (sources.keyFile !== undefined) {
    const account = await readKeyFile(sources.keyFile);
    if (account === undefined) throw new PayKeyError(`Pay key file "${sources.keyFile}" not found`);
    return { account, source: "file", path: sources.keyFile, derived: false };
  }
  if (sources.envKey !== undefined && sources.envKey.trim() !== "") {
    return { account: parseKey(sources.envKey, "MESH_PAY_KEY"), source: "env", derived: false };
  }
  const inData = `${sources.dataDir.replace(/\/+$/, "")}/${PAY_KEY_FILE}`;
  const fromData = await readKeyFile(inData);
  if (fromData !== undefined) {
    return { account: fromData, source: "data", path: inData, derived: false };
  }
  if (sources.chainId === DEV_CHAIN_ID) {
    return { account: devAccountFor(sources.dataDir), source: "dev", derived: true };
  }
  throw new PayKeyError(
    `Chain ${sources.chainId} is not a local anvil, so payments need an account: put its key in ${inData} ` +
      "(chmod 600), or give --pay-key-file FILE or MESH_PAY_KEY",
  );
}

/** The dev account of a data directory: a key hashed from its absolute path (public: local chains only). */
export function devAccountFor(dataDir: string): LocalAccount {
  const path = resolve(dataDir).replace(/\/+$/, "");
  const key: Hex = keccak256(toHex(`meshgate dev account\n${path}`));
  return privateKeyToAccount(key);
}

/** Gives `address` 10 000 ETH on anvil when it holds less than 1 ETH (`anvil_setBalance`: no nonce to race). */
export async function fundDevAccount(rpc: string, address: Hex): Promise<void> {
  const balance = BigInt(await rpcCall(rpc, "eth_getBalance", [address, "latest"]) as string);
  if (balance >= parseEther("1")) return;
  try {
    await rpcCall(rpc, "anvil_setBalance", [address, toHex(parseEther("10000"))]);
  } catch (e) {
    throw new PayKeyError(
      `Chain at "${rpc}" is not anvil (anvil_setBalance failed), so no dev account can be funded: ` +
        "give a funded key with --pay-key-file FILE or MESH_PAY_KEY",
      { cause: e },
    );
  }
}

/** Reads a key file: undefined when it does not exist; refused when group or others may read it. */
async function readKeyFile(path: string): Promise<LocalAccount | undefined> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new PayKeyError(`Pay key file "${path}" cannot be read`, { cause: e });
  }
  const { mode } = await Deno.stat(path);
  if (mode !== null && (mode & 0o077) !== 0) {
    throw new PayKeyError(
      `Pay key file "${path}" is readable by others (mode ${
        (mode & 0o777).toString(8)
      }): run "chmod 600 ${path}"`,
    );
  }
  return parseKey(text, `Pay key file "${path}"`);
}

function parseKey(spec: string, what: string): LocalAccount {
  try {
    return payAccount(spec);
  } catch (e) {
    // payAccount never echoes the value.
    throw new PayKeyError(`${what}: ${(e as Error).message}`);
  }
}

async function rpcCall(rpc: string, method: string, params: unknown[]): Promise<unknown> {
  const res = await fetch(rpc, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const body = await res.json();
  if (body?.error !== undefined || body?.result === undefined) {
    throw new Error(`${method}: ${JSON.stringify(body?.error ?? body).slice(0, 200)}`);
  }
  return body.result;
}
