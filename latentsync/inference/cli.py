"""Command line: ``python -m latentsync --video V --audio A --output O`` (see ``--help``).

Exit codes: 0 success; 2 a problem with the input or the arguments (the message says what to fix); 1 anything
else (missing weights, out of memory, a bug), reported in one line unless ``--debug`` asks for the traceback;
130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM (``docker stop``, ``timeout``), after removing temporary files.
Arguments, devices, input files and the output path are all checked before the models load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentsync.cli_common import (  # noqa: F401 -- re-exported: tests and older callers import them from here
    EXIT_FAILURE,
    EXIT_INPUT,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    INTERRUPT_SIGNALS,
    Interrupted,
    check_files_exist,
    run_reporting_errors,
    signals_interrupt,
)


def build_parser() -> argparse.ArgumentParser:
    from latentsync.checkpoints import CHECKPOINTS_ENV, VERSIONS
    from latentsync.media import H264_CRF, MAX_CRF
    from latentsync.models.deepcache import REFERENCE_CACHE_INTERVAL
    from latentsync.inference.pipeline import (
        DEFAULT_GUIDANCE,
        DEFAULT_RESTORE_STRENGTH,
        DEFAULT_SEED,
        DEFAULT_STEPS,
        LARGEST_FACE,
    )
    from latentsync.inference.timeline import LENGTH_MODES
    from latentsync.inference.track_cache import CACHE_DIR_ENV, CACHE_MAX_MB_ENV

    parser = argparse.ArgumentParser(
        prog="python -m latentsync",
        description="Re-generate the mouth in a face video so that it matches a speech clip (LatentSync).",
        epilog="Exit codes: 0 success, 1 failure, 2 bad input or arguments, 130/143 interrupted (SIGINT/SIGTERM).",
    )
    parser.add_argument("--video", required=True, type=Path,
                        help="face video (any format ffmpeg reads), or a photo (PNG, JPEG, WebP): shown for the whole speech")
    parser.add_argument("--audio", required=True, type=Path,
                        help="driving speech: an audio file or a video with sound; the output lasts as long as it")
    parser.add_argument("--output", required=True, type=Path, help="where to write the lip-synced MP4")
    parser.add_argument("--version", default="1.5", choices=sorted(VERSIONS),
                        help="model version: 1.5 works on 256 px faces (faster, ~8 GB VRAM), 1.6 on 512 px (sharper, ~18 GB)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"DDIM denoising steps (default {DEFAULT_STEPS}; 20-50 is sensible, more is slower)")
    parser.add_argument("--guidance", type=float, default=DEFAULT_GUIDANCE,
                        help=f"classifier-free guidance scale on the audio (default {DEFAULT_GUIDANCE}; 1.0 turns it off, "
                             "higher follows the audio more strongly)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"random seed; the same seed and inputs give the same video (default {DEFAULT_SEED})")
    parser.add_argument("--speaker", default=LARGEST_FACE,
                        help="which face speaks when there are several: 'largest' (default), or a point x,y on that "
                             "face in the first frame with faces, in pixels (e.g. 420,180) or as fractions of the "
                             "width and height when both are <= 1 (e.g. 0.7,0.4); the other faces are untouched")
    parser.add_argument("--speakers", default=None, metavar="FILE|auto",
                        help="a conversation: lip-sync several faces, each only during its turns. FILE: a timeline "
                             "(CSV rows start,end,speaker or JSON; speaker = a face id from `python -m "
                             "latentsync.faces VIDEO` or a point x,y on the face; docs/conversations.md). auto: find "
                             "who speaks when from the video's own soundtrack. The timeline used and the numbered "
                             "faces are written next to the output (OUTPUT.speakers.csv, OUTPUT.faces.png)")
    parser.add_argument("--length-mode", default="pingpong", choices=LENGTH_MODES,
                        help="when audio and video differ: the output lasts as long as the audio and a shorter video "
                             "is played back and forth (pingpong, default), looped from its start (loop) or held on "
                             "its last frame (freeze); or it lasts as long as the video (video), the audio cut or "
                             "padded with silence")
    parser.add_argument("--native-fps", action="store_true",
                        help="output at the video's own frame rate (e.g. 30 or 60 fps) instead of 25 fps: every "
                             "original frame kept, the mouth generated for each frame's time")
    parser.add_argument("--crf", type=int, default=H264_CRF,
                        help=f"output quality, H.264 CRF from 0 (lossless, large) to {MAX_CRF} (worst); default "
                             f"{H264_CRF}, visually lossless")
    parser.add_argument("--no-face-cache", action="store_true",
                        help=f"do not read or store the video's face track in the on-disk cache (${CACHE_DIR_ENV}, "
                             f"default <HF cache>/latentsync/face-tracks; size limit ${CACHE_MAX_MB_ENV}, default 2048)")
    parser.add_argument("--cache-interval", type=int, default=REFERENCE_CACHE_INTERVAL,
                        help=f"step caching (DeepCache, as the official app): the whole UNet every N-th step, only its "
                             f"outer layers in between; default {REFERENCE_CACHE_INTERVAL} (about 2x faster, nearly "
                             "the same result), 1 = off")
    parser.add_argument("--no-overlap", action="store_true",
                        help="do not read and prepare the next frames on a worker thread while the current ones are "
                             "denoised (the output is the same either way; for debugging)")
    parser.add_argument("--low-memory", action="store_true",
                        help="run the two guidance halves through the UNet one after the other and the VAE one frame "
                             "at a time: LatentSync 1.5 fits in ~6.5 GB and 1.6 in ~12 GB of VRAM; a little slower, "
                             "same result up to float rounding")
    parser.add_argument("--reference-audio-windows", action="store_true",
                        help="encode speech longer than 30 s in the official code's back-to-back 30-s Whisper "
                             "windows (the mouth may change at every 30 s) instead of overlapping, cross-faded "
                             "ones; for comparisons with the reference (up to 30 s both are the same)")
    parser.add_argument("--restore", type=float, nargs="?", const=DEFAULT_RESTORE_STRENGTH, default=0.0,
                        metavar="STRENGTH",
                        help="sharpen the generated mouth with the GFPGAN v1.4 face restorer (fixed noise: no flicker), "
                             f"blended in with STRENGTH from 0 to 1 (default {DEFAULT_RESTORE_STRENGTH} when given "
                             "without a value; only the generated lower face changes); downloads GFPGANv1.4.pth "
                             "(~333 MiB) once unless --checkpoints holds auxiliary/GFPGANv1.4.pth")
    parser.add_argument("--compile", action="store_true",
                        help="compile the UNet with torch.compile: the first windows take minutes to compile, later "
                             "ones run faster; speeds up --cache-interval 1 runs (step caching calls the UNet's "
                             "blocks itself)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cuda, cuda:1 or cpu (default: cuda if available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"],
                        help="weights' precision (default auto: float16 on Ampere or newer GPUs, else float32)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help=f"local directory with the model files (default: ${CHECKPOINTS_ENV}, else the Hugging Face Hub)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on failure")
    return parser


class TqdmProgress:
    """One tqdm bar per pipeline stage."""

    def __init__(self) -> None:
        self.stage, self.bar = None, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, tqdm(total=total, desc=stage, unit="", leave=True, file=sys.stderr)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def speakers_text(value: str | None) -> str:
    """--speakers: "" (not given), "auto", or the timeline file's contents."""
    if value is None:
        return ""
    if value.strip().lower() == "auto":
        return "auto"
    from latentsync.errors import InputError

    path = Path(value)
    if not path.is_file():
        raise InputError(f"--speakers: no timeline file {value} (give a CSV or JSON file of turns, or auto)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheets often write a byte-order mark
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--speakers: could not read {path.name} as text ({err})") from None
    if not text.strip():  # (an empty value would silently mean one face)
        raise InputError(f"--speakers: {path.name} is empty; it needs rows start,end,speaker")
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def lipsync() -> str:
        from latentsync import media
        from latentsync.devices import parse_device, parse_dtype
        from latentsync.inference.input_checks import probe_inputs, speaker_point
        from latentsync.inference.loading import load_pipeline
        from latentsync.inference.conversation import is_automatic
        from latentsync.inference.pipeline import LipSyncOptions

        # 1. Everything that can be checked in a second, before the models load (seconds to minutes).
        whisper_windows = "reference" if args.reference_audio_windows else "seamless"
        options = LipSyncOptions(steps=args.steps, guidance_scale=args.guidance, seed=args.seed,
                                 speaker=args.speaker, length_mode=args.length_mode, native_fps=args.native_fps,
                                 crf=args.crf, face_cache=not args.no_face_cache,
                                 cache_interval=args.cache_interval, overlap=not args.no_overlap,
                                 low_memory=args.low_memory, whisper_windows=whisper_windows,
                                 restore=args.restore, speakers=speakers_text(args.speakers))  # fmt: skip
        options.check()
        check_files_exist(args, "video", "audio")
        media.check_output_path(args.output, inputs=(args.video, args.audio))
        device = parse_device(args.device)
        dtype = parse_dtype(args.dtype, device)
        info = probe_inputs(args.video, args.audio)
        speaker_point(options.speaker, info.width, info.height)  # a point outside the frame: before the models
        if options.restore:  # the restorer's weights (a download on first use): before the models too
            from latentsync.checkpoints import resolve_release_file

            resolve_release_file("gfpgan_v1.4", args.checkpoints)
        if is_automatic(options.speakers):  # SyncNet finds who speaks (a download on first use): before the models too
            from latentsync.checkpoints import resolve_syncnet_v2

            resolve_syncnet_v2(args.version, args.checkpoints)
        # 2. Load and run.
        pipeline = load_pipeline(args.version, device=device, dtype=dtype, checkpoints_dir=args.checkpoints,
                                 compile=args.compile)  # fmt: skip
        progress = TqdmProgress()
        try:
            result = pipeline(args.video, args.audio, args.output, options, progress=progress)
        finally:
            progress.close()
        return f"wrote {result.output}: {result.summary()}"

    return run_reporting_errors(lipsync, args.debug)


if __name__ == "__main__":
    sys.exit(main())
