/**
 * keccak-256 and the receipt-batch Merkle tree, as `src/pay` uses them: pairs hashed sorted (as
 * `contracts/Receipts.sol` and OpenZeppelin's MerkleProof do), an odd last node promoted unchanged.
 *
 * For now this is the plain-TS reference of the receipts kernel. Once `src/kernels/mod.ts` exports the kernel,
 * switch by replacing the export line below with:
 * `export { keccak256, merkleProof, merkleRoot } from "../kernels/mod.ts";`
 *
 * @module
 */
export { keccak256, merkleProof, merkleRoot } from "../kernels/reference/receipts.ts";
