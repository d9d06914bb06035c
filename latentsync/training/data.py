"""Training samples from the data toolchain's clips (aligned faces, 25 fps, square, 16 kHz mono audio).

Both datasets are map-style and *index-seeded*: item ``i`` of epoch ``e`` is drawn from a generator seeded with
``(seed, e, i)`` (which clip, which windows, and a per-sample ``seed`` the trainer uses for VAE sampling, noise and
timestep). So a sample depends only on its index, never on the process that loads it: resuming skips batches
without loading them and lands on the same samples, and N processes see exactly the samples one process would.
Like the reference, each item picks a random clip (resampling until one is long enough), not clip ``i``.

* :class:`SyncNetWindows` (reference ``SyncNetDataset``): 16 frames' lower halves and the mel window of a start
  ``s``; half the time (label 0) the frames come from another start ``!= s`` of the same clip (may overlap).
* :class:`UNetWindows` (reference ``UNetDataset``): a 16-frame target window, a reference window whose start is at
  least 16 frames away, the masked target, the per-frame Whisper windows and (for the sync loss) the mel window.

A clip that cannot be used (unreadable or corrupt video, no audio stream, too short, audio features that fail) is
skipped, as the reference re-draws: the item draws another clip from its generator, so the samples stay a function of
the index. Each skipped clip is logged once with its reason (:class:`ClipSkips`); the run stops
with an :class:`~latentsync.errors.InputError` naming some of them only when more than half of the last 100 draws
failed. Whisper features are cached on disk per clip (:class:`FeatureCache`), so epochs after the first read them.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from latentsync.media.mel import MEL_WINDOW, mel_start, mel_window, wav2lip_mel
from latentsync.errors import CheckpointError, InputError
from latentsync.inference.pipeline import FRAMES_PER_CALL

FRAMES_PER_WINDOW = FRAMES_PER_CALL  # the UNet and StableSyncNet are trained on the 16-frame windows inference uses
SYNCNET_MIN_FRAMES = 2 * FRAMES_PER_WINDOW  # reference: SyncNet clips need >= 32 frames
UNET_MIN_FRAMES = 3 * FRAMES_PER_WINDOW  # reference: >= 48 frames, so a reference window 16 frames away exists
SYNCNET_RESOLUTION = 256  # StableSyncNet sees 256 px faces (lower half 128 x 256)
MAX_DRAWS = 100  # clips drawn for one item before giving up (all too short, or unreadable)
SKIP_WINDOW = 100  # the last draws over which the share of failed ones is measured ...
MAX_FAILED_SHARE = 0.5  # ... and the share above which the run stops (more than 50 of the last 100)
SKIPPED_SHOWN = 5  # skipped clips named in that error
DATA_LOGGER = "latentsync.training.data"  # skipped clips are logged here unless the trainer names its own logger
# What a clip that cannot be used raises while it is read or its features computed (media: InputError, a ValueError,
# or RuntimeError from ffmpeg; OSError for the file). CheckpointError (a missing model file) is not the clip's fault.
CLIP_ERRORS = (ValueError, RuntimeError, OSError)
CLIP_CACHE_SIZE = 4  # decoded clips kept per worker process
SEED_BOUND = 2**62  # per-sample seeds are drawn in [0, SEED_BOUND)


@dataclass(frozen=True)
class Clip:
    frames: np.ndarray  # (n, res, res, 3) uint8 RGB at 25 fps
    audio: np.ndarray  # (samples,) float32, 16 kHz mono


def resize_frames(frames: np.ndarray, resolution: int) -> np.ndarray:
    """(n, h, w, 3) uint8 -> (n, res, res, 3) uint8, bicubic with antialiasing (identity when already res)."""
    if frames.shape[1:3] == (resolution, resolution):
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(resolution, resolution), mode="bicubic", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@functools.lru_cache(maxsize=CLIP_CACHE_SIZE)
def read_clip(path: str, resolution: int) -> Clip:
    """Decode a clip (cached per process: a few clips serve many samples)."""
    from latentsync import media

    frames = resize_frames(np.array(media.read_video_frames(path)), resolution)  # a writable copy
    return Clip(frames=frames, audio=media.load_audio(path))


@functools.lru_cache(maxsize=CLIP_CACHE_SIZE)
def clip_mel(path: str, resolution: int) -> torch.Tensor:
    """The clip's whole Wav2Lip mel (80, T) (the reference caches it as ``<name>_mel.pt``)."""
    return wav2lip_mel(read_clip(path, resolution).audio)


