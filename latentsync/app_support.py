"""What the Gradio Space (``app.py``) needs besides its widgets: settings, checks, GPU estimate, models.

``app.py`` builds the UI; this module holds the parts that can be tested without a browser or a server, and
it never imports gradio (``gr.Progress`` is passed in as a plain callable):

* :class:`AppSettings`: the environment knobs (``MAX_SECONDS``, ``LATENTSYNC_SMOKE``,
  ``LATENTSYNC_SMOKE_FACES``).
* :func:`check_inputs`: cheap ffprobe checks before a GPU is requested (missing input, no sound, too long).
* :class:`LipSyncJob`: one request as plain, picklable data (ZeroGPU runs the GPU step in a forked worker),
  with its GPU-time estimate (:func:`gpu_seconds`).
* :class:`PipelineCache`: pipelines built on first use per (version, smoke, smoke_faces), then reused; the
  app's only mutable global.
* :class:`StageProgress`: the pipeline's ``(stage, done, total)`` callbacks as ``gr.Progress`` calls.
* :func:`describe_result`: the short text shown under the output video.
* :class:`ServedResults`, :func:`release_memory`, :func:`limit_malloc_arenas`: what keeps a long-running Space flat
  (results removed on shutdown, freed memory handed back to the OS after each request).
* :class:`Range`, :class:`Choices`, :func:`check_api_values`: the API's values checked with sentences that name the
  parameter and what it accepts (gradio's own checks do not say which parameter).
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import gc
import logging
import math
import os
import secrets
import signal
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from latentsync import media
from latentsync.errors import CheckpointError, InputError
from latentsync.faces.batch_detection import detect_frames
from latentsync.faces.detection import MIN_FACE_HEIGHT, MIN_FACE_WIDTH, REFERENCE_MIN_SCORE, SMALL_FACE_MIN_SIZE
from latentsync.faces.detection import is_usable
from latentsync.models.deepcache import REFERENCE_CACHE_INTERVAL
from latentsync.inference.input_checks import LARGEST_FACE, probe_face_input
from latentsync.inference.pipeline import DEFAULT_RESTORE_STRENGTH, FRAMES_PER_CALL, LipSyncOptions, LipSyncResult
from latentsync.inference.timeline import LENGTH_MODES

if TYPE_CHECKING:
    import numpy as np

VERSIONS = ("1.5", "1.6")
# 1.5 rather than the reference app's 1.6: a quarter of the latent pixels, so far less GPU time (quota).
DEFAULT_VERSION = "1.5"

MAX_SECONDS_ENV = "MAX_SECONDS"  # longest input accepted, in seconds; 0 turns the limit off
SMOKE_ENV = "LATENTSYNC_SMOKE"  # "1": tiny random models written at first use (outputs NOT lip-synced)
SMOKE_FACES_ENV = "LATENTSYNC_SMOKE_FACES"  # smoke mode's landmark backend, one of SMOKE_FACE_BACKENDS
# Smoke mode's landmark backends, the default first (see latentsync.tiny.write_tiny_checkpoints): "dlib"
# finds real faces (real weights from a PyPI package); "face_alignment" is the production backend (the one
# real weights use) on random weights in the Hub's formats (+180 MB, some seconds at the first request), so
# its face boxes are arbitrary.
SMOKE_FACE_BACKENDS = ("dlib", "face_alignment")
ZERO_GPU_ENV = "SPACES_ZERO_GPU"  # set by Hugging Face on ZeroGPU hardware (the `spaces` package reads it)
# 60 s of output is 1,500 frames: with 1.5 at 20 steps an estimated ~2 min of an H200 slice (see
# gpu_seconds), inside ZeroGPU's per-call maximum of a few minutes.
DEFAULT_MAX_SECONDS = 60.0
LENGTH_TOLERANCE_SECONDS = 1 / media.VIDEO_FPS  # a "60 s" clip muxed to 60.02 s is still accepted
MAX_SEED = 2**32 - 1  # seeds drawn by "random seed"; any seed the pipeline accepts can be typed in

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
# A cached (DeepCache) step runs only the UNet's outermost blocks: about a tenth of a full step (speed helper's
# estimate; the reference app's interval 3 at 20 steps = 7 full + 13 cached steps, ~2x faster overall).
PARTIAL_STEP_COST = 0.1
ESTIMATE_MARGIN = 1.5  # headroom: a call that runs out of time is lost, a generous one costs priority
GPU_SECONDS_MIN, GPU_SECONDS_MAX = 30, 300  # ZeroGPU refuses requests longer than a few minutes


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AppSettings:
    """The app's knobs, read once from the environment (see :meth:`from_env`)."""

    max_seconds: float | None = DEFAULT_MAX_SECONDS  # longest video or speech accepted; None = no limit
    smoke: bool = False  # tiny random models instead of the real weights, for tests and quick checks
    smoke_faces: str = SMOKE_FACE_BACKENDS[0]  # smoke mode's landmark backend (see SMOKE_FACE_BACKENDS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, smoke: bool = False,
                 smoke_faces: str | None = None) -> AppSettings:  # fmt: skip
        """``MAX_SECONDS`` (seconds, 0 = no limit; default 60), ``LATENTSYNC_SMOKE`` (or ``smoke=True``),
        ``LATENTSYNC_SMOKE_FACES`` (or ``smoke_faces``; default ``dlib``)."""
        environ = os.environ if environ is None else environ
        faces = smoke_faces or environ.get(SMOKE_FACES_ENV, "").strip() or SMOKE_FACE_BACKENDS[0]
        if faces not in SMOKE_FACE_BACKENDS:
            allowed = ", ".join(SMOKE_FACE_BACKENDS)
            raise ValueError(f"{SMOKE_FACES_ENV} must be one of {allowed}, got {faces!r}")
        raw = environ.get(MAX_SECONDS_ENV, "").strip()
        max_seconds: float | None = DEFAULT_MAX_SECONDS
        if raw:
            try:
                value = float(raw)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < 0:
                rule = "must be a number of seconds >= 0 (0 = no limit)"
                raise ValueError(f"{MAX_SECONDS_ENV} {rule}, got {raw!r}")
            max_seconds = value or None
        return cls(max_seconds=max_seconds, smoke=smoke or _flag(environ.get(SMOKE_ENV)), smoke_faces=faces)


