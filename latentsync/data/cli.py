"""``python -m latentsync.data RAW_DIR OUT_DIR``: build LatentSync's training set from a folder of raw videos.

Exit codes as the main CLI: 0 success, 1 failure, 2 bad input or arguments, 130 / 143 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentsync.data.engine import ALL_STAGES
from latentsync.data.options import MAX_SYNC_OFFSET, QUALITY_THRESHOLD, RESOLUTIONS, SYNC_CONFIDENCE_THRESHOLD

RAY_LOCAL = "local"  # `--ray` without an address: start a Ray instance on this machine


def build_parser() -> argparse.ArgumentParser:
    from latentsync.checkpoints import CHECKPOINTS_ENV

    parser = argparse.ArgumentParser(
        prog="python -m latentsync.data",
        description="Turn a folder of raw talking-head videos into LatentSync's filtered, aligned training set "
        "(stages: " + ", ".join(ALL_STAGES) + "). Re-running resumes where a previous run stopped.",
        epilog="Exit codes: 0 success, 1 failure, 2 bad input or arguments, 130/143 interrupted (SIGINT/SIGTERM).",
    )
    arg = parser.add_argument
    arg("raw_dir", type=Path, metavar="RAW_DIR", help="folder of raw videos (searched recursively; never modified)")
    arg("out_dir", type=Path, metavar="OUT_DIR",
        help="output folder: a sub-folder per stage mirroring RAW_DIR, records/, report.json, fileslist.txt")
    arg("--resolution", type=int, choices=RESOLUTIONS, default=256,
        help="side of the aligned face videos in pixels (256: LatentSync 1.5, 512: 1.6; default 256)")
    arg("--workers", type=int, default=1,
        help="worker processes on this machine (default 1); with --ray, parallel tasks/actors per stage")
    arg("--ray", nargs="?", const=RAY_LOCAL, default=None, metavar="ADDRESS",
        help="run the stages as a Ray Data pipeline: on a new local Ray instance, or on the cluster at ADDRESS "
        "(e.g. auto or ray://head:10001); RAW_DIR and OUT_DIR must then be on a file system every node sees")
    arg("--sync-threshold", type=float, default=SYNC_CONFIDENCE_THRESHOLD,
        help=f"keep clips whose SyncNet confidence is at least this (default {SYNC_CONFIDENCE_THRESHOLD:g})")
    arg("--max-offset", type=int, default=MAX_SYNC_OFFSET,
        help=f"keep clips whose audio-video offset is at most this many frames (default {MAX_SYNC_OFFSET})")
    arg("--quality-threshold", type=float, default=QUALITY_THRESHOLD,
        help=f"keep clips whose mean hyperIQA score (0-100) is at least this (default {QUALITY_THRESHOLD:g})")
    arg("--no-high-resolution-filter", dest="high_resolution_filter", action="store_false",
        help="keep faces smaller than --resolution (default: drop clips where the face is smaller)")
    arg("--checkpoints", type=Path, default=None,
        help="local directory with auxiliary/syncnet_v2.model, auxiliary/koniq_pretrained.pkl and the face "
        f"weights (default: ${CHECKPOINTS_ENV}, else the Hugging Face Hub)")
    arg("--device", default=None, help="torch device of the model stages (default: cuda if available, else cpu)")
    arg("--stages", default=None,
        help=f"comma-separated subset to run, in pipeline order (default all: {','.join(ALL_STAGES)}); "
        "the earlier stages must have run")
    arg("--no-progress", dest="progress", action="store_false", help="no progress bars")
    arg("--debug", action="store_true", help="show full tracebacks on failure")
    return parser


def main(argv: list[str] | None = None) -> int:
    from latentsync.cli_common import run_reporting_errors
    from latentsync.data.options import DataOptions
    from latentsync.errors import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")

    def run() -> str:
        from latentsync.data.run import process_dataset, parse_stages

        options = DataOptions(resolution=args.resolution, sync_threshold=args.sync_threshold,
                              max_offset=args.max_offset, quality_threshold=args.quality_threshold,
                              high_resolution_filter=args.high_resolution_filter, checkpoints=args.checkpoints,
                              device=args.device)  # fmt: skip
        try:
            parse_stages(args.stages)
        except ValueError as err:
            raise InputError(f"--stages: {err}") from None
        address = None if args.ray in (None, RAY_LOCAL) else args.ray
        process_dataset(args.raw_dir, args.out_dir, options, stages=args.stages, workers=args.workers,
                        use_ray=args.ray is not None, ray_address=address, show_progress=args.progress)  # fmt: skip
        return f"done: see {args.out_dir / 'report.json'}"

    return run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
