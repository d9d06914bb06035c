"""A jobs source (CSV, JSONL or a folder of pairs) → typed rows, each a :class:`Job` or a :class:`RowError`.

A problem with one row (a missing column value, an unknown option, a value of the wrong type, an output another row
already claims) is that row's error, with its line number, and never stops the others; only a source that cannot be
read at all (no such file, no header, no ``video``/``audio`` column) raises :class:`InputError`.

Paths in a jobs file are relative to the file's folder; an explicit ``output`` is relative to the output folder. The
default output is ``OUT_DIR/<video stem>.mp4`` when the audio has the same stem (a folder of pairs), else
``OUT_DIR/<video stem>__<audio stem>.mp4``: a function of the row alone, so a re-run finds the same names.

The ``speakers`` column (a conversation) is empty (one face), ``auto``, or the path of a timeline file, relative to the
jobs file's folder too. The file is read here, when the row is built, and its text is the row's
``LipSyncOptions.speakers``: it travels with the job, so workers (other processes, Ray nodes) never open it.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentsync.batch.options import build_options, canonical_name
from latentsync.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
AUDIO_SUFFIXES = (".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus")
CSV_SUFFIXES, JSONL_SUFFIXES = (".csv",), (".jsonl", ".ndjson")
OUTPUT_SUFFIX = ".mp4"  # the pipeline writes H.264 + AAC in MP4
PAIR_SEPARATOR = "__"  # between the video's and the audio's stems in a default output name
PATH_COLUMNS = ("video", "audio", "output")
SPEAKERS_COLUMN = "speakers"  # "" one face, "auto", or a timeline file's path (its text becomes the option's value)
AUTO_SPEAKERS = "auto"  # (the pipeline's conversation.AUTO; not imported, so that reading rows needs no torch)


@dataclass(frozen=True)
class Job:
    """One row to run: inputs, where its output goes, which model version and which options."""

    row: int  # 1-based position among the source's rows
    line: int | None  # line in the jobs file where the row starts (None for a folder)
    video: Path
    audio: Path
    output: Path
    version: str
    options: Any  # LipSyncOptions (kept untyped here so that importing this module does not import torch)

    @property
    def where(self) -> str:
        return f"row {self.row}" + (f" (line {self.line})" if self.line is not None else f" ({self.video.name})")


@dataclass(frozen=True)
class RowError:
    """A row that cannot run, and why; the paths are as given (may be empty)."""

    row: int
    line: int | None
    message: str
    video: str = ""
    audio: str = ""
    output: str = ""

    @property
    def where(self) -> str:
        return f"row {self.row}" + (f" (line {self.line})" if self.line is not None else "")


def default_output_name(video: Path, audio: Path) -> str:
    if video.stem == audio.stem:
        return video.stem + OUTPUT_SUFFIX
    return f"{video.stem}{PAIR_SEPARATOR}{audio.stem}{OUTPUT_SUFFIX}"


def read_jobs(source: str | os.PathLike, out_dir: str | os.PathLike,
              defaults: Mapping[str, Any] = {}) -> list[Job | RowError]:  # fmt: skip
    """Every row of ``source`` in order, as a :class:`Job` or a :class:`RowError`.

    ``defaults`` (canonical column name → value, e.g. from ``--set steps=30``) fill the columns a row leaves empty.
    """
    source, out_dir = Path(source), Path(out_dir).absolute()
    if source.is_dir():
        raw_rows, base = _folder_rows(source), source
    elif not source.is_file():
        raise InputError(f"JOBS: no such file or folder: {source}")
    elif source.suffix.lower() in CSV_SUFFIXES:
        raw_rows, base = _csv_rows(source), source.parent
    elif source.suffix.lower() in JSONL_SUFFIXES:
        raw_rows, base = _jsonl_rows(source), source.parent
    else:
        raise InputError(
            f"JOBS: {source.name} is not a jobs file; give a .csv, a .jsonl (one JSON object per line) or a folder of "
            f"video/audio pairs"
        )
    rows: list[Job | RowError] = []
    claimed: dict[Path, Job] = {}
    for number, (line, values, problem) in enumerate(raw_rows, start=1):
        row = _make_row(number, line, values, problem, base.absolute(), out_dir, defaults)
        if isinstance(row, Job):
            key = Path(os.path.normcase(os.path.abspath(row.output)))
            first = claimed.setdefault(key, row)
            if first is not row:
                row = RowError(number, line, f"output {row.output} is already the output of {first.where}; give "
                               f"this row its own output", str(row.video), str(row.audio), str(row.output))  # fmt: skip
        rows.append(row)
    if not rows:  # a header with no rows, or a .jsonl of blank lines: most likely the wrong file
        raise InputError(f"JOBS: {source.name} lists no jobs (no rows after the header, or no lines)")
    return rows


RawRow = tuple[int | None, "dict[str, Any]", "str | None"]  # (line, column values, why the row is malformed)


def _make_row(number: int, line: int | None, values: dict[str, Any], problem: str | None, base: Path,
              out_dir: Path, defaults: Mapping[str, Any]) -> Job | RowError:  # fmt: skip
    given = {name: ("" if values.get(name) is None else str(values.get(name)).strip()) for name in PATH_COLUMNS}
    if problem is not None:
        return RowError(number, line, problem, given["video"], given["audio"], given["output"])
    timeline_file = ""  # the speakers column's file, as given (its timeline's errors name it)
    try:
        for name in ("video", "audio"):
            if not given[name]:
                raise InputError(f"the {name} column is empty")
        video, audio = base / given["video"], base / given["audio"]
        if given["output"]:
            output = out_dir / given["output"]
            if output.suffix.lower() != OUTPUT_SUFFIX:
                raise InputError(f"output must be an {OUTPUT_SUFFIX} file, got {given['output']!r}")
        else:
            output = out_dir / default_output_name(video, audio)
        options = {name: value for name, value in values.items() if name not in PATH_COLUMNS}
        speakers = options.pop(SPEAKERS_COLUMN, None)
        if speakers is None or (isinstance(speakers, str) and not speakers.strip()):  # empty: the default, if any
            speakers = defaults.get(SPEAKERS_COLUMN)
        options[SPEAKERS_COLUMN] = timeline_text(speakers, base)
        if options[SPEAKERS_COLUMN] not in ("", AUTO_SPEAKERS):
            timeline_file = speakers.strip()
        version, lipsync_options = build_options(options, {k: v for k, v in defaults.items() if k != SPEAKERS_COLUMN})
    except InputError as err:
        message = str(err)
        prefix = f"{SPEAKERS_COLUMN}: "
        if timeline_file and message.startswith(prefix):  # "speakers: turns.csv: timeline row 2: ..."
            message = f"{prefix}{timeline_file}: {message.removeprefix(prefix)}"
        return RowError(number, line, message, given["video"], given["audio"], given["output"])
    return Job(number, line, video, audio, output, version, lipsync_options)


def timeline_text(value: Any, base: Path) -> str:
    """The ``speakers`` column's value → ``LipSyncOptions.speakers``: "" (empty: one face), "auto", or the text of
    the timeline file it names (relative to ``base``, the jobs file's folder). :class:`InputError` naming the column
    for a file that is missing, unreadable or empty; the timeline itself is checked with the other options."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{SPEAKERS_COLUMN} must be auto or the path of a timeline file (CSV or JSON), got {value!r}")
    name = value.strip()
    if not name or name.lower() == AUTO_SPEAKERS:
        return name.lower()
    path = base / name
    if not path.is_file():
        raise InputError(f"{SPEAKERS_COLUMN}: no timeline file {name} (looked for {path}); give auto, or a CSV or "
                         "JSON file of turns, relative to the jobs file's folder")  # fmt: skip
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a byte-order mark
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{SPEAKERS_COLUMN}: could not read the timeline file {name} as text ({err})") from None
    if not text.strip():  # (an empty text would silently mean "one face")
        raise InputError(f"{SPEAKERS_COLUMN}: the timeline file {name} is empty; it needs rows start,end,speaker")
    return text


