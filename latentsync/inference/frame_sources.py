"""Where the pipeline's frames come from: a video read at a constant rate, played along a schedule of source frame
indices (forwards, backwards, held), or a still photo repeated.

Both kinds give ``frames(indices)``: one ``(H, W, 3)`` uint8 RGB frame per index, in order, holding at most a block of
frames in memory. A video's backward runs are read block by block (one seek per block).
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from latentsync import media

FRAMES_PER_READ = 64  # frames per decoded chunk when reading forwards
REVERSE_READ_BLOCK = 64  # frames read per seek when playing the video backwards


def schedule_runs(indices: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """Split a source-index schedule into runs (first, length, step) with step in {1, -1, 0}."""
    i = 0
    while i < len(indices):
        step = int(np.clip(indices[i + 1] - indices[i], -1, 1)) if i + 1 < len(indices) else 1
        j = i + 1
        while j < len(indices) and indices[j] - indices[j - 1] == step:
            j += 1
        yield int(indices[i]), j - i, step
        i = j


class VideoFrames:
    """A video read at a constant ``fps`` (25, or its own rate), cropped to ``size`` = (height, width).

    The crop matters for the pipeline's constant-rate copy: H.264 (yuv420p) needs even sizes, so
    :class:`media.VideoWriter` pads an odd-sized video by a row or column that the source does not have.
    """

    def __init__(self, path: Path, info: media.MediaInfo, fps: Fraction | int, size: tuple[int, int]):
        self.path, self.info, self.fps, self.size = Path(path), info, fps, size

    def _read(self, start: int, count: int) -> Iterator[np.ndarray]:
        yield from media.iter_video_frames(self.path, FRAMES_PER_READ, start=start, count=count, info=self.info,
                                           fps=self.fps)  # fmt: skip

    def frames(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        height, width = self.size
        for frame in self._frames_as_stored(indices):
            yield frame[:height, :width]

    def _frames_as_stored(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        for first, length, step in schedule_runs(indices):
            if step == 1:
                for chunk in self._read(first, length):
                    yield from chunk
            elif step == 0:
                frame = next(self._read(first, 1))[0]
                for _ in range(length):
                    yield frame
            else:
                last = first - length + 1
                for block_end in range(first + 1, last, -REVERSE_READ_BLOCK):
                    block_start = max(last, block_end - REVERSE_READ_BLOCK)
                    block = np.concatenate(list(self._read(block_start, block_end - block_start)))
                    yield from block[::-1]


class StillFrames:
    """One photo, shown for every index (all indices must be 0)."""

    def __init__(self, frame: np.ndarray):
        self.frame = frame

    def frames(self, indices: np.ndarray) -> Iterator[np.ndarray]:
        for _ in range(len(indices)):
            yield self.frame


def batched(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)
