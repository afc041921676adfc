/**
 * Loads the chain side of the market (`deals.ts`, with viem) on demand, as `pay/load.ts` does for payments:
 * a node without a chain never installs or loads it.
 *
 * @module
 */
import type * as DealsModule from "./deals.ts";

/** Imports `./deals.ts` (a computed specifier: Deno would prefetch a literal one). */
export function loadDeals(): Promise<typeof DealsModule> {
  return import(new URL("./deals.ts", import.meta.url).href);
}
