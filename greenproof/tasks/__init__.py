"""The model-family registry: ``TASKS[name]`` is a :class:`Task`.

A job spec names its family in ``task`` and its hyper-parameters in ``model``;
the family's pydantic ``Config`` validates them (unknown keys are errors).
"""

from __future__ import annotations

from greenproof.tasks.base import FamilyConfig, Task
from greenproof.tasks.cnn import CNNTask
from greenproof.tasks.gpt import GPTTask
from greenproof.tasks.mlp import MLPTask

TASKS: dict[str, Task] = {t.name: t for t in (MLPTask(), CNNTask(), GPTTask())}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r} (known: {', '.join(sorted(TASKS))})") from None


__all__ = ["TASKS", "FamilyConfig", "Task", "get_task"]
