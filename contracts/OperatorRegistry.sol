// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title OperatorRegistry
/// @notice Operators announce where they are paid and the hash of their current signed offer (the offer itself
///         travels through the DHT; the hash anchors which version the operator stands behind).
contract OperatorRegistry {
    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    struct Operator {
        address payout;
        uint64 updatedAt;
        bytes32 offerHash;
    }

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    mapping(address operator => Operator) private _operators;

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    event OperatorAnnounced(address indexed operator, address indexed payout, bytes32 offerHash);
    event OperatorWithdrawn(address indexed operator);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    error ZeroPayout();
    error NotAnnounced(address operator);

    /*//////////////////////////////////////////////////////////////
                               OPERATORS
    //////////////////////////////////////////////////////////////*/

    /// @notice Announces (or updates) the caller's payout address and offer hash.
    function announce(address payout, bytes32 offerHash) external {
        if (payout == address(0)) revert ZeroPayout();
        _operators[msg.sender] =
            Operator({payout: payout, updatedAt: uint64(block.timestamp), offerHash: offerHash});
        emit OperatorAnnounced(msg.sender, payout, offerHash);
    }

    /// @notice Removes the caller's announcement.
    function withdraw() external {
        if (_operators[msg.sender].payout == address(0)) revert NotAnnounced(msg.sender);
        delete _operators[msg.sender];
        emit OperatorWithdrawn(msg.sender);
    }

    /// @notice The announcement of `operator` (all zero if none).
    function getOperator(address operator) external view returns (Operator memory) {
        return _operators[operator];
    }
}
