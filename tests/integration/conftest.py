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
  ``verifier2``, ``verifier3``, ``attestor``, ``outsider``, ``allocator``). Chains are made per
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
- ``run(*argv, ok=True)``: invokes ``greenproof …`` in-process with ``cli_env``,
  checks the exit status (``ok=False``: must fail) and returns the output.
- ``private_anvil``: a separate anvil + deployment for tests that stop,
  restart or otherwise abuse the node (fault tests); yields
  ``(anvil, deployment, manifest_path)``.
- ``deploy_fresh(**params)``: deploy another system on the shared anvil with
  other market parameters (returns ``(deployment, manifest_path)``).
- ``seat_verifiers(*roles, seats=N, dclass=None)``: each role stakes what it
  lacks and joins the court's pool of this machine's fp32 class (the class a CPU
  worker here trains in; or ``dclass``) with ``seats`` seats; returns the class. Jobs need that pool to
  hold ``min_class_stake`` (default 3 seats) before a worker can accept them.
- ``daemons``: starts ``greenproof`` subprocesses (``daemons.start(argv, name)``),
  fails the test with a daemon's log when it dies, stops them all at the end.
- ``drive_court(gw, job_id, daemons, voters, …)``: plays the world of a job until
  it is final: mines blocks for the audit seed and, in each round, warps anvil's
  clock past the commit window once every drawn seat of ``voters`` committed and
  past the reveal window once they all revealed.
"""

from __future__ import annotations

import subprocess
import sys
import time
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
from greenproof.chain.models import JobState, SeatsDrawn, SeatStatus

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
    "allocator": 9,
}
TOKEN = 10**18
START_TOKENS = 1_000_000 * TOKEN
# Short windows so tests (and daemons under test) move quickly; time is warped
# with anvil.evm_increase_time where a test needs a window to pass.
# The court keeps its defaults (committees of 3 seats, 3 rounds, 100-token seats,
# min_class_stake of 3 seats) but votes in short windows.
TEST_PARAMS: dict[str, int] = {
    "seed_lookahead": 1,
    "open_window": 120,
    "commit_window": 60,
    "reveal_window": 60,
    "max_job_duration": 6 * 3600,
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
def run(cli_env: dict[str, str]) -> Callable[..., str]:
    """Invoke ``greenproof …`` in-process against the shared anvil deployment."""
    from click.testing import CliRunner

    from greenproof.cli import cli

    runner = CliRunner()

    def invoke(*args: str, ok: bool = True) -> str:
        result = runner.invoke(cli, list(args), env=cli_env, catch_exceptions=False)
        assert (result.exit_code == 0) == ok, result.output
        return result.output

    return invoke


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


@pytest.fixture
def seat_verifiers(gateway_for: Callable[[str], Gateway]) -> Callable[..., bytes]:
    """``seat_verifiers("verifier", "verifier2", seats=1)``: each role stakes what it lacks and
    joins the court's pool of this machine's fp32 class (or ``dclass=``) with ``seats`` seats;
    returns the class."""
    from verifier.classes import replayable_classes

    def seat(*roles: str, seats: int = 3, dclass: bytes | None = None) -> bytes:
        dclass = dclass or replayable_classes()["fp32"]
        for role in roles:
            gw = gateway_for(role)
            need = seats * gw.seat_stake()
            if gw.free_stake() < need:
                gw.stake(need - gw.free_stake())
            gw.join_pool(dclass, seats)
        return dclass

    return seat


class Daemons:
    """``greenproof`` subprocesses of one test, each logging to ``{tmp_path}/{name}.log``."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = open(self.log_path(name), "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([str(Path(sys.executable).parent / "greenproof"), "-v", *argv],
                                stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def log(self, name: str, tail: int = 4000) -> str:
        return self.log_path(name).read_text()[-tail:]

    def check(self) -> None:
        """Fail the test with the log of a daemon that died."""
        for name, proc in self.procs.items():
            if proc.poll() not in (None, 0):
                pytest.fail(f"{name} exited with {proc.returncode}:\n{self.log(name)}")

    def wait_all(self, timeout: float = 60) -> None:
        """Every daemon exits by itself (``--exit-when-idle``) with status 0."""
        for name, proc in self.procs.items():
            try:
                assert proc.wait(timeout) == 0, self.log(name)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{name} did not exit when idle:\n{self.log(name)}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    import os

    running = Daemons(tmp_path, {**os.environ, "GREENPROOF_ENERGY_SOURCE": "fake"})
    yield running
    running.stop()


def seats_of_round(gw: Gateway, job_id: int, rnd: int) -> list[str]:
    """The voters of round ``rnd`` of the job's case (one entry per seat)."""
    start = gw.deployment.deployment_block
    return [v for ev in gw.events(SeatsDrawn, start, job_id=job_id) if ev.round == rnd for v in ev.voters]


@pytest.fixture
def drive_court(anvil: Anvil) -> Callable[..., JobState]:
    """``drive_court(gw, job_id, daemons, voters, on_voting=None, on_tick=None)`` -> the job's
    final state.

    Mines blocks until the audit is drawn and the segments open; in each round warps
    past the commit window once every drawn seat held by ``voters`` (addresses of the
    accounts whose votes the test waits for) committed, past the reveal window once
    they revealed. ``on_voting(case)`` runs once per round when it starts voting,
    ``on_tick(case)`` on every pass while the job votes."""

    def drive(gw: Gateway, job_id: int, procs: Daemons, voters: set[str],
              on_voting: Callable[[Any], None] | None = None, on_tick: Callable[[Any], None] | None = None,
              timeout: float = 240.0) -> JobState:
        deadline, rounds_seen = time.monotonic() + timeout, set()
        waiting_for = {v.lower() for v in voters}
        while time.monotonic() < deadline:
            procs.check()
            job = gw.job(job_id)
            if job.state.final:
                return job.state
            case = gw.case_of(job_id)
            if job.state is not JobState.VOTING or not case.voting:
                anvil.mine(1)  # the seed block, then keep blocks coming for the daemons
            else:
                if on_voting is not None and case.round not in rounds_seen:
                    rounds_seen.add(case.round)
                    on_voting(case)
                if on_tick is not None:
                    on_tick(case)
                _warp(gw, job_id, case, waiting_for)
            time.sleep(0.5)
        pytest.fail(f"job {job_id} did not finalize in time:\n" +
                    "\n".join(f"--- {n}\n{procs.log(n, 3000)}" for n in procs.procs))

    def _warp(gw: Gateway, job_id: int, case: Any, voters: set[str]) -> None:
        mine = {v for v in seats_of_round(gw, job_id, case.round) if v.lower() in voters}
        status = [gw.seat_of(job_id, case.round, v).status for v in mine]
        now = gw.chain.timestamp()
        if now >= case.reveal_end:
            anvil.mine(1)  # the daemons finalize
        elif all(s is not SeatStatus.SEATED for s in status) and now < case.commit_end:
            anvil.evm_increase_time(case.commit_end - now)
        elif all(s not in (SeatStatus.SEATED, SeatStatus.COMMITTED) for s in status) and now >= case.commit_end:
            anvil.evm_increase_time(case.reveal_end - now)

    return drive
