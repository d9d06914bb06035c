"""SyncScorer: frames + face boxes + audio -> Sync-C / Sync-D, streaming over the video.

Memory is bounded by the chunk size plus one batch: frames arrive in chunks, each chunk is cropped to
224 x 224 and appended to a small queue, and lip windows (5 consecutive crops) are embedded in batches of
``batch_size`` as soon as enough crops are queued; the last 4 crops stay queued because the next window
starts inside them. Batches are formed the same way whatever the chunk size, so results do not depend
on how the frames were chunked.

Frames without a face (NaN box rows) are filled by interpolating the box track across the gap and
holding the nearest box at the ends (:func:`latentsync.sync.crop.fill_missing_boxes`); a clip with no
face at all raises :class:`InputError`. The official evaluation scores each detected face track
separately and averages; choosing the track is the caller's job (one box per frame here).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

from latentsync.errors import InputError
from latentsync.sync.crop import crop_faces, smooth_face_track
from latentsync.sync.mfcc import SAMPLE_RATE, SAMPLES_PER_FRAME, audio_windows, compute_mfcc, num_windows
from latentsync.sync.scoring import SyncScore, score_embeddings
from latentsync.sync.syncnet import FRAMES_PER_WINDOW, SyncNetV2, load_syncnet_v2

BATCH_SIZE = 20  # windows per forward pass, the official evaluation's batch size
CARRY_FRAMES = FRAMES_PER_WINDOW - 1  # crops kept across chunk boundaries: the next window starts in them
MIN_FRAMES = FRAMES_PER_WINDOW + 1  # the official count min(frames, samples // 640) - 5 must reach 1


class SyncScorer:
    """Holds a SyncNetV2 on one device and scores clips with it."""

    def __init__(
        self,
        model: SyncNetV2,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.model = model.to(device=self.device, dtype=dtype).eval().requires_grad_(False)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = BATCH_SIZE,
    ) -> SyncScorer:
        """Load ``syncnet_v2.model`` strictly (see :func:`load_syncnet_v2`)."""
        return cls(load_syncnet_v2(path, device, dtype), device, dtype, batch_size)

    def score(self, frames_chunks: Iterable[np.ndarray], boxes: np.ndarray, audio: np.ndarray) -> SyncScore:
        """Score one face track.

        frames_chunks: the video at 25 fps as chunks (n, H, W, 3) of RGB uint8 frames, in order; all chunks
            are consumed and must hold exactly ``len(boxes)`` frames together.
        boxes: (frames, 4) face boxes x1, y1, x2, y2 in pixels, NaN rows for frames without a face.
        audio: 16 kHz mono samples, float in [-1, 1] (or int16-scaled integers).
        """
        # 1. Check inputs and count windows as the official scorer does.
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"boxes must have shape (frames, 4) as x1, y1, x2, y2; got {boxes.shape}")
        audio = np.asarray(audio)
        if audio.ndim != 1:
            raise InputError(f"audio must be a 1-D mono signal at {SAMPLE_RATE} Hz, got shape {audio.shape}")
        n_windows = num_windows(len(boxes), len(audio))
        if n_windows < 1:
            min_samples = MIN_FRAMES * SAMPLES_PER_FRAME
            raise InputError(
                f"SyncNet needs at least {MIN_FRAMES} video frames and {min_samples} audio samples "
                f"({min_samples / SAMPLE_RATE:.2f} s); got {len(boxes)} frames and {len(audio)} samples"
            )
        # 2. Smooth the whole box track (small) before streaming the frames.
        track = smooth_face_track(boxes)
        # 3. Embed audio and lips, window t of both covering video frames t ... t + 4.
        audio_embeddings = self.embed_audio(audio, n_windows)
        lip_embeddings = self.embed_lips(frames_chunks, track, n_windows)
        # 4. Offset search.
        return score_embeddings(lip_embeddings, audio_embeddings)

    @torch.inference_mode()
    def embed_audio(self, audio: np.ndarray, n_windows: int) -> torch.Tensor:
        """Audio -> (n_windows, D) float32 embeddings of MFCC windows 0 ... n_windows - 1."""
        windows = torch.from_numpy(audio_windows(compute_mfcc(audio), n_windows))  # (N, 1, 13, 20)
        batches = [
            self.model.embed_audio(batch.to(self.device, self.dtype)).float()
            for batch in windows.split(self.batch_size)
        ]
        return torch.cat(batches)  # (N, D)

    @torch.inference_mode()
    def embed_lips(
        self, frames_chunks: Iterable[np.ndarray], track: np.ndarray, n_windows: int
    ) -> torch.Tensor:
        """Frame chunks + smoothed track (frames, 3) -> (n_windows, D) float32 lip embeddings."""
        n_frames = len(track)
        frames_needed = n_windows + CARRY_FRAMES
        queue = np.empty((0, 0, 0, 3), dtype=np.uint8)  # RGB crops of frames done ... done + len(queue) - 1
        done = 0  # windows embedded so far
        seen = 0  # frames received so far
        embeddings: list[torch.Tensor] = []
        for chunk in frames_chunks:
            chunk = np.asarray(chunk)
            if seen + len(chunk) > n_frames:
                raise InputError(f"the video has more frames than face boxes ({n_frames})")
            take = min(len(chunk), max(frames_needed - seen, 0))  # frames past the audio are not scored
            if take:
                crops = crop_faces(chunk[:take], track[seen : seen + take])
                queue = crops if len(queue) == 0 else np.concatenate([queue, crops])
            seen += len(chunk)
            while len(queue) - CARRY_FRAMES >= self.batch_size and done < n_windows:
                count = min(self.batch_size, n_windows - done)
                embeddings.append(self._embed_crop_windows(queue[: count + CARRY_FRAMES]))
                queue, done = queue[count:], done + count
        if seen != n_frames:
            raise InputError(f"got {seen} video frames but {n_frames} face boxes; they must match one to one")
        while done < n_windows:  # the last, partial batches
            count = min(self.batch_size, n_windows - done)
            embeddings.append(self._embed_crop_windows(queue[: count + CARRY_FRAMES]))
            queue, done = queue[count:], done + count
        return torch.cat(embeddings)  # (N, D)

    def _embed_crop_windows(self, crops: np.ndarray) -> torch.Tensor:
        """Consecutive RGB crops (n + 4, 224, 224, 3) uint8 -> (n, D) embeddings of their 5-frame windows."""
        video = torch.from_numpy(crops).to(self.device)  # uint8 on the device: 4x less to transfer
        video = video.flip(-1).permute(3, 0, 1, 2)  # RGB -> BGR (official convention), (3, n + 4, 224, 224)
        windows = video.unfold(1, FRAMES_PER_WINDOW, 1)  # (3, n, 224, 224, 5)
        windows = windows.permute(1, 0, 4, 2, 3).to(self.dtype)  # (n, 3, 5, 224, 224), raw 0-255 values
        return self.model.embed_lips(windows).float()
