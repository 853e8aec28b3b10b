"""MockToken: a snekmate ERC20 anyone may mint (dev/test only)."""

import ape

E18 = 10**18


def test_metadata(token):
    assert (token.name(), token.symbol(), token.decimals()) == ("Greenproof Test", "GPT", 18)
    assert token.totalSupply() == 0


def test_anyone_can_mint(token, stranger, provider):
    tx = token.mint(provider, 5 * E18, sender=stranger)
    (log,) = tx.decode_logs(token.Transfer)
    assert (log.sender, log.receiver, log.value) == (
        ape.utils.ZERO_ADDRESS,
        provider.address,
        5 * E18,
    )
    assert token.balanceOf(provider) == 5 * E18
    assert token.totalSupply() == 5 * E18


def test_mint_to_zero_address_reverts(token, stranger):
    with ape.reverts("erc20: mint to the zero address"):
        token.mint(ape.utils.ZERO_ADDRESS, E18, sender=stranger)


def test_transfer_approve_transfer_from(token, requester, provider, stranger):
    token.mint(requester, 10 * E18, sender=requester)
    token.transfer(provider, 3 * E18, sender=requester)
    assert token.balanceOf(provider) == 3 * E18
    with ape.reverts("erc20: transfer amount exceeds balance"):
        token.transfer(provider, 8 * E18, sender=requester)
    token.approve(stranger, 2 * E18, sender=requester)
    with ape.reverts("erc20: insufficient allowance"):
        token.transferFrom(requester, stranger, 2 * E18 + 1, sender=stranger)
    token.transferFrom(requester, stranger, 2 * E18, sender=stranger)
    assert token.balanceOf(requester) == 5 * E18
    assert token.allowance(requester, stranger) == 0


def test_burn(token, provider):
    token.mint(provider, 4 * E18, sender=provider)
    token.burn(E18, sender=provider)
    assert token.balanceOf(provider) == 3 * E18
    assert token.totalSupply() == 3 * E18
