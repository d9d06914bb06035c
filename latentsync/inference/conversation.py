"""Conversations (``LipSyncOptions.speakers``): several people in one video, each mouth re-generated only during
that person's turns.

The face pass tracks every face (:mod:`latentsync.faces.multi_track`); the timeline of turns comes from the user
(:mod:`~latentsync.inference.speaker_timeline`, CSV or JSON text) or from who speaks in the video's own soundtrack
(:mod:`~latentsync.inference.speaker_detection`, ``speakers="auto"``). Each face that has a turn becomes a
:class:`SpeakerLane`: its own gap-filled, smoothed landmarks (the one-face tracker's
:func:`~latentsync.faces.tracking.resolve_track`), the frames it is lip-synced in (its turns, where the face is
there) and a weight per frame. The weight fades the generated face in over the first :data:`FADE_FRAMES` frames of
a run of lip-synced frames and out over its last ones (a cosine ramp), so that a mouth hands over at a turn boundary
without a jump; at the video's first and last frame there is nothing to hand over from, so no fade. Every pixel
outside a lane's lip-synced frames, and every face without a turn, keeps its original value.

Turns are in seconds of the video (frames of its 25 fps timeline); when a shorter video is repeated to fit longer
speech, a repeated frame carries the turns of the frame it repeats.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentsync.errors import InputError
from latentsync.faces import FaceTrack, anchor_points, estimate_affines
from latentsync.faces.multi_track import MultiFaceTrack, MultiTrackResult, draw_tracks
from latentsync.faces.tracking import TrackRecords, resolve_track
from latentsync.inference.speaker_timeline import ResolvedTurn, Turn, format_timeline, parse_timeline

AUTO = "auto"  # LipSyncOptions.speakers: find who speaks from the video's own soundtrack
FADE_FRAMES = 6  # frames (0.24 s at 25 fps) over which a face's generated mouth fades in or out at a turn's edge
TIMELINE_SUFFIX = ".speakers.csv"  # written next to the output: the timeline used, with face ids
FACES_SUFFIX = ".faces.png"  # written next to the output: the first frame with every face boxed and numbered


def is_automatic(value: str) -> bool:
    """``LipSyncOptions.speakers`` asks for the turns to be found (``"auto"``, any case and spacing)."""
    return isinstance(value, str) and value.strip().lower() == AUTO


def parse_speakers(value: str) -> list[Turn] | None:
    """``LipSyncOptions.speakers`` -> the turns of a timeline, or None for ``"auto"``. InputError (prefixed
    ``speakers:``) for anything else than "auto" or a valid CSV / JSON timeline."""
    if not isinstance(value, str):
        raise InputError(f"speakers must be text: 'auto' or a timeline (CSV or JSON), got {value!r}")
    if is_automatic(value):
        return None
    try:
        return parse_timeline(value)
    except InputError as err:
        hint = ""
        if "\n" not in value.strip() and value.strip().lower().endswith((".csv", ".json")):
            hint = " (this looks like a file name: give the file's contents, or --speakers FILE on the command line)"
        raise InputError(f"speakers: {err}{hint}") from None


@dataclass(frozen=True)
class SpeakerLane:
    """One face with turns: what the generation pass needs to lip-sync it, per frame of the video."""

    track_id: int
    track: FaceTrack  # this face's gap-filled, smoothed landmarks (NaN rows where it is not usable)
    active: np.ndarray  # (N,) bool: lip-synced here (inside one of its turns, and the face is there)
    weight: np.ndarray  # (N,) float32 in [0, 1]: how much of the generated face is shown (fades at the edges)
    matrices: np.ndarray  # (N, 2, 3) float32 alignments, NaN where the face is not usable


def face_track(face: MultiFaceTrack) -> FaceTrack:
    """One tracked face as the one-face pipeline's :class:`FaceTrack` (short gaps filled, landmarks smoothed)."""
    return resolve_track(TrackRecords(face.landmarks, face.boxes, face.small))


