"""``process_dataset``: raw videos in, the filtered, aligned training set and its file list out."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from latentsync.cli_common import check_output_folder
from latentsync.data.engine import (
    ALL_STAGES,
    FILESLIST_STAGE,
    STAGES,
    VIDEO_SUFFIXES,
    RunContext,
    get_stage,
    iter_videos,
    pending_and_retried,
    remove_partial_files,
    stage_inputs,
    stage_records,
    with_weights,
)
from latentsync.data.fileslist import write_fileslist
from latentsync.data.options import DataOptions
from latentsync.data.records import FILESLIST_NAME
from latentsync.data.report import StageReport, format_table, summarise, write_report
from latentsync.errors import InputError


def parse_stages(stages: str | list[str] | None) -> list[str]:
    """``"faces,sync"`` or a list -> stage names in pipeline order (None: all)."""
    if stages is None:
        return list(ALL_STAGES)
    names = [s.strip() for s in stages.split(",")] if isinstance(stages, str) else list(stages)
    unknown = [n for n in names if n not in ALL_STAGES]
    if unknown or not names:
        raise ValueError(f"stages must be a comma-separated subset of {','.join(ALL_STAGES)}; got {stages!r}")
    return [n for n in ALL_STAGES if n in names]


def check_dirs(raw_dir: Path, out_dir: Path) -> None:
    if not raw_dir.is_dir():
        raise InputError(f"RAW_DIR {raw_dir} is not a folder")
    check_output_folder(out_dir, f"OUT_DIR {out_dir}")
    raw, out = raw_dir.resolve(), out_dir.resolve()
    if out == raw or raw in out.parents or out in raw.parents:
        raise InputError(
            f"OUT_DIR {out_dir} must lie outside RAW_DIR {raw_dir} (and not contain it): RAW_DIR is never written"
        )


def process_dataset(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: DataOptions = DataOptions(),
    *,
    stages: str | list[str] | None = None,
    workers: int = 1,
    ray_address: str | None = None,
    use_ray: bool = False,
    show_progress: bool = True,
    quiet: bool = False,
) -> list[StageReport]:
    """Run the stages (all by default) over every video under ``raw_dir``; returns the per-stage report, which is
    also printed (unless ``quiet``) and written to ``out_dir/report.json``. Re-running resumes: finished clips are
    skipped, and clips recorded as an internal error (``error (...)``) are retried. ``use_ray`` (or a
    ``ray_address``) runs the stages as a Ray Data pipeline instead of a local pool."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    options.check()
    check_dirs(raw_dir, out_dir)
    names = parse_stages(stages)
    if STAGES[0].name in names and next(iter_videos(raw_dir), None) is None:  # most likely the wrong folder
        raise InputError(f"RAW_DIR {raw_dir} holds no video files (looked for {', '.join(sorted(VIDEO_SUFFIXES))} "
                         "in it and its sub-folders, hidden ones skipped)")
    out_dir.mkdir(parents=True, exist_ok=True)
    # The weights of the model stages to run are part of their records' settings (CheckpointError when missing).
    context = with_weights(RunContext(raw_dir.resolve(), out_dir.resolve(), options), names)
    remove_partial_files(context)
    if use_ray or ray_address is not None:
        from latentsync.data.runner_ray import RayRunner

        runner = RayRunner(ray_address, workers, show_progress)
    else:
        from latentsync.data.runner_local import LocalRunner

        runner = LocalRunner(workers)
    reports = []
    try:
        for stage in STAGES:
            if stage.name not in names:
                continue
            clips = stage_inputs(stage, context)
            todo, retried = pending_and_retried(stage, clips, context)
            started = time.perf_counter()
            if todo:
                _run_with_progress(runner, stage.name, todo, context, show_progress)
            reports.append(summarise(stage.name, stage_records(stage, clips, context),
                                     time.perf_counter() - started, len(todo), len(retried)))  # fmt: skip
    finally:
        runner.close()
    extra = {}
    if FILESLIST_STAGE in names:
        last = STAGES[-1]
        records = stage_records(last, stage_inputs(last, context), context)
        clips = [context.out_dir / last.folder / rel for record in records for rel in record.outputs]
        # No comment line: the reference trainer reads every non-empty line as a clip path.
        path = write_fileslist(context.out_dir / FILESLIST_NAME, clips)
        extra = {"fileslist": str(path), "fileslist_clips": len(clips)}
    write_report(context.out_dir, reports, {"options": _options_json(options), **extra})
    if not quiet:
        print(format_table(reports), file=sys.stdout)
        if extra:
            print(f"{extra['fileslist_clips']} clips listed in {extra['fileslist']}")
    return reports


def _options_json(options: DataOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in options.__dict__.items()}


def _run_with_progress(runner, stage_name: str, todo: list[str], context: RunContext, show: bool) -> None:
    from tqdm import tqdm

    with tqdm(total=len(todo), desc=f"{get_stage(stage_name).name:>8}", unit="clip", disable=not show,
              file=sys.stderr) as bar:  # fmt: skip
        runner.run_stage(stage_name, todo, context, bar.update)
