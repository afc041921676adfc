// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Receipts
/// @notice Delivery receipts and the sorted-pair Merkle proofs that show one receipt belongs to a batch.
/// @dev The off-chain batcher (src/pay/receipts.ts over the receipts kernel) must hash exactly as this library:
///      leaf = keccak256(abi.encode(operator, client, cid, size, time)), node = keccak256(min(a, b) ‖ max(a, b)),
///      and an odd last node is promoted to the next level unchanged (so its proof is simply one sibling shorter).
///      A leaf is never 64 bytes long (the encoding has a dynamic `cid`, so at least 7 words), hence no leaf can be
///      mistaken for an inner node and single hashing is safe.
library Receipts {
    /// @notice One delivery the client verified and acknowledges.
    /// @param operator Who served the bytes.
    /// @param client Who received and verified them (the channel's payer).
    /// @param cid The chunk's binary CID.
    /// @param size Bytes delivered.
    /// @param time Unix seconds of the delivery.
    struct Receipt {
        address operator;
        address client;
        bytes cid;
        uint64 size;
        uint64 time;
    }

    /// @notice The Merkle leaf of a receipt: keccak-256 of its flat ABI encoding.
    function hash(Receipt calldata receipt) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(receipt.operator, receipt.client, receipt.cid, receipt.size, receipt.time)
        );
    }

    /// @notice Whether `leaf` is in the tree of `root`, given the siblings from the leaf up.
    function verify(bytes32[] calldata proof, bytes32 root, bytes32 leaf)
        internal
        pure
        returns (bool)
    {
        bytes32 node = leaf;
        for (uint256 i; i < proof.length; ++i) {
            node = _hashPair(node, proof[i]);
        }
        return node == root;
    }

    function _hashPair(bytes32 a, bytes32 b) private pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }
}
