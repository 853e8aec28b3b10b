"""Datasets by URI, verified by sha256.

URIs:

* ``builtin://digits`` — scikit-learn's bundled 8x8 digits (1797 images, 10 classes), no network;
* ``builtin://text/<name>`` — public-domain text shipped in ``greenproof/data/<name>.txt``;
* ``builtin://synthetic?kind=images&n=2048&classes=10&size=8&seed=0`` — seeded class prototypes plus noise;
* ``builtin://synthetic?kind=text&n=65536&vocab=32&seed=0`` — a seeded random Markov chain of tokens;
* a local path, ``file://`` or ``http(s)://``, read through :mod:`greenproof.uri` under
  :func:`dataset_limits` (2 GiB by default, ``GREENPROOF_MAX_DATASET_BYTES``; the deadline
  allows the cap at 1 MiB/s). A pinned http(s) dataset streams to
  ``$GREENPROOF_CACHE/datasets/<sha256>`` (default ``~/.cache/greenproof``), hashed while it
  streams, and is kept there only if it matches. fsspec URLs are no longer read.

Files ending ``.npz`` or ``.safetensors`` hold a classification set (``x``: float
``[N, …]``, ``y``: integer ``[N]``); any other file is a byte-level text corpus.

What the sha256 covers: for files (including ``builtin://text/…``), the file's
bytes, so ``sha256sum`` reproduces it; for generated builtins (``digits``,
``synthetic``), the framed tensor hash of ``{"x", "y"}`` or ``{"tokens"}`` as
``greenproof.statehash`` computes it. ``greenproof spec`` prints the value to pin.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlparse, urlsplit

import torch

from greenproof.statehash import framed_sha256
from greenproof.uri import (
    FetchError,
    FetchHashMismatch,
    FetchLimits,
    FetchTooLarge,
    download,
    read_uri,
)

log = logging.getLogger(__name__)

DATA_DIR = Path(__file__).parent / "data"
MAX_DOWNLOAD_BYTES = int(os.environ.get("GREENPROOF_MAX_DATASET_BYTES", 2 << 30))
DATASET_MIN_RATE_BPS = 1 << 20
TEXT_VOCAB = 256  # byte-level


class DatasetError(ValueError):
    """A dataset that cannot be fetched, parsed or does not match its pinned hash."""


@dataclass(frozen=True)
class ClassificationData:
    x: torch.Tensor  # float32 [N, ...]
    y: torch.Tensor  # int64 [N]
    num_classes: int
    sha256: str
    kind: str = field(default="classification", init=False)

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class TextData:
    tokens: torch.Tensor  # uint8 or int64 [N]
    vocab_size: int
    sha256: str
    kind: str = field(default="text", init=False)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


Dataset = ClassificationData | TextData

# ---------------------------------------------------------------------------- builtins


def builtin_texts() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.txt"))


def _digits() -> ClassificationData:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).to(torch.float32).div_(16.0).unsqueeze(1).contiguous()
    y = torch.from_numpy(d.target).to(torch.int64)
    return ClassificationData(x=x, y=y, num_classes=10, sha256=framed_sha256({"x": x, "y": y}).hex())


def _int_param(params: dict[str, str], name: str, default: int, lo: int, hi: int) -> int:
    try:
        v = int(params.get(name, default))
    except ValueError as e:
        raise DatasetError(f"synthetic dataset parameter {name}={params[name]!r} is not an integer") from e
    if not lo <= v <= hi:
        raise DatasetError(f"synthetic dataset parameter {name}={v} outside {lo}..{hi}")
    return v


def _synthetic(query: str) -> Dataset:
    params = dict(parse_qsl(query))
    kind = params.pop("kind", "images")
    seed = _int_param(params, "seed", 0, 0, 2**63 - 1)
    g = torch.Generator().manual_seed(seed)
    if kind == "images":
        n = _int_param(params, "n", 2048, 1, 10_000_000)
        classes = _int_param(params, "classes", 10, 2, 1000)
        size = _int_param(params, "size", 8, 2, 256)
        known = {"n", "classes", "size", "seed"}
        protos = torch.rand(classes, 1, size, size, generator=g)
        y = torch.randint(0, classes, (n,), generator=g)
        x = (protos[y] + 0.3 * torch.randn(n, 1, size, size, generator=g)).contiguous()
        data: Dataset = ClassificationData(
            x=x, y=y, num_classes=classes, sha256=framed_sha256({"x": x, "y": y}).hex()
        )
    elif kind == "text":
        n = _int_param(params, "n", 65536, 16, 100_000_000)
        vocab = _int_param(params, "vocab", 32, 2, 256)
        known = {"n", "vocab", "seed"}
        # a sparse random Markov chain: each token has a few likely successors
        trans = torch.rand(vocab, vocab, generator=g).pow_(8)
        trans /= trans.sum(dim=1, keepdim=True)
        cdf = trans.to(torch.float64).cumsum(dim=1).tolist()
        draws = torch.rand(n, generator=g, dtype=torch.float64).tolist()
        seq = [0] * n
        for i in range(1, n):  # sequential by nature; plain Python is fast enough here
            seq[i] = min(bisect.bisect_left(cdf[seq[i - 1]], draws[i]), vocab - 1)
        tokens = torch.tensor(seq, dtype=torch.int64)
        tokens = tokens.to(torch.uint8)
        data = TextData(tokens=tokens, vocab_size=vocab, sha256=framed_sha256({"tokens": tokens}).hex())
    else:
        raise DatasetError(f"unknown synthetic dataset kind {kind!r} (known: images, text)")
    unknown = set(params) - known
    if unknown:
        raise DatasetError(f"unknown synthetic dataset parameters for kind={kind}: {sorted(unknown)}")
    return data


def _builtin(uri: str) -> Dataset:
    u = urlparse(uri)
    where = (u.netloc + u.path).rstrip("/")
    if where == "digits":
        return _digits()
    if where == "synthetic":
        return _synthetic(u.query)
    if where.startswith("text/"):
        name = where.removeprefix("text/")
        path = DATA_DIR / f"{name}.txt"
        if not path.is_file() or "/" in name:
            raise DatasetError(f"unknown builtin text {name!r} (known: {', '.join(builtin_texts())})")
        return _parse_file(path.read_bytes(), path.name)
    known = ["builtin://digits", "builtin://synthetic?kind=images|text&…"]
    known += [f"builtin://text/{t}" for t in builtin_texts()]
    raise DatasetError(f"unknown builtin dataset {uri!r} (known: {', '.join(known)})")


# ---------------------------------------------------------------------------- files


def dataset_limits(max_bytes: int = MAX_DOWNLOAD_BYTES) -> FetchLimits:
    """A dataset may take ``max_bytes``, at no less than 1 MiB/s (after a 10 s grace)."""
    return FetchLimits.sized(max_bytes, min_rate_bps=DATASET_MIN_RATE_BPS)


def dataset_cache_path(sha256: str) -> Path:
    """Where a pinned dataset's verified bytes are kept: ``$GREENPROOF_CACHE/datasets/<sha256>``
    (default ``~/.cache/greenproof``). Workers serve it beside their checkpoints; verifiers fill it
    from the provider's copy before trying the requester's URI."""
    root = os.environ.get("GREENPROOF_CACHE") or Path.home() / ".cache" / "greenproof"
    return Path(root) / "datasets" / sha256.lower()


def _read_pinned(uri: str, sha256: str, limits: FetchLimits) -> bytes:
    """A pinned http(s) dataset's bytes, from the content-addressed cache or a verified download."""
    cached = dataset_cache_path(sha256)
    if cached.is_file():
        raw = cached.read_bytes()
        if hashlib.sha256(raw).hexdigest() == sha256:
            return raw
        log.warning("cached dataset %s does not match its name; fetching it again", cached)
        cached.unlink(missing_ok=True)
    return download(uri, cached, limits, sha256=sha256).read_bytes()


