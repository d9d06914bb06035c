"""CPU benchmark: cost per frame of tracking every face (:mod:`latentsync.faces.multi_track`) against tracking the
one speaker (:class:`latentsync.faces.FaceTracker`), on the two-person test clip (the demo face and its mirror side
by side, 640x320) and on the one-face demo (320x320), with the dlib backend.

Usage (from the repository root)::

    python benchmarks/bench_multi_track.py [--frames 50] [--repeats 3]

Detection dominates both (the same detector call per frame); the linking itself is a few pairs per frame.
Timings are indicative: the machine may be shared.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: import the package without installing it
    sys.path.insert(0, str(REPO_ROOT))


def best_ms_per_frame(run, frames: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        run(frames)
        times.append(time.perf_counter() - began)
    return 1000 * min(times) / len(frames)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from latentsync.faces import FaceTracker, load_landmark_backend
    from latentsync.faces.multi_track import track_all_faces
    from latentsync.media import read_video_frames

    backend = load_landmark_backend("dlib")
    demo = read_video_frames(REPO_ROOT / "assets" / "demo_video.mp4", max_frames=args.frames)
    clips = {"one face 320x320": demo, "two faces 640x320": np.concatenate([demo, demo[:, :, ::-1]], axis=2)}

    def one(frames):
        tracker = FaceTracker(backend, small_faces=True)
        tracker.update(frames)
        tracker.finish()

    def every(frames):
        track_all_faces(backend, [frames])

    print(f"{'clip':<20} {'one face ms/frame':>18} {'every face ms/frame':>20} {'ratio':>6}")
    for name, frames in clips.items():
        one_ms = best_ms_per_frame(one, frames, args.repeats)
        every_ms = best_ms_per_frame(every, frames, args.repeats)
        print(f"{name:<20} {one_ms:>18.1f} {every_ms:>20.1f} {every_ms / one_ms:>6.2f}")


if __name__ == "__main__":
    main()
