"""The provider's worker daemon: find jobs, train, commit, open audits, get paid.

One process per provider account, composed of

* :class:`~worker.discovery.Discovery`: follows ``JobPosted`` from the
  journal's cursor, decides with the accept policy and sends the accept;
* :class:`~worker.lifecycle.Lifecycle`: takes every held job one on-chain
  action further per pass (commit, draw, open, finalize) and withdraws;
* :class:`~worker.trainer.Trainer`: one thread per device, trains the queued
  jobs one at a time through ``train_run``, journaling each boundary;
* the artifact server (uvicorn, see :mod:`worker.server`, started by the CLI).

The **chain loop** (:meth:`Worker.run`, the caller's thread) runs discovery and
the lifecycle each pass; every transaction is sent from it. A job whose action
fails is retried alone with its own backoff (:mod:`greenproof.chain.retries`) while the
others keep moving; only a node failure backs off the whole loop.

Crash safety comes from the journal's write-ahead rules (:mod:`worker.journal`)
plus reconciling with on-chain state on every pass, so a restarted worker picks
up where the dead one stopped.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import requests
from web3.exceptions import Web3Exception

from greenproof.chain.client import Chain
from greenproof.chain.clock import ChainClock
from greenproof.chain.errors import ChainError
from greenproof.chain.gateway import Gateway
from greenproof.chain.retries import JobRetries
from greenproof.store import ArtifactStore
from worker.config import WorkerConfig
from worker.discovery import Discovery
from worker.journal import Journal
from worker.lifecycle import Lifecycle
from worker.trainer import Throughput, Trainer

log = logging.getLogger("greenproof.worker")

#: Errors after which the chain loop backs off as a whole: the node is away (the
#: client's own retries ran out) or answers nonsense. One job's failures never get here.
NODE_ERRORS: tuple[type[BaseException], ...] = (
    ChainError,
    requests.RequestException,
    OSError,
    Web3Exception,
)


class Worker:
    """The daemon. Build it with a connected :class:`Chain` (with a deployment) and a config."""

    def __init__(
        self,
        chain: Chain,
        config: WorkerConfig,
        *,
        journal: Journal | None = None,
        cheat: Any = None,
    ) -> None:
        self.chain = chain
        self.config = config
        self.gateway = Gateway(chain)
        self.address = chain.address
        deployment = self.gateway.deployment  # ChainError without one: the worker needs it
        self.journal = journal or Journal(config.journal_path)
        self.journal.bind(chain.chain_id, self.gateway.market_address, self.address,
                          chain.identity(deployment.deployment_block))
        self.store = ArtifactStore(config.store_dir)
        self.clock = ChainClock()
        self.stopping = threading.Event()
        throughput = Throughput(self.journal)
        retries = JobRetries(config.poll_s, config.max_backoff_s, logger=log)
        self.trainer = Trainer(self.journal, self.store, config, self.clock, throughput,
                               stopping=self.stopping, cheat=cheat)
        self.discovery = Discovery(
            self.gateway, self.journal, config, self.clock, throughput, retries,
            from_block=deployment.deployment_block, on_queued=self.trainer.wake.set,
        )
        self.lifecycle = Lifecycle(self.gateway, self.journal, self.clock, retries,
                                   result_base=config.base_url(), records=self.trainer.records,
                                   prepare=self.trainer.ensure_states, store=self.store)
        self._handled_any = False

    @property
    def result_base(self) -> str:
        """The committed ``result_uri`` prefix (the CLI sets it once the server has its port)."""
        return self.lifecycle.result_base

    @result_base.setter
    def result_base(self, value: str) -> None:
        self.lifecycle.result_base = value

    # -------------------------------------------------------------- the chain loop
    def run(self) -> int:
        """The chain loop. Returns the process exit code."""
        log.info(
            "worker %s on chain %d, market %s, device %s, artifacts at %s",
            self.address, self.chain.chain_id, self.gateway.market_address,
            self.config.device, self.result_base,
        )
        if self.config.stop != "once":
            self.trainer.start()
        backoff = self.config.poll_s
        try:
            while not self.stopping.is_set():
                try:
                    self.step()
                    backoff = self.config.poll_s
                except NODE_ERRORS as exc:
                    log.warning(
                        "chain loop: %s: %s; retrying in %.0fs (cursor %s)",
                        type(exc).__name__, str(exc)[:300], backoff, self.journal.cursor,
                    )
                    if self.stopping.wait(backoff):
                        break
                    backoff = min(self.config.max_backoff_s, backoff * 2)
                    continue
                if self.config.stop == "once":
                    if (row := self.trainer.next_job()) is not None:
                        self.trainer.train(row)
                        self.step()
                    break
                if self.config.stop == "idle" and self.idle():
                    log.info("worker: every job closed and nothing owed; exiting (--exit-when-idle)")
                    break
                self.stopping.wait(self.config.poll_s)
        except KeyboardInterrupt:
            log.info("worker: interrupted; progress is journaled, restart to resume")
        finally:
            self.stop()
        return 0

    def stop(self) -> None:
        self.stopping.set()
        self.trainer.wake.set()

    def idle(self) -> bool:
        """Every job taken is closed and the market owes nothing (``--exit-when-idle``)."""
        if not self._handled_any or self.journal.active_jobs():
            return False
        return self.gateway.claimable() == 0

    def step(self) -> None:
        """One pass: newly posted jobs, then every held job one action further, then withdraw."""
        head = self.chain.block_number()
        self.clock.observe(self.chain.timestamp(head))
        self.discovery.step(head)
        if self.journal.active_jobs():
            self._handled_any = True
        self.lifecycle.step(head)


__all__ = ["NODE_ERRORS", "Worker"]
