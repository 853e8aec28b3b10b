"""Shared fixtures for every integration test: one real anvil, one deployment, role accounts.

Run with ``python -m pytest -p no:ape_test tests/integration -q`` (``anvil`` from
``node_modules/.bin`` must be on PATH; ``make test`` arranges that).

Session scope (started once, shared by every integration module):

- ``anvil``: a :class:`greenproof.chain.devnet.Anvil` (automine; ``.rpc_url``,
  ``.mine(n)``, ``.evm_increase_time(s)``, ``.snapshot()``/``.revert(id)``).
  Never ``restart()`` it: a test that stops the node uses ``private_anvil``.
- ``deployment``: the system deployed on it with :data:`TEST_PARAMS` (short
  windows, ``seed_lookahead=1``); every role account holds
  :data:`START_TOKENS` mock tokens. ``deployment_path`` is its manifest file,
  for subprocesses and CLI tests (``--deployment PATH``).

Function scope:

- ``chain_state`` (autouse): ``evm_snapshot`` before each test and ``evm_revert``
  after, so every test starts from the freshly deployed, funded chain. A test
  (or a module) that needs chain state to persist across tests can opt out
  with ``@pytest.mark.keep_chain_state``.
- ``chain_for(role)``: a :class:`greenproof.chain.Chain` signing as ``role``
  (``owner``, ``requester``, ``provider``, ``provider2``, ``verifier``,
  ``verifier2``, ``verifier3``, ``attestor``, ``outsider``). Chains are made per
  test: their nonce counters must not outlive a snapshot revert.
- ``gateway_for(role)``: the :class:`greenproof.chain.gateway.Gateway` on
  ``chain_for(role)`` — how production code reads and writes the contracts.
- ``owner``, ``requester``, ``provider``, ``verifier``, ``attestor``: the
  ``LocalAccount`` of each role; ``account_for(role)`` for any role and
  ``account_choice(role)`` for the ``--account`` string (``TEST::N``) that CLIs
  and daemons take. ``test_params`` is :data:`TEST_PARAMS`.

Test modules cannot import this file (no package ``__init__``): use the fixtures.
- ``cli_env``: environment for subprocesses / CliRunner (``GREENPROOF_NETWORK``
  = the anvil URL, ``GREENPROOF_DEPLOYMENT`` = the manifest).
- ``private_anvil``: a separate anvil + deployment for tests that stop,
  restart or otherwise abuse the node (fault tests); yields
  ``(anvil, deployment, manifest_path)``.
- ``deploy_fresh(**params)``: deploy another system on the shared anvil with
  other market parameters (returns ``(deployment, manifest_path)``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from greenproof.chain.accounts import dev_account
from greenproof.chain.client import Chain, RetryPolicy
from greenproof.chain.connection import make_web3
from greenproof.chain.deploy import deploy_system
from greenproof.chain.devnet import Anvil
from greenproof.chain.gateway import Gateway

# role -> anvil/ape test account index (TEST::N)
ROLES: dict[str, int] = {
    "owner": 0,
    "requester": 1,
    "provider": 2,
    "provider2": 3,
    "verifier": 4,
    "verifier2": 5,
    "verifier3": 6,
    "attestor": 7,
    "outsider": 8,
}
TOKEN = 10**18
START_TOKENS = 1_000_000 * TOKEN
# Short windows so tests (and daemons under test) move quickly; time is warped
# with anvil.evm_increase_time where a test needs a window to pass.
TEST_PARAMS: dict[str, int] = {
    "seed_lookahead": 1,
    "open_window": 120,
    "vote_commit_window": 60,
    "vote_reveal_window": 60,
    "max_job_duration": 6 * 3600,
    "min_verifier_stake": 10 * TOKEN,
    "max_vote_stake": 1_000 * TOKEN,
}
FAST_RETRY = RetryPolicy(attempts=6, base_delay=0.2, max_delay=2.0)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "keep_chain_state: do not revert the shared anvil after this test")


def account_of(role: str) -> str:
    """The ``--account`` choice for ``role`` (``TEST::N``)."""
    return f"TEST::{ROLES[role]}"


def _deploy_funded(rpc_url: str, out: Path, params: dict[str, int] | None = None) -> Any:
    owner = dev_account(ROLES["owner"])
    deployment = deploy_system(rpc_url, owner, params=params if params is not None else TEST_PARAMS,
                               out=out, force=True)
    gw = Gateway(Chain(make_web3(rpc_url), owner, deployment, poll=0.02, retry=FAST_RETRY))
    for index in sorted(set(ROLES.values())):
        gw.mint(dev_account(index).address, START_TOKENS)
    return deployment


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    with Anvil() as node:
        yield node


@pytest.fixture(scope="session")
def deployment_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deployments") / "anvil.json"


@pytest.fixture(scope="session")
def deployment(anvil: Anvil, deployment_path: Path) -> Any:
    return _deploy_funded(anvil.rpc_url, deployment_path)


@pytest.fixture(autouse=True)
def chain_state(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("keep_chain_state") or "deployment" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("deployment")  # deploy before the first snapshot, not inside it
    node: Anvil = request.getfixturevalue("anvil")
    snapshot = node.snapshot()
    yield
    node.revert(snapshot)


@pytest.fixture
def chain_for(anvil: Anvil, deployment: Any) -> Callable[[str], Chain]:
    """``chain_for("provider")`` -> a Chain signing as that role on the shared deployment."""
    made: dict[str, Chain] = {}

    def make(role: str) -> Chain:
        if role not in made:
            made[role] = Chain(make_web3(anvil.rpc_url), dev_account(ROLES[role]), deployment,
                               poll=0.02, retry=FAST_RETRY)
        return made[role]

    return make


@pytest.fixture
def gateway_for(chain_for: Callable[[str], Chain]) -> Callable[[str], Gateway]:
    """``gateway_for("provider")`` -> the Gateway on ``chain_for("provider")``."""
    return lambda role: Gateway(chain_for(role))


@pytest.fixture(scope="session")
def test_params() -> dict[str, int]:
    """The market parameters of the shared deployment (:data:`TEST_PARAMS`)."""
    return dict(TEST_PARAMS)


@pytest.fixture(scope="session")
def account_for() -> Callable[[str], Any]:
    """``account_for("provider")`` -> that role's ``LocalAccount``."""
    return lambda role: dev_account(ROLES[role])


