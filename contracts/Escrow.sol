// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title Escrow
/// @notice Marketplace deals in ETH, each with an exit that one party can take alone from every state:
///
///         Funded    --seller confirm (before confirmBy)-->   Confirmed (releaseAt = now + deliveryWindow)
///         Funded    --buyer refund (from confirmBy on)-->    Refunded  (the seller never confirmed)
///         Confirmed --buyer dispute (before releaseAt)-->    Disputed  (resolveBy = now + disputeWindow)
///         Confirmed --seller claim (from releaseAt on)-->    Released  (delivered, the buyer stayed silent)
///         Disputed  --arbiter resolve (before resolveBy)-->  Resolved  (any split the arbiter names)
///         Disputed  --buyer/seller settle (from resolveBy)-> Resolved  (the default: half each)
///         any open  --buyer release-->                       Released  (the buyer pays in full)
///         any open  --seller refund-->                       Refunded  (the seller declines in full)
///
///         The default ruling of a dispute nobody arbitrates is an even split (the odd wei to the seller): a buyer
///         who disputes a delivery it kept recovers at most half, a seller who never delivered keeps at most half,
///         so neither side wins outright by cheating. Parties who want better name an arbiter, or concede (either
///         can pay the other in full at any moment).
/// @dev Settling only credits balances; ETH leaves by `withdraw` alone (pull payments), so a party that cannot
///      receive ETH blocks nobody but itself. No function moves a deal for a caller who is not its buyer, seller
///      or arbiter: a stranger cannot refund, release or front-run anything.
contract Escrow {
    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    /// @notice Life of a deal. `None` means it was never funded.
    enum Status {
        None,
        Funded,
        Confirmed,
        Disputed,
        Released,
        Refunded,
        Resolved
    }

    /// @notice A deal's state, kept after it settles (ratings check it).
    struct Deal {
        address buyer;
        /// @dev The seller must confirm before this time (unix seconds); from it on the buyer may refund.
        uint64 confirmBy;
        Status status;
        address seller;
        /// @dev Seconds from confirmation until the seller may claim.
        uint32 deliveryWindow;
        /// @dev Seconds from a dispute until the default ruling (the arbiter's time to rule).
        uint32 disputeWindow;
        /// @dev address(0): no arbiter, a dispute ends in the default ruling.
        address arbiter;
        /// @dev Set at confirmation (0 while unconfirmed): from it on the seller may claim.
        uint64 releaseAt;
        /// @dev Set at a dispute (0 otherwise): the arbiter rules before it, the default applies from it on.
        uint64 resolveBy;
        uint256 amount;
        /// @dev Hash of what was agreed (the accepted quote).
        bytes32 terms;
    }

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice Longest wait any deadline or window of a deal may set.
    uint64 public constant MAX_WAIT = 365 days;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    mapping(bytes32 deal => Deal) private _deals;
    mapping(address account => uint256) private _balances;
    mapping(address account => uint256) private _settled;

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    event DealFunded(
        bytes32 indexed deal,
        address indexed buyer,
        address indexed seller,
        address arbiter,
        uint256 amount,
        bytes32 terms,
        uint64 confirmBy
    );
    event DealConfirmed(bytes32 indexed deal, uint64 releaseAt);
    event DealDisputed(bytes32 indexed deal, uint64 resolveBy);
    /// @param by The buyer (release) or the seller (claim after the delivery window).
    event DealReleased(bytes32 indexed deal, address indexed by, uint256 amount);
    /// @param by The seller (declining) or the buyer (the seller never confirmed).
    event DealRefunded(bytes32 indexed deal, address indexed by, uint256 amount);
    /// @param by The arbiter, or the party that took the default ruling.
    event DealResolved(bytes32 indexed deal, address indexed by, uint256 toBuyer, uint256 toSeller);
    event Withdrawn(address indexed account, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    error InvalidSeller(address seller);
    error InvalidArbiter(address arbiter);
    error InvalidDeadline(uint64 deadline);
    error InvalidWindow(uint32 window);
    error ZeroAmount();
    error DealExists(bytes32 deal);
    error DealNotFound(bytes32 deal);
    error WrongStatus(bytes32 deal, Status status);
    error NotBuyer(address caller);
    error NotSeller(address caller);
    error NotArbiter(address caller);
    error NotParty(address caller);
    /// @param opensAt When the call becomes possible.
    error TooEarly(uint64 opensAt);
    /// @param closedAt When the call stopped being possible.
    error TooLate(uint64 closedAt);
    error InvalidSplit(uint256 toBuyer, uint256 amount);
    error NothingToWithdraw();
    error TransferFailed(address to, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                                 DEALS
    //////////////////////////////////////////////////////////////*/

    /// @notice The id of the deal `buyer` funds for `terms`: one deal per buyer and terms.
    function dealId(address buyer, bytes32 terms) public pure returns (bytes32) {
        return keccak256(abi.encode(buyer, terms));
    }

    /// @notice Locks `msg.value` for `seller` under `terms` (the accepted quote's hash). Refused if this buyer
    ///         already funded these terms.
    /// @param arbiter Rules on a dispute; address(0) for none (a dispute then ends in the default split).
    /// @param confirmBy Unix seconds: the seller confirms before it, else the buyer may refund.
    /// @param deliveryWindow Seconds from confirmation during which the buyer may dispute; then the seller claims.
    /// @param disputeWindow Seconds from a dispute for the arbiter to rule; then the default split applies.
    function fund(
        bytes32 terms,
        address seller,
        address arbiter,
        uint64 confirmBy,
        uint32 deliveryWindow,
        uint32 disputeWindow
    ) external payable returns (bytes32 deal) {
        if (seller == address(0) || seller == msg.sender) revert InvalidSeller(seller);
        if (arbiter == msg.sender || arbiter == seller) revert InvalidArbiter(arbiter);
        if (confirmBy <= block.timestamp || confirmBy > block.timestamp + MAX_WAIT) {
            revert InvalidDeadline(confirmBy);
        }
        if (deliveryWindow == 0 || deliveryWindow > MAX_WAIT) revert InvalidWindow(deliveryWindow);
        if (disputeWindow == 0 || disputeWindow > MAX_WAIT) revert InvalidWindow(disputeWindow);
        if (msg.value == 0) revert ZeroAmount();
        deal = dealId(msg.sender, terms);
        if (_deals[deal].status != Status.None) revert DealExists(deal);
        _deals[deal] = Deal({
            buyer: msg.sender,
            confirmBy: confirmBy,
            status: Status.Funded,
            seller: seller,
            deliveryWindow: deliveryWindow,
            disputeWindow: disputeWindow,
            arbiter: arbiter,
            releaseAt: 0,
            resolveBy: 0,
            amount: msg.value,
            terms: terms
        });
        emit DealFunded(deal, msg.sender, seller, arbiter, msg.value, terms, confirmBy);
    }

    /// @notice The seller takes the deal (before `confirmBy`); the delivery window starts.
    function confirm(bytes32 deal) external {
        Deal storage d = _found(deal);
        if (msg.sender != d.seller) revert NotSeller(msg.sender);
        if (d.status != Status.Funded) revert WrongStatus(deal, d.status);
        if (block.timestamp >= d.confirmBy) revert TooLate(d.confirmBy);
        d.status = Status.Confirmed;
        d.releaseAt = uint64(block.timestamp) + d.deliveryWindow;
        emit DealConfirmed(deal, d.releaseAt);
    }

    /// @notice The buyer pays the seller in full, from any open state.
    function release(bytes32 deal) external {
        Deal storage d = _open(deal);
        if (msg.sender != d.buyer) revert NotBuyer(msg.sender);
        _release(deal, d);
    }

    /// @notice The seller takes the payment once the delivery window passed without a dispute.
    function claim(bytes32 deal) external {
        Deal storage d = _found(deal);
        if (msg.sender != d.seller) revert NotSeller(msg.sender);
        if (d.status != Status.Confirmed) revert WrongStatus(deal, d.status);
        if (block.timestamp < d.releaseAt) revert TooEarly(d.releaseAt);
        _release(deal, d);
    }

    /// @notice Returns the deposit to the buyer: by the seller from any open state (declining or conceding), by
    ///         the buyer once `confirmBy` passed without a confirmation.
    function refund(bytes32 deal) external {
        Deal storage d = _open(deal);
        if (msg.sender == d.buyer) {
            if (d.status != Status.Funded) revert WrongStatus(deal, d.status);
            if (block.timestamp < d.confirmBy) revert TooEarly(d.confirmBy);
        } else if (msg.sender != d.seller) {
            revert NotParty(msg.sender);
        }
        bool confirmed = d.releaseAt != 0;
        d.status = Status.Refunded;
        _balances[d.buyer] += d.amount;
        // A deal the seller never took is no trade of either side's.
        if (confirmed) _countSettled(d);
        emit DealRefunded(deal, msg.sender, d.amount);
    }

    /// @notice The buyer contests a confirmed deal within its delivery window; the seller can no longer claim.
    function dispute(bytes32 deal) external {
        Deal storage d = _found(deal);
        if (msg.sender != d.buyer) revert NotBuyer(msg.sender);
        if (d.status != Status.Confirmed) revert WrongStatus(deal, d.status);
        if (block.timestamp >= d.releaseAt) revert TooLate(d.releaseAt);
        d.status = Status.Disputed;
        d.resolveBy = uint64(block.timestamp) + d.disputeWindow;
        emit DealDisputed(deal, d.resolveBy);
    }

    /// @notice The arbiter rules on a dispute before `resolveBy`: `toBuyer` wei back to the buyer, the rest to the
    ///         seller (0 or the whole amount to pick a side).
    function resolve(bytes32 deal, uint256 toBuyer) external {
        Deal storage d = _found(deal);
        if (msg.sender != d.arbiter || d.arbiter == address(0)) revert NotArbiter(msg.sender);
        if (d.status != Status.Disputed) revert WrongStatus(deal, d.status);
        if (block.timestamp >= d.resolveBy) revert TooLate(d.resolveBy);
        if (toBuyer > d.amount) revert InvalidSplit(toBuyer, d.amount);
        _resolve(deal, d, toBuyer);
    }

    /// @notice The default ruling, once `resolveBy` passed without one (no arbiter, or a silent one): half to
    ///         each side, the odd wei to the seller. Only the buyer or the seller may take it.
    function settle(bytes32 deal) external {
        Deal storage d = _found(deal);
        if (msg.sender != d.buyer && msg.sender != d.seller) revert NotParty(msg.sender);
        if (d.status != Status.Disputed) revert WrongStatus(deal, d.status);
        if (block.timestamp < d.resolveBy) revert TooEarly(d.resolveBy);
        _resolve(deal, d, d.amount / 2);
    }

    /// @notice Sends the caller everything credited to it.
    function withdraw() external {
        uint256 amount = _balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        _balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    /// @notice The state of `deal` (all zero if it was never funded).
    function getDeal(bytes32 deal) external view returns (Deal memory) {
        return _deals[deal];
    }

    /// @notice Wei credited to `account` and not withdrawn yet.
    function balanceOf(address account) external view returns (uint256) {
        return _balances[account];
    }

    /// @notice Deals `account` settled as buyer or seller after the seller confirmed (its trading history).
    function settledDeals(address account) external view returns (uint256) {
        return _settled[account];
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _found(bytes32 deal) private view returns (Deal storage d) {
        d = _deals[deal];
        if (d.status == Status.None) revert DealNotFound(deal);
    }

    function _open(bytes32 deal) private view returns (Deal storage d) {
        d = _found(deal);
        if (d.status != Status.Funded && d.status != Status.Confirmed && d.status != Status.Disputed) {
            revert WrongStatus(deal, d.status);
        }
    }

    function _release(bytes32 deal, Deal storage d) private {
        d.status = Status.Released;
        _balances[d.seller] += d.amount;
        _countSettled(d);
        emit DealReleased(deal, msg.sender, d.amount);
    }

    function _resolve(bytes32 deal, Deal storage d, uint256 toBuyer) private {
        uint256 toSeller = d.amount - toBuyer;
        d.status = Status.Resolved;
        _balances[d.buyer] += toBuyer;
        _balances[d.seller] += toSeller;
        _countSettled(d);
        emit DealResolved(deal, msg.sender, toBuyer, toSeller);
    }

    function _countSettled(Deal storage d) private {
        _settled[d.buyer]++;
        _settled[d.seller]++;
    }
}
