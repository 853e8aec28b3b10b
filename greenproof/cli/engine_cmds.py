"""``greenproof spec``, ``greenproof train`` and ``greenproof replay``: the engine from a shell."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from greenproof.spec import JobSpec, JobSpecError, load_spec

RUN_FILE = "run.json"


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(f"{type(exc).__name__}: {exc}")


def _load(spec_path: str, check: bool = True, device: object = None) -> JobSpec:
    try:
        return load_spec(spec_path, check=check, device=device)
    except JobSpecError as e:
        raise _fail(e) from None


def _threads(n: int | None) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


device_option = click.option(
    "--device", default=None, metavar="cpu|cuda[:N]", help="Device (default: CUDA when present, else CPU)."
)
threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU intra-op threads (part of the CPU determinism class; default: torch's).",
)


@click.command()
@click.argument("file")
@click.option("--check/--no-check", default=True, show_default=True, help="Fetch and verify the dataset, check memory.")
def spec(file: str, check: bool) -> None:
    """Validate job spec FILE (path or URI) and print its spec hash and a summary."""
    s = _load(file, check=check)
    click.echo(f"spec_hash      0x{s.spec_hash().hex()}")
    click.echo(f"task           {s.task} {json.dumps(s.model, sort_keys=True)}")
    click.echo(f"dataset        {s.dataset.uri}")
    if check:
        data = s.load_data()
        click.echo(f"dataset sha256 {data.sha256} ({len(data)} examples)")
        click.echo(f"memory         ~{s.estimate_memory_bytes() / 2**20:.1f} MiB")
    click.echo(f"optimizer      {s.optimizer.name} lr={s.optimizer.lr} schedule={s.schedule.name}")
    click.echo(
        f"steps          {s.total_steps} = {s.num_segments} segments x {s.segment_steps} "
        f"(batch {s.batch_size}, seed {s.seed}, {s.precision})"
    )
    click.echo(f"data URI       {len(s.to_data_uri())} characters")


@click.command()
@click.option("--spec", "spec_path", required=True, help="Job spec (YAML/JSON path or URI).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Run directory (default: runs/<spec hash>).")
@device_option
@threads_option
@click.option("--job-id", type=click.IntRange(min=0), default=0, show_default=True, help="Job id the commitment is built for.")
def train(spec_path: str, out: Path | None, device: str | None, threads: int | None, job_id: int) -> None:
    """Train a job spec locally and print its commitment (root, final state hash, energy)."""
    from greenproof.engine import select_device
    from greenproof.run import train_run
    from greenproof.store import ArtifactStore

    _threads(threads)
    dev = select_device(device)
    s = _load(spec_path, device=dev)
    out = out or Path("runs") / s.spec_hash().hex()[:12]
    try:
        store = ArtifactStore(out / "checkpoints")
        (out / "spec.json").write_bytes(s.canonical_json())
        record = train_run(s, store, device=dev, progress=True)
    except (JobSpecError, OSError, RuntimeError) as e:
        raise _fail(e) from None
    doc = record.to_json() | {"job_id": job_id, "root": "0x" + record.root(job_id).hex()}
    (out / RUN_FILE).write_text(json.dumps(doc, indent=1))
    click.echo(f"root             0x{record.root(job_id).hex()}  (job id {job_id})")
    click.echo(f"final state hash 0x{record.final_state_hash.hex()}")
    click.echo(f"energy           {record.energy_mj} mJ ({record.energy_mj / 3.6e6:.4f} Wh, source {record.energy_source})")
    click.echo(f"final loss       {record.losses[-1]:.4f} after {len(record.losses)} steps in {record.wall_s:.1f} s on {record.device}")
    click.echo(f"checkpoints      {store.root}  ({record.num_segments + 1} boundaries; run record {out / RUN_FILE})")


@click.command()
@click.option("--spec", "spec_path", required=True, help="Job spec (YAML/JSON path or URI).")
@click.option("--segment", "k", type=click.IntRange(min=0), required=True, help="Segment index to replay.")
@click.option("--from", "run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path), required=True, help="Run directory written by `greenproof train`.")
@click.option("--expect", default=None, metavar="HASH", help="Expected end state hash (default: the run record's).")
@device_option
@threads_option
def replay(spec_path: str, k: int, run_dir: Path, expect: str | None, device: str | None, threads: int | None) -> None:
    """Replay segment K from its start checkpoint and check the end state hash and, in the
    run's determinism class, the work digest of its losses (exit 1 on mismatch)."""
    from greenproof.engine import (
        SegmentError,
        determinism_class,
        param_rel_l2,
        run_segment,
        select_device,
    )
    from greenproof.merkle import work_digest
    from greenproof.run import RunRecord
    from greenproof.statehash import state_hash
    from greenproof.store import ArtifactError, ArtifactStore

    _threads(threads)
    dev = select_device(device)
    s = _load(spec_path, device=dev)
    try:
        record = RunRecord.from_json(json.loads((run_dir / RUN_FILE).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise click.ClickException(f"replay: no readable run record in {run_dir}: {e}") from None
    if record.spec_hash != s.spec_hash():
        raise click.ClickException(f"replay: {run_dir} is a run of spec 0x{record.spec_hash.hex()}, not 0x{s.spec_hash().hex()}")
    if k >= s.num_segments:
        raise click.ClickException(f"replay: segment {k} outside 0..{s.num_segments - 1}")
    try:
        expected = bytes.fromhex(expect.removeprefix("0x")) if expect else record.state_hashes[k + 1]
        if len(expected) != 32:
            raise ValueError
    except ValueError:
        raise click.ClickException(f"replay: --expect {expect!r} is not a 32-byte hex hash") from None
    store = ArtifactStore(run_dir / "checkpoints")
    try:
        start = store.get(record.state_hashes[k])
        t0 = time.perf_counter()
        result = run_segment(s, start, k, dev)
        wall = time.perf_counter() - t0
    except (ArtifactError, SegmentError, JobSpecError) as e:
        raise _fail(e) from None
    got = state_hash(result.state)
    same_class = determinism_class(s, dev) == record.determinism_class
    click.echo(f"segment   {k} (steps {k * s.segment_steps}..{(k + 1) * s.segment_steps - 1}, {wall:.2f} s on {dev})")
    click.echo(f"start     0x{record.state_hashes[k].hex()}")
    click.echo(f"expected  0x{expected.hex()}")
    click.echo(f"replayed  0x{got.hex()}")
    digest_ok = work_digest(result.losses) == record.work_digests[k + 1]
    click.echo(f"losses    work digest {'matches' if digest_ok else 'differs from'} the run record's")
    if got == expected and (digest_ok or not same_class):
        click.echo("MATCH")
        return
    if not same_class and store.has(expected):
        dist = param_rel_l2(result.state, store.get(expected))
        ok = dist <= s.tolerance.rel_l2
        click.echo(f"other determinism class: parameter rel. L2 distance {dist:.3g} (tolerance {s.tolerance.rel_l2:g})")
        if ok:
            click.echo("WITHIN TOLERANCE")
            return
    click.echo("MISMATCH")
    raise SystemExit(1)