@pytest.fixture(scope="session")
def account_choice() -> Callable[[str], str]:
    """``account_choice("provider")`` -> ``"TEST::2"``, the ``--account`` value for CLIs/daemons."""
    return account_of


@pytest.fixture
def owner() -> Any:
    return dev_account(ROLES["owner"])


@pytest.fixture
def requester() -> Any:
    return dev_account(ROLES["requester"])


@pytest.fixture
def provider() -> Any:
    return dev_account(ROLES["provider"])


@pytest.fixture
def verifier() -> Any:
    return dev_account(ROLES["verifier"])


@pytest.fixture
def attestor() -> Any:
    return dev_account(ROLES["attestor"])


@pytest.fixture
def cli_env(anvil: Anvil, deployment: Any, deployment_path: Path) -> dict[str, str]:
    """Environment for CLIs/daemons under test: network = the anvil URL, the manifest path."""
    return {"GREENPROOF_NETWORK": anvil.rpc_url, "GREENPROOF_DEPLOYMENT": str(deployment_path)}


@pytest.fixture
def deploy_fresh(anvil: Anvil, tmp_path: Path) -> Callable[..., tuple[Any, Path]]:
    """Deploy another funded system on the shared anvil with other market parameters."""

    def deploy(**params: int) -> tuple[Any, Path]:
        path = tmp_path / f"deployment-{len(list(tmp_path.glob('deployment-*')))}.json"
        return _deploy_funded(anvil.rpc_url, path, {**TEST_PARAMS, **params}), path

    return deploy


@pytest.fixture
def private_anvil(tmp_path: Path) -> Iterator[tuple[Anvil, Any, Path]]:
    """An anvil of this test's own (safe to stop/restart), with a funded deployment."""
    path = tmp_path / "deployment.json"
    with Anvil(state_dir=tmp_path / "anvil") as node:
        yield node, _deploy_funded(node.rpc_url, path), path
