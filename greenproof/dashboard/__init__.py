"""The web dashboard and JSON API (FastAPI): ``create_app`` builds it, ``greenproof dashboard`` serves it."""

from greenproof.dashboard.app import SnapshotSource, StaticSource, create_app

__all__ = ["SnapshotSource", "StaticSource", "create_app"]
