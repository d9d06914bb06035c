"""The app's settings: environment knobs (:class:`AppSettings`), the version and seed choices, and the UI's values
turned into the pipeline's :class:`LipSyncOptions` (:func:`make_options`). Part of :mod:`latentsync.app_support`."""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from latentsync import media
from latentsync.errors import InputError
from latentsync.inference.input_checks import LARGEST_FACE
from latentsync.inference.pipeline import DEFAULT_RESTORE_STRENGTH, LipSyncOptions
from latentsync.models.deepcache import REFERENCE_CACHE_INTERVAL

if TYPE_CHECKING:
    pass


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
    restore_strength: float = DEFAULT_RESTORE_STRENGTH, speakers: str | None = "",
) -> LipSyncOptions:  # fmt: skip
    """Options from the UI's values (sliders send floats), checked: a bad value raises :class:`InputError`.
    ``restore``: the face restorer on (with ``restore_strength``) or off. ``speakers``: "" (one face: ``speaker``),
    "auto", or a timeline's CSV / JSON text (never a file name: the app reads no path a user names)."""
    if seed is None:
        raise InputError("Please enter a seed (a whole number) or tick 'Random seed'.")
    if crf is None or float(crf) != int(crf):
        raise InputError(f"crf must be an integer from 0 (lossless) to {media.MAX_CRF}, got {crf!r}")
    options = LipSyncOptions(steps=int(steps), guidance_scale=float(guidance_scale), seed=int(seed),
                             score_sync=bool(score_sync), speaker=(speaker or "").strip() or LARGEST_FACE,
                             length_mode=length_mode, native_fps=bool(native_fps), crf=int(crf),
                             cache_interval=REFERENCE_CACHE_INTERVAL if faster else 1,
                             whisper_windows="seamless" if seamless_audio_windows else "reference",
                             restore=_strength(restore_strength) if restore else 0.0,
                             speakers=speakers.strip() if isinstance(speakers, str) else speakers or "")  # fmt: skip
    options.check()
    return options


def _strength(value: float | None) -> float:
    """The restorer's strength from the slider; on with 0 would silently do nothing, so it is refused."""
    if value is None or not 0.0 < float(value) <= 1.0:
        raise InputError(f"The face restoration strength must be above 0 and at most 1, got {value!r}; "
                         "untick 'Face restoration' to turn it off.")  # fmt: skip
    return float(value)
