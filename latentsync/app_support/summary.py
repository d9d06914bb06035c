"""What the user sees besides the video: progress as ``gr.Progress`` calls (:class:`StageProgress`), the speaker
picker's first frame and marker, and the summary of what was done and decided (:func:`describe_result`). Part of
:mod:`latentsync.app_support`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from latentsync import media
from latentsync.faces.detection import MIN_FACE_HEIGHT, MIN_FACE_WIDTH
from latentsync.inference.conversation import describe_turns, is_automatic
from latentsync.inference.pipeline import FRAMES_PER_CALL, LipSyncOptions, LipSyncResult

if TYPE_CHECKING:
    import numpy as np

    from latentsync.app_support.requests import LipSyncJob


# ------------------------------------------------------------------------------------------ progress, text


class StageProgress:
    """The pipeline's ``(stage, done, total)`` callbacks as ``report((done, total), desc=..., unit=...)``.

    ``report`` is a ``gr.Progress`` in the app. Stages, in order: analysing faces (or copying frames, when the
    face track came from the cache and the video is repeated), audio features, lip sync
    (one step per 16-frame chunk; the MP4 is written as chunks arrive and finished after the last one),
    sync scores (only when asked for), done.
    """

    LABELS: ClassVar[dict[str, tuple[str, str]]] = {  # stage -> (description, unit)
        "audio features": ("Reading the speech (Whisper audio features)", "steps"),
        "analysing faces": ("Finding the face in every frame", "frames"),
        "finding who speaks": ("Finding who speaks (SyncNet on every face)", "steps"),
        "copying frames": ("Face track from the cache; copying the frames to repeat", "frames"),
        "lip sync": (f"Lip sync: diffusion, {FRAMES_PER_CALL} frames per chunk", "chunks"),
        "sync scores": ("Sync-C scores with SyncNet (input, then output)", "videos"),
        "done": ("Done", "steps"),
    }

    def __init__(self, report: Callable[..., Any] | None):
        self.report = report

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.report is None:
            return
        desc, unit = self.LABELS.get(stage, (stage, "steps"))
        if stage == "lip sync" and total and done >= total:
            desc, unit = "Encoding the MP4 (H.264 + AAC)", "steps"
            done, total = 1, 1
        self.report((done, max(total, 1)), desc=desc, unit=unit)


def _extra_settings(options: LipSyncOptions) -> str:
    """The issue-15 settings that differ from their defaults, for the settings line."""
    default = LipSyncOptions()
    parts = []
    if options.speaker != default.speaker:
        parts.append(f"speaker at {options.speaker}")
    if options.length_mode != default.length_mode:
        parts.append(f"length mode {options.length_mode}")
    if options.native_fps:
        parts.append("native frame rate")
    if options.crf != default.crf:
        parts.append(f"CRF {options.crf}")
    if options.cache_interval == 1:
        parts.append("step caching off")
    if options.whisper_windows != default.whisper_windows:
        parts.append(f"{options.whisper_windows} audio windows")
    if options.restore:
        parts.append(f"face restoration (strength {options.restore:g})")
    if options.speakers:
        parts.append("speakers found automatically" if is_automatic(options.speakers) else "speakers from a timeline")
    return "".join(f", {part}" for part in parts)


# ------------------------------------------------------------------------------------------ speaker picker

MARKER_COLOUR = (255, 32, 32)  # RGB: a red ring with a cross, visible on skin and on most backgrounds
MARKER_RADIUS_FRACTION = 0.03  # of the frame's shorter side (at least MARKER_MIN_RADIUS px)
MARKER_MIN_RADIUS = 6


def first_frame(path: str | os.PathLike) -> "np.ndarray":
    """The picture the speaker is chosen on: a video's first frame (as the pipeline reads it), or the photo."""
    info = media.probe(path)
    if info.has_video and info.still_image:
        return media.read_image(path, info)
    return media.read_video_frames(path, max_frames=1)[0]


