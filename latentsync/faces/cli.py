"""``python -m latentsync.faces VIDEO [--png OUT.png] [--json]``: every face track of a video.

Faces are tracked at the model's 25 fps, as the pipeline tracks them for ``speakers``, so the ids and frame numbers
are those a timeline names. Prints one line per track (id, first and last frame, box in its first frame) and, with
``--png``, writes the video's first frame with every face found there boxed and numbered: the ids a speaker
timeline's ``speaker`` column may name (docs/conversations.md). Only the face weights are needed (no SyncNet). Exit codes as the other commands: 0 success, 1 failure, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from latentsync.cli_common import check_files_exist, run_reporting_errors

CHUNK_FRAMES = 32


def build_parser() -> argparse.ArgumentParser:
    from latentsync.checkpoints import CHECKPOINTS_ENV

    parser = argparse.ArgumentParser(
        prog="python -m latentsync.faces",
        description="List every face track of a video (ids for a speaker timeline) and draw them on the first frame.",
        epilog="Exit codes: 0 success, 1 failure, 2 bad input or arguments, 130/143 interrupted (SIGINT/SIGTERM).",
    )
    parser.add_argument("video", type=Path, help="video (any format ffmpeg reads)")
    parser.add_argument("--png", type=Path, default=None, help="write the first frame with numbered face boxes here")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help=f"local directory with the face weights (default: ${CHECKPOINTS_ENV}, else the Hub)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on failure")
    return parser


def describe(result) -> dict:
    """The tracks as plain data: {"frames", "tracks": [{"id", "first_frame", "last_frame", "box"}]}."""
    tracks = []
    for track in result.tracks:
        box = track.boxes[track.first_frame]
        tracks.append({"id": track.track_id, "first_frame": track.first_frame, "last_frame": track.last_frame,
                       "box": [round(float(v), 1) for v in box]})  # fmt: skip
    return {"frames": result.num_frames, "tracks": tracks}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def run() -> str:
        import cv2

        from latentsync import media
        from latentsync.checkpoints import resolve_face_weights
        from latentsync.devices import parse_device
        from latentsync.faces.detection import load_landmark_backend
        from latentsync.faces.multi_track import draw_tracks, track_all_faces

        check_files_exist(args, "video")
        device = parse_device(args.device)
        info = media.check_video(media.probe(args.video))
        backend_name, weights_dir = resolve_face_weights(checkpoints_dir=args.checkpoints)
        backend = load_landmark_backend(backend_name, device=device, weights_dir=weights_dir)
        result = track_all_faces(backend, media.iter_video_frames(args.video, CHUNK_FRAMES, info=info))
        if args.png is not None:
            first = next(media.iter_video_frames(args.video, 1, count=1, info=info))[0]
            if not cv2.imwrite(str(args.png), cv2.cvtColor(draw_tracks(first, result, 0), cv2.COLOR_RGB2BGR)):
                raise OSError(f"--png: could not write {args.png}")
        data = describe(result)
        if args.json:
            return json.dumps(data)
        lines = [f"{len(data['tracks'])} face track(s) in {data['frames']} frames"]
        lines += [f"face {t['id']}: frames {t['first_frame']}-{t['last_frame']}, first box {t['box']}"
                  for t in data["tracks"]]  # fmt: skip
        return "\n".join(lines)

    return run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
