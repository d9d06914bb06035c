"""``python -m latentsync.sync --video V [--audio A]``: Sync-C / Sync-D of a talking-face video.

Finds the face in every frame with the package's face tracker (our landmark detector instead of the reference's
S3FD; the crop then follows the reference: box track smoothed, crop scale 0.4, 224x224), scores the video against
its own soundtrack or ``--audio``, and prints offset, Sync-C (confidence, higher is better) and Sync-D (distance,
lower is better). Exit codes as the main CLI: 0 success, 1 failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from latentsync.errors import CheckpointError, InputError

EXIT_OK, EXIT_FAILURE, EXIT_INPUT = 0, 1, 2
CHUNK_FRAMES = 64


def score_file(video: Path, audio: Path | None, scorer, face_backend):
    """Score ``video`` against ``audio`` (default: the video's own audio track) -> SyncScore."""
    from latentsync import media
    from latentsync.faces import FaceTracker

    info = media.probe(video)
    if not info.has_video:
        raise InputError(f"{video.name} has no video stream; please provide a video of a face.")
    waveform = media.load_audio(audio if audio is not None else video)
    tracker = FaceTracker(face_backend)
    for chunk in media.iter_video_frames(video, CHUNK_FRAMES, info=info):
        tracker.update(chunk)
    track = tracker.finish()
    return scorer.score(media.iter_video_frames(video, CHUNK_FRAMES, info=info), track.boxes, waveform)


def build_parser() -> argparse.ArgumentParser:
    from latentsync.checkpoints import CHECKPOINTS_ENV

    parser = argparse.ArgumentParser(
        prog="python -m latentsync.sync",
        description="Measure audio-visual sync of a talking-face video with the original SyncNet (Sync-C / Sync-D).",
        epilog="Exit codes: 0 success, 1 failure, 2 bad input or arguments.",
    )
    parser.add_argument("--video", required=True, type=Path, help="talking-face video (any format ffmpeg reads)")
    parser.add_argument("--audio", type=Path, default=None,
                        help="speech to score against (default: the video's own audio track)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help=f"local directory with auxiliary/syncnet_v2.model and the face weights "
                             f"(default: ${CHECKPOINTS_ENV}, else the Hugging Face Hub)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on failure")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from latentsync.checkpoints import resolve_sync_scoring
        from latentsync.faces import load_landmark_backend
        from latentsync.loading import default_device
        from latentsync.sync import SyncScorer

        for name in ("video", "audio"):
            path = getattr(args, name)
            if path is not None and not path.is_file():
                raise InputError(f"--{name}: file not found: {path}")
        device = args.device or default_device()
        backend_name, weights_dir, syncnet_path = resolve_sync_scoring(checkpoints_dir=args.checkpoints)
        backend = load_landmark_backend(backend_name, device=device, weights_dir=weights_dir)
        scorer = SyncScorer.from_checkpoint(syncnet_path, device)
        score = score_file(args.video, args.audio, scorer, backend)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INPUT
    except (CheckpointError, RuntimeError, OSError, ValueError) as err:
        if args.debug:
            raise
        print(f"failed: {err}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps({"offset": score.offset, "sync_c": round(score.confidence, 4),
                          "sync_d": round(score.min_distance, 4)}))  # fmt: skip
    else:
        print(f"offset: {score.offset} frames\nSync-C: {score.confidence:.3f}\nSync-D: {score.min_distance:.3f}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
