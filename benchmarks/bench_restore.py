"""Face restorer benchmark (issue 30 §1): milliseconds per frame of the GFPGAN v1.4 restorer after paste-back.

Two networks, both with random weights in ``GFPGANv1.4.pth``'s format, loaded through ``load_face_restorer`` (the
code users run): ``tiny`` (the tests' 64 px network) and ``full`` (v1.4's real architecture, 512 px, 87 M values).
The frame is the demo video's first frame (320x320, its landmarks from dlib), repeated ``--frames`` times and
scaled by ``--scale`` (2: a 640x640 frame with a 2x larger face). Per network:

* ``network_ms``: the network alone per face (batches of ``RESTORE_BATCH``, after one warm-up call);
* ``total_ms``: the whole step per frame: five-point alignment, warp to the template, network, region mask, warp
  back and blend (what ``LipSyncOptions.restore`` adds to a run).

Usage (from the repository root)::

    python benchmarks/bench_restore.py                          # CPU, tiny and full, 8 frames
    python benchmarks/bench_restore.py --threads 1 --frames 4   # steadier on a busy machine
    python benchmarks/bench_restore.py --device cuda --frames 64 --results benchmarks/results/restore_gpu.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # a script in benchmarks/: no install needed
    sys.path.insert(0, str(REPO_ROOT))

DEMO_VIDEO = REPO_ROOT / "assets" / "demo_video.mp4"
FACE_RESOLUTION = 256  # LatentSync 1.5's face (its mouth mask defines the restored region)


def demo_inputs(frames: int, scale: int):
    """(frames, landmarks, LatentSync alignments) of the demo frame scaled by ``scale``, repeated."""
    import cv2
    import numpy as np

    from latentsync import media
    from latentsync.inference.face_pass import track_photo
    from latentsync.faces import anchor_points, estimate_affines, load_landmark_backend

    frame = media.read_video_frames(DEMO_VIDEO, max_frames=1)[0]
    frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    track = track_photo(load_landmark_backend("dlib"), frame, None)
    if not track.valid[0]:
        raise SystemExit("no face found in the demo frame")
    landmarks = np.repeat(track.landmarks[:1], frames, axis=0)
    return np.repeat(frame[None], frames, axis=0), landmarks, estimate_affines(anchor_points(landmarks), FACE_RESOLUTION)


def measure(name: str, device: str, frames, landmarks, matrices) -> dict:
    import numpy as np
    import torch

    from latentsync.checkpoints import RELEASE_FILES
    from latentsync.faces import mouth_mask
    from latentsync.faces.restore import RESTORE_BATCH
    from latentsync.inference.loading import load_face_restorer
    from latentsync.models.gfpgan import GFPGANConfig, tiny_gfpgan_config
    from latentsync.tiny import write_random_gfpgan

    config = tiny_gfpgan_config() if name == "tiny" else GFPGANConfig()
    generated = 1.0 - mouth_mask(FACE_RESOLUTION)
    with tempfile.TemporaryDirectory(prefix="bench-restore-") as folder:
        write_random_gfpgan(Path(folder) / RELEASE_FILES["gfpgan_v1.4"].local_path, seed=0, config=config)
        restorer = load_face_restorer(folder, device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    size = config.out_size
    faces = np.random.default_rng(0).integers(0, 256, (len(frames), size, size, 3), dtype=np.uint8)
    restorer.restore_faces(faces[:RESTORE_BATCH])  # warm-up (kernels, allocator)
    sync()
    start = time.perf_counter()
    restorer.restore_faces(faces)
    sync()
    network = time.perf_counter() - start
    start = time.perf_counter()
    out = restorer(frames, landmarks, matrices, generated, strength=0.5)
    sync()
    total = time.perf_counter() - start
    assert out.shape == frames.shape
    return {
        "network": name,
        "out_size": size,
        "values": sum(t.numel() for t in restorer.model.state_dict().values()),
        "network_ms": 1000 * network / len(frames),
        "total_ms": 1000 * total / len(frames),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--frames", type=int, default=8, help="frames restored per network (default 8)")
    parser.add_argument("--scale", type=int, default=2, help="upscale the 320x320 demo frame by this (default 2)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); 1 gives steadier figures on a shared machine")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "restore_cpu.json")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    frames, landmarks, matrices = demo_inputs(args.frames, args.scale)
    rows = [measure(name, args.device, frames, landmarks, matrices) for name in args.networks]
    print(f"frame {frames.shape[2]}x{frames.shape[1]}, {args.frames} frames, device {args.device}, "
          f"{torch.get_num_threads()} torch threads")  # fmt: skip
    print(f"{'network':8} {'size':>5} {'values':>11} {'network ms/face':>16} {'total ms/frame':>15}")
    for row in rows:
        print(f"{row['network']:8} {row['out_size']:>5} {row['values']:>11,} {row['network_ms']:>16.1f} "
              f"{row['total_ms']:>15.1f}")  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.processor() or platform.machine(),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "torch_threads": torch.get_num_threads(),
        "frame": list(frames.shape[1:3]),
        "frames": args.frames,
        "rows": rows,
    }, indent=1) + "\n")  # fmt: skip
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
