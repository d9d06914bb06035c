"""Where a run writes, and the per-clip records that make it resumable.

Layout under OUT_DIR (every stage mirrors the sub-folders of RAW_DIR)::

    resampled/<rel>.mp4            stage 2      segments/<rel>_shot_001_000.mp4   stage 4
    shots/<rel>_shot_001.mp4       stage 3      faces/<rel>_shot_001_000.mp4      stage 5 (aligned faces)
    synced/...  quality/...        stages 6, 7  fileslist.txt                     stage 8
    records/<stage>/<input rel>.json            one per (stage, input clip): outputs, or why it was dropped
    report.json                                 per stage: clips in / out / dropped by reason

Every file is written under a temporary name and moved into place with ``os.replace``; a stage's record is written
last, after all its outputs, so a record that exists means the clip is done. A record is reused only when its input
file is unchanged (size and modification time), the stage's settings (and weights) match and it is not an internal
error (``error (...)``); otherwise the clip is redone. Distinct inputs get distinct outputs (:func:`mp4_name`).
Nothing is ever written into RAW_DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

RECORDS_FOLDER = "records"
REPORT_NAME = "report.json"
FILESLIST_NAME = "fileslist.txt"
TMP_PREFIX = ".tmp-"
# The files RAW_DIR is searched for (compared in lower case).
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"})  # partial files and folders; never listed, removed by the stage that made them


@dataclass
class Record:
    """What one stage did with one input clip. Paths are relative: ``input`` to the stage's source folder,
    ``outputs`` to the stage's output folder (for the check stage, which writes nothing, to RAW_DIR)."""

    stage: str
    input: str
    outputs: list[str] = field(default_factory=list)
    dropped: str | None = None  # why the whole clip was dropped (None: kept, or split into `outputs`)
    detail: str = ""  # the error message or measured values behind the decision
    pieces_dropped: dict[str, int] = field(default_factory=dict)  # reason -> pieces dropped (multi-output stages)
    metrics: dict = field(default_factory=dict)  # e.g. sync offset/confidence, quality score
    input_stamp: list[int] = field(default_factory=list)  # [size, mtime_ns] of the input when processed
    params: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, text: str) -> Record:
        return cls(**json.loads(text))


def file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def record_path(out_dir: Path, stage: str, rel: str) -> Path:
    return out_dir / RECORDS_FOLDER / stage / f"{rel}.json"


def read_record(out_dir: Path, stage: str, rel: str) -> Record | None:
    path = record_path(out_dir, stage, rel)
    try:
        return Record.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None  # missing, or (impossible with atomic writes, but harmless) unreadable: redo


def tmp_path_for(path: Path) -> Path:
    """A unique temporary name beside ``path`` (same folder, so ``os.replace`` is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")


def write_text_atomic(path: Path, text: str) -> None:
    tmp = tmp_path_for(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_record(out_dir: Path, record: Record) -> None:
    write_text_atomic(record_path(out_dir, record.stage, record.input), json.dumps(asdict(record), indent=1))


def copy_atomic(source: Path, dest: Path) -> None:
    """``dest`` becomes a copy of ``source`` (a hard link when both share a file system), atomically."""
    tmp = tmp_path_for(dest)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, dest)


MP4_SUFFIX = ".mp4"


def mp4_name(rel: str) -> str:
    """Output name of an input clip, distinct for distinct inputs: ``a/b.mp4`` stays; any other name gets ``.mp4``
    appended: ``a/b.mov`` -> ``a/b.mov.mp4``, ``a/b.MP4`` -> ``a/b.MP4.mp4``, and ``x.mov.mp4`` (a name that looks
    like an output already) -> ``x.mov.mp4.mp4``.

    Why it never collides: a name kept as it is ends with ``.mp4`` and, without it, has no video suffix; an appended
    name, without its ``.mp4``, is the input, which has one (the toolchain only picks up ``VIDEO_SUFFIXES``).
    """
    if rel.endswith(MP4_SUFFIX):
        inner = rel[: -len(MP4_SUFFIX)]
        if os.path.splitext(inner)[1].lower() not in VIDEO_SUFFIXES:
            return rel
    return f"{rel}{MP4_SUFFIX}"


def stem_of(rel: str) -> str:
    """``a/b.mp4`` -> ``a/b`` (the base for numbered pieces ``a/b_shot_001.mp4``); outputs of the earlier stages always
    end with ``.mp4``, so distinct outputs have distinct stems."""
    return rel.removesuffix(MP4_SUFFIX)