def mark_point(frame: "np.ndarray", x: float, y: float) -> "np.ndarray":
    """A copy of ``frame`` with a ring and a cross at (x, y): where the user clicked."""
    import cv2

    marked = frame.copy()
    radius = max(MARKER_MIN_RADIUS, round(MARKER_RADIUS_FRACTION * min(frame.shape[:2])))
    centre = (round(x), round(y))
    thickness = max(2, radius // 4)
    cv2.circle(marked, centre, radius, MARKER_COLOUR, thickness, cv2.LINE_AA)
    cv2.drawMarker(marked, centre, MARKER_COLOUR, cv2.MARKER_CROSS, radius, max(1, thickness // 2), cv2.LINE_AA)
    return marked


def speaker_from_click(index: tuple[float, float] | list[float]) -> str:
    """``gr.SelectData.index`` on an image ([x, y] in the image's pixels) as the ``speaker`` option."""
    x, y = index
    return f"{int(round(x))},{int(round(y))}"


def decisions(result: LipSyncResult, faces_in_first_frame: int | None = None) -> list[str]:
    """Sentences on what was decided for the user: which face (or which turns), frames passed through, a small face."""
    notes = []
    if faces_in_first_frame is not None and faces_in_first_frame > 1:
        notes.append(f"{faces_in_first_frame} faces found; the largest was lip-synced. To choose another, open "
                     "Speaker and click it.")  # fmt: skip
    passed = result.num_frames - result.frames_with_face
    if result.speaker_turns is not None:
        notes.extend(_conversation_notes(result))
    elif passed > 0:
        notes.append(
            f"{passed} of {result.num_frames} frames had no usable face and were passed through unchanged (a face "
            "turned away, covered, too small or out of the picture)."
        )
    if result.small_face_frames:
        notes.append(
            f"The face is smaller than {MIN_FACE_WIDTH}x{MIN_FACE_HEIGHT} px in {result.small_face_frames} of "
            f"{result.num_frames} frames, so the mouth may look softer there; a closer shot or a higher-resolution "
            "video helps."
        )
    return notes


def _conversation_notes(result: LipSyncResult) -> list[str]:
    """A conversation: the turns used (face numbers as in the Speaker panel's picture), the frames of a turn whose
    face was not found, and the frames outside every turn."""
    turns = list(result.speaker_turns or ())
    if result.speakers_detected:
        how = ("Speaker turns found in the video's own soundtrack (to correct them, choose Timeline and enter them as "
               "rows start, end, face number)")  # fmt: skip
    else:
        how = "Speaker turns from the timeline"
    notes = [f"{how}: {describe_turns(turns) if turns else 'none'}."]
    for face_id, frames in sorted((result.turn_frames_without_face or {}).items()):
        notes.append(f"Face {face_id} was not found in {frames} frames of its turns; they were passed through "
                     "unchanged.")  # fmt: skip
    passed = result.num_frames - result.frames_with_face
    if passed > 0:
        notes.append(f"{passed} of {result.num_frames} frames are outside every turn (or their face was missing) and "
                     "were passed through unchanged.")  # fmt: skip
    return notes


def describe_result(result: LipSyncResult, job: LipSyncJob, faces_in_first_frame: int | None = None) -> str:
    """A few lines on what was done: length, frames, time taken, what was decided for the user (:func:`decisions`),
    version, settings, Sync-C when asked."""
    o = job.options
    # scores, the small-face note and a conversation's turns get their own lines (and the side files the pipeline
    # wrote next to the output are not served: the request's folder is gone)
    plain = dataclasses.replace(result, sync_before=None, sync_after=None, small_face_frames=0, speaker_turns=None,
                                speakers_file=None, faces_image=None)  # fmt: skip
    steps = f"{o.steps} step{'s' if o.steps != 1 else ''}"
    lines = [
        f"LatentSync {job.version}: {plain.summary()}.",
        *decisions(result, faces_in_first_frame),
        f"Settings: {steps}, guidance {o.guidance_scale:g}, seed {o.seed}{_extra_settings(o)}.",
    ]
    before, after = result.sync_before, result.sync_after
    if before is not None and after is not None:
        lines.append(
            f"Sync-C before {before.confidence:.2f} → after {after.confidence:.2f} (higher is better); "
            f"Sync-D {before.min_distance:.2f} → {after.min_distance:.2f} (lower is better)."
        )
    elif after is not None:
        lines.append(f"Sync-C {after.confidence:.2f} (higher is better); Sync-D {after.min_distance:.2f} (lower is better).")
    if job.smoke:
        lines.append("Smoke-test mode: tiny random models, so the mouth is NOT lip-synced.")
    return "\n".join(lines)
