// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Receipts} from "./Receipts.sol";

/// @title ChannelHub
/// @notice Unidirectional ETH payment channels. The payer deposits; off-chain it signs EIP-712 vouchers whose
///         cumulative amount only grows; the payee redeems the latest one and is paid the difference since its last
///         redeem. The payer can close: after the challenge period, during which the payee may still redeem, the
///         rest of the deposit goes back to the payer.
/// @dev Each voucher also carries the Merkle root of the delivery receipts it pays for; the hub keeps the root of
///      the last redeemed voucher so any one receipt of that batch can be proven on-chain (`verifyReceipt`).
///      Every function follows checks-effects-interactions: ETH leaves only after state and events are written.
contract ChannelHub {
    /*//////////////////////////////////////////////////////////////
                                 TYPES
    //////////////////////////////////////////////////////////////*/

    /// @notice Life of a channel. `None` means it was never opened.
    enum Status {
        None,
        Open,
        Closing,
        Closed
    }

    /// @notice A channel's state. Kept after `finalize` so receipts stay provable.
    struct Channel {
        address payer;
        uint64 challengePeriod;
        Status status;
        address payee;
        uint64 closesAt;
        uint256 deposit;
        uint256 redeemed;
        bytes32 receiptsRoot;
        uint64 receiptCount;
    }

    /// @notice The signed message: the total owed on `channel` so far and the batch of receipts it pays for.
    struct Voucher {
        bytes32 channel;
        uint256 cumulativeAmount;
        bytes32 receiptsRoot;
        uint64 receiptCount;
    }

    /*//////////////////////////////////////////////////////////////
                               CONSTANTS
    //////////////////////////////////////////////////////////////*/

    /// @notice EIP-712 type hash of `Voucher`.
    bytes32 public constant VOUCHER_TYPEHASH = keccak256(
        "Voucher(bytes32 channel,uint256 cumulativeAmount,bytes32 receiptsRoot,uint64 receiptCount)"
    );

    /// @notice Longest challenge period a channel may ask for.
    uint64 public constant MAX_CHALLENGE_PERIOD = 30 days;

    bytes32 private constant _DOMAIN_TYPEHASH = keccak256(
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    );
    string private constant _NAME = "Meshgate ChannelHub";
    string private constant _VERSION = "1";

    /// @dev secp256k1n / 2: signatures with a larger `s` are the malleable twin of a canonical one (EIP-2).
    uint256 private constant _HALF_N =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    /*//////////////////////////////////////////////////////////////
                                STORAGE
    //////////////////////////////////////////////////////////////*/

    mapping(bytes32 channel => Channel) private _channels;
    mapping(address payer => uint256) private _nonces;

    /*//////////////////////////////////////////////////////////////
                                 EVENTS
    //////////////////////////////////////////////////////////////*/

    event ChannelOpened(
        bytes32 indexed channel,
        address indexed payer,
        address indexed payee,
        uint256 deposit,
        uint64 challengePeriod
    );
    event ChannelToppedUp(bytes32 indexed channel, uint256 amount, uint256 deposit);
    event VoucherRedeemed(
        bytes32 indexed channel,
        uint256 cumulativeAmount,
        uint256 paid,
        bytes32 receiptsRoot,
        uint64 receiptCount
    );
    event ChannelClosing(bytes32 indexed channel, uint64 closesAt);
    event ChannelFinalized(bytes32 indexed channel, uint256 refunded);

    /*//////////////////////////////////////////////////////////////
                                 ERRORS
    //////////////////////////////////////////////////////////////*/

    error InvalidPayee(address payee);
    error InvalidChallengePeriod(uint64 challengePeriod);
    error ZeroAmount();
    error ChannelNotFound(bytes32 channel);
    error ChannelNotOpen(bytes32 channel);
    error ChannelNotClosing(bytes32 channel);
    error ChannelClosed(bytes32 channel);
    error NotPayer(address caller);
    error NotPayee(address caller);
    error InvalidSignature();
    error InvalidSigner(address signer, address payer);
    error VoucherReplayed(bytes32 channel, uint256 cumulativeAmount);
    error CumulativeAmountTooLow(uint256 cumulativeAmount, uint256 redeemed);
    error InsufficientDeposit(uint256 cumulativeAmount, uint256 deposit);
    error ChallengePeriodActive(uint64 closesAt);
    error ChallengePeriodOver(uint64 closesAt);
    error TransferFailed(address to, uint256 amount);

    /*//////////////////////////////////////////////////////////////
                               CHANNELS
    //////////////////////////////////////////////////////////////*/

    /// @notice Opens a channel from the caller to `payee` with `msg.value` as its deposit.
    /// @return channel keccak256(abi.encode(payer, payee, nonce)), the nonce counting the payer's channels.
    function open(address payee, uint64 challengePeriod)
        external
        payable
        returns (bytes32 channel)
    {
        if (payee == address(0) || payee == msg.sender) revert InvalidPayee(payee);
        if (challengePeriod == 0 || challengePeriod > MAX_CHALLENGE_PERIOD) {
            revert InvalidChallengePeriod(challengePeriod);
        }
        channel = keccak256(abi.encode(msg.sender, payee, _nonces[msg.sender]++));
        Channel storage c = _channels[channel];
        c.payer = msg.sender;
        c.payee = payee;
        c.challengePeriod = challengePeriod;
        c.status = Status.Open;
        c.deposit = msg.value;
        emit ChannelOpened(channel, msg.sender, payee, msg.value, challengePeriod);
    }

    /// @notice Adds `msg.value` to an open channel's deposit. Anyone may pay in.
    function topUp(bytes32 channel) external payable {
        Channel storage c = _open(channel);
        if (msg.value == 0) revert ZeroAmount();
        c.deposit += msg.value;
        emit ChannelToppedUp(channel, msg.value, c.deposit);
    }

    /// @notice The payee cashes a voucher: it is paid `cumulativeAmount` minus what it redeemed before.
    /// @dev Allowed while open and during the challenge period, never after it.
    function redeem(Voucher calldata voucher, bytes calldata signature) external {
        Channel storage c = _channels[voucher.channel];
        Status status = c.status;
        if (status == Status.None) revert ChannelNotFound(voucher.channel);
        if (status == Status.Closed) revert ChannelClosed(voucher.channel);
        if (status == Status.Closing && block.timestamp >= c.closesAt) {
            revert ChallengePeriodOver(c.closesAt);
        }
        if (msg.sender != c.payee) revert NotPayee(msg.sender);

        address signer = _recover(hashVoucher(voucher), signature);
        if (signer != c.payer) revert InvalidSigner(signer, c.payer);

        uint256 redeemed = c.redeemed;
        if (voucher.cumulativeAmount == redeemed) {
            revert VoucherReplayed(voucher.channel, voucher.cumulativeAmount);
        }
        if (voucher.cumulativeAmount < redeemed) {
            revert CumulativeAmountTooLow(voucher.cumulativeAmount, redeemed);
        }
        if (voucher.cumulativeAmount > c.deposit) {
            revert InsufficientDeposit(voucher.cumulativeAmount, c.deposit);
        }

        // unchecked: cumulativeAmount > redeemed was checked just above.
        uint256 paid;
        unchecked {
            paid = voucher.cumulativeAmount - redeemed;
        }
        c.redeemed = voucher.cumulativeAmount;
        c.receiptsRoot = voucher.receiptsRoot;
        c.receiptCount = voucher.receiptCount;
        emit VoucherRedeemed(
            voucher.channel, voucher.cumulativeAmount, paid, voucher.receiptsRoot, voucher.receiptCount
        );

        _send(c.payee, paid);
    }

    /// @notice The payer starts closing: the challenge period begins, the payee should redeem its last voucher.
    function startClose(bytes32 channel) external {
        Channel storage c = _open(channel);
        if (msg.sender != c.payer) revert NotPayer(msg.sender);
        uint64 closesAt = uint64(block.timestamp) + c.challengePeriod;
        c.closesAt = closesAt;
        c.status = Status.Closing;
        emit ChannelClosing(channel, closesAt);
    }

    /// @notice After the challenge period, returns the unredeemed deposit to the payer. Anyone may call it.
    function finalize(bytes32 channel) external {
        Channel storage c = _channels[channel];
        Status status = c.status;
        if (status == Status.None) revert ChannelNotFound(channel);
        if (status == Status.Closed) revert ChannelClosed(channel);
        if (status != Status.Closing) revert ChannelNotClosing(channel);
        if (block.timestamp < c.closesAt) revert ChallengePeriodActive(c.closesAt);

        // unchecked: redeem never lets redeemed exceed deposit.
        uint256 refunded;
        unchecked {
            refunded = c.deposit - c.redeemed;
        }
        c.status = Status.Closed;
        emit ChannelFinalized(channel, refunded);

        _send(c.payer, refunded);
    }

    /*//////////////////////////////////////////////////////////////
                                 VIEWS
    //////////////////////////////////////////////////////////////*/

    /// @notice The state of `channel` (all zero if it was never opened).
    function getChannel(bytes32 channel) external view returns (Channel memory) {
        return _channels[channel];
    }

    /// @notice How many channels `payer` has opened: the nonce of its next channel id.
    function nonceOf(address payer) external view returns (uint256) {
        return _nonces[payer];
    }

    /// @notice Whether `receipt` is in the batch of the last voucher redeemed on `channel`.
    function verifyReceipt(
        bytes32 channel,
        Receipts.Receipt calldata receipt,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = _channels[channel].receiptsRoot;
        if (root == bytes32(0)) return false;
        return Receipts.verify(proof, root, Receipts.hash(receipt));
    }

    /// @notice The Merkle leaf of `receipt`, as off-chain batchers must compute it.
    function hashReceipt(Receipts.Receipt calldata receipt) external pure returns (bytes32) {
        return Receipts.hash(receipt);
    }

    /// @notice The EIP-712 digest the payer signs for `voucher`.
    function hashVoucher(Voucher calldata voucher) public view returns (bytes32) {
        bytes32 structHash = keccak256(
            abi.encode(
                VOUCHER_TYPEHASH,
                voucher.channel,
                voucher.cumulativeAmount,
                voucher.receiptsRoot,
                voucher.receiptCount
            )
        );
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    /// @notice The EIP-712 domain separator. Computed per call so a fork with a new chain id gets a new one.
    function domainSeparator() public view returns (bytes32) {
        return keccak256(
            abi.encode(
                _DOMAIN_TYPEHASH,
                keccak256(bytes(_NAME)),
                keccak256(bytes(_VERSION)),
                block.chainid,
                address(this)
            )
        );
    }

    /// @notice EIP-5267: the EIP-712 domain, so wallets and viem's `getEip712Domain` can read it.
    function eip712Domain()
        external
        view
        returns (
            bytes1 fields,
            string memory name,
            string memory version,
            uint256 chainId,
            address verifyingContract,
            bytes32 salt,
            uint256[] memory extensions
        )
    {
        return (hex"0f", _NAME, _VERSION, block.chainid, address(this), bytes32(0), new uint256[](0));
    }

    /*//////////////////////////////////////////////////////////////
                                INTERNAL
    //////////////////////////////////////////////////////////////*/

    function _open(bytes32 channel) private view returns (Channel storage c) {
        c = _channels[channel];
        if (c.status == Status.None) revert ChannelNotFound(channel);
        if (c.status != Status.Open) revert ChannelNotOpen(channel);
    }

    /// @dev Accepts only 65-byte canonical signatures (low `s`, `v` 27 or 28), as viem produces them.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address signer) {
        if (signature.length != 65) revert InvalidSignature();
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        if (uint256(s) > _HALF_N || (v != 27 && v != 28)) revert InvalidSignature();
        signer = ecrecover(digest, v, r, s);
        if (signer == address(0)) revert InvalidSignature();
    }

    function _send(address to, uint256 amount) private {
        if (amount == 0) return;
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