def on_zero_gpu(environ: Mapping[str, str] | None = None) -> bool:
    """True on Hugging Face ZeroGPU hardware, where ``@spaces.GPU`` runs each call in a forked worker."""
    return _flag((os.environ if environ is None else environ).get(ZERO_GPU_ENV))


def random_seed() -> int:
    """A fresh seed for "random seed" (from the OS, so no global generator is touched)."""
    return secrets.randbelow(MAX_SEED + 1)


def make_options(
    steps: float, guidance_scale: float, seed: float | None, score_sync: bool = False,
    speaker: str | None = LARGEST_FACE, length_mode: str = "pingpong", native_fps: bool = False,
    crf: float = media.H264_CRF, faster: bool = True, seamless_audio_windows: bool = True, restore: bool = False,
    restore_strength: float = DEFAULT_RESTORE_STRENGTH,
) -> LipSyncOptions:  # fmt: skip
    """Options from the UI's values (sliders send floats), checked: a bad value raises :class:`InputError`.
    ``restore``: the face restorer on (with ``restore_strength``) or off."""
    if seed is None:
        raise InputError("Please enter a seed (a whole number) or tick 'Random seed'.")
    if crf is None or float(crf) != int(crf):
        raise InputError(f"crf must be an integer from 0 (lossless) to {media.MAX_CRF}, got {crf!r}")
    options = LipSyncOptions(steps=int(steps), guidance_scale=float(guidance_scale), seed=int(seed),
                             score_sync=bool(score_sync), speaker=(speaker or "").strip() or LARGEST_FACE,
                             length_mode=length_mode, native_fps=bool(native_fps), crf=int(crf),
                             cache_interval=REFERENCE_CACHE_INTERVAL if faster else 1,
                             whisper_windows="seamless" if seamless_audio_windows else "reference",
                             restore=_strength(restore_strength) if restore else 0.0)  # fmt: skip
    options.check()
    return options


