/**
 * The WebAssembly kernels: small, synchronous functions over bytes. Each kernel loads its `.wasm` on its
 * first call, so callers need no initialisation step and importing one kernel never loads another
 * (`prepareKernels` compiles them ahead, asynchronously, where that matters: a page's main thread).
 *
 * @module
 */
export {
  blake3,
  BLAKE3_BLOCK_LEN,
  blake3BlockCount,
  type Blake3Proof,
  blake3Proof,
  blake3VerifyProof,
} from "./blake3.ts";
export { rsEncode, rsReconstruct } from "./erasure.ts";
export { loadedKernels, prepareKernels } from "./_load.ts";
export { xorClosest, XorTable } from "./xor.ts";
export {
  keccak256,
  keccak256Many,
  merkleProof,
  merkleRoot,
  verifyMerkleProof,
} from "./receipts.ts";
