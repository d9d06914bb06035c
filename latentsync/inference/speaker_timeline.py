"""A conversation's speaker timeline: rows ``start, end, speaker`` (CSV or JSON), checked, resolved to face tracks.

``start`` and ``end`` are seconds on the video's timeline; ``speaker`` is a face id from
:mod:`latentsync.faces.multi_track` (``python -m latentsync.faces VIDEO`` prints them) or a point ``"x,y"`` on that
person's face in the turn's first frame, in pixels, or as fractions of the width and height when both values are
at most 1. Turns may overlap (two people talking at once). See docs/conversations.md for the format with examples.
The pipeline takes a timeline as ``LipSyncOptions.speakers`` (:mod:`latentsync.inference.conversation`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentsync.errors import InputError
from latentsync.faces.multi_track import MultiTrackResult
from latentsync.media.probe import VIDEO_FPS

COLUMNS = ("start", "end", "speaker")
MAX_FRACTION = 1.0  # a point whose coordinates are both at most this is in fractions of the frame


@dataclass(frozen=True)
class Turn:
    """One row: who speaks from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    face_id: int | None = None  # exactly one of face_id and point is set
    point: tuple[float, float] | None = None  # (x, y), pixels or fractions (both <= 1)

    @property
    def speaker(self) -> str:
        """The speaker as written in a timeline file."""
        return str(self.face_id) if self.face_id is not None else f"{self.point[0]:g},{self.point[1]:g}"


@dataclass(frozen=True)
class ResolvedTurn:
    """A turn tied to a face track, in frames of the 25 fps timeline."""

    turn: Turn
    track_id: int
    first_frame: int  # inclusive
    end_frame: int  # exclusive
    missing_frames: tuple[int, ...]  # frames of the turn where its face was not detected (passed through)


