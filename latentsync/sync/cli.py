"""``python -m latentsync.sync --video V [--audio A]``: Sync-C / Sync-D of a talking-face video.

Finds the face in every frame with the package's face tracker (our landmark detector instead of the reference's
S3FD; the crop then follows the reference: box track smoothed, crop scale 0.4, 224x224), scores the video against
its own soundtrack or ``--audio``, and prints offset, Sync-C (confidence, higher is better) and Sync-D (distance,
lower is better). Exit codes as the main CLI: 0 success, 1 failure, 2 bad input, 130 / 143 interrupted by SIGINT /
SIGTERM (the signals are handled in :func:`latentsync.cli_common.run_reporting_errors`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from latentsync.cli_common import EXIT_FAILURE, EXIT_INPUT, EXIT_OK, check_files_exist, run_reporting_errors  # noqa: F401 (exit codes re-exported)
from latentsync.sync.files import check_inputs, score_file


def build_parser() -> argparse.ArgumentParser:
    from latentsync.checkpoints import CHECKPOINTS_ENV

    parser = argparse.ArgumentParser(
        prog="python -m latentsync.sync",
        description="Measure audio-visual sync of a talking-face video with the original SyncNet (Sync-C / Sync-D).",
        epilog="Exit codes: 0 success, 1 failure, 2 bad input or arguments, 130/143 interrupted (SIGINT/SIGTERM).",
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

    def score() -> str:
        from latentsync.checkpoints import resolve_sync_scoring
        from latentsync.faces import load_landmark_backend
        from latentsync.devices import parse_device
        from latentsync.sync import SyncScorer

        # Arguments, device and input files first: a wrong one is reported before the weights load.
        check_files_exist(args, "video", "audio")
        device = parse_device(args.device)
        check_inputs(args.video, args.audio)
        backend_name, weights_dir, syncnet_path = resolve_sync_scoring(checkpoints_dir=args.checkpoints)
        backend = load_landmark_backend(backend_name, device=device, weights_dir=weights_dir)
        result = score_file(args.video, args.audio, SyncScorer.from_checkpoint(syncnet_path, device), backend)
        if args.json:
            return json.dumps({"offset": result.offset, "sync_c": round(result.confidence, 4),
                               "sync_d": round(result.min_distance, 4)})  # fmt: skip
        return f"offset: {result.offset} frames\nSync-C: {result.confidence:.3f}\nSync-D: {result.min_distance:.3f}"

    return run_reporting_errors(score, args.debug)


if __name__ == "__main__":
    sys.exit(main())
