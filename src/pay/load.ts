/**
 * Loads the payment layer on demand. `mod.ts` pulls in viem and its dependencies (~50 MB of npm packages),
 * which a node in volunteer mode never runs: the CLI and the node import it only once `--chain` turns
 * payments on, so a first `serve` does not download them.
 *
 * @module
 */
import type * as PayModule from "./mod.ts";

/** The payment layer's public API (`./mod.ts`). */
export type Pay = typeof PayModule;

/**
 * Imports `./mod.ts`. The specifier is computed on purpose: Deno prefetches, and installs the npm packages
 * of, every dynamic import whose specifier is a literal.
 */
export function loadPay(): Promise<Pay> {
  return import(new URL("./mod.ts", import.meta.url).href);
}
