"""Adversaries: cheating providers, for tests and demos only.

* :mod:`greenproof.adversaries.cheats`: the cheating strategies a worker runs
  with ``greenproof worker run --cheat NAME`` (hidden flag, gets it slashed);
* :mod:`greenproof.adversaries.forgers`: single-boundary forgers (forge the state
  once, train honestly from there; ``--cheat forge_collapse_nowhere`` and kin);
* :mod:`greenproof.adversaries.simulate`: a provider's run (honest or cheating)
  at engine level, no chain, for the adversary tests and ``bench/verify.py``.

The honest worker and verifier never import this package: ``worker.cli`` imports
the cheats only when ``--cheat`` is given, and ``tests/python/test_adversaries.py``
checks that the daemons start without it.
"""
