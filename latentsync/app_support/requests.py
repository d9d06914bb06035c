"""One request of the app: cheap input checks before a GPU is asked for (:func:`check_inputs`), the request as
picklable data with its GPU-time estimate (:class:`LipSyncJob`, :func:`gpu_seconds`), and the pipelines kept per
(version, smoke, smoke_faces) for the life of the process (:class:`PipelineCache`). Part of
:mod:`latentsync.app_support`."""

from __future__ import annotations

import math
import os
import signal
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latentsync import media
from latentsync.app_support.settings import (
    LENGTH_TOLERANCE_SECONDS,
    MAX_SECONDS_ENV,
    SMOKE_FACE_BACKENDS,
    VERSIONS,
)
from latentsync.app_support.summary import first_frame
from latentsync.errors import CheckpointError, InputError
from latentsync.faces.batch_detection import detect_frames
from latentsync.faces.detection import REFERENCE_MIN_SCORE, SMALL_FACE_MIN_SIZE, is_usable
from latentsync.inference.conversation import is_automatic
from latentsync.inference.input_checks import LARGEST_FACE, probe_face_input
from latentsync.inference.pipeline import LipSyncOptions, LipSyncResult

if TYPE_CHECKING:
    pass


# ZeroGPU time estimate. A call is scheduled (and the visitor's quota checked) for the requested duration
# and aborted when it runs out, so the estimate should be an upper bound, yet low for queue priority. The
# UNet figures start from the upstream authors' A100 measurement (bytedance/LatentSync issue #16: 10 s of
# 256 px video, 20 steps with guidance, 28 s of model time = 5.6 ms per frame and step with guidance,
# 2.8 ms without) scaled to an H200 slice (~1.5x faster); 1.6 works on 4x the latent pixels. Estimates:
# calibrate them with benchmarks/ on the real hardware.
GPU_STARTUP_SECONDS = 15.0  # attach the GPU, move the weights into the worker, CUDA warm-up
UNET_SECONDS_PER_FRAME_STEP = {"1.5": 0.002, "1.6": 0.008}  # one step of one frame, guidance off
VAE_SECONDS_PER_FRAME = {"1.5": 0.004, "1.6": 0.016}  # two encodes and one decode per frame
FACE_SECONDS_PER_FRAME = 0.015  # decode, landmarks (on the GPU), warp and paste-back of one frame
SYNC_SCORE_SECONDS_PER_FRAME = 0.01  # SyncNet crops and embeddings, done twice (input and output)
# GFPGAN v1.4 at 512 px per output frame with a face: the network on the GPU plus the five-point warp, the region
# mask and the blend back on the CPU. An estimate, not yet measured on a GPU (benchmarks/bench_restore.py
# --device cuda gives the figure to put here).
RESTORE_SECONDS_PER_FRAME = 0.03
# speakers="auto" scores every face of the video with SyncNet against its own soundtrack (one pass per face, as a
# Sync-C pass); how many faces there are is known only after the face pass, so the estimate assumes this many.
AUTO_SPEAKER_FACES = 3
# A cached (DeepCache) step runs only the UNet's outermost blocks: about a tenth of a full step (speed helper's
# estimate; the reference app's interval 3 at 20 steps = 7 full + 13 cached steps, ~2x faster overall).
PARTIAL_STEP_COST = 0.1
ESTIMATE_MARGIN = 1.5  # headroom: a call that runs out of time is lost, a generous one costs priority
GPU_SECONDS_MIN, GPU_SECONDS_MAX = 30, 300  # ZeroGPU refuses requests longer than a few minutes


# ------------------------------------------------------------------------------------------ input checks


def _too_long(what: str, seconds: float, max_seconds: float, advice: str) -> InputError:
    return InputError(
        f"The {what} is {seconds:.1f} s long, but this app accepts at most {max_seconds:g} s "
        f"(setting {MAX_SECONDS_ENV}). {advice}"
    )


def check_inputs(video: str | None, audio: str | None, max_seconds: float | None) -> tuple[float, float]:
    """Check what can be checked before asking for a GPU; returns (video seconds, audio seconds).

    A photo (PNG, JPEG, WebP) counts as 0 s of video. Raises :class:`InputError` for a missing input, an unreadable
    file, a video without a picture (or without frames), audio
    without sound, or an input longer than ``max_seconds`` (the output lasts as long as the speech, and the
    face pass may read the whole video, so both count).
    """
    if not video:
        raise InputError("Please add a face video: upload one or record it with the webcam.")
    if not audio:
        raise InputError("Please add the speech: upload an audio file or record it with the microphone.")
    video_info = probe_face_input(video)  # a picture: a video that plays, or a photo
    audio_info = media.probe(audio)
    if not audio_info.has_audio:
        name = audio_info.path.name
        raise InputError(f"{name} has no sound; please provide speech audio (or a video with sound).")
    audio_seconds = audio_info.audio_duration or audio_info.duration
    video_seconds = 0.0 if video_info.still_image else video_info.duration
    if max_seconds is not None:
        if audio_seconds > max_seconds + LENGTH_TOLERANCE_SECONDS:
            advice = "The output lasts as long as the speech: please trim it and try again."
            raise _too_long("speech", audio_seconds, max_seconds, advice)
        if video_seconds > max_seconds + LENGTH_TOLERANCE_SECONDS:
            advice = "Please trim it; a video shorter than the speech is looped back and forth."
            raise _too_long("video", video_seconds, max_seconds, advice)
    return video_seconds, audio_seconds


