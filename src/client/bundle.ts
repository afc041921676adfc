/**
 * The browser bundle's entry (`deno task build:ui` bundles it into `edge/ui/dist/meshgate.js`, served by
 * every gateway at `/meshgate.js`): the WebAssembly kernels, carried inside the bundle, the CID helpers and
 * `verifiedFetch`.
 *
 * ```js
 * import { verifiedFetch } from "https://gw.example/meshgate.js";
 * const res = await verifiedFetch("bafy…", { gateway: ["https://gw.example", "https://other.example"] });
 * ```
 *
 * @module
 */
export {
  BlockTooLargeError,
  verifiedFetch,
  VerifiedFetchError,
  type VerifiedFetchEvent,
  type VerifiedFetchOptions,
} from "./verified_fetch.ts";
export {
  type Eip1193Provider,
  X402Client,
  type X402ClientInit,
  X402Error,
  type X402Event,
} from "./x402.ts";
export * from "../kernels/mod.ts";
export { CID, cidOf, matchesCid, parseCid } from "../content/cid.ts";
export { decodeManifest, type Manifest } from "../content/manifest.ts";
export { MeshError } from "../errors.ts";