def _read_file(uri: str, sha256: str | None, limits: FetchLimits) -> tuple[bytes, str | None]:
    """The raw bytes behind a file-like URI and, when already checked, their sha256."""
    try:
        if sha256 is not None and urlsplit(uri).scheme.lower() in ("http", "https"):
            return _read_pinned(uri, sha256, limits), sha256
        return read_uri(uri, limits), None
    except FetchHashMismatch as e:
        raise DatasetError(f"dataset {e}") from None
    except FetchTooLarge as e:
        raise DatasetError(f"dataset unreachable: {e} (GREENPROOF_MAX_DATASET_BYTES raises the cap)") from None
    except FetchError as e:
        raise DatasetError(f"dataset unreachable: {e}") from None


def _parse_file(raw: bytes, name: str, digest: str | None = None) -> Dataset:
    digest = digest or hashlib.sha256(raw).hexdigest()
    lower = name.lower()
    try:
        if lower.endswith(".npz"):
            import numpy as np

            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                x, y = torch.from_numpy(z["x"]), torch.from_numpy(z["y"])
        elif lower.endswith(".safetensors"):
            from safetensors.torch import load as st_load

            t = st_load(raw)
            x, y = t["x"], t["y"]
        else:
            return TextData(tokens=torch.frombuffer(bytearray(raw), dtype=torch.uint8), vocab_size=TEXT_VOCAB, sha256=digest)
    except KeyError as e:
        raise DatasetError(f"classification dataset {name} needs arrays 'x' and 'y' (missing {e})") from e
    except Exception as e:  # numpy / safetensors parse errors have many types
        raise DatasetError(f"cannot parse dataset {name}: {e}") from e
    if x.shape[0] != y.shape[0] or y.dim() != 1 or y.is_floating_point():
        raise DatasetError(f"dataset {name}: y must be an integer vector as long as x (x {tuple(x.shape)}, y {tuple(y.shape)})")
    y = y.to(torch.int64)
    if len(y) == 0 or int(y.min()) < 0:
        raise DatasetError(f"dataset {name}: labels must be non-negative and the set non-empty")
    return ClassificationData(x=x.to(torch.float32), y=y, num_classes=int(y.max()) + 1, sha256=digest)


# ---------------------------------------------------------------------------- entry point

_cache: dict[str, Dataset] = {}
_lock = threading.Lock()


def load_dataset(uri: str, sha256: str | None = None, *, limits: FetchLimits | None = None) -> Dataset:
    """Load (and cache per process) the dataset at ``uri``; verify ``sha256`` when given.

    Files are read under ``limits`` (default :func:`dataset_limits`); a pinned http(s)
    download is checked against ``sha256`` while it streams.
    """
    sha256 = sha256.lower() if sha256 is not None else None
    with _lock:
        data = _cache.get(uri)
    if data is None:
        if uri.startswith("builtin://"):
            data = _builtin(uri)
        else:
            raw, digest = _read_file(uri, sha256, limits or dataset_limits())
            data = _parse_file(raw, urlparse(uri).path or uri, digest)
        with _lock:
            _cache[uri] = data
        log.info("loaded dataset %s (%d examples, sha256 %s)", uri, len(data), data.sha256)
    if sha256 is not None and sha256 != data.sha256:
        raise DatasetError(f"dataset sha256 mismatch for {uri} (expected {sha256}, got {data.sha256})")
    return data