# ------------------------------------------------------------------------------------------ one request


def gpu_seconds(version: str, video_seconds: float, audio_seconds: float, options: LipSyncOptions,
                native_fps: float = media.VIDEO_FPS) -> int:  # fmt: skip
    """Estimated GPU time of one call, for ``@spaces.GPU(duration=...)``, clamped to what ZeroGPU grants.

    ``native_fps``: the video's own rate, used when ``options.native_fps`` (faces are handled on every native
    frame; the diffusion still runs at 25 fps). A conversation (``options.speakers``) costs as much as one face (the
    detector runs once per frame either way, and its turns usually cover each frame once), plus, with "auto", a
    SyncNet pass per face (:data:`AUTO_SPEAKER_FACES` assumed)."""
    face_fps = native_fps if options.native_fps else media.VIDEO_FPS
    frames_out = media.frames_for_duration(audio_seconds)
    face_frames = media.frames_for_duration(video_seconds, face_fps) + media.frames_for_duration(audio_seconds, face_fps)
    guidance_factor = 2 if options.guidance_scale > 1.0 else 1  # guidance doubles the UNet batch
    full_steps = math.ceil(options.steps / options.cache_interval)  # step caching: the others are cheap
    step_cost = full_steps + PARTIAL_STEP_COST * (options.steps - full_steps)
    work = frames_out * step_cost * guidance_factor * UNET_SECONDS_PER_FRAME_STEP[version]
    work += frames_out * VAE_SECONDS_PER_FRAME[version] + face_frames * FACE_SECONDS_PER_FRAME
    if options.score_sync:
        work += 2 * frames_out * SYNC_SCORE_SECONDS_PER_FRAME
    if options.restore:
        work += media.frames_for_duration(audio_seconds, face_fps) * RESTORE_SECONDS_PER_FRAME
    if is_automatic(options.speakers):  # finding who speaks: SyncNet over every face of the video
        work += AUTO_SPEAKER_FACES * media.frames_for_duration(video_seconds) * SYNC_SCORE_SECONDS_PER_FRAME
    estimate = GPU_STARTUP_SECONDS + ESTIMATE_MARGIN * work
    return int(min(max(math.ceil(estimate), GPU_SECONDS_MIN), GPU_SECONDS_MAX))


@dataclass(frozen=True)
class LipSyncJob:
    """One request, ready for the GPU step; plain data so that it pickles into a ZeroGPU worker."""

    video: str
    audio: str
    output: str  # where the MP4 goes (inside the request's own temporary directory)
    version: str
    options: LipSyncOptions
    video_seconds: float
    audio_seconds: float
    smoke: bool = False
    video_fps: float = media.VIDEO_FPS  # the video's own rate (matters with options.native_fps)
    smoke_faces: str = SMOKE_FACE_BACKENDS[0]  # with smoke: the tiny checkpoints' landmark backend

    def gpu_seconds(self) -> int:
        return gpu_seconds(self.version, self.video_seconds, self.audio_seconds, self.options, self.video_fps)


@dataclass(frozen=True)
class JobOutcome:
    """What the GPU step hands back (plain data: it pickles out of a ZeroGPU worker)."""

    result: LipSyncResult
    faces_in_first_frame: int | None = None  # usable faces where the speaker is picked; None: a point, or turns


def count_faces(face_backend: Any, path: str | os.PathLike) -> int:
    """Usable faces in the picture the Speaker picker shows (the video's first frame, or the photo), by the rules
    the pipeline's tracker uses (small faces included)."""
    min_score = float(getattr(face_backend, "min_score", REFERENCE_MIN_SCORE))
    (faces,) = detect_frames(face_backend, first_frame(path)[None])
    return sum(is_usable(face, min_score, SMALL_FACE_MIN_SIZE) for face in faces)


