/**
 * The WebAssembly kernels: small, synchronous functions over bytes. Each module loads its `.wasm` once at
 * import (top-level await), so callers need no initialisation step.
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
export { xorClosest, XorTable } from "./xor.ts";
export {
  keccak256,
  keccak256Many,
  merkleProof,
  merkleRoot,
  verifyMerkleProof,
} from "./receipts.ts";