def fade_weights(active: np.ndarray, fade: int) -> np.ndarray:
    """(N,) float32 weights for (N,) bool ``active``: 0 where inactive; inside each run of active frames a cosine
    ramp up over its first ``fade`` frames and down over its last ``fade`` (both in a run too short for both), none
    at the video's first or last frame."""
    active = np.asarray(active, dtype=bool)
    n = len(active)
    weight = np.zeros(n, np.float32)
    ramp = lambda k: 0.5 - 0.5 * math.cos(math.pi * k / (fade + 1))  # noqa: E731 -- k = 1 .. fade: (0, 1)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], active.astype(np.int8), [0]])))
    for start, stop in zip(edges[0::2], edges[1::2]):
        for k in range(start, stop):
            into = k - start + 1 if start > 0 else fade + 1  # frames from the run's start (no fade at frame 0)
            left = stop - k if stop < n else fade + 1  # frames to the run's end (no fade at the last frame)
            weight[k] = ramp(min(into, left, fade + 1))
    return weight


def build_lanes(result: MultiTrackResult, turns: list[ResolvedTurn], resolution: int,
                fade: int | None = None) -> list[SpeakerLane]:  # fmt: skip
    """A lane per face named by ``turns`` (in order of face id); ``fade`` frames default to :data:`FADE_FRAMES`."""
    fade = FADE_FRAMES if fade is None else fade
    lanes = []
    for track_id in sorted({t.track_id for t in turns}):
        track = face_track(result.track(track_id))
        in_turn = np.zeros(result.num_frames, bool)
        for turn in turns:
            if turn.track_id == track_id:
                in_turn[turn.first_frame : turn.end_frame] = True
        active = in_turn & track.valid
        matrices = np.full((result.num_frames, 2, 3), np.nan, np.float32)
        matrices[track.valid] = estimate_affines(anchor_points(track.landmarks[track.valid]), resolution)
        lanes.append(SpeakerLane(track_id, track, active, fade_weights(active, fade), matrices))
    return lanes


def turn_frames_without_face(turns: list[ResolvedTurn], lanes: list[SpeakerLane]) -> dict[int, int]:
    """Face id -> frames of its turns where it could not be lip-synced (not found, or gone too long to bridge)."""
    by_id = {lane.track_id: lane for lane in lanes}
    missing: dict[int, int] = {}
    for turn in turns:
        lane = by_id[turn.track_id]
        count = int((~lane.track.valid[turn.first_frame : turn.end_frame]).sum())
        if count:
            missing[turn.track_id] = missing.get(turn.track_id, 0) + count
    return missing


def turns_used(turns: list[ResolvedTurn], fps: int) -> list[Turn]:
    """The turns as applied, with face ids and the frames' times (a turn past the video's end is cut there)."""
    return [Turn(round(t.first_frame / fps, 3), round(t.end_frame / fps, 3), face_id=t.track_id) for t in turns]


def describe_turns(turns: list[Turn]) -> str:
    """``0.00-2.50 s face 0, 2.50-4.80 s face 1``."""
    return ", ".join(f"{t.start:.2f}-{t.end:.2f} s face {t.face_id}" for t in turns)


def describe_missing(turn_frames_without_face: dict[int, int] | None) -> list[str]:
    """``face 1 was not found in 8 frames of its turns (passed through)``, one per face with such frames."""
    return [f"face {face_id} was not found in {frames} frames of its turns (passed through)"
            for face_id, frames in sorted((turn_frames_without_face or {}).items())]  # fmt: skip


def side_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """Where the timeline used and the numbered first frame are written: beside the output, named after it."""
    output = Path(output)
    stem = output.with_suffix("") if output.suffix else output
    return Path(f"{stem}{TIMELINE_SUFFIX}"), Path(f"{stem}{FACES_SUFFIX}")


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_side_files(output: str | os.PathLike, turns: list[Turn], result: MultiTrackResult,
                     first_frame: np.ndarray) -> tuple[Path, Path]:  # fmt: skip
    """Write the timeline used (CSV, face ids: edit it and pass it back as the timeline) and the first frame with
    every face boxed and numbered (PNG) next to ``output``; each written atomically."""
    import cv2

    timeline_path, faces_path = side_paths(output)
    ok, png = cv2.imencode(".png", cv2.cvtColor(draw_tracks(first_frame, result, 0), cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {faces_path.name}")
    _write_atomically(timeline_path, format_timeline(turns, "csv").encode("utf-8"))
    _write_atomically(faces_path, png.tobytes())
    return timeline_path, faces_path
