"""The stage registry and what both runners share: which clips a stage gets, running one clip (with its record),
and collecting the records into the report.

A stage's inputs are the outputs of the previous stage's records for *its* inputs (starting from the video files
found in RAW_DIR), so files left over from other runs are never picked up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from latentsync.data import stages_media, stages_models
from latentsync.data.options import DataOptions
from latentsync.data.outcome import Outcome
from latentsync.data.records import (  # VIDEO_SUFFIXES: also imported from here
    RECORDS_FOLDER,
    VIDEO_SUFFIXES,
    Record,
    file_stamp,
    read_record,
    write_record,
)

# Prefix of every reason that is not about the clip: a stage raised ("error (RuntimeError)"), a worker process died,
# a Ray worker was lost, the models did not load. Such records are redone by the next run (these failures are often
# transient: a download, out of memory, a killed node); drops for a reason about the clip stay done.
ERROR_REASON = "error"
DETAIL_CHARS = 800  # characters of an error message kept in a record


@dataclass(frozen=True)
class Stage:
    name: str
    folder: str | None  # output folder under OUT_DIR (None: writes nothing; its outputs are its inputs)
    run: Callable[..., Outcome]
    uses_models: bool  # loads networks: an actor pool (with GPUs when there are) on Ray


STAGES: tuple[Stage, ...] = (
    Stage("check", None, stages_media.check, False),
    Stage("resample", "resampled", stages_media.resample, False),
    Stage("shots", "shots", stages_media.shots, False),
    Stage("segment", "segments", stages_media.segment, False),
    Stage("faces", "faces", stages_models.faces, True),
    Stage("sync", "synced", stages_models.sync, True),
    Stage("quality", "quality", stages_models.quality, True),
)
STAGE_NAMES = tuple(s.name for s in STAGES)
FILESLIST_STAGE = "fileslist"  # stage 8: not per clip
ALL_STAGES = (*STAGE_NAMES, FILESLIST_STAGE)


def get_stage(name: str) -> Stage:
    for stage in STAGES:
        if stage.name == name:
            return stage
    raise ValueError(f"unknown stage {name!r}; available: {', '.join(ALL_STAGES)}")


def source_folder(stage: Stage, raw_dir: Path, out_dir: Path) -> Path:
    """Where ``stage`` reads its inputs: RAW_DIR for the first two, else the previous stage's output folder."""
    index = STAGES.index(stage)
    previous = STAGES[index - 1] if index else None
    return raw_dir if previous is None or previous.folder is None else out_dir / previous.folder


def output_folder(stage: Stage, raw_dir: Path, out_dir: Path) -> Path:
    return raw_dir if stage.folder is None else out_dir / stage.folder


