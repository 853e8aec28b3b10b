"""Finding the dev node: PATH first, then the repository's pinned anvil, else a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from greenproof.chain import devnet
from greenproof.cli import cli


def test_anvil_is_found_without_path_through_the_project_pin(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert devnet.PROJECT_ANVIL.exists(), "make setup installs anvil into node_modules/.bin"
    found = Path(devnet.anvil_binary())
    assert found.name == "anvil" and os.access(found, os.X_OK)


def test_missing_anvil_is_one_clear_line_from_the_demo(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(devnet, "PROJECT_ANVIL", tmp_path / "no-anvil")
    with pytest.raises(devnet.DevnetError, match="run `make setup`"):
        devnet.anvil_binary()
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    assert "`anvil` not found on PATH; run `make setup`" in result.output
    assert "Traceback" not in result.output
