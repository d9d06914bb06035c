"""The app's speaker panel for conversations (``LipSyncOptions.speakers``): the "Who speaks" choice and the timeline
editor's rows turned into the one ``speakers`` value of the pipeline call (:func:`speakers_value`,
:func:`timeline_from_rows`, :func:`rows_from_timeline`), and the first frame with every face boxed and numbered
(:func:`faces_preview`) so that a timeline can name faces by id. Part of :mod:`latentsync.app_support`."""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latentsync import media
from latentsync.errors import InputError
from latentsync.inference.conversation import AUTO, parse_speakers
from latentsync.inference.speaker_timeline import COLUMNS, parse_timeline

if TYPE_CHECKING:
    import numpy as np

# "Who speaks": one face (today's speaker picker), a timeline typed in, or turns found in the video's own soundtrack.
ONE_FACE, TIMELINE, AUTOMATIC = "one", "timeline", "auto"
SPEAKER_MODES = (ONE_FACE, TIMELINE, AUTOMATIC)
PREVIEW_SECONDS = 2.0  # the numbered faces are those tracked over the video's first 2 s (50 frames at 25 fps)
PREVIEW_FRAMES = round(PREVIEW_SECONDS * media.VIDEO_FPS)


# ------------------------------------------------------------------------------------------ the timeline editor


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == ""


def _blank_row(row: list[Any]) -> bool:
    """No speaker and no times: every cell empty, or a row added in the editor (gr.Dataframe fills a new row's number
    cells with 0) with no speaker and both times still 0."""
    *times, speaker = row if len(row) == len(COLUMNS) else [*row, None, None, None][: len(COLUMNS)]
    return _blank(speaker) and all(_blank(t) or (isinstance(t, (int, float)) and t == 0) for t in times)


def _cell(cell: Any) -> str:
    """A cell as the timeline's text: numbers without a trailing ".0" (1.0 -> "1"), text stripped."""
    if isinstance(cell, bool):
        return str(cell)
    if isinstance(cell, (int, float)):
        return f"{cell:g}" if math.isfinite(cell) else str(cell)
    return str(cell).strip()


def timeline_from_rows(rows: list[list[Any]] | None) -> str:
    """The editor's rows (``start, end, speaker`` each; a gr.Dataframe of type "array") as the timeline's CSV text
    with a header, blank rows (no speaker, times empty or 0) left out; "" when every row is blank. Not checked here:
    the pipeline's parser says what is wrong with a row (:func:`speakers_value`). A point "x,y" is quoted, as the CSV
    format needs."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    kept = [row for row in rows or [] if not _blank_row(list(row))]
    if not kept:
        return ""
    writer.writerow(COLUMNS)
    writer.writerows([_cell(cell) for cell in row] for row in kept)
    return out.getvalue()


def rows_from_timeline(text: str) -> list[list[Any]]:
    """A timeline's text (CSV or JSON, as the pipeline reads it) as the editor's rows ``[start, end, speaker]``:
    start and end numbers, the speaker as text (a face id "0", or a point "x,y")."""
    return [[turn.start, turn.end, turn.speaker] for turn in parse_timeline(text)]


def speakers_value(mode: str, rows: list[list[Any]] | None) -> str:
    """The ``speakers`` value of the pipeline call from the panel: "" for one face, "auto", or the editor's rows as
    timeline text, checked (an InputError starting "speakers:" names the row and the rule)."""
    if mode == ONE_FACE:
        return ""
    if mode == AUTOMATIC:
        return AUTO
    if mode != TIMELINE:
        raise InputError(f"Who speaks must be one of {', '.join(SPEAKER_MODES)}, got {mode!r}")
    text = timeline_from_rows(rows)
    if not text:
        raise InputError("speakers: the timeline is empty; add a row per turn: start and end in seconds, and the "
                         "speaker's face number from the numbered picture (or choose another 'Who speaks')")
    parse_speakers(text)
    return text


# ------------------------------------------------------------------------------------------ the numbered faces


@dataclass(frozen=True)
class FacesPreview:
    """What the panel shows in Timeline and Automatic mode."""

    image: np.ndarray  # (H, W, 3) uint8 RGB: the first frame, every face there boxed and numbered
    note: str  # which face numbers there are, and where the others appear
    face_ids: tuple[int, ...]  # tracks found in the first PREVIEW_SECONDS, in id order


def faces_preview(face_backend: Any, path: str | os.PathLike) -> FacesPreview:
    """The video's first frame with every face tracked over its first :data:`PREVIEW_SECONDS` boxed and numbered,
    as the lip sync numbers them (the same tracker, on the same 25 fps frames; a face that first appears later gets
    the next number). A photo gets its picture and a note that it takes no turns."""
    from latentsync.app_support.summary import first_frame
    from latentsync.faces.multi_track import draw_tracks, track_all_faces

    info = media.probe(path)
    if info.has_video and info.still_image:
        note = "A photo has one frame, so no turns: choose 'One face (click on it)'."
        return FacesPreview(first_frame(path), note, ())
    frames = media.read_video_frames(path, max_frames=PREVIEW_FRAMES)
    if not len(frames):
        raise InputError(f"{info.path.name}: no frame could be read")
    result = track_all_faces(face_backend, [frames])
    image = draw_tracks(frames[0], result, 0)
    ids = tuple(track.track_id for track in result.tracks)
    seconds = f"{len(frames) / media.VIDEO_FPS:.1f} s"
    if not ids:
        return FacesPreview(image, f"No face found in the first {seconds}: a timeline can still name a face by a "
                                   "point x,y on it in its turn's first frame.", ())  # fmt: skip
    shown = [t.track_id for t in result.tracks if t.box_at(0) is not None]
    later = [f"face {t.track_id} from {t.first_frame / media.VIDEO_FPS:.2f} s" for t in result.tracks
             if t.box_at(0) is None]  # fmt: skip
    parts = [f"Faces numbered in the first frame: {', '.join(map(str, shown))}." if shown else
             "No face in the first frame."]  # fmt: skip
    if later:
        parts.append(f"Appearing later in the first {seconds}: {', '.join(later)}.")
    parts.append("These numbers name the faces in a timeline's speaker column and in the summary's turns (a face "
                 f"that first appears after {seconds} gets the next number).")  # fmt: skip
    return FacesPreview(image, " ".join(parts), ids)
