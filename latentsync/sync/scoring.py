"""Sync-C / Sync-D from SyncNet embeddings: the official offset search (`calc_pdist`), vectorised.

For every lip window t and every offset step i in 0 ... 30 (shift ``i - 15`` frames) the official code
measures ``F.pairwise_distance(lip[t], audio[t + i - 15])`` with zero vectors past both ends of the audio
track, averages over t, and reads:

* offset = 15 - argmin_i(mean) (frames; positive = the audio leads the video, fix by delaying the audio
  by offset / 25 s, as LatentSync's data pipeline does with ``-itsoffset``),
* Sync-D (min distance) = min(mean),
* Sync-C (confidence) = median(mean) - min(mean), with torch.median (the lower middle value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MAX_OFFSET = 15  # official vshift: offsets -15 ... +15 video frames are searched
NUM_OFFSETS = 2 * MAX_OFFSET + 1  # = 31


@dataclass(frozen=True)
class SyncScore:
    """Result of one SyncNet evaluation.

    offset: best audio-video offset in frames (15 - argmin); 0 = in sync.
    confidence: Sync-C, median minus minimum of the per-offset mean distances (higher is better).
    min_distance: Sync-D, the minimum per-offset mean distance (lower is better).
    distances: (31,) float32 per-offset mean distances; entry i belongs to offset ``15 - i``.
    """

    offset: int
    confidence: float
    min_distance: float
    distances: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        """(31,) offsets in frames matching ``distances`` entry by entry: 15, 14, ..., -15."""
        return MAX_OFFSET - np.arange(len(self.distances))


def offset_distances(lip: torch.Tensor, audio: torch.Tensor, max_offset: int = MAX_OFFSET) -> torch.Tensor:
    """Lip and audio embeddings (N, D) -> distances (2 * max_offset + 1, N), one batched computation.

    Row i, column t is ``||lip[t] - audio[t + i - max_offset] + eps||`` (F.pairwise_distance's eps 1e-6,
    as in the official code), with audio rows outside 0 ... N-1 taken as zeros.
    """
    if lip.ndim != 2 or lip.shape != audio.shape:
        raise ValueError(f"offset_distances: lip and audio must both be (N, D); got {tuple(lip.shape)} "
                         f"and {tuple(audio.shape)}")
    window = 2 * max_offset + 1
    padded = F.pad(audio, (0, 0, max_offset, max_offset))  # (N + 2 * max_offset, D), zero rows at the ends
    shifted = padded.unfold(0, window, 1).transpose(1, 2)  # (N, window, D): shifted[t, i] = padded[t + i]
    dists = F.pairwise_distance(lip[:, None, :], shifted)  # (N, window)
    return dists.T  # (window, N)


def score_embeddings(lip: torch.Tensor, audio: torch.Tensor, max_offset: int = MAX_OFFSET) -> SyncScore:
    """Lip and audio embeddings (N, D), window t of each covering the same 5 frames -> :class:`SyncScore`."""
    dists = offset_distances(lip.float(), audio.float(), max_offset)  # (31, N)
    mean = dists.mean(dim=1)  # (31,)
    min_distance, best = torch.min(mean, dim=0)  # first index on ties, like the official torch.min
    confidence = torch.median(mean) - min_distance
    return SyncScore(
        offset=int(max_offset - best),
        confidence=float(confidence),
        min_distance=float(min_distance),
        distances=mean.cpu().numpy(),
    )
