"""Rebuild the demo assets in ``assets/`` from material that ships offline.

* ``assets/demo_video.mp4``: scikit-image's bundled ``astronaut`` photograph (public domain, NASA) animated with a
  slight, smooth head motion (rotation, sway, zoom), 4 s at 25 fps, 320×320, H.264, no audio track.
* ``assets/demo_speech.wav``: an English sentence spoken by espeak-ng, 16 kHz mono 16-bit.

Usage: ``python scripts/make_demo_assets.py [--out assets]`` (needs ffmpeg and espeak-ng on PATH).
The output is deterministic for fixed tool versions.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from latentsync.media import SAMPLE_RATE, VIDEO_FPS, VideoWriter, load_audio, write_wav

SECONDS = 4.0
SIZE = 320  # output frame side in pixels
CROP = (16, 96, 256)  # (top, left, side) of the square around the face in the 512×512 photograph
FACE_CENTRE = (222.0, 126.0)  # (x, y) of the face in the photograph, the pivot of the head motion
SENTENCE = "Hello! This is a short demonstration of lip sync."


def head_motion_frames() -> np.ndarray:
    from skimage import data

    photo = data.astronaut()  # (512, 512, 3) uint8 RGB
    top, left, side = CROP
    frames = []
    for i in range(round(SECONDS * VIDEO_FPS)):
        t = i / VIDEO_FPS
        angle = 2.5 * np.sin(2 * np.pi * t / 3.0)  # degrees
        scale = 1.0 + 0.02 * np.sin(2 * np.pi * t / 2.3)
        shift = np.array([3.0 * np.sin(2 * np.pi * t / 2.1), 1.5 * np.sin(2 * np.pi * t / 1.7)])
        matrix = cv2.getRotationMatrix2D(FACE_CENTRE, angle, scale)
        matrix[:, 2] += shift
        moved = cv2.warpAffine(photo, matrix, (512, 512), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        crop = moved[top : top + side, left : left + side]
        frames.append(cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return np.stack(frames)


def speech(out_wav: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "espeak.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), SENTENCE], check=True)
        write_wav(out_wav, load_audio(raw), SAMPLE_RATE)  # 22.05 kHz → 16 kHz mono


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "assets")
    args = parser.parse_args()
    for tool in ("ffmpeg", "espeak-ng"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is required (apt-get install {tool})")
    args.out.mkdir(parents=True, exist_ok=True)
    frames = head_motion_frames()
    with VideoWriter(args.out / "demo_video.mp4", width=SIZE, height=SIZE, crf=26) as writer:
        writer.write(frames)
    speech(args.out / "demo_speech.wav")
    for name in ("demo_video.mp4", "demo_speech.wav"):
        print(f"{args.out / name}: {(args.out / name).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
