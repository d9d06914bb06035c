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
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from latentsync.media.mel import MEL_WINDOW, mel_start, mel_window, wav2lip_mel
from latentsync.inference.pipeline import FRAMES_PER_CALL

FRAMES_PER_WINDOW = FRAMES_PER_CALL  # the UNet and StableSyncNet are trained on the 16-frame windows inference uses
SYNCNET_MIN_FRAMES = 2 * FRAMES_PER_WINDOW  # reference: SyncNet clips need >= 32 frames
UNET_MIN_FRAMES = 3 * FRAMES_PER_WINDOW  # reference: >= 48 frames, so a reference window 16 frames away exists
SYNCNET_RESOLUTION = 256  # StableSyncNet sees 256 px faces (lower half 128 x 256)
MAX_DRAWS = 100  # clips drawn for one item before giving up (all too short, or unreadable)
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


class IndexSeededDataset(Dataset):
    """Shared plumbing: clip list, epoch, and the per-item generator."""

    min_frames: int = FRAMES_PER_WINDOW

    def __init__(self, clips: list[Path], seed: int, samples_per_epoch: int | None = None,
                 fixed_samples: bool = False) -> None:
        if not clips:
            raise ValueError("a training dataset needs at least one clip")
        self.clips = [str(p) for p in clips]
        self.seed = seed
        self.length = samples_per_epoch or len(self.clips)  # items are random clips: any length works
        self.epoch = 0  # set by the trainer before each epoch
        self.fixed_samples = fixed_samples  # True: every epoch draws epoch 0's items

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0 if self.fixed_samples else self.epoch, index])

    def draw(self, rng: np.random.Generator, resolution: int, need_mel: bool) -> tuple[str, Clip, torch.Tensor | None]:
        """A random clip with at least ``min_frames`` frames (and audio for a full mel window of some start)."""
        problems = []
        for _ in range(MAX_DRAWS):
            path = self.clips[rng.integers(len(self.clips))]
            clip = read_clip(path, resolution)
            if len(clip.frames) < self.min_frames:
                problems.append(f"{Path(path).name}: {len(clip.frames)} frames < {self.min_frames}")
                continue
            mel = clip_mel(path, resolution) if need_mel else None
            if mel is not None and not mel_fits(mel, 0):
                problems.append(f"{Path(path).name}: audio shorter than one mel window")
                continue
            return path, clip, mel
        raise ValueError(f"no usable clip in {MAX_DRAWS} draws; e.g. {problems[:3]}")


class SyncNetWindows(IndexSeededDataset):
    """Items: ``frames`` (48, res/2, res) lower halves of 16 frames (``lower_half=False``: (48, res, res) whole
    faces, which the latent variant's trainer encodes with the VAE), ``mel`` (1, 80, 52), ``y`` (1,) 1 = in sync,
    and ``seed`` (int64) for the trainer's VAE posterior sampling."""

    min_frames = SYNCNET_MIN_FRAMES

    def __init__(self, clips: list[Path], seed: int, resolution: int = SYNCNET_RESOLUTION,
                 lower_half: bool = True, samples_per_epoch: int | None = None, fixed_samples: bool = False) -> None:
        super().__init__(clips, seed, samples_per_epoch, fixed_samples)
        self.resolution = resolution
        self.lower_half = lower_half

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self.rng(index)
        _, clip, mel = self.draw(rng, self.resolution, need_mel=True)
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
                 with_mel: bool, samples_per_epoch: int | None = None, fixed_samples: bool = False) -> None:
        super().__init__(clips, seed, samples_per_epoch, fixed_samples)
        self.resolution = resolution
        self.whisper_path = str(whisper_path)
        self.with_mel = with_mel
        self._encoder = None  # loaded on first use, in whichever process reads items

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_encoder"] = None  # worker processes load their own
        return state

    def whisper_features(self, path: str, audio: np.ndarray) -> torch.Tensor:
        if self._encoder is None:
            from latentsync.models.whisper import WhisperAudioEncoder

            self._encoder = WhisperAudioEncoder.from_checkpoint(self.whisper_path, "cpu")
        return _cached_features(self._encoder, path, audio)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        from latentsync.inference.audio_features import audio_windows
        from latentsync.faces.mask import mouth_mask

        rng = self.rng(index)
        path, clip, mel = self.draw(rng, self.resolution, need_mel=self.with_mel)
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
            "audio": audio_windows(self.whisper_features(path, clip.audio), start, FRAMES_PER_WINDOW),
            "seed": torch.tensor(int(rng.integers(SEED_BOUND)), dtype=torch.int64),
            "start": torch.tensor(start),
            "ref_start": torch.tensor(ref_start),
        }
        if mel is not None:
            item["mel"] = mel_window(mel, start)
        return item


_FEATURE_CACHE: dict[str, torch.Tensor] = {}


def _cached_features(encoder, path: str, audio: np.ndarray) -> torch.Tensor:
    """Whisper features of a clip, kept for the last few clips of this process (the reference caches them)."""
    if path not in _FEATURE_CACHE:
        if len(_FEATURE_CACHE) >= CLIP_CACHE_SIZE:
            _FEATURE_CACHE.pop(next(iter(_FEATURE_CACHE)))
        with torch.no_grad():  # not inference_mode: the UNet's backward pass saves these tensors
            _FEATURE_CACHE[path] = encoder.encode(audio)
    return _FEATURE_CACHE[path]