class PipelineCache:
    """Pipelines by (version, smoke, smoke_faces), each built on first use and kept for the process's life.

    Loading takes seconds to minutes, so it happens once, not per request (the official app reloaded every
    model on every click). A lock makes concurrent first requests wait for one load instead of loading
    twice. In smoke mode the tiny checkpoints are written once per landmark backend (``smoke_faces``), into
    a temporary directory removed when the process exits. Pipelines come with the SyncNet for the optional
    Sync-C scores (13.6 M parameters), or without it where its weights are missing (a local checkpoints
    folder without ``syncnet_v2.model``).
    """

    def __init__(self, loader: Callable[..., Any] | None = None):
        self._loader = loader  # load_pipeline's signature; None: latentsync.load_pipeline
        self._pipelines: dict[tuple[str, bool, str | None], Any] = {}
        self._lock = threading.Lock()
        self._smoke_dirs: dict[str, tempfile.TemporaryDirectory] = {}  # smoke_faces -> its tiny checkpoints

    @property
    def loaded(self) -> tuple[tuple[str, bool, str | None], ...]:
        """Keys of the pipelines built so far: (version, smoke, smoke_faces; None without smoke)."""
        return tuple(self._pipelines)

    def get(self, version: str, smoke: bool = False, smoke_faces: str = SMOKE_FACE_BACKENDS[0]):
        """``version``'s pipeline: from the real weights, or with ``smoke`` from tiny random ones whose faces
        are found with ``smoke_faces`` (one of :data:`SMOKE_FACE_BACKENDS`)."""
        if version not in VERSIONS:
            raise InputError(f"version must be one of {', '.join(VERSIONS)}, got {version!r}")
        if smoke_faces not in SMOKE_FACE_BACKENDS:
            allowed = ", ".join(SMOKE_FACE_BACKENDS)
            raise ValueError(f"smoke_faces must be one of {allowed}, got {smoke_faces!r}")
        with self._lock:
            key = (version, smoke, smoke_faces if smoke else None)  # real weights name their own backend
            if key not in self._pipelines:
                from latentsync import load_pipeline

                loader = self._loader or load_pipeline
                # None: $LATENTSYNC_CHECKPOINTS, else the Hugging Face Hub
                checkpoints = self._smoke_checkpoints(smoke_faces) if smoke else None
                try:
                    pipeline = loader(version, checkpoints_dir=checkpoints, sync_scores=True)
                except CheckpointError:  # files are looked up before any model is built: this is quick
                    pipeline = loader(version, checkpoints_dir=checkpoints)  # raises if more is missing
                self._pipelines[key] = pipeline
            return self._pipelines[key]

    def run(self, job: LipSyncJob, progress: Callable[[str, int, int], None] | None = None) -> JobOutcome:
        """Run ``job`` with its version's pipeline; with the largest face as the speaker (not a conversation), also
        count the faces the Speaker picker shows (:func:`count_faces`), so that the summary can say when there was a
        choice."""
        pipeline = self.get(job.version, job.smoke, job.smoke_faces)
        if job.options.score_sync and getattr(pipeline, "sync_scorer", None) is None:
            raise InputError(
                "Sync-C scores are not available here: the SyncNet weights (auxiliary/syncnet_v2.model) "
                "are missing. Untick 'Compute Sync-C scores' and try again."
            )
        result = pipeline(job.video, job.audio, job.output, job.options, progress=progress)
        largest = job.options.speaker == LARGEST_FACE and not job.options.speakers
        return JobOutcome(result, count_faces(pipeline.face_backend, job.video) if largest else None)

    def close(self) -> None:
        """Forget the pipelines and remove the smoke-mode checkpoint folders now (also safe to call twice)."""
        with self._lock:
            self._pipelines.clear()
            while self._smoke_dirs:
                self._smoke_dirs.popitem()[1].cleanup()

    def _smoke_checkpoints(self, smoke_faces: str = SMOKE_FACE_BACKENDS[0]) -> Path:
        if smoke_faces not in self._smoke_dirs:
            from latentsync.tiny import write_tiny_checkpoints

            directory = tempfile.TemporaryDirectory(prefix="latentsync-smoke-checkpoints-")
            write_tiny_checkpoints(directory.name, face_alignment=smoke_faces == "face_alignment")
            self._smoke_dirs[smoke_faces] = directory
        return Path(self._smoke_dirs[smoke_faces].name)


def stop_on_sigterm() -> None:
    """Make SIGTERM stop the process as Ctrl-C does, by raising ``KeyboardInterrupt`` in the main thread.

    Python's default SIGTERM action ends the process at once, skipping ``finally`` blocks and exit handlers, so
    the smoke-mode checkpoints (68 MB in the temporary folder) were left behind on every restart. With this,
    gradio closes its server as on Ctrl-C and the caller's ``finally`` (``PipelineCache.close``) runs. Call it
    from the main thread.
    """

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
