"""Per-row results, the summary CSV (written atomically into the output folder) and the printed table."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from latentsync.batch.jobs import Job, RowError

SUMMARY_NAME = "summary.csv"
OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(frozen=True)
class RowResult:
    """What happened to one row: the summary's line (plain values only, so it crosses process and Ray boundaries)."""

    row: int
    line: int | None
    status: str  # OK, FAILED or SKIPPED (the output already existed: atomic writes make that mean "complete")
    error: str = ""
    frames: int | None = None  # frames written (= ceil(audio seconds x 25))
    seconds: float | None = None  # wall-clock time of the pipeline call
    frames_with_face: int | None = None
    sync_c_before: float | None = None  # Sync-C of the input as played against the new audio (--sync-scores)
    sync_c_after: float | None = None  # Sync-C of the output
    silent_audio: bool | None = None  # the audio had no speech for the mouth to follow (media.is_silent)
    speaker_turns: str = ""  # a conversation's turns as applied: "0.00-1.20 s face 0, 1.20-2.00 s face 1"
    video: str = ""
    audio: str = ""
    output: str = ""

    @classmethod
    def for_job(cls, job: Job, status: str, error: str = "", **measures) -> RowResult:
        return cls(job.row, job.line, status, error, video=str(job.video), audio=str(job.audio),
                   output=str(job.output), **measures)  # fmt: skip

    @classmethod
    def for_error(cls, row: RowError) -> RowResult:
        return cls(row.row, row.line, FAILED, row.message, video=row.video, audio=row.audio, output=row.output)


COLUMNS = [field.name for field in fields(RowResult)]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def write_summary(results: Iterable[RowResult], out_dir: str | os.PathLike) -> Path:
    """``OUT_DIR/summary.csv``, one line per row in row order, replaced atomically (temp name + ``os.replace``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / SUMMARY_NAME
    tmp = out_dir / f".{SUMMARY_NAME}.{os.getpid()}.partial"  # (not mkstemp: its 0600 mode would stay on the file)
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=COLUMNS)
            writer.writeheader()
            for result in sorted(results, key=lambda r: r.row):
                writer.writerow({name: _cell(value) for name, value in asdict(result).items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_summary(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


TABLE_COLUMNS = [  # (header, attribute, format)
    ("row", "row", "{}"),
    ("line", "line", "{}"),
    ("status", "status", "{}"),
    ("frames", "frames", "{}"),
    ("face", "frames_with_face", "{}"),
    ("seconds", "seconds", "{:.1f}"),
    ("sync-c before", "sync_c_before", "{:.2f}"),
    ("sync-c after", "sync_c_after", "{:.2f}"),
    ("output / error", None, "{}"),
]


def format_table(results: Iterable[RowResult]) -> str:
    """The summary as an aligned text table; the last column is the output, or the error for a failed row."""
    rows = []
    for result in sorted(results, key=lambda r: r.row):
        cells = []
        for _, attribute, fmt in TABLE_COLUMNS:
            if attribute is None:
                text = result.error if result.status == FAILED else Path(result.output).name
                text += f" (turns: {result.speaker_turns})" if result.speaker_turns else ""
                cells.append(text + (" (silent audio)" if result.silent_audio else ""))
                continue
            value = getattr(result, attribute)
            cells.append("" if value is None else fmt.format(value))
        rows.append(cells)
    headers = [header for header, _, _ in TABLE_COLUMNS]
    widths = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(len(headers) - 1)]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + "  " + cells[-1]

    return "\n".join([line(headers), *(line(cells) for cells in rows)])


def count_by_status(results: Iterable[RowResult]) -> dict[str, int]:
    counts = {OK: 0, SKIPPED: 0, FAILED: 0}
    for result in results:
        counts[result.status] = counts.get(result.status, 0) + 1
    return counts
