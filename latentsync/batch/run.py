"""One batch, start to end: read the rows, skip those already done, run the rest on the chosen runner, write the
summary. The runners only differ in where rows run; planning, skipping and reporting are here, once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from latentsync.batch.jobs import Job, RowError, read_jobs
from latentsync.batch.summary import FAILED, OK, SKIPPED, RowResult, count_by_status, write_summary
from latentsync.batch.worker import WorkerSettings, output_exists
from latentsync.cli_common import check_output_folder

NOT_RUN = "not run"  # only in the summary of an interrupted batch: rows it did not finish (a re-run does them)
INTERRUPTED_MESSAGE = "the batch was interrupted before this row finished"


@dataclass(frozen=True)
class BatchConfig:
    jobs: Path  # a .csv, a .jsonl or a folder of video/audio pairs
    out_dir: Path
    settings: WorkerSettings = WorkerSettings()
    defaults: Mapping[str, Any] = field(default_factory=dict)  # column values for rows that leave them empty
    workers: int | None = None  # local processes (default 1), or Ray actors (default one per GPU, else 1)
    use_ray: bool = False
    ray_address: str | None = None  # None: a local Ray (or $RAY_ADDRESS); "auto", "ray://head:10001", ...
    show_progress: bool = True


@dataclass(frozen=True)
class BatchReport:
    results: list[RowResult]  # one per row, in row order
    summary_path: Path

    @property
    def counts(self) -> dict[str, int]:
        return count_by_status(self.results)

    @property
    def failed(self) -> int:
        return self.counts[FAILED]


def run_batch(config: BatchConfig) -> BatchReport:
    """Run every row of ``config.jobs`` that has no output yet; one row's failure never stops the others.

    Raises :class:`~latentsync.errors.InputError` only for what stops the whole batch before any row runs: a jobs
    source that cannot be read or lists no rows, an OUT_DIR that is a file, a device or dtype that cannot work here.
    """
    from latentsync.batch.progress import BatchProgress

    # 1. Read and check the rows; those with an output already there are done.
    out_dir = Path(config.out_dir).absolute()
    check_output_folder(out_dir, f"OUT_DIR {out_dir.name}")
    rows = read_jobs(config.jobs, out_dir, config.defaults)
    results: dict[int, RowResult] = {}
    to_run: list[Job] = []
    for row in rows:
        if isinstance(row, RowError):
            results[row.row] = RowResult.for_error(row)
        elif output_exists(row):
            results[row.row] = RowResult.for_job(row, SKIPPED)
        else:
            to_run.append(row)
    settings = replace(config.settings, sync_scores=config.settings.sync_scores
                       or any(job.options.score_sync for job in to_run))  # fmt: skip
    if not config.use_ray:
        _check_device(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    # 2. Run the rest, reporting each row as it finishes.
    progress = BatchProgress(len(rows), enabled=config.show_progress)
    try:
        for result in results.values():
            progress.row_done(result)
        for result in _runner(config, to_run, settings, progress.row_stage):
            results[result.row] = result
            progress.row_done(result)
    finally:
        progress.close()
        # 3. The summary, also when interrupted (then the rows not reached say so). A row whose worker renamed its
        # output into place just before the interrupt, but whose result never came back, is finished (writes are
        # atomic, and a re-run would skip it): it says ok, without the measures that were lost.
        for job in to_run:
            if job.row not in results:
                results[job.row] = (RowResult.for_job(job, OK) if output_exists(job)
                                    else RowResult.for_job(job, NOT_RUN, INTERRUPTED_MESSAGE))  # fmt: skip
        ordered = [results[number] for number in sorted(results)]
        summary_path = write_summary(ordered, out_dir)
    return BatchReport(ordered, summary_path)


def _runner(config: BatchConfig, jobs: list[Job], settings: WorkerSettings, progress) -> Iterator[RowResult]:
    if not jobs:
        return iter(())
    if config.use_ray:
        from latentsync.batch.runner_ray import run_on_ray

        return run_on_ray(jobs, settings, config.ray_address, config.workers, progress)
    from latentsync.batch.runner_local import run_local

    return run_local(jobs, settings, config.workers or 1, progress)


def _check_device(settings: WorkerSettings) -> None:
    """The single-clip CLI's checks, before any model loads: a device or dtype that cannot work is an InputError."""
    from latentsync.devices import parse_device, parse_dtype

    parse_dtype(settings.dtype, parse_device(settings.device))
