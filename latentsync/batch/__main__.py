"""``python -m latentsync.batch JOBS OUT_DIR``: lip-sync many (video, audio) pairs, resumably (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentsync.cli_common import EXIT_OK, run_reporting_errors

EXIT_ROWS_FAILED = 3  # the batch ran to the end but at least one row failed (its error is in summary.csv)

FORMAT_HELP = """\
JOBS is one of:
  a CSV file    with a header line; columns video and audio are required, output and the option columns optional:
                  video,audio,output,steps,seed
                  clips/anna.mp4,dub/anna_fr.wav,fr/anna.mp4,30,
                  clips/ben.mp4,dub/ben_fr.wav,,,42
  a JSONL file  one JSON object per line with the same keys:
                  {"video": "clips/anna.mp4", "audio": "dub/anna_fr.wav", "steps": 30}
  a folder      where name.mp4 (.mov, .mkv, .avi, .webm, .m4v) pairs with name.wav (.mp3, .m4a, .aac, .flac, .ogg,
                .opus); every row gets the defaults (--set)

Columns: video, audio (paths relative to the jobs file's folder); output (an .mp4 path relative to OUT_DIR; default
OUT_DIR/<video name>.mp4 when video and audio share a name, else OUT_DIR/<video name>__<audio name>.mp4); version
(1.5 or 1.6, default 1.5); and any option of the pipeline (latentsync.inference.pipeline.LipSyncOptions), by its field name:
  {options}
("guidance" is accepted for guidance_scale). An empty cell takes the default. A malformed row (unknown column, bad
value, an output another row already has) is reported with its line number; the others run.

speakers makes a row a conversation (several faces, each lip-synced only during its turns; docs/conversations.md):
auto (found from the video's own soundtrack), or a timeline file, CSV or JSON, relative to the jobs file's folder
(with --set speakers=FILE, to the current folder), read when the batch starts; an empty cell: one face. The timeline
used and the numbered faces are written beside the row's output (OUTPUT.speakers.csv, OUTPUT.faces.png).

Re-running the same command skips rows whose output exists (outputs are written atomically: a file there is
complete; a conversation's row also needs its two side files), so an interrupted batch resumes where it stopped.
OUT_DIR/summary.csv lists every row: row, line, status (ok, failed, skipped; "not run" after an interruption), error,
frames, seconds, frames_with_face, sync_c_before, sync_c_after, silent_audio, speaker_turns, video, audio, output.

Exit codes: 0 every row ok or skipped; 3 the batch ran but some rows failed (see summary.csv); 2 bad arguments, an
unreadable jobs source or one with no jobs (nothing ran); 1 the batch itself failed (e.g. Ray unreachable); 130/143
interrupted.
"""


def build_parser() -> argparse.ArgumentParser:
    from latentsync.batch.options import known_columns
    from latentsync.checkpoints import CHECKPOINTS_ENV

    parser = argparse.ArgumentParser(
        prog="python -m latentsync.batch",
        description="Lip-sync a batch of (video, audio) pairs with LatentSync; resumable; on this machine or on Ray.",
        epilog=FORMAT_HELP.replace("{options}", ", ".join(known_columns()[1:])),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("jobs", type=Path, metavar="JOBS", help="a .csv, a .jsonl or a folder of pairs (see below)")
    parser.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="where outputs and summary.csv are written")
    parser.add_argument("--set", dest="defaults", action="append", default=[], metavar="NAME=VALUE",
                        help="a default for every row that leaves the column empty, e.g. --set steps=30 "
                             "--set version=1.6 (repeatable)")
    parser.add_argument("--sync-scores", action="store_true",
                        help="also measure Sync-C before and after for every row (loads SyncNet; slower)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="local: N processes, each with its own loaded pipeline (default 1: this process); "
                             "with --ray: N actors (default one per GPU of the cluster, or 1 on CPUs)")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run rows on Ray: alone, a new local Ray (or the cluster in $RAY_ADDRESS); with an "
                             "address (auto, ray://head:10001), that cluster. Paths must be visible to every node")
    parser.add_argument("--device", default=None,
                        help="torch device, e.g. cuda, cuda:1 or cpu (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="weights' precision (default auto: float16 on Ampere or newer GPUs, else float32)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help=f"local directory with the model files (default: ${CHECKPOINTS_ENV}, else the "
                             "Hugging Face Hub)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (per-row lines still print)")
    parser.add_argument("--debug", action="store_true",
                        help="tracebacks: in the summary for failed rows, and on failure")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    failed_rows = []

    def batch() -> str:
        from latentsync.batch.jobs import AUTO_SPEAKERS, SPEAKERS_COLUMN
        from latentsync.batch.options import parse_assignment
        from latentsync.batch.run import BatchConfig, run_batch
        from latentsync.batch.summary import format_table
        from latentsync.batch.worker import WorkerSettings
        from latentsync.errors import InputError

        if args.workers is not None and args.workers < 1:
            raise InputError(f"--workers must be at least 1, got {args.workers}")
        defaults = dict(parse_assignment(text) for text in args.defaults)
        speakers = str(defaults.get(SPEAKERS_COLUMN, "")).strip()
        if speakers and speakers.lower() != AUTO_SPEAKERS:  # --set speakers=FILE: a path from here, like other arguments
            defaults[SPEAKERS_COLUMN] = str(Path(speakers).absolute())
        if args.sync_scores:
            defaults["score_sync"] = True
        settings = WorkerSettings(device=args.device, dtype=args.dtype,
                                  checkpoints_dir=str(args.checkpoints) if args.checkpoints else None,
                                  sync_scores=args.sync_scores, debug=args.debug)  # fmt: skip
        config = BatchConfig(args.jobs, args.out_dir, settings, defaults, workers=args.workers,
                             use_ray=args.ray is not None, ray_address=args.ray or None,
                             show_progress=not args.no_progress)  # fmt: skip
        report = run_batch(config)
        print(format_table(report.results))
        failed_rows.append(report.failed)
        counts = ", ".join(f"{n} {status}" for status, n in report.counts.items() if n or status != "not run")
        return f"{len(report.results)} rows: {counts}; summary in {report.summary_path}"

    code = run_reporting_errors(batch, args.debug)
    if code == EXIT_OK and failed_rows and failed_rows[0]:
        return EXIT_ROWS_FAILED
    return code


if __name__ == "__main__":
    sys.exit(main())