def _strength(value: float | None) -> float:
    """The restorer's strength from the slider; on with 0 would silently do nothing, so it is refused."""
    if value is None or not 0.0 < float(value) <= 1.0:
        raise InputError(f"The face restoration strength must be above 0 and at most 1, got {value!r}; "
                         "untick 'Face restoration' to turn it off.")  # fmt: skip
    return float(value)


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
    frame; the diffusion still runs at 25 fps)."""
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
    faces_in_first_frame: int | None = None  # usable faces where the speaker is picked; None: a point was given


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
        """Run ``job`` with its version's pipeline; with the largest face as the speaker, also count the faces the
        Speaker picker shows (:func:`count_faces`), so that the summary can say when there was a choice."""
        pipeline = self.get(job.version, job.smoke, job.smoke_faces)
        if job.options.score_sync and getattr(pipeline, "sync_scorer", None) is None:
            raise InputError(
                "Sync-C scores are not available here: the SyncNet weights (auxiliary/syncnet_v2.model) "
                "are missing. Untick 'Compute Sync-C scores' and try again."
            )
        result = pipeline(job.video, job.audio, job.output, job.options, progress=progress)
        largest = job.options.speaker == LARGEST_FACE
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
    """Sentences on what was decided for the user: which face, frames passed through, a small face."""
    notes = []
    if faces_in_first_frame is not None and faces_in_first_frame > 1:
        notes.append(f"{faces_in_first_frame} faces found; the largest was lip-synced. To choose another, open "
                     "Speaker and click it.")  # fmt: skip
    passed = result.num_frames - result.frames_with_face
    if passed > 0:
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


def describe_result(result: LipSyncResult, job: LipSyncJob, faces_in_first_frame: int | None = None) -> str:
    """A few lines on what was done: length, frames, time taken, what was decided for the user (:func:`decisions`),
    version, settings, Sync-C when asked."""
    o = job.options
    # scores and the small-face note get their own lines
    plain = dataclasses.replace(result, sync_before=None, sync_after=None, small_face_frames=0)
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


# ------------------------------------------------------------------------------------------ a long-running server

logger = logging.getLogger("latentsync.app")

# glibc gives each thread that allocates concurrently its own arena (up to 8 per core), and memory freed in one is
# kept for reuse there: gradio runs requests on a thread pool, so without a cap the process keeps the high-water mark
# of several arenas. Two arenas: the request thread and the helper threads (overlap, ffmpeg pipes) rarely contend.
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)
MALLOC_ARENA_MAX_ENV = "MALLOC_ARENA_MAX"  # set by the operator: glibc read it at start-up, leave it alone
# Served result paths kept to remove on shutdown; past this many, entries whose files the hourly sweep already
# deleted are dropped (a path is ~100 bytes: the set stays under ~100 kB).
SERVED_PRUNE_AT = 1024


@functools.lru_cache(maxsize=1)
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``malloc_trim`` and ``mallopt`` exist), else None (macOS, musl)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 -- only glibc has both
    except (OSError, AttributeError):
        return None
    return libc


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS, environ: Mapping[str, str] | None = None) -> bool:
    """Cap glibc's malloc arenas (call before the server starts its threads); whether it was done.

    Left alone when ``MALLOC_ARENA_MAX`` is set (the operator's choice) or the C library is not glibc."""
    libc = _glibc()
    if libc is None or (os.environ if environ is None else environ).get(MALLOC_ARENA_MAX_ENV):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def release_memory() -> None:
    """After a request: collect reference cycles (a traceback keeps a request's frames and arrays alive), then hand
    the freed heap pages back to the OS (glibc keeps them otherwise, and RSS creeps up with fragmentation)."""
    gc.collect()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


class ServedResults:
    """The result files the app handed to gradio's cache, so that shutdown removes them.

    gradio's cache sweep (``delete_cache``) removes files older than its age limit while the app runs; what is left
    when the process stops (SIGTERM, Ctrl-C) is removed by :meth:`remove_all`, with the per-file folders gradio made
    for them when they are empty. Thread-safe."""

    def __init__(self, prune_at: int = SERVED_PRUNE_AT):
        self._paths: set[Path] = set()
        self._lock = threading.Lock()
        self._prune_at = prune_at

    def __len__(self) -> int:
        return len(self._paths)

    def add(self, path: str | os.PathLike) -> str:
        """Remember ``path`` (returned unchanged, as a string)."""
        with self._lock:
            if len(self._paths) >= self._prune_at:  # the sweep deleted these already
                self._paths = {p for p in self._paths if p.exists()}
            self._paths.add(Path(path))
        return str(path)

    def remove_all(self) -> int:
        """Delete every remembered file that still exists, and its folder when that is left empty; how many."""
        with self._lock:
            paths, self._paths = self._paths, set()
        removed = 0
        for path in paths:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                pass  # swept already (gradio's own shutdown sweep may run first): its folder may still be there
            except OSError as err:
                logger.warning("could not remove the served result %s: %s", path, err)
                continue
            try:
                path.parent.rmdir()  # gradio puts each file in a folder named by its hash
            except OSError:
                pass  # not empty (another file of the same hash) or already gone
        return removed


# ------------------------------------------------------------------------------------------ the API's values


def _number(value: float) -> str:
    """1.0 -> "1", 4294967295 -> "4294967295" (not "4.29497e+09"), 0.1 -> "0.1"."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Range:
    """A number from ``minimum`` to ``maximum`` (inclusive); ``whole``: an integer; ``optional``: None passes (the
    endpoint says what to do, e.g. an emptied seed box with "Random seed" ticked is fine)."""

    minimum: float
    maximum: float
    whole: bool = False
    optional: bool = False

    def check(self, name: str, value: Any) -> None:
        if value is None and self.optional:
            return
        kind = "a whole number" if self.whole else "a number"
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or not self.minimum <= value <= self.maximum or (self.whole and value != int(value)):
            raise InputError(
                f"The parameter {name} must be {kind} from {_number(self.minimum)} to {_number(self.maximum)}, "
                f"got {value!r}."
            )


@dataclass(frozen=True)
class Choices:
    """One of ``values``."""

    values: tuple[Any, ...]

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, bool) or value not in self.values:
            allowed = ", ".join(repr(v) for v in self.values)
            raise InputError(f"The parameter {name} must be one of {allowed}, got {value!r}.")


@dataclass(frozen=True)
class Flag:
    """true or false."""

    def check(self, name: str, value: Any) -> None:
        if not isinstance(value, bool):
            raise InputError(f"The parameter {name} must be true or false, got {value!r}.")


@dataclass(frozen=True)
class Text:
    """A string (or nothing: the default)."""

    def check(self, name: str, value: Any) -> None:
        if value is not None and not isinstance(value, str):
            raise InputError(f"The parameter {name} must be a string, got {value!r}.")


def api_rules(steps_range: tuple[int, int], guidance_range: tuple[float, float],
              crf_range: tuple[int, int]) -> dict[str, Range | Choices | Flag | Text]:  # fmt: skip
    """What each non-file parameter of ``/lipsync`` accepts, from the page's own widget ranges."""
    return {
        "version": Choices(VERSIONS),
        "steps": Range(*steps_range, whole=True),
        "guidance_scale": Range(*guidance_range),
        "seed": Range(0, MAX_SEED, whole=True, optional=True),
        "randomize_seed": Flag(),
        "score_sync": Flag(),
        "speaker": Text(),
        "length_mode": Choices(LENGTH_MODES),
        "native_fps": Flag(),
        "crf": Range(*crf_range, whole=True),
        "faster": Flag(),
        "seamless_audio_windows": Flag(),
        "restore": Flag(),
        "restore_strength": Range(0.0, 1.0),  # above 0 when restore is on: make_options says so in a sentence
    }


def check_api_values(names: list[str], values: list[Any], rules: Mapping[str, Range | Choices | Flag | Text]) -> None:
    """Check the raw values of a call (as sent, before gradio converts them) against ``rules``.

    Raises :class:`InputError` with a sentence naming the parameter and what it accepts; for too few values, one
    naming the parameters that are missing (gradio's HTTP API needs every value, in order)."""
    if len(values) < len(names):
        missing = ", ".join(names[len(values):])
        raise InputError(
            f"This endpoint takes {len(names)} values in this order: {', '.join(names)}; got {len(values)}, so "
            f"{missing} {'is' if len(names) - len(values) == 1 else 'are'} missing. Send all {len(names)} "
            "(or use gradio_client, which fills in the defaults)."
        )
    for name, value in zip(names, values):
        rule = rules.get(name)
        if rule is not None:
            rule.check(name, value)
