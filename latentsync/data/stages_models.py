"""The model stages, each a function of one clip (README §6 stages 5-7): faces, sync, quality.

Same signature as :mod:`latentsync.data.stages_media`; ``models`` is the worker's :class:`WorkerModels`. The
face geometry, alignment and SyncNet scoring are the package's own (the inference pipeline's tracker and alignment,
``latentsync.sync``'s scorer); only the keep-or-drop rules (:mod:`latentsync.data.decisions`) are added here.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from latentsync import media
from latentsync.data.decisions import (
    DROP_NO_FACE,
    DROP_SILENT,
    face_decision,
    quality_decision,
    shift_waveform,
    sync_decision,
)
from latentsync.data.ffmpeg import run_ffmpeg
from latentsync.data.outcome import Outcome, drop, keep
from latentsync.data.records import TMP_PREFIX, copy_atomic, tmp_path_for
from latentsync.data.stages_media import AUDIO_ARGS
from latentsync.errors import InputError
from latentsync.faces import Face, FaceTracker, anchor_points, estimate_affines, warp_faces
from latentsync.faces.batch_detection import detect_frames
from latentsync.faces.face_types import REFERENCE_MIN_SCORE

DECODE_CHUNK_FRAMES = 16  # frames held at a time (16 x 1080p RGB ~ 100 MB)
AFFINE_CRF = 13  # the reference's affine_transform.py encodes the aligned faces with libx264 -crf 13
DROP_ALIGNMENT = "face alignment failed"
DROP_SYNC_UNSCORABLE = "sync could not be scored"


class FaceCountError(RuntimeError):
    """The landmark backend did not report faces for every frame of the clip (a backend bug, not the clip's fault:
    recorded as an internal error, so the next run retries the clip)."""


class FaceCounter:
    """A landmark backend for the tracker that hands it every detection unchanged and remembers, per frame of the
    clip, how many faces the detector found (at its own score threshold) and the size of the largest.

    Faces are counted where they are produced, on both paths a backend offers: :meth:`detect_batch` (the tracker's
    one call per chunk, through the wrapped backend's own ``detect_batch`` when it has one, e.g. face-alignment)
    and :meth:`detect`. Only frames of the chunk announced with :meth:`watch` are counted (the tracker may also
    search an enlarged copy of a frame; that is not another frame). Nothing else of the wrapped backend is exposed,
    so no call can bypass the count.
    """

    def __init__(self, backend):
        self.backend = backend
        self.name = getattr(backend, "name", type(backend).__name__)
        self.min_score = getattr(backend, "min_score", REFERENCE_MIN_SCORE)
        self.max_detect_side = getattr(backend, "max_detect_side", None)  # read by the search on enlarged frames
        self.counts: list[int] = []
        self.sizes: list[tuple[float, float]] = []  # (width, height) of the largest face; (0, 0) when none
        self._chunk: np.ndarray | None = None

    def watch(self, chunk: np.ndarray) -> None:
        self._chunk = chunk

    def _count(self, faces: list[Face]) -> None:
        scored = [f for f in faces if f.score >= self.min_score]
        self.counts.append(len(scored))
        largest = max(scored, key=lambda f: f.width * f.height, default=None)
        self.sizes.append((largest.width, largest.height) if largest else (0.0, 0.0))

    def _watched(self, frames: np.ndarray) -> bool:
        return self._chunk is not None and np.shares_memory(frames, self._chunk)

    def detect_batch(self, frames_rgb: np.ndarray) -> list[list[Face]]:
        found = detect_frames(self.backend, frames_rgb)
        if len(found) != len(frames_rgb):
            raise FaceCountError(f"the {self.name} backend returned faces for {len(found)} of {len(frames_rgb)} "
                                 "frames")  # fmt: skip
        if self._watched(frames_rgb):
            for faces in found:
                self._count(faces)
        return found

    def detect(self, frame_rgb: np.ndarray) -> list[Face]:
        faces = self.backend.detect(frame_rgb)
        if self._watched(frame_rgb):
            self._count(faces)
        return faces


def faces(source: Path, rel: str, out_folder: Path, options, models) -> Outcome:
    """Stage 5: one face in every frame (at least ``resolution`` px with the high-resolution filter), then the
    affine-aligned face video at ``resolution`` px with the clip's audio (H.264 CRF 13 + AAC)."""
    resolution = options.resolution
    info = media.check_video(media.probe(source))
    # 1. Pass 1: detect and track (the inference pipeline's tracker, gap filling and smoothing).
    # Faces under the reference's 50 x 80 px never make training clips: no search on enlarged frames for them.
    counter = FaceCounter(models.face_backend)
    tracker = FaceTracker(counter, small_faces=False)
    for chunk in media.iter_video_frames(source, DECODE_CHUNK_FRAMES, info=info):
        counter.watch(chunk)
        tracker.update(chunk)
    counts, sizes = np.array(counter.counts), np.array(counter.sizes).reshape(-1, 2)
    if len(counts) != tracker.num_frames:
        raise FaceCountError(f"faces were counted in {len(counts)} of the {tracker.num_frames} frames tracked")
    metrics = {"frames": len(counts), "min_face_size": float(sizes.min()) if len(sizes) else 0.0}
    reason = face_decision(counts, sizes, resolution if options.high_resolution_filter else None)
    if reason is not None:
        return drop(reason, f"faces per frame: min {counts.min(initial=0)}, max {counts.max(initial=0)}", **metrics)
    try:
        track = tracker.finish()
    except InputError as err:  # faces were detected, but none the tracker can use (too small, odd shape)
        return drop(DROP_NO_FACE, str(err), **metrics)
    if not track.valid.all():  # a detection the tracker cannot use (too small, odd shape): no landmarks there
        return drop(DROP_NO_FACE, f"{int((~track.valid).sum())} frames without a usable face", **metrics)
    # 2. The alignment the inference pipeline uses.
    try:
        matrices = estimate_affines(anchor_points(track.landmarks), resolution)  # (N, 2, 3)
    except ValueError as err:
        return drop(DROP_ALIGNMENT, str(err), **metrics)
    # 3. Pass 2: warp and write (VideoWriter writes atomically).
    dest = out_folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    done = 0
    with media.VideoWriter(dest, width=resolution, height=resolution, audio=source, crf=AFFINE_CRF) as writer:
        for chunk in media.iter_video_frames(source, DECODE_CHUNK_FRAMES, info=info):
            writer.write(warp_faces(chunk, matrices[done : done + len(chunk)], resolution))
            done += len(chunk)
    return keep(rel, **metrics)


def write_shifted_audio(source: Path, dest: Path, waveform: np.ndarray, offset_frames: int) -> None:
    """``dest`` = ``source``'s picture (copied) with ``waveform`` delayed by ``offset_frames`` frames, atomically."""
    tmp = tmp_path_for(dest)
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX, dir=dest.parent) as work:
        wav = Path(work) / "shifted.wav"
        media.write_wav(wav, shift_waveform(waveform, offset_frames))
        try:
            run_ffmpeg("-i", str(source), "-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy",
                       *AUDIO_ARGS, str(tmp))  # fmt: skip
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


