# pragma version ~=0.4.3
"""
@title MockBlockHistory
@custom:contract-name MockBlockHistory
@license GNU Affero General Public License v3.0 only
@notice TEST ONLY. Stands in for the EIP-2935 block-hash history contract
        (`0x0000F90827F1C53a10cb7A02335B175320002935`) on a test chain that
        has none: the tests put its runtime code at that address. Like the
        real contract it takes the block number as 32 bytes of raw calldata,
        answers with 32 raw bytes and reverts unless
        `block.number - 8191 <= n < block.number`; unlike the real one it
        answers a hash the tests know in advance,
        `keccak256(concat(b"history", convert(n, bytes32)))`, so a seed read
        from it can never be mistaken for one read with `BLOCKHASH`.
"""

# @dev Blocks the EIP-2935 contract serves (its HISTORY_SERVE_WINDOW).
HISTORY_WINDOW: constant(uint256) = 8191


@external
@view
@raw_return
def __default__() -> Bytes[32]:
    """
    @notice The mock hash of block `n` (32 bytes of calldata, big-endian).
    @return Bytes[32] `keccak256(concat(b"history", convert(n, bytes32)))`, raw.
    """
    assert len(msg.data) == 32
    n: uint256 = extract32(slice(msg.data, 0, 32), 0, output_type=uint256)
    assert n < block.number and block.number - n <= HISTORY_WINDOW
    return abi_encode(keccak256(concat(b"history", convert(n, bytes32))))
