"""One window (up to 16 frames) on its way through the generation pass: its faces prepared for the denoiser
(:class:`PreparedFaces`), its output before paste-back (:class:`GeneratedWindow`) and the paste-back itself
(:func:`paste_window`), which runs on a drain thread when the pipeline overlaps its stages."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from latentsync.faces import paste_back


@dataclass(frozen=True)
class PreparedFaces:
    """One window's aligned faces and their latents, ready for the denoiser."""

    pixels: torch.Tensor  # (n, 3, res, res) in [-1, 1]
    masked: torch.Tensor  # (n, 4, h, w) latents of the faces with the lower half masked
    reference: torch.Tensor  # (n, 4, h, w) latents of the whole faces


@dataclass(frozen=True)
class GeneratedWindow:
    """One window of 25 fps output before paste-back: the frames, which of them have a face, the generated faces
    ((k, 3, res, res), None when none has) and their alignments."""

    frames: np.ndarray  # (n, H, W, 3) uint8
    keep: np.ndarray  # (n,) bool
    faces: torch.Tensor | None
    matrices: np.ndarray  # (k, 2, 3)
    landmarks: np.ndarray | None = None  # (k, 68, 2) of the frames with a face (for the optional face restorer)


@torch.inference_mode()  # (grad mode is per thread: with overlap on, this runs on a worker thread)
def paste_window(window: GeneratedWindow) -> np.ndarray:
    """The window's output frames: the generated faces pasted back, the other frames untouched."""
    out = window.frames.copy()
    if window.faces is not None:
        out[window.keep] = paste_back(window.frames[window.keep], window.faces, window.matrices)
    return out


def restore_frames(frames: np.ndarray, keep: np.ndarray, landmarks: np.ndarray, matrices: np.ndarray,
                   restore: Callable[..., np.ndarray]) -> np.ndarray:  # fmt: skip
    """``frames`` (n, H, W, 3) after paste-back with the ``keep`` ones (k of them, with ``landmarks`` (k, 68, 2) and
    alignments ``matrices`` (k, 2, 3)) restored by ``restore`` (the pipeline's face restorer with its region and
    strength bound); the others untouched."""
    if not keep.any():
        return frames
    out = frames.copy()
    out[keep] = restore(frames[keep], landmarks, matrices)
    return out


def paste_and_restore(window: GeneratedWindow, paste: Callable[[GeneratedWindow], np.ndarray],
                      restore: Callable[..., np.ndarray]) -> np.ndarray:  # fmt: skip
    """:func:`paste_window` (as ``paste``), then the face restorer on the frames that got a generated face."""
    out = paste(window)
    if window.faces is None:
        return out
    return restore_frames(out, window.keep, window.landmarks, window.matrices, restore)


def numbered(batches: Iterator[np.ndarray]) -> Iterator[tuple[int, np.ndarray]]:
    """(first frame index, batch) for consecutive batches."""
    start = 0
    for batch in batches:
        yield start, batch
        start += len(batch)