def to_pixels(frames: np.ndarray) -> torch.Tensor:
    """(n, h, w, 3) uint8 -> (n, 3, h, w) float32 in [-1, 1] (``x / 255``, then Normalize(0.5, 0.5))."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0).sub(0.5).div(0.5)


def mel_fits(mel: torch.Tensor, start: int) -> bool:
    return mel_start(start) + MEL_WINDOW <= mel.shape[-1]


class ClipSkips:
    """One loading process's record of its draws: each skipped clip with its reason, and whether each of the last
    :data:`SKIP_WINDOW` draws failed. More than :data:`MAX_FAILED_SHARE` of them failing raises
    :class:`~latentsync.errors.InputError` naming some of the clips.

    Each skipped clip is logged once: with ``record`` (the trainers' ``output_dir/skipped_clips.txt``, one
    ``path<TAB>reason`` line per clip) also across the worker processes of every epoch and across resumes, which
    append to it; two workers meeting the same new clip at the same moment may both log it."""

    def __init__(self, logger_name: str = DATA_LOGGER, record: str | Path | None = None) -> None:
        self.logger_name = logger_name  # a name, not a Logger: datasets are pickled into worker processes
        self.record = Path(record) if record is not None else None
        self.reasons: dict[str, str] = {}  # clip path -> why it was skipped (first time)
        self.recent: collections.deque[bool] = collections.deque(maxlen=SKIP_WINDOW)  # True: the draw failed

    def known_bad(self, path: str) -> bool:
        return path in self.reasons

    def used(self) -> None:
        self.recent.append(False)

    def skipped(self, path: str, reason: str) -> None:
        self.recent.append(True)
        if path not in self.reasons:
            self.reasons[path] = reason
            if self._first_report(path, reason):
                logging.getLogger(self.logger_name).warning(f"skipped clip {path}: {reason} (another clip is drawn)")
        failed = sum(self.recent)
        if len(self.recent) == SKIP_WINDOW and failed > MAX_FAILED_SHARE * SKIP_WINDOW:
            shown = "; ".join(f"{p}: {r}" for p, r in list(self.reasons.items())[:SKIPPED_SHOWN])
            raise InputError(f"{failed} of the last {SKIP_WINDOW} clips drawn could not be used ({len(self.reasons)} "
                             f"different clips skipped), e.g. {shown}. Check the file list (re-run the data "
                             f"toolchain, or remove these clips)")

    def _first_report(self, path: str, reason: str) -> bool:
        """Whether no process has recorded ``path`` yet (then it is recorded now)."""
        if self.record is None:
            return True
        if self.record.is_file():
            listed = {line.split("\t", 1)[0] for line in self.record.read_text(encoding="utf-8").splitlines()}
            if path in listed:
                return False
        with self.record.open("a", encoding="utf-8") as file:  # one short line per write: appends do not interleave
            file.write(f"{path}\t{reason}\n")
        return True


class IndexSeededDataset(Dataset):
    """Shared plumbing: clip list, epoch, the per-item generator, and skipping clips that cannot be used."""

    min_frames: int = FRAMES_PER_WINDOW

    def __init__(self, clips: list[Path], seed: int, samples_per_epoch: int | None = None,
                 fixed_samples: bool = False, logger_name: str = DATA_LOGGER,
                 skip_record: str | Path | None = None) -> None:
        if not clips:
            raise ValueError("a training dataset needs at least one clip")
        self.clips = [str(p) for p in clips]
        self.seed = seed
        self.length = samples_per_epoch or len(self.clips)  # items are random clips: any length works
        self.epoch = 0  # set by the trainer before each epoch
        self.fixed_samples = fixed_samples  # True: every epoch draws epoch 0's items
        self.skips = ClipSkips(logger_name, skip_record)

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0 if self.fixed_samples else self.epoch, index])

    def draw(self, rng: np.random.Generator, resolution: int, need_mel: bool,
             prepare: Callable[[str, Clip], object] | None = None) -> tuple[str, Clip, torch.Tensor | None, object]:
        """A random clip with at least ``min_frames`` frames (and audio for a full mel window of some start), with
        ``prepare(path, clip)``'s result (e.g. its audio features); a clip that fails any of these is skipped (see
        :class:`ClipSkips`) and another one drawn."""
        for _ in range(MAX_DRAWS):
            path = self.clips[rng.integers(len(self.clips))]
            if self.skips.known_bad(path):
                self.skips.skipped(path, self.skips.reasons[path])
                continue
            try:
                clip = read_clip(path, resolution)
                if len(clip.frames) < self.min_frames:
                    self.skips.skipped(path, f"{len(clip.frames)} frames, fewer than the {self.min_frames} needed")
                    continue
                mel = clip_mel(path, resolution) if need_mel else None
                if mel is not None and not mel_fits(mel, 0):
                    self.skips.skipped(path, "audio shorter than one mel window (0.2 s)")
                    continue
                prepared = prepare(path, clip) if prepare is not None else None
            except CheckpointError:
                raise  # a model file, not the clip
            except CLIP_ERRORS as err:
                self.skips.skipped(path, f"{type(err).__name__}: {' '.join(str(err).split())}")
                continue
            self.skips.used()
            return path, clip, mel, prepared
        raise InputError(f"no usable clip in {MAX_DRAWS} draws; e.g. {list(self.skips.reasons.items())[:3]}")


class SyncNetWindows(IndexSeededDataset):
    """Items: ``frames`` (48, res/2, res) lower halves of 16 frames (``lower_half=False``: (48, res, res) whole
    faces, which the latent variant's trainer encodes with the VAE), ``mel`` (1, 80, 52), ``y`` (1,) 1 = in sync,
    and ``seed`` (int64) for the trainer's VAE posterior sampling."""

    min_frames = SYNCNET_MIN_FRAMES

    def __init__(self, clips: list[Path], seed: int, resolution: int = SYNCNET_RESOLUTION,
                 lower_half: bool = True, samples_per_epoch: int | None = None, fixed_samples: bool = False,
                 logger_name: str = DATA_LOGGER, skip_record: str | Path | None = None) -> None:
        super().__init__(clips, seed, samples_per_epoch, fixed_samples, logger_name, skip_record)
        self.resolution = resolution
        self.lower_half = lower_half

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        _, clip, mel, _ = self.draw(rng, self.resolution, need_mel=True)
        # Starts whose mel window is complete (the reference skips the others).
        last = min(len(clip.frames) - FRAMES_PER_WINDOW, max(s for s in range(len(clip.frames)) if mel_fits(mel, s)))
        start = int(rng.integers(last + 1))
        in_sync = bool(rng.random() < 0.5)
        frames_start = start
        if not in_sync:
            others = [s for s in range(len(clip.frames) - FRAMES_PER_WINDOW + 1) if s != start]
            frames_start = int(others[rng.integers(len(others))])
        pixels = to_pixels(clip.frames[frames_start:frames_start + FRAMES_PER_WINDOW])  # (16, 3, res, res)
        if self.lower_half:
            pixels = pixels[:, :, self.resolution // 2:, :]
        return {
            "frames": pixels.flatten(0, 1),  # (16*3, h, w): channel = frame * 3 + rgb
            "mel": mel_window(mel, start),  # (1, 80, 52)
            "y": torch.tensor([float(in_sync)]),
            "start": torch.tensor(start),  # the mel window's first frame
            "frames_start": torch.tensor(frames_start),  # the frames' (== start iff y = 1)
            # Drawn last, so the windows above are those of a dataset without it.
            "seed": torch.tensor(int(rng.integers(SEED_BOUND)), dtype=torch.int64),
        }


class UNetWindows(IndexSeededDataset):
    """Items (f = 16): ``gt`` / ``masked`` / ``ref`` (f, 3, res, res) in [-1, 1], ``audio`` (f, 50, d) Whisper
    windows, ``mel`` (1, 80, 52) when ``with_mel``, ``seed`` (int64) for the trainer's randomness, and the windows'
    first frames ``start`` / ``ref_start``."""

    min_frames = UNET_MIN_FRAMES

    def __init__(self, clips: list[Path], seed: int, resolution: int, whisper_path: str | Path,
                 with_mel: bool, samples_per_epoch: int | None = None, fixed_samples: bool = False,
                 feature_cache_dir: str | Path | None = None, logger_name: str = DATA_LOGGER,
                 skip_record: str | Path | None = None) -> None:
        super().__init__(clips, seed, samples_per_epoch, fixed_samples, logger_name, skip_record)
        self.resolution = resolution
        self.with_mel = with_mel
        self.features = FeatureCache(whisper_path, feature_cache_dir)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from latentsync.inference.audio_features import audio_windows
        from latentsync.faces.mask import mouth_mask

        rng = self.rng(index)
        _, clip, mel, features = self.draw(rng, self.resolution, need_mel=self.with_mel,
                                           prepare=lambda path, clip: self.features(path, clip.audio))
        n = len(clip.frames)
        last = n - FRAMES_PER_WINDOW
        if mel is not None:
            last = min(last, max(s for s in range(n) if mel_fits(mel, s)))
        start = int(rng.integers(last + 1))
        # Reference window: any start at least 16 frames away from the target's (the clip has >= 48 frames).
        ref_starts = [r for r in range(n - FRAMES_PER_WINDOW + 1) if abs(r - start) >= FRAMES_PER_WINDOW]
        ref_start = int(ref_starts[rng.integers(len(ref_starts))])
        gt = to_pixels(clip.frames[start:start + FRAMES_PER_WINDOW])  # (16, 3, res, res)
        mask = torch.from_numpy(mouth_mask(self.resolution))  # (res, res), 1 = keep
        item = {
            "gt": gt,
            "masked": gt * mask,
            "ref": to_pixels(clip.frames[ref_start:ref_start + FRAMES_PER_WINDOW]),
            "audio": audio_windows(features, start, FRAMES_PER_WINDOW),
            "seed": torch.tensor(int(rng.integers(SEED_BOUND)), dtype=torch.int64),
            "start": torch.tensor(start),
            "ref_start": torch.tensor(ref_start),
        }
        if mel is not None:
            item["mel"] = mel_window(mel, start)
        return item


class FeatureCache:
    """Whisper features per clip, on disk under ``cache_dir`` (the reference caches them next to the clip; here next
    to the run, as the clips' folder may be read-only) and for the last few clips in memory. An entry is keyed by the
    clip's path, size and modification time and the Whisper file's, so an edited clip or another Whisper gets new
    features; files are written atomically (a temporary name, then renamed), so any file present is complete.
    ``cache_dir`` None: memory only. ``computed`` counts the clips this process encoded (not read from the cache)."""

    def __init__(self, whisper_path: str | Path, cache_dir: str | Path | None = None) -> None:
        self.whisper_path = str(whisper_path)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.computed = 0
        self._encoder = None  # loaded on first use, in whichever process reads items
        self._memory: collections.OrderedDict[str, torch.Tensor] = collections.OrderedDict()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_encoder"] = None  # worker processes load their own
        return state

    def load_encoder(self) -> None:
        if self._encoder is None:
            from latentsync.models.whisper import WhisperAudioEncoder

            self._encoder = WhisperAudioEncoder.from_checkpoint(self.whisper_path, "cpu")

    def key(self, clip_path: str) -> str:
        """Hex digest of (path, size, mtime) of the clip and of the Whisper file."""
        def identity(path: str) -> list:
            stat = os.stat(path)
            return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]

        text = json.dumps([identity(clip_path), identity(self.whisper_path)])
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def path(self, clip_path: str, key: str) -> Path | None:
        return self.cache_dir / f"{Path(clip_path).stem}-{key[:16]}.pt" if self.cache_dir is not None else None

    def __call__(self, clip_path: str, audio: np.ndarray) -> torch.Tensor:
        """(L, layers, d) float32 features of the clip at ``clip_path`` whose audio is ``audio``."""
        key = self.key(clip_path)
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        file = self.path(clip_path, key)
        if file is not None and file.is_file():
            features = torch.load(file, map_location="cpu", weights_only=True)
        else:
            self.load_encoder()
            with torch.no_grad():  # not inference_mode: the UNet's backward pass saves these tensors
                features = self._encoder.encode(audio, windows="reference")  # as the released models were trained
            self.computed += 1
            if file is not None:
                file.parent.mkdir(parents=True, exist_ok=True)
                tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")  # one name per process: workers may race
                torch.save(features.clone(), tmp)  # its own storage (encode may return a view)
                os.replace(tmp, file)
        self._memory[key] = features
        if len(self._memory) > CLIP_CACHE_SIZE:
            self._memory.popitem(last=False)
        return features