def sync(source: Path, rel: str, out_folder: Path, options, models) -> Outcome:
    """Stage 6: SyncNet offset and confidence of the aligned clip against its own audio; keep if confident and the
    offset is small, and then correct the offset by shifting the audio."""
    from latentsync.sync.files import score_file  # the package's scorer: face track of the clip + SyncNet v2

    waveform = media.load_audio(source)
    if media.is_silent(waveform):
        return drop(DROP_SILENT, f"peak {float(np.abs(waveform).max(initial=0)):.2e}")
    try:
        score = score_file(source, None, models.sync_scorer, models.face_backend)
    except InputError as err:
        return drop(DROP_SYNC_UNSCORABLE, str(err))
    metrics = {"offset": score.offset, "confidence": round(score.confidence, 4),
               "sync_d": round(score.min_distance, 4)}  # fmt: skip
    reason = sync_decision(score.offset, score.confidence, options.sync_threshold, options.max_offset)
    if reason is not None:
        return drop(reason, f"offset {score.offset}, confidence {score.confidence:.3f}", **metrics)
    dest = out_folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if score.offset == 0:
        copy_atomic(source, dest)
    else:
        write_shifted_audio(source, dest, waveform, score.offset)
    return keep(rel, **metrics)


def quality_frames(source: Path) -> np.ndarray:
    """The first, middle and last frame (indices 0, n // 2, n - 1, as the reference) -> (3, H, W, 3) uint8."""
    info = media.check_video(media.probe(source))
    total = max(info.num_frames, 1)
    wanted = {0: None, total // 2: None, total - 1: None}
    seen, last = 0, None
    for chunk in media.iter_video_frames(source, DECODE_CHUNK_FRAMES, info=info):
        for index in range(seen, seen + len(chunk)):
            if index in wanted:
                wanted[index] = chunk[index - seen].copy()
        seen, last = seen + len(chunk), chunk[-1].copy()
    picked = [wanted[i] if wanted[i] is not None else last for i in sorted(wanted)]  # short read: the last frame
    picked += [picked[-1]] * (3 - len(picked))  # 1- or 2-frame clips repeat frames, still 3 scores
    return np.stack(picked)


def quality(source: Path, rel: str, out_folder: Path, options, models) -> Outcome:
    """Stage 7: hyperIQA on the first, middle and last frame; keep (copy) if the mean score >= the threshold."""
    from latentsync.models.hyperiqa import preprocess_frames

    frames = torch.from_numpy(quality_frames(source))
    with torch.inference_mode():
        scores = models.hyperiqa(preprocess_frames(frames).to(models.device)).float().cpu().numpy()
    metrics = {"quality": round(float(scores.mean()), 4), "frame_scores": [round(float(s), 4) for s in scores]}
    reason = quality_decision(scores, options.quality_threshold)
    if reason is not None:
        return drop(reason, f"mean score {scores.mean():.2f}", **metrics)
    dest = out_folder / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    copy_atomic(source, dest)
    return keep(rel, **metrics)
