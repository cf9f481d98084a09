// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Ringwork stake
/// @notice Contributors lock ETH as stake for ring membership. The coordinator's key (the slasher)
/// takes stake away from a peer that validation proved deviant, naming the hash of the signed
/// evidence; each evidence hash can be used once. Withdrawal is two-step: a request moves stake out
/// of the active balance (the coordinator stops counting it at once) and the funds can be taken
/// after `withdrawalDelay` seconds; until then they can still be slashed, so a cheat cannot run off
/// with its stake before the evidence lands. Slashed funds stay locked in this contract.
contract RingworkStake {
    struct Account {
        /// Active stake: what the coordinator counts for ring membership.
        uint256 staked;
        /// Requested for withdrawal, still slashable until `unlockAt`.
        uint256 pending;
        /// When `pending` may be withdrawn (unix seconds); 0 when nothing is pending.
        uint64 unlockAt;
    }

    /// The only address allowed to slash (the coordinator's key).
    address public immutable slasher;
    /// Seconds between a withdrawal request and the withdrawal.
    uint64 public immutable withdrawalDelay;
    /// Stake taken by slashing, in total (kept locked here).
    uint256 public slashedTotal;

    mapping(address => Account) public accounts;
    /// Evidence hashes already slashed on (one slash per proven deviation).
    mapping(bytes32 => bool) public evidenceUsed;

    event Staked(address indexed peer, uint256 amount, uint256 staked);
    event WithdrawalRequested(address indexed peer, uint256 amount, uint64 unlockAt);
    event Withdrawn(address indexed peer, uint256 amount);
    event Slashed(address indexed peer, uint256 amount, bytes32 indexed evidenceHash);

    error NotSlasher();
    error ZeroAmount();
    error InsufficientStake(uint256 staked, uint256 requested);
    error NothingPending();
    error WithdrawalLocked(uint64 unlockAt);
    error EmptyEvidence();
    error EvidenceAlreadyUsed(bytes32 evidenceHash);
    error TransferFailed();

    constructor(address slasher_, uint64 withdrawalDelay_) {
        slasher = slasher_;
        withdrawalDelay = withdrawalDelay_;
    }

    /// @notice Adds the value sent to the caller's active stake.
    function stake() external payable {
        if (msg.value == 0) revert ZeroAmount();
        Account storage a = accounts[msg.sender];
        a.staked += msg.value;
        emit Staked(msg.sender, msg.value, a.staked);
    }

    /// @notice Moves `amount` of active stake to pending; it unlocks `withdrawalDelay` seconds from now.
    function requestWithdrawal(uint256 amount) external {
        if (amount == 0) revert ZeroAmount();
        Account storage a = accounts[msg.sender];
        if (a.staked < amount) revert InsufficientStake(a.staked, amount);
        a.staked -= amount;
        a.pending += amount;
        a.unlockAt = uint64(block.timestamp) + withdrawalDelay;
        emit WithdrawalRequested(msg.sender, amount, a.unlockAt);
    }

    /// @notice Sends the caller its pending stake once unlocked.
    function withdraw() external {
        Account storage a = accounts[msg.sender];
        uint256 amount = a.pending;
        if (amount == 0) revert NothingPending();
        if (block.timestamp < a.unlockAt) revert WithdrawalLocked(a.unlockAt);
        a.pending = 0;
        a.unlockAt = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed();
    }

    /// @notice Takes up to `amount` of `peer`'s stake (active first, then pending) for the proven
    /// deviation whose signed evidence hashes to `evidenceHash`. Only the slasher; once per evidence.
    function slash(address peer, uint256 amount, bytes32 evidenceHash) external {
        if (msg.sender != slasher) revert NotSlasher();
        if (evidenceHash == bytes32(0)) revert EmptyEvidence();
        if (evidenceUsed[evidenceHash]) revert EvidenceAlreadyUsed(evidenceHash);
        evidenceUsed[evidenceHash] = true;
        Account storage a = accounts[peer];
        uint256 fromStaked = amount < a.staked ? amount : a.staked;
        a.staked -= fromStaked;
        uint256 rest = amount - fromStaked;
        uint256 fromPending = rest < a.pending ? rest : a.pending;
        a.pending -= fromPending;
        uint256 taken = fromStaked + fromPending;
        slashedTotal += taken;
        emit Slashed(peer, taken, evidenceHash);
    }

    /// @notice The active stake of `peer` (what ring membership counts).
    function stakeOf(address peer) external view returns (uint256) {
        return accounts[peer].staked;
    }
}
