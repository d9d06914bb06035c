"""What every worker does, wherever it runs (this process, a local process, a Ray actor): hold the loaded pipelines
and run one row at a time, turning any failure into that row's error."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from latentsync.batch.jobs import Job
from latentsync.batch.summary import FAILED, OK, RowResult
from latentsync.errors import InputError

RowProgress = Callable[[int, str, int, int], None]  # (row, stage, done, total)


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker loads its pipelines (the single-clip CLI's --device, --dtype, --checkpoints)."""

    device: str | None = None  # None: CUDA when available, else the CPU
    dtype: str | None = None  # None / "auto": float16 on Ampere or newer GPUs, else float32
    checkpoints_dir: str | None = None  # None: $LATENTSYNC_CHECKPOINTS, else the Hugging Face Hub
    sync_scores: bool = False  # also load SyncNet (needed when any row has score_sync)
    debug: bool = False  # put the traceback of unexpected errors in the row's error


class PipelineCache:
    """Pipelines by version, each loaded on first use and reused for every later row; a load that failed is
    remembered, so the rows after it fail at once with the same error instead of loading again."""

    def __init__(self, settings: WorkerSettings):
        self.settings = settings
        self._loaded: dict[str, object] = {}
        self._failed: dict[str, BaseException] = {}

    def get(self, version: str):
        if version in self._failed:
            raise self._failed[version]
        if version not in self._loaded:
            from latentsync.inference.loading import load_pipeline

            s = self.settings
            try:
                self._loaded[version] = load_pipeline(version, device=s.device, dtype=s.dtype,
                                                      checkpoints_dir=s.checkpoints_dir, sync_scores=s.sync_scores)
            except Exception as err:
                self._failed[version] = err
                raise
        return self._loaded[version]


def describe_error(err: BaseException, debug: bool = False) -> str:
    """One line for the summary: a user's problem as its message, anything else with its type (and, with
    ``debug``, the traceback)."""
    if isinstance(err, InputError):
        return str(err)
    text = f"{type(err).__name__}: {err}"
    if debug:
        text += "\n" + "".join(traceback.format_exception(err))
    return text


def run_job(job: Job, pipelines: PipelineCache, progress: RowProgress | None = None) -> RowResult:
    """Run one row; never raises an ``Exception`` (it becomes the row's error). Interrupts still propagate."""
    report = progress or (lambda row, stage, done, total: None)
    try:
        report(job.row, "loading model", 0, 1)
        pipeline = pipelines.get(job.version)
        for name, path in (("video", job.video), ("audio", job.audio)):
            if not Path(path).is_file():
                raise InputError(f"{name} file not found: {path}")
        result = pipeline(job.video, job.audio, job.output, job.options,
                          progress=lambda stage, done, total: report(job.row, stage, done, total))  # fmt: skip
    except Exception as err:
        return RowResult.for_job(job, FAILED, describe_error(err, pipelines.settings.debug))
    return RowResult.for_job(
        job,
        OK,
        frames=result.num_frames,
        seconds=result.seconds,
        frames_with_face=result.frames_with_face,
        sync_c_before=result.sync_before.confidence if result.sync_before else None,
        sync_c_after=result.sync_after.confidence if result.sync_after else None,
        silent_audio=result.silent_audio,
        speaker_turns=_turns_text(result),
    )


def _turns_text(result) -> str:
    """A conversation's turns for the summary (and the frames of a turn whose face was not found); "" otherwise."""
    if result.speaker_turns is None:
        return ""
    from latentsync.inference.conversation import describe_missing, describe_turns

    return "; ".join([describe_turns(list(result.speaker_turns)), *describe_missing(result.turn_frames_without_face)])


def output_exists(job: Job) -> bool:
    """The pipeline writes under a temporary name and renames at the end, so a file there is a finished one. A
    conversation's row also has OUTPUT.speakers.csv and OUTPUT.faces.png beside it (conversation.side_paths, written
    just before the rename): it is finished when both are there too (one deleted by hand makes the row run again)."""
    if not os.path.isfile(job.output):
        return False
    if not job.options.speakers:
        return True
    from latentsync.inference.conversation import side_paths

    return all(path.is_file() for path in side_paths(job.output))
