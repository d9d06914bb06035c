"""The pipeline's first pass: the face track of the input (a photo, or the frames of a video needed at the output's
rate), from the on-disk cache (:mod:`latentsync.inference.track_cache`) when it holds them, and the constant-rate copy of the
video that the second pass reads when the video has to be repeated (played backwards, or from its start again).

The tracker's gap and smoothing are given in 25 fps frames and scaled to the output's rate, so that they cover the
same seconds at any frame rate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np

from latentsync import media
from latentsync.errors import InputError
from latentsync.faces import FaceTrack, FaceTracker, LandmarkBackend, LandmarkSmoothing, resolve_track
from latentsync.faces.multi_track import MultiFaceTracker, MultiTrackResult
from latentsync.faces.tracking import DEFAULT_MAX_GAP

# Frames per decoded chunk: four 16-frame UNet windows (64 RGB frames of 1080p ≈ 400 MB held at a time).
DECODE_CHUNK = 64
INTERMEDIATE_CRF = 10  # near-lossless constant-rate copy used for ping-pong playback
Progress = Callable[[str, int, int], None]  # (stage, done, total), as the pipeline's ProgressCallback


def face_tracker(backend: LandmarkBackend, fps: Fraction, point: tuple[float, float] | None) -> FaceTracker:
    """The tracker, its gap and smoothing scaled from 25 fps frames to ``fps`` frames (the same seconds)."""
    scale = float(fps) / media.VIDEO_FPS
    smoothing = LandmarkSmoothing(LandmarkSmoothing().sigma_frames * scale) if scale != 1 else LandmarkSmoothing()
    return FaceTracker(backend, max_gap=round(DEFAULT_MAX_GAP * scale), smoothing=smoothing,
                       small_faces=True, start_point=point)  # small faces: processed, flagged in the summary


def track_photo(backend: LandmarkBackend, frame: np.ndarray, point: tuple[float, float] | None) -> FaceTrack:
    """The one-frame track of a photo ((H, W, 3) uint8 RGB)."""
    tracker = face_tracker(backend, Fraction(media.VIDEO_FPS), point)
    tracker.update(frame[None])
    return tracker.finish()


def track_settings(backend: LandmarkBackend, fps: Fraction, point: tuple[float, float] | None,
                   tracker: FaceTracker) -> dict:  # fmt: skip
    """Everything besides the video's bytes that the face track depends on (the cache key)."""
    return {
        "backend": getattr(backend, "name", type(backend).__name__),
        "backend_min_score": tracker.min_score,
        "backend_max_detect_side": getattr(backend, "max_detect_side", None),
        "backend_weights": getattr(backend, "weights_id", None),  # e.g. random test weights vs the real ones
        "backend_device": str(getattr(backend, "device", "cpu")),  # GPU and CPU kernels round differently
        "speaker": None if point is None else [round(point[0], 3), round(point[1], 3)],
        "fps": f"{fps.numerator}/{fps.denominator}",
        "max_gap": tracker.max_gap,
        "sigma_frames": None if tracker.smoothing is None else tracker.smoothing.sigma_frames,
        "small_faces": tracker.small_faces,
    }


def track_video(backend: LandmarkBackend, video: Path, info: media.MediaInfo, fps: Fraction, count: int | None,
                point: tuple[float, float] | None, copy_path: Path | None, use_cache: bool,
                progress: Progress) -> tuple[FaceTrack, bool]:  # fmt: skip
    """The face track of the first ``count`` frames at ``fps`` (all of them if None or the video is shorter),
    from the cache when ``use_cache`` and it holds them; whether it did. With ``copy_path``, also writes the
    constant-rate copy of those frames there."""
    from latentsync.inference.track_cache import TrackCache, track_key

    tracker = face_tracker(backend, fps, point)
    resolve = lambda records: resolve_track(records, tracker.max_gap, tracker.smoothing, tracker.min_size)  # noqa: E731
    cache = key = None
    if use_cache:
        cache = TrackCache.from_env()
        key = track_key(video, track_settings(backend, fps, point, tracker))
        hit = cache.load(key)
        if hit is not None and (hit.complete or (count is not None and len(hit.records) >= count)):
            if copy_path is not None:  # the constant-rate copy alone
                read_frames(video, info, fps, count, copy_path, "copying frames", progress)
            records = hit.records if count is None else hit.records.prefix(count)
            return resolve(records), True
    read_frames(video, info, fps, count, copy_path, "analysing faces", progress, tracker)
    records = tracker.records()
    track = resolve(records)  # raises when no face was found: nothing is cached then
    if cache is not None:
        cache.store(key, records, complete=count is None or len(records) < count)
    return track, False


def track_every_face(backend: LandmarkBackend, video: Path, info: media.MediaInfo, fps: Fraction, count: int | None,
                     copy_path: Path | None, progress: Progress) -> tuple[MultiTrackResult, np.ndarray]:  # fmt: skip
    """Every face track of the first ``count`` frames at ``fps`` (all if None) for a conversation, and the first
    frame; with ``copy_path``, also the constant-rate copy. Not cached: the cache holds one-face tracks."""
    tracker = MultiFaceTracker(backend)
    first: list[np.ndarray] = []

    class _Feed:  # keeps the first frame while the tracker sees every chunk
        def update(self, chunk: np.ndarray) -> None:
            if not first:
                first.append(chunk[0].copy())
            tracker.update(chunk)

    read_frames(video, info, fps, count, copy_path, "analysing faces", progress, _Feed())
    if not first:
        raise InputError(f"{video.name}: no frame could be read")
    return tracker.finish(), first[0]


def read_frames(video: Path, info: media.MediaInfo, fps: Fraction, count: int | None, copy_path: Path | None,
                stage: str, progress: Progress, tracker: FaceTracker | MultiFaceTracker | None = None) -> None:  # fmt: skip
    """Decode the first ``count`` frames at ``fps`` (all if None) in chunks, feeding them to ``tracker`` and to the
    constant-rate copy at ``copy_path`` (written atomically: nothing is left there if this raises), and report
    ``stage`` progress per chunk."""
    total = max(min(info.frames_at(fps), count or info.frames_at(fps)), 1)
    done = 0
    with contextlib.ExitStack() as stack:
        copy = stack.enter_context(media.VideoWriter(copy_path, width=info.width, height=info.height, fps=fps,
                                                     crf=INTERMEDIATE_CRF)) if copy_path else None  # fmt: skip
        for chunk in media.iter_video_frames(video, DECODE_CHUNK, count=count, info=info, fps=fps):
            if tracker is not None:
                tracker.update(chunk)
            if copy is not None:
                copy.write(chunk)
            done += len(chunk)
            progress(stage, min(done, total), total)
