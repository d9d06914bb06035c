"""The stage registry and what both runners share: which clips a stage gets, running one clip (with its record),
and collecting the records into the report.

A stage's inputs are the outputs of the previous stage's records for *its* inputs (starting from the video files
found in RAW_DIR), so files left over from other runs are never picked up.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from latentsync.data import stages_media, stages_models
from latentsync.data.options import DataOptions
from latentsync.data.outcome import Outcome
from latentsync.data.records import RECORDS_FOLDER, Record, file_stamp, read_record, write_record

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"})
ERROR_REASON = "error"  # prefix of the reason recorded when a stage raised: "error (RuntimeError)"
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


@dataclass(frozen=True)
class RunContext:
    """Everything a worker needs to run a clip (picklable: sent to processes and Ray actors)."""

    raw_dir: Path
    out_dir: Path
    options: DataOptions


def is_done(record: Record | None, stage: Stage, source: Path, options: DataOptions) -> bool:
    if record is None or record.params != options.stage_params(stage.name):
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
    if is_done(existing, stage, source, options):
        return existing
    if models is None and stage.uses_models:
        from latentsync.data.models import models_for

        models = models_for(options)
    stamp = file_stamp(source)
    try:
        outcome = stage.run(source, rel, output_folder(stage, context.raw_dir, context.out_dir), options, models)
    except Exception as err:  # one bad clip never stops the run
        outcome = Outcome(dropped=f"{ERROR_REASON} ({type(err).__name__})", detail=str(err)[-DETAIL_CHARS:])
    record = Record(stage=stage.name, input=rel, outputs=outcome.outputs, dropped=outcome.dropped,
                    detail=outcome.detail, pieces_dropped=outcome.pieces_dropped, metrics=outcome.metrics,
                    input_stamp=stamp, params=options.stage_params(stage.name))  # fmt: skip
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
    """The clips of ``stage`` without a current record (what is left to do)."""
    source = source_folder(stage, context.raw_dir, context.out_dir)
    return [rel for rel in clips if not is_done(read_record(context.out_dir, stage.name, rel), stage, source / rel,
                                                context.options)]  # fmt: skip


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
