// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Escrow
/// @notice Marketplace escrow in ETH. The buyer funds a deal for a seller; the buyer releases it to the seller once
///         satisfied; if it is still held at the deadline it can be refunded to the buyer. The seller may refund at
///         any time (declining the deal).
/// @dev Checks-effects-interactions throughout: a deal's status changes before any ETH leaves.
contract Escrow {
    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    enum Status {
        None,
        Funded,
        Released,
        Refunded
    }

    struct Deal {
        address buyer;
        uint64 deadline;
        Status status;
        address seller;
        uint256 amount;
        bytes32 terms;
    }

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    mapping(bytes32 deal => Deal) private _deals;
    mapping(address buyer => uint256) private _nonces;

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    event DealFunded(
        bytes32 indexed deal,
        address indexed buyer,
        address indexed seller,
        uint256 amount,
        bytes32 terms,
        uint64 deadline
    );
    event DealReleased(bytes32 indexed deal, uint256 amount);
    event DealRefunded(bytes32 indexed deal, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    error InvalidSeller(address seller);
    error InvalidDeadline(uint64 deadline);
    error ZeroAmount();
    error DealNotFound(bytes32 deal);
    error DealNotFunded(bytes32 deal, Status status);
    error NotBuyer(address caller);
    error DeadlineNotReached(uint64 deadline);
    error TransferFailed(address to, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                                 DEALS
    //////////////////////////////////////////////////////////////*/

    /// @notice Locks `msg.value` for `seller` until released, or refunded from `deadline` on.
    /// @param terms Hash of what was agreed (the accepted quote), so both sides can point at it.
    /// @return deal keccak256(abi.encode(buyer, seller, terms, nonce)), the nonce counting the buyer's deals.
    function fund(address seller, bytes32 terms, uint64 deadline)
        external
        payable
        returns (bytes32 deal)
    {
        if (seller == address(0) || seller == msg.sender) revert InvalidSeller(seller);
        if (deadline <= block.timestamp) revert InvalidDeadline(deadline);
        if (msg.value == 0) revert ZeroAmount();
        deal = keccak256(abi.encode(msg.sender, seller, terms, _nonces[msg.sender]++));
        _deals[deal] = Deal({
            buyer: msg.sender,
            deadline: deadline,
            status: Status.Funded,
            seller: seller,
            amount: msg.value,
            terms: terms
        });
        emit DealFunded(deal, msg.sender, seller, msg.value, terms, deadline);
    }

    /// @notice The buyer pays the seller.
    function release(bytes32 deal) external {
        Deal storage d = _funded(deal);
        if (msg.sender != d.buyer) revert NotBuyer(msg.sender);
        d.status = Status.Released;
        emit DealReleased(deal, d.amount);
        _send(d.seller, d.amount);
    }

    /// @notice Returns the deposit to the buyer: by anyone from the deadline on, by the seller at any time.
    function refund(bytes32 deal) external {
        Deal storage d = _funded(deal);
        if (msg.sender != d.seller && block.timestamp < d.deadline) {
            revert DeadlineNotReached(d.deadline);
        }
        d.status = Status.Refunded;
        emit DealRefunded(deal, d.amount);
        _send(d.buyer, d.amount);
    }

    /// @notice The state of `deal` (all zero if it was never funded).
    function getDeal(bytes32 deal) external view returns (Deal memory) {
        return _deals[deal];
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _funded(bytes32 deal) private view returns (Deal storage d) {
        d = _deals[deal];
        if (d.status == Status.None) revert DealNotFound(deal);
        if (d.status != Status.Funded) revert DealNotFunded(deal, d.status);
    }

    function _send(address to, uint256 amount) private {
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