def iter_videos(raw_dir: Path) -> Iterator[str]:
    """Video files under ``raw_dir`` (by suffix; hidden files and folders skipped), relative POSIX paths, as found."""
    for root, dirs, files in os.walk(raw_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in VIDEO_SUFFIXES:
                yield (Path(root) / name).relative_to(raw_dir).as_posix()


def find_videos(raw_dir: Path) -> list[str]:
    """:func:`iter_videos`, sorted."""
    return sorted(iter_videos(raw_dir))


def internal_error_reason(exception_type: str) -> str:
    return f"{ERROR_REASON} ({exception_type})"


def is_internal_error(reason: str | None) -> bool:
    """A record dropped for a failure of the machinery, not for something about the clip."""
    return reason is not None and (reason == ERROR_REASON or reason.startswith(f"{ERROR_REASON} ("))


@dataclass(frozen=True)
class RunContext:
    """Everything a worker needs to run a clip (picklable: sent to processes and Ray actors).

    ``weights``: stage name -> identity of the weights it uses (:func:`latentsync.data.weights.weights_identity`),
    filled by :func:`with_weights` for the model stages of a run; part of the settings a record is checked against.
    """

    raw_dir: Path
    out_dir: Path
    options: DataOptions
    weights: dict = field(default_factory=dict)

    def stage_params(self, stage_name: str) -> dict:
        """The settings that change what ``stage_name`` produces: the options' and the identity of its weights."""
        params = self.options.stage_params(stage_name)
        if self.weights.get(stage_name):
            params = {**params, "weights": self.weights[stage_name]}
        return params


def with_weights(context: RunContext, stage_names: list[str]) -> RunContext:
    """``context`` with the weights' identity of each model stage in ``stage_names`` (CheckpointError, naming the
    files, when some are missing)."""
    from latentsync.data.weights import weights_identity

    return replace(context, weights={**context.weights, **{s.name: weights_identity(s.name, context.options)
                                                           for s in STAGES if s.uses_models and s.name in stage_names}})


def is_done(record: Record | None, stage: Stage, source: Path, context: RunContext) -> bool:
    """The clip needs no work: its record is current and not an internal error."""
    return record is not None and not is_internal_error(record.dropped) and is_current(record, stage, source, context)


def is_current(record: Record | None, stage: Stage, source: Path, context: RunContext) -> bool:
    """The record was made with the same settings (and weights) from the same input file (size and mtime)."""
    if record is None or record.params != context.stage_params(stage.name):
        return False
    try:
        return record.input_stamp == file_stamp(source)
    except OSError:
        return False


def process_clip(stage_name: str, rel: str, context: RunContext, models=None) -> Record:
    """Run ``stage_name`` on one clip unless its record is current; write and return the record.

    Never raises for a problem with the clip: errors become a record with the reason ``error (Type)``.
    """
    stage = get_stage(stage_name)
    options = context.options
    source = source_folder(stage, context.raw_dir, context.out_dir) / rel
    existing = read_record(context.out_dir, stage.name, rel)
    if is_done(existing, stage, source, context):
        return existing
    if models is None and stage.uses_models:
        from latentsync.data.models import models_for

        models = models_for(options)
    stamp = file_stamp(source)
    try:
        outcome = stage.run(source, rel, output_folder(stage, context.raw_dir, context.out_dir), options, models)
    except Exception as err:  # one bad clip never stops the run
        outcome = Outcome(dropped=internal_error_reason(type(err).__name__), detail=str(err)[-DETAIL_CHARS:])
    record = Record(stage=stage.name, input=rel, outputs=outcome.outputs, dropped=outcome.dropped,
                    detail=outcome.detail, pieces_dropped=outcome.pieces_dropped, metrics=outcome.metrics,
                    input_stamp=stamp, params=context.stage_params(stage.name))  # fmt: skip
    write_record(context.out_dir, record)
    return record


def record_failure(stage_name: str, rel: str, context: RunContext, reason: str, detail: str) -> Record:
    """Record that ``rel`` could not be processed for a reason outside the stage function (a dead worker, models that
    did not load); ``reason`` is an internal error, so the next run retries the clip."""
    stage = get_stage(stage_name)
    source = source_folder(stage, context.raw_dir, context.out_dir) / rel
    try:
        stamp = file_stamp(source)
    except OSError:
        stamp = []
    record = Record(stage=stage_name, input=rel, dropped=reason, detail=detail[-DETAIL_CHARS:], input_stamp=stamp,
                    params=context.stage_params(stage_name))  # fmt: skip
    write_record(context.out_dir, record)
    return record


def stage_inputs(stage: Stage, context: RunContext) -> list[str]:
    """The clips ``stage`` processes: RAW_DIR's videos for the first stage, else the outputs of the previous
    stage's records. Raises ValueError naming the stage to run first when an earlier stage has not finished."""
    clips = find_videos(context.raw_dir)
    for earlier in STAGES[: STAGES.index(stage)]:
        outputs = []
        for rel in clips:
            record = read_record(context.out_dir, earlier.name, rel)
            if record is None:
                raise ValueError(f"stage {earlier.name!r} has not processed {rel}: run it first (--stages)")
            outputs += record.outputs
        clips = outputs
    return clips


def stage_records(stage: Stage, clips: list[str], context: RunContext) -> list[Record]:
    records = [read_record(context.out_dir, stage.name, rel) for rel in clips]
    missing = [rel for rel, r in zip(clips, records) if r is None]
    if missing:
        raise RuntimeError(f"stage {stage.name!r} left {len(missing)} clips without a record, e.g. {missing[0]}")
    return records


def pending(stage: Stage, clips: list[str], context: RunContext) -> list[str]:
    """The clips of ``stage`` left to do: without a current record, or with an internal error."""
    return pending_and_retried(stage, clips, context)[0]


def unrecorded(stage: Stage, clips: list[str], context: RunContext) -> list[str]:
    """The clips of ``stage`` without a current record (an internal error recorded by this run counts as one)."""
    source = source_folder(stage, context.raw_dir, context.out_dir)
    return [rel for rel in clips
            if not is_current(read_record(context.out_dir, stage.name, rel), stage, source / rel, context)]  # fmt: skip


def pending_and_retried(stage: Stage, clips: list[str], context: RunContext) -> tuple[list[str], list[str]]:
    """(the clips of ``stage`` left to do, those of them whose record is an internal error: retried)."""
    source = source_folder(stage, context.raw_dir, context.out_dir)
    todo, retried = [], []
    for rel in clips:
        record = read_record(context.out_dir, stage.name, rel)
        if not is_done(record, stage, source / rel, context):
            todo.append(rel)
            if record is not None and is_internal_error(record.dropped):
                retried.append(rel)
    return todo, retried


def remove_partial_files(context: RunContext) -> None:
    """Leftovers of an interrupted run, which nothing will finish: every hidden entry (temporary files and folders
    start with ".") in the folders this toolchain owns under OUT_DIR. Call only when no other run uses OUT_DIR."""
    import shutil

    folders = [context.out_dir / s.folder for s in STAGES if s.folder] + [context.out_dir / RECORDS_FOLDER]
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob(".*"), reverse=True):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