def _csv_rows(path: Path) -> Iterator[RawRow]:
    with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets often write a byte-order mark
        reader = csv.reader(file)
        header, header_line = None, 0
        next_line = 1
        for cells in reader:
            line, next_line = next_line, reader.line_num + 1  # a quoted cell may span lines: the row starts here
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header, header_line = [canonical_name(cell) for cell in cells], line
                _check_header(path, header, header_line)
                continue
            if len(cells) > len(header):
                problem = f"{len(cells)} cells but the header (line {header_line}) names {len(header)} columns"
                yield line, {}, problem
                continue
            yield line, {name: cell for name, cell in zip(header, cells) if name}, None
    if header is None:
        raise InputError(f"JOBS: {path.name} is empty; it needs a header line such as: video,audio,output,steps")


def _check_header(path: Path, header: list[str], line: int) -> None:
    duplicates = sorted({name for name in header if name and header.count(name) > 1})
    if duplicates:
        raise InputError(f"JOBS: {path.name} line {line}: column {', '.join(duplicates)} appears more than once")
    missing = [name for name in ("video", "audio") if name not in header]
    if missing:
        raise InputError(
            f"JOBS: {path.name} line {line}: the header has no {' and no '.join(missing)} column; it must name at least "
            f"video and audio, e.g. video,audio,output,steps (got {','.join(header)})"
        )


def _jsonl_rows(path: Path) -> Iterator[RawRow]:
    with open(path, encoding="utf-8-sig") as file:
        for line, text in enumerate(file, start=1):
            if not text.strip():
                continue
            try:
                values = json.loads(text)
            except json.JSONDecodeError as err:
                yield line, {}, f"not valid JSON ({err.msg} at column {err.colno})"
                continue
            if not isinstance(values, dict):
                example = '{"video": ..., "audio": ...}'
                yield line, {}, f"each line must be a JSON object like {example}, got {text.strip()[:60]}"
                continue
            yield line, {canonical_name(str(name)): value for name, value in values.items()}, None


def _folder_rows(folder: Path) -> Iterator[RawRow]:
    """One row per video in ``folder`` (not its subfolders), paired with the audio file of the same stem."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    audios: dict[str, list[Path]] = {}
    for path in files:
        if path.suffix.lower() in AUDIO_SUFFIXES:
            audios.setdefault(path.stem, []).append(path)
    if not videos:
        raise InputError(f"JOBS: the folder {folder} holds no video ({', '.join(VIDEO_SUFFIXES)})")
    video_stems = {video.stem for video in videos}
    for video in videos:
        matches = audios.get(video.stem, [])
        if len(matches) == 1:
            yield None, {"video": video.name, "audio": matches[0].name}, None
        elif not matches:
            problem = f"{video.name} has no audio of the same name ({video.stem}.wav, {video.stem}.mp3, ...)"
            yield None, {"video": video.name}, problem
        else:
            problem = f"{video.name} has several audio files: {', '.join(p.name for p in matches)}; keep one"
            yield None, {"video": video.name}, problem
    for stem, paths in sorted(audios.items()):
        if stem not in video_stems:
            yield None, {"audio": paths[0].name}, f"{paths[0].name} has no video of the same name ({stem}.mp4, ...)"
