"""Checkpoints (safetensors) and the content-addressed artifact store.

An artifact's name is the lowercase hex of its state hash (docs/protocol.md §3); whoever
reads one recomputes the hash and refuses a mismatch. Writes are atomic (temporary
file, fsync, rename, fsync of the directory), so a crash never leaves a half
checkpoint under a valid name.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from greenproof.statehash import state_hash

log = logging.getLogger(__name__)

TrainState = dict[str, torch.Tensor]
MAX_CHECKPOINT_BYTES = int(os.environ.get("GREENPROOF_MAX_CHECKPOINT_BYTES", 8 << 30))


class ArtifactError(RuntimeError):
    """An artifact that is missing, unfetchable or does not match its hash."""


def _to_cpu(state: TrainState) -> TrainState:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def checkpoint_bytes(state: TrainState) -> bytes:
    """The safetensors serialization of ``state``."""
    return st_save(_to_cpu(state))


def state_from_bytes(raw: bytes) -> TrainState:
    try:
        return st_load(raw)
    except Exception as e:  # safetensors raises its own error types
        raise ArtifactError(f"not a safetensors checkpoint: {e}") from None


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def save_checkpoint(state: TrainState, path: str | Path) -> None:
    """Write ``state`` as a safetensors file, atomically."""
    _atomic_write(Path(path), checkpoint_bytes(state))


def load_checkpoint(path: str | Path) -> TrainState:
    """Read a safetensors checkpoint into CPU tensors."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ArtifactError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    return state_from_bytes(raw)


def _parse_hash(h: bytes | str) -> bytes:
    if isinstance(h, str):
        h = bytes.fromhex(h.removeprefix("0x"))
    if len(h) != 32:
        raise ArtifactError(f"a state hash is 32 bytes, got {len(h)}")
    return h


def verified(raw: bytes, h: bytes, where: str) -> TrainState:
    """Decode ``raw`` and check that its state hash is ``h``."""
    state = state_from_bytes(raw)
    got = state_hash(state)
    if got != h:
        raise ArtifactError(f"checkpoint hash mismatch for {where} (expected {h.hex()}, got {got.hex()})")
    return state


class ArtifactStore:
    """Checkpoints named by their state hash under ``root`` (a directory or an fsspec URL)."""

    def __init__(self, root: str | Path):
        self.root = str(root)
        scheme = urlparse(self.root).scheme
        self._local = scheme in ("", "file")
        if self._local:
            self._dir = Path(urlparse(self.root).path if scheme == "file" else self.root).expanduser()
            self._dir.mkdir(parents=True, exist_ok=True)
        else:
            import fsspec

            self._fs, self._base = fsspec.core.url_to_fs(self.root)
            self._fs.makedirs(self._base, exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    def path(self, h: bytes | str) -> str | Path:
        """Where artifact ``h`` lives (a Path for local stores, a URL-ish path otherwise)."""
        name = _parse_hash(h).hex()
        return self._dir / name if self._local else f"{self._base.rstrip('/')}/{name}"

    def has(self, h: bytes | str) -> bool:
        p = self.path(h)
        return Path(p).is_file() if self._local else self._fs.exists(p)

    def put_bytes(self, h: bytes, raw: bytes) -> None:
        """Store an already serialized checkpoint whose hash the caller computed."""
        p = self.path(h)
        if self._local:
            _atomic_write(Path(p), raw)
        else:  # object stores publish a key atomically on upload
            self._fs.pipe_file(p, raw)

    def put(self, state: TrainState) -> bytes:
        """Hash and store ``state``; returns its state hash (no-op if already stored)."""
        h = state_hash(state)
        if not self.has(h):
            self.put_bytes(h, checkpoint_bytes(state))
            log.debug("stored checkpoint %s", h.hex())
        return h

    def open_bytes(self, h: bytes | str) -> BinaryIO:
        """A binary file object with artifact ``h``'s bytes (unverified; for serving)."""
        p = self.path(h)
        try:
            return open(p, "rb") if self._local else self._fs.open(p, "rb")
        except (OSError, FileNotFoundError) as e:
            raise ArtifactError(f"no artifact {_parse_hash(h).hex()} in {self.root}") from e

    def get(self, h: bytes | str) -> TrainState:
        """The state stored under ``h``, after recomputing its hash (ArtifactError on mismatch)."""
        hb = _parse_hash(h)
        with self.open_bytes(hb) as f:
            raw = f.read()
        return verified(raw, hb, f"{self.root}/{hb.hex()}")


def fetch_state(
    result_uri: str, h: bytes | str, timeout: float = 60.0, max_bytes: int = MAX_CHECKPOINT_BYTES
) -> TrainState:
    """Fetch ``{result_uri}/{h hex}`` (http(s), file:// or fsspec) and verify its state hash."""
    hb = _parse_hash(h)
    url = f"{result_uri.rstrip('/')}/{hb.hex()}"
    scheme = urlparse(url).scheme
    try:
        if scheme in ("http", "https"):
            import httpx

            buf = io.BytesIO()
            with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as r:
                if r.status_code != 200:
                    raise ArtifactError(f"checkpoint unfetchable: GET {url} returned HTTP {r.status_code}")
                for chunk in r.iter_bytes():
                    buf.write(chunk)
                    if buf.tell() > max_bytes:
                        raise ArtifactError(f"checkpoint unfetchable: {url} exceeds {max_bytes} bytes")
            raw = buf.getvalue()
        elif scheme in ("", "file"):
            raw = Path(urlparse(url).path if scheme == "file" else url).read_bytes()
        else:
            import fsspec

            with fsspec.open(url, "rb") as f:
                raw = f.read(max_bytes + 1)
            if len(raw) > max_bytes:
                raise ArtifactError(f"checkpoint unfetchable: {url} exceeds {max_bytes} bytes")
    except ArtifactError:
        raise
    except Exception as e:  # httpx, OSError, fsspec backends
        raise ArtifactError(f"checkpoint unfetchable: {url}: {e}") from None
    return verified(raw, hb, url)