def _number(value, row: int, column: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"timeline row {row}: {column} must be a number of seconds, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise InputError(f"timeline row {row}: {column} must be a finite number of seconds >= 0, got {value!r}")
    return number


def _speaker(value, row: int) -> tuple[int | None, tuple[float, float] | None]:
    """A face id (int) or a point "x,y" (or [x, y]) -> (face_id, point)."""
    if isinstance(value, bool):
        value = None  # JSON true/false is neither
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return int(value), None
    parts = value if isinstance(value, (list, tuple)) else str(value).split(",") if isinstance(value, str) else []
    try:
        x, y = (float(p) for p in parts)
    except (TypeError, ValueError):
        x = y = float("nan")
    if not (math.isfinite(x) and math.isfinite(y) and x >= 0 and y >= 0):
        raise InputError(f"timeline row {row}: speaker must be a face id (0, 1, ...) or a point \"x,y\" on the "
                         f"face (pixels, or fractions <= 1 of the frame), got {value!r}")  # fmt: skip
    return None, (x, y)


def _turn(record: dict, row: int) -> Turn:
    missing = [c for c in COLUMNS if c not in record or record[c] in (None, "")]
    if missing:
        raise InputError(f"timeline row {row}: missing {', '.join(missing)} (each row needs start, end, speaker)")
    start, end = _number(record["start"], row, "start"), _number(record["end"], row, "end")
    if end <= start:
        raise InputError(f"timeline row {row}: end ({end:g} s) must be after start ({start:g} s)")
    face_id, point = _speaker(record["speaker"], row)
    return Turn(start, end, face_id, point)


def parse_timeline(text: str) -> list[Turn]:
    """Turns from CSV (``start,end,speaker`` rows, header optional, a point quoted: ``1.5,3,"120,80"``) or JSON
    (a list of ``{"start", "end", "speaker"}`` objects). Rows are numbered from 1 in errors, the header excluded."""
    stripped = text.lstrip("\ufeff").strip()  # (a byte-order mark, as spreadsheets write, is not content)
    if not stripped:
        raise InputError("timeline is empty: give rows of start, end, speaker")
    if stripped[0] in "[{":
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise InputError(f"timeline: not valid JSON ({err})") from None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise InputError('timeline JSON must be a list of {"start": s, "end": s, "speaker": id or "x,y"} objects')
        return [_turn(item, i + 1) for i, item in enumerate(data)]
    rows = [r for r in csv.reader(io.StringIO(stripped)) if any(cell.strip() for cell in r)]
    if rows and [cell.strip().lower() for cell in rows[0]] == list(COLUMNS):
        rows = rows[1:]
    turns = []
    for i, cells in enumerate(rows, start=1):
        if len(cells) != len(COLUMNS):
            raise InputError(f"timeline row {i}: expected 3 columns start, end, speaker (quote a point: \"x,y\"), "
                             f"got {len(cells)}: {','.join(cells)!r}")  # fmt: skip
        turns.append(_turn(dict(zip(COLUMNS, (c.strip() for c in cells))), i))
    if not turns:
        raise InputError("timeline has no rows: give rows of start, end, speaker")
    return turns


def read_timeline(path: str | Path) -> list[Turn]:
    """:func:`parse_timeline` of a file (``.csv`` or ``.json``; the content decides)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"speakers: timeline file not found: {path.name}")
    return parse_timeline(path.read_text(encoding="utf-8"))


def format_timeline(turns: list[Turn], fmt: str = "csv") -> str:
    """Turns as ``parse_timeline`` reads them: ``fmt`` "csv" (with a header) or "json"."""
    if fmt == "json":
        return json.dumps([{"start": t.start, "end": t.end,
                            "speaker": t.face_id if t.face_id is not None else t.speaker} for t in turns], indent=1)  # fmt: skip
    if fmt != "csv":
        raise ValueError(f"fmt must be 'csv' or 'json', got {fmt!r}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([f"{t.start:g}", f"{t.end:g}", t.speaker] for t in turns)
    return out.getvalue()


def write_timeline(turns: list[Turn], path: str | Path) -> Path:
    """Write ``turns`` to ``path``, JSON for a ``.json`` suffix, else CSV."""
    path = Path(path)
    path.write_text(format_timeline(turns, "json" if path.suffix.lower() == ".json" else "csv"), encoding="utf-8")
    return path


def _track_at_point(result: MultiTrackResult, point: tuple[float, float], frame: int, row: int) -> int:
    width, height = result.frame_size
    x, y = point
    if x <= MAX_FRACTION and y <= MAX_FRACTION:
        x, y = x * width, y * height
    present = [(t.track_id, t.box_at(frame)) for t in result.tracks if t.box_at(frame) is not None]
    inside = [(tid, box) for tid, box in present if box[0] <= x <= box[2] and box[1] <= y <= box[3]]
    if not inside:
        boxes = "; ".join(f"face {tid}: ({b[0]:.0f}, {b[1]:.0f})-({b[2]:.0f}, {b[3]:.0f})" for tid, b in present)
        raise InputError(f"timeline row {row}: the point ({x:g}, {y:g}) px is on no face in frame {frame} (the "
                         f"turn's first frame); faces there: {boxes or 'none'}")  # fmt: skip
    centre = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
    return min(inside, key=lambda item: float(np.linalg.norm(centre(item[1]) - (x, y))))[0]


def resolve_turns(turns: list[Turn], result: MultiTrackResult, fps: int = VIDEO_FPS) -> list[ResolvedTurn]:
    """Tie each turn to a face track. InputError for a turn that starts after the video, an unknown face id, or a
    point on no face in the turn's first frame; frames of a turn without its face are listed, not refused."""
    ids = [t.track_id for t in result.tracks]
    resolved = []
    for row, turn in enumerate(turns, start=1):
        first = round(turn.start * fps)
        end = min(round(turn.end * fps), result.num_frames)
        if first >= result.num_frames or end <= first:
            raise InputError(f"timeline row {row}: the turn {turn.start:g}-{turn.end:g} s lies outside the video "
                             f"({result.num_frames / fps:g} s)")  # fmt: skip
        if turn.face_id is not None:
            if turn.face_id not in ids:
                raise InputError(f"timeline row {row}: no face {turn.face_id} in the video; face ids: "
                                 f"{', '.join(map(str, ids)) or 'none (no face found)'}")  # fmt: skip
            track_id = turn.face_id
        else:
            track_id = _track_at_point(result, turn.point, first, row)
        present = result.track(track_id).present[first:end]
        missing = tuple(int(f) for f in np.flatnonzero(~present) + first)
        resolved.append(ResolvedTurn(turn, track_id, first, end, missing))
    return resolved
