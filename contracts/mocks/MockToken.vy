# pragma version ~=0.4.3
"""
@title MockToken
@custom:contract-name MockToken
@license GNU Affero General Public License v3.0 only
@notice DEV / TEST ONLY. A snekmate ERC20 in which ANYONE may mint any amount.
        Deployed on local chains (and on testnets only when asked explicitly) so
        that requesters, providers and verifiers can get tokens. Never use it as
        the settlement token of a deployment with real value.
"""


# INTERFACES #

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

from snekmate.auth import ownable
from snekmate.tokens import erc20

implements: IERC20
implements: IERC20Detailed

initializes: ownable
initializes: erc20[ownable := ownable]

exports: (
    erc20.transfer,
    erc20.approve,
    erc20.transferFrom,
    erc20.balanceOf,
    erc20.allowance,
    erc20.totalSupply,
    erc20.name,
    erc20.symbol,
    erc20.decimals,
    erc20.burn,
    erc20.burn_from,
    erc20.permit,
    erc20.nonces,
    erc20.DOMAIN_SEPARATOR,
    erc20.eip712Domain,
)


# CONSTRUCTOR #

@deploy
def __init__(name_: String[25], symbol_: String[5], decimals_: uint8):
    """
    @notice Deploys the mock token (EIP-2612 domain: `name_`, version "1").
    @param name_ Token name (max 25 characters).
    @param symbol_ Token symbol (max 5 characters).
    @param decimals_ Decimal places.
    """
    ownable.__init__()
    erc20.__init__(name_, symbol_, decimals_, name_, "1")


# EXTERNAL #

@external
def mint(to: address, amount: uint256):
    """
    @notice Mints `amount` new tokens to `to`.
    @dev MOCK ONLY: anyone may call this. That is the point of a dev token
         and the reason it must never settle real value.
    @param to The recipient (not the zero address).
    @param amount Token base units to create.
    """
    erc20._mint(to, amount)
