"""A two-person clip for the conversation tests: the demo face on the left, its mirror image on the right."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_VIDEO = ASSETS / "demo_video.mp4"
FRAMES = 50  # 2 s at 25 fps


@functools.lru_cache(maxsize=1)
def _frames() -> np.ndarray:
    from latentsync.media import read_video_frames

    frames = read_video_frames(DEMO_VIDEO, max_frames=FRAMES)  # (50, 320, 320, 3)
    return np.concatenate([frames, frames[:, :, ::-1]], axis=2)  # (50, 320, 640, 3): face, mirrored face


def two_face_frames() -> np.ndarray:
    """(50, 320, 640, 3) uint8 RGB, a fresh copy each call."""
    return _frames().copy()


def write_two_face_video(path: Path, seconds: float = FRAMES / 25) -> Path:
    """The same clip as a lossless H.264 file (CRF 0) with the demo's own soundtrack."""
    filters = "[0:v]split[a][b];[b]hflip[m];[a][m]hstack=inputs=2[v]"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(DEMO_VIDEO), "-t", f"{seconds}", "-filter_complex",
                    filters, "-map", "[v]", "-map", "0:a?", "-c:v", "libx264", "-crf", "0", "-pix_fmt", "yuv444p",
                    "-c:a", "aac", str(path)], check=True, capture_output=True)  # fmt: skip
    return path
